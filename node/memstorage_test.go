package node_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// ents returns entries from..to of the given term.
func ents(from, to, term uint64) []core.Entry {
	var out []core.Entry
	for i := from; i <= to; i++ {
		out = append(out, core.Entry{Index: i, Term: term, Data: []byte{byte(i)}})
	}
	return out
}

// indexes returns the indexes of es.
func indexes(es []core.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Index)
	}
	return out
}

// save saves u synchronously and returns the completion error.
func save(t *testing.T, s *node.MemoryStorage, u *node.Update) error {
	t.Helper()
	called := 0
	var got error
	s.Save(u, func(err error) { called++; got = err })
	if called != 1 {
		t.Fatalf("done called %d times before Save returned, want 1", called)
	}
	return got
}

// TestMemoryStorageSave: the parts of an update apply in field order:
// Snapshot replaces the snapshot and the log, LocalSnapshot replaces the
// snapshot and drops entries up to CompactTo, Entries replace the stored
// suffix from their first index, HardState replaces the hard state unless
// empty.
func TestMemoryStorageSave(t *testing.T) {
	s := node.NewMemoryStorage()
	if p, err := s.Load(); err != nil || !p.IsEmpty() {
		t.Fatalf("new storage loads (%+v, %v)", p, err)
	}
	hs := core.HardState{Term: 2, Vote: 1, Commit: 3}
	if err := save(t, s, &node.Update{Entries: ents(1, 5, 1), HardState: hs, Sync: true}); err != nil {
		t.Fatal(err)
	}
	p := s.Persisted()
	if !slices.Equal(indexes(p.Entries), []uint64{1, 2, 3, 4, 5}) || p.HardState != hs || p.Snapshot != nil {
		t.Fatalf("stored %+v", p)
	}

	// Truncate at 4 and append; an empty hard state changes nothing.
	if err := save(t, s, &node.Update{Entries: ents(4, 6, 2)}); err != nil {
		t.Fatal(err)
	}
	p = s.Persisted()
	if !slices.Equal(indexes(p.Entries), []uint64{1, 2, 3, 4, 5, 6}) || p.Entries[2].Term != 1 || p.Entries[3].Term != 2 || p.HardState != hs {
		t.Fatalf("after truncation: %+v", p)
	}

	// A gap is refused and writes nothing.
	if err := save(t, s, &node.Update{Entries: ents(8, 9, 2), HardState: core.HardState{Term: 9}}); err == nil {
		t.Fatal("entries leaving a gap were accepted")
	}
	if q := s.Persisted(); len(q.Entries) != 6 || q.HardState != hs {
		t.Fatalf("refused write changed the storage: %+v", q)
	}

	// A local snapshot keeps the entries after CompactTo.
	local := &core.Snapshot{Meta: core.SnapshotMeta{Index: 5, Term: 2, Config: core.ConfState{Voters: []uint64{1}}}, Data: []byte("s5")}
	if err := save(t, s, &node.Update{LocalSnapshot: local, CompactTo: 3, Sync: true}); err != nil {
		t.Fatal(err)
	}
	p = s.Persisted()
	if p.Snapshot == nil || p.Snapshot.Meta.Index != 5 || string(p.Snapshot.Data) != "s5" || !slices.Equal(indexes(p.Entries), []uint64{4, 5, 6}) {
		t.Fatalf("after local snapshot: %+v", p)
	}

	// A snapshot from the leader replaces the log; entries in the same
	// update follow it.
	remote := &core.Snapshot{Meta: core.SnapshotMeta{Index: 10, Term: 3, Config: core.ConfState{Voters: []uint64{1}}}, Data: []byte("s10")}
	hs2 := core.HardState{Term: 3, Commit: 10}
	if err := save(t, s, &node.Update{Snapshot: remote, Entries: ents(11, 12, 3), HardState: hs2, Sync: true}); err != nil {
		t.Fatal(err)
	}
	p = s.Persisted()
	if p.Snapshot.Meta.Index != 10 || !slices.Equal(indexes(p.Entries), []uint64{11, 12}) || p.HardState != hs2 {
		t.Fatalf("after leader snapshot: %+v", p)
	}
	if err := save(t, s, &node.Update{Snapshot: remote}); err != nil {
		t.Fatal(err)
	}
	if p = s.Persisted(); len(p.Entries) != 0 {
		t.Fatalf("a leader snapshot alone kept entries %v", indexes(p.Entries))
	}
	if err := save(t, s, &node.Update{Entries: ents(12, 12, 3)}); err == nil {
		t.Fatal("entries leaving a gap after the snapshot were accepted")
	}
	if err := save(t, s, &node.Update{Entries: ents(11, 11, 3)}); err != nil {
		t.Fatal(err)
	}
}

// TestMemoryStorageCopies: what Save stores and Load returns are copies:
// changing one side later changes nothing on the other.
func TestMemoryStorageCopies(t *testing.T) {
	s := node.NewMemoryStorage()
	in := ents(1, 3, 1)
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: 1, Term: 1, Config: core.ConfState{Voters: []uint64{1}}}, Data: []byte("abc")}
	if err := save(t, s, &node.Update{Entries: in}); err != nil {
		t.Fatal(err)
	}
	if err := save(t, s, &node.Update{LocalSnapshot: snap, CompactTo: 0}); err != nil {
		t.Fatal(err)
	}
	in[0].Term = 99
	snap.Data[0] = 'X'
	snap.Meta.Config.Voters[0] = 7
	p, _ := s.Load()
	if p.Entries[0].Term != 1 || string(p.Snapshot.Data) != "abc" || p.Snapshot.Meta.Config.Voters[0] != 1 {
		t.Fatalf("storage shares memory with the saved update: %+v", p)
	}
	p.Entries[1].Term = 99
	p.Entries[1].Data[0] = 99
	p.Snapshot.Data[1] = 'Y'
	q, _ := s.Load()
	if q.Entries[1].Term != 1 || q.Entries[1].Data[0] != 2 || string(q.Snapshot.Data) != "abc" {
		t.Fatalf("Load shares memory with the storage: %+v", q)
	}
}

// TestMemoryStorageAsync: in asynchronous mode Save writes nothing until
// Complete; Complete(nil) writes and reports success, Complete(err) writes
// nothing and reports err; a Save overlapping an outstanding write fails.
func TestMemoryStorageAsync(t *testing.T) {
	s := node.NewMemoryStorage()
	s.SetAsync(true)
	var results []error
	done := func(err error) { results = append(results, err) }

	s.Save(&node.Update{Entries: ents(1, 2, 1), HardState: core.HardState{Term: 1}}, done)
	if len(results) != 0 || !s.Pending() {
		t.Fatalf("async Save completed at once (%v) or is not pending", results)
	}
	if p := s.Persisted(); !p.IsEmpty() {
		t.Fatalf("async Save wrote before Complete: %+v", p)
	}
	s.Save(&node.Update{Entries: ents(3, 3, 1)}, done)
	if len(results) != 1 || results[0] == nil {
		t.Fatalf("overlapping Save: results %v, want one error", results)
	}
	s.Complete(nil)
	if len(results) != 2 || results[1] != nil || s.Pending() {
		t.Fatalf("Complete(nil): results %v, pending %t", results, s.Pending())
	}
	if p := s.Persisted(); !slices.Equal(indexes(p.Entries), []uint64{1, 2}) || p.HardState.Term != 1 {
		t.Fatalf("after Complete(nil): %+v", p)
	}

	disk := errors.New("disk")
	s.Save(&node.Update{Entries: ents(3, 4, 1), HardState: core.HardState{Term: 2}}, done)
	s.Complete(disk)
	if len(results) != 3 || !errors.Is(results[2], disk) {
		t.Fatalf("Complete(err): results %v", results)
	}
	if p := s.Persisted(); len(p.Entries) != 2 || p.HardState.Term != 1 {
		t.Fatalf("failed write changed the storage: %+v", p)
	}
	s.Complete(nil) // nothing outstanding: no effect
	if len(results) != 3 {
		t.Fatal("Complete without a write called a callback")
	}

	// Back to synchronous mode.
	s.SetAsync(false)
	if err := save(t, s, &node.Update{Entries: ents(3, 3, 1)}); err != nil {
		t.Fatal(err)
	}
}
