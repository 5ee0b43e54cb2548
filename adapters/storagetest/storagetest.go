// Package storagetest is a conformance suite for node.Storage backends:
// the same tests, run unchanged against every durable storage (Pebble, the
// dedicated WAL, ...).
//
// A backend's test file describes the backend once and runs the suite:
//
//	func TestStorage(t *testing.T) {
//		storagetest.Run(t, storagetest.Backend{
//			Name:      "pebble",
//			Open:      func(t testing.TB, dir string) (storagetest.Store, error) { ... },
//			IsCorrupt: func(err error) bool { return errors.Is(err, ErrCorrupt) },
//		})
//	}
//
// Run runs every test below as a subtest; each is also exported to be run
// alone. The suite checks:
//
//   - Append, Overwrite, Compact, LeaderSnapshot, Gap, Model: each kind of
//     update is applied as node.MemoryStorage applies it, and reads back the
//     same after a reopen.
//   - StreamedSnapshot (backends that are a node.SnapshotStore): local
//     snapshots streamed into CreateSnapshot's files compact the log as
//     in-memory ones do, SnapshotData serves the stored one (and only it),
//     and an aborted file leaves nothing behind.
//   - Crash: a child process (the test binary itself, re-run on the same
//     test) saves updates and prints each acknowledgement; it is killed with
//     SIGKILL at random moments, many times over one directory, and after
//     each kill the store must hold exactly the updates of a prefix of what
//     was saved, at least every acknowledged one. Each Save must therefore
//     be atomic across a crash.
//   - Corruption: the single-byte corruption campaign. A stopped node's
//     directory is built (a leader snapshot, hundreds of entries, hard
//     states, two local snapshots with compaction, entries after them, and
//     restarts in between); then for each of N seeded flips, spread over
//     every file of the directory (in proportion to size, with a minimum per
//     file), a copy of the directory has one byte changed and is opened and
//     loaded. The outcome must be a refusal (IsCorrupt, naming a file) or a
//     state holding everything acknowledged. Outcomes are counted per file
//     and per kind of file and logged as a table. N is 120 by default,
//     STORAGE_FLIPS overrides it (and STORAGE_FLIPS_SEED the seed). A
//     backend whose store is not files (a database) gives a Damager: the
//     flips then go to its units (rows), in place, each one repaired after
//     its trial, and a refusal must name the damaged row.
package storagetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Store is a node.Storage that can be closed.
type Store interface {
	node.Storage
	// Close writes what is queued, stops the store and releases its files.
	Close() error
}

// Backend describes a storage backend to the suite.
type Backend struct {
	// Name names the backend in logs.
	Name string
	// Open opens the store kept in dir, creating it if dir is empty or
	// missing, with fsync on. It verifies what is stored: a store it
	// cannot trust fails it with an error for which IsCorrupt is true.
	Open func(t testing.TB, dir string) (Store, error)
	// IsCorrupt reports whether err (from Open or Load) is the backend's
	// refusal of damaged data.
	IsCorrupt func(err error) bool
	// Kind names the kind of a file of the data directory (rel is its
	// path relative to the directory, with forward slashes), for the
	// corruption campaign's summary. Nil uses the file's extension.
	Kind func(rel string) string
	// Damage, when set, runs the corruption campaign over the backend's
	// own units of storage (the rows of a database) instead of the files
	// of the data directory; dir is then a name the backend maps to its
	// store. Nil: the campaign flips bytes of files.
	Damage Damager
}

// Damager is how the corruption campaign damages a store that is not
// files in a directory (a database), one unit (row) at a time, in place.
type Damager interface {
	// Units lists the units of the store of dir that the campaign may
	// damage, each with its name (which a refusal contains to name it)
	// and its size in bytes.
	Units(t testing.TB, dir string) []Unit
	// Flip xors the byte at off of the unit named name in the store of
	// dir with mask. It returns other names the damaged unit goes by
	// afterwards (a row whose key was damaged is found under the new
	// key; a refusal naming one of them names the damaged unit), and a
	// function that puts the unit back as it was, which the campaign
	// calls once it has opened and loaded the damaged store.
	Flip(t testing.TB, dir, name string, off int64, mask byte) (also []string, undo func())
}

// Unit is a unit of a store that a Damager damages.
type Unit struct {
	Name string
	Size int64
}

// Run runs the whole suite against b, each test as a subtest.
func Run(t *testing.T, b Backend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"Append", Append},
		{"Overwrite", Overwrite},
		{"Compact", Compact},
		{"StreamedSnapshot", StreamedSnapshot},
		{"LeaderSnapshot", LeaderSnapshot},
		{"Gap", Gap},
		{"Model", Model},
		{"Crash", Crash},
		{"Corruption", Corruption},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

// waitTimeout bounds every wait for a done callback: a deadlock guard, not
// a timing assertion.
const waitTimeout = time.Minute

func open(t testing.TB, b Backend, dir string) Store {
	t.Helper()
	s, err := b.Open(t, dir)
	if err != nil {
		t.Fatalf("%s: open %s: %v", b.Name, dir, err)
	}
	return s
}

// model is node.MemoryStorage used as the reference.
type model struct{ m *node.MemoryStorage }

func newModel() *model { return &model{m: node.NewMemoryStorage()} }

// save applies u to the model and returns its error.
func (m *model) save(u *node.Update) error {
	var err error
	m.m.Save(u, func(e error) { err = e })
	return err
}

// both saves u to s and to the model and checks that both accept or both
// reject it.
func (m *model) both(t testing.TB, s node.Storage, u *node.Update) {
	t.Helper()
	want := m.save(u)
	got := SaveWait(t, s, u)
	if (got == nil) != (want == nil) {
		t.Fatalf("Save: %v; node.MemoryStorage: %v", got, want)
	}
}

// check compares s with the model.
func (m *model) check(t testing.TB, s node.Storage, what string) {
	t.Helper()
	if d := DiffPersisted(MustLoad(t, s), m.m.Persisted()); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// Entries returns entries from..to of the given term, with data derived
// from index and term.
func Entries(from, to, term uint64) []core.Entry {
	var out []core.Entry
	for i := from; i <= to; i++ {
		out = append(out, core.Entry{Index: i, Term: term, Data: EntryData(i, term)})
	}
	return out
}

// EntryData is the data of the suite's entry at index and term: a prefix
// naming them and up to 199 more bytes.
func EntryData(index, term uint64) []byte {
	b := fmt.Appendf(nil, "%d/%d:", index, term)
	for i := range (index*31 + term*17) % 200 {
		b = append(b, byte('a'+(index+i)%26))
	}
	return b
}

// SnapshotAt returns the suite's snapshot at index and term, with data
// derived from them.
func SnapshotAt(index, term uint64) *core.Snapshot {
	return &core.Snapshot{
		Meta: core.SnapshotMeta{Index: index, Term: term, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
		Data: SnapshotData(index, term),
	}
}

// SnapshotData is the data of the suite's snapshot at index and term.
func SnapshotData(index, term uint64) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "snapshot %d/%d;", index, term), 1+int(index%64))
}

// reopen closes s, opens the store again and checks it against the model.
func (m *model) reopen(t testing.TB, b Backend, dir string, s Store) Store {
	t.Helper()
	MustClose(t, s)
	s = open(t, b, dir)
	m.check(t, s, "after reopening")
	return s
}

// Append: entries appended in several Saves, with hard states, read back
// in order, before and after a reopen.
func Append(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir)
	m := newModel()
	m.check(t, s, "empty store")
	for i := uint64(1); i <= 50; i += 5 {
		m.both(t, s, &node.Update{Entries: Entries(i, i+4, 1), HardState: core.HardState{Term: 1, Vote: 2, Commit: i}, Sync: true})
	}
	m.both(t, s, &node.Update{HardState: core.HardState{Term: 2, Vote: 3, Commit: 50}, Sync: true})
	m.check(t, s, "after appends")
	MustClose(t, m.reopen(t, b, dir, s))
}

// Overwrite: entries from an index inside the log replace the stored
// suffix (a conflicting suffix from a new leader), including one Save
// that both truncates and extends.
func Overwrite(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir)
	m := newModel()
	m.both(t, s, &node.Update{Entries: Entries(1, 20, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 10}, Sync: true})
	m.both(t, s, &node.Update{Entries: Entries(15, 16, 2), HardState: core.HardState{Term: 2, Vote: 2, Commit: 10}, Sync: true})
	m.check(t, s, "after a shorter overwrite")
	m.both(t, s, &node.Update{Entries: Entries(12, 30, 3), HardState: core.HardState{Term: 3, Vote: 3, Commit: 11}, Sync: true})
	m.both(t, s, &node.Update{Entries: Entries(31, 31, 3), Sync: true})
	m.check(t, s, "after a longer overwrite")
	s = m.reopen(t, b, dir, s)
	m.both(t, s, &node.Update{Entries: Entries(31, 33, 4), HardState: core.HardState{Term: 4, Vote: 1, Commit: 11}, Sync: true})
	MustClose(t, m.reopen(t, b, dir, s))
}

// Compact: local snapshots compact the log up to CompactTo and keep the
// entries after it; a later snapshot replaces the earlier one.
func Compact(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir)
	m := newModel()
	m.both(t, s, &node.Update{Entries: Entries(1, 100, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 100}, Sync: true})
	m.both(t, s, &node.Update{LocalSnapshot: SnapshotAt(60, 1), CompactTo: 50, Sync: true})
	m.check(t, s, "after compaction to 50")
	s = m.reopen(t, b, dir, s)
	m.both(t, s, &node.Update{Entries: Entries(101, 120, 2), HardState: core.HardState{Term: 2, Vote: 1, Commit: 110}, Sync: true})
	m.both(t, s, &node.Update{LocalSnapshot: SnapshotAt(110, 2), CompactTo: 110, Sync: true})
	m.check(t, s, "after compaction to the snapshot")
	s = m.reopen(t, b, dir, s)
	// Compacting the whole log.
	m.both(t, s, &node.Update{LocalSnapshot: SnapshotAt(120, 2), CompactTo: 120, Sync: true})
	MustClose(t, m.reopen(t, b, dir, s))
}

// StreamedSnapshot: for a backend that is a node.SnapshotStore, a local
// snapshot whose data is streamed into a CreateSnapshot file is stored as
// the same snapshot with its data (a node.MemoryStorage given the data is
// the model), before and after a reopen; SnapshotData returns the stored
// snapshot's data and refuses other metadata; an aborted file changes
// nothing. Other backends skip it.
func StreamedSnapshot(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir)
	ss, ok := s.(node.SnapshotStore)
	if !ok {
		MustClose(t, s)
		t.Skipf("%s is not a node.SnapshotStore", b.Name)
	}
	m := newModel()
	stream := func(snap *core.Snapshot, compactTo uint64) {
		t.Helper()
		f, err := ss.CreateSnapshot()
		if err != nil {
			t.Fatalf("CreateSnapshot: %v", err)
		}
		for d := snap.Data; len(d) > 0; d = d[min(len(d), 7):] {
			if _, err := f.Write(d[:min(len(d), 7)]); err != nil {
				t.Fatalf("write snapshot file: %v", err)
			}
		}
		want := m.save(&node.Update{LocalSnapshot: snap, CompactTo: compactTo, Sync: true})
		meta := &core.Snapshot{Meta: snap.Meta}
		if err := SaveWait(t, s, &node.Update{LocalSnapshot: meta, LocalSnapshotFile: f, CompactTo: compactTo, Sync: true}); (err == nil) != (want == nil) {
			t.Fatalf("Save of a streamed snapshot at %d: %v; node.MemoryStorage: %v", snap.Meta.Index, err, want)
		}
		data, err := ss.SnapshotData(snap.Meta)
		if err != nil || !bytes.Equal(data, snap.Data) {
			t.Fatalf("SnapshotData(%d/%d) = %d bytes, %v; want the %d bytes streamed", snap.Meta.Index, snap.Meta.Term, len(data), err, len(snap.Data))
		}
	}
	m.both(t, s, &node.Update{Entries: Entries(1, 100, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 100}, Sync: true})
	stream(SnapshotAt(60, 1), 50)
	m.check(t, s, "after a streamed snapshot compacting to 50")
	s = m.reopen(t, b, dir, s)
	ss = s.(node.SnapshotStore)
	if data, err := ss.SnapshotData(SnapshotAt(60, 1).Meta); err != nil || !bytes.Equal(data, SnapshotData(60, 1)) {
		t.Fatalf("after reopening: SnapshotData(60/1) = %d bytes, %v", len(data), err)
	}
	if _, err := ss.SnapshotData(SnapshotAt(60, 2).Meta); err == nil {
		t.Fatal("SnapshotData served a snapshot of another term")
	}

	// An aborted file leaves the store as it was.
	all := func(string) bool { return true }
	before := DirNames(t, dir, all)
	f, err := ss.CreateSnapshot()
	if err != nil {
		t.Fatalf("CreateSnapshot: %v", err)
	}
	if _, err := f.Write([]byte("half a snapshot")); err != nil {
		t.Fatalf("write snapshot file: %v", err)
	}
	f.Abort()
	if after := DirNames(t, dir, all); !slices.Equal(after, before) {
		t.Fatalf("files after an aborted snapshot file: %v, before: %v", after, before)
	}
	m.check(t, s, "after an aborted snapshot file")

	m.both(t, s, &node.Update{Entries: Entries(101, 120, 2), HardState: core.HardState{Term: 2, Vote: 1, Commit: 120}, Sync: true})
	stream(SnapshotAt(120, 2), 120)
	if _, err := ss.SnapshotData(SnapshotAt(60, 1).Meta); err == nil {
		t.Fatal("SnapshotData served a snapshot that was replaced")
	}
	MustClose(t, m.reopen(t, b, dir, s))
}

// LeaderSnapshot: a snapshot from the leader replaces the snapshot and the
// whole log; entries after it follow in the same or later Saves.
func LeaderSnapshot(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir)
	m := newModel()
	m.both(t, s, &node.Update{Entries: Entries(1, 30, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 20}, Sync: true})
	m.both(t, s, &node.Update{Snapshot: SnapshotAt(50, 2), HardState: core.HardState{Term: 2, Commit: 50}, Sync: true})
	m.check(t, s, "after a leader snapshot past the log")
	s = m.reopen(t, b, dir, s)
	m.both(t, s, &node.Update{Entries: Entries(51, 60, 2), HardState: core.HardState{Term: 2, Commit: 55}, Sync: true})
	m.both(t, s, &node.Update{Snapshot: SnapshotAt(58, 2), Entries: Entries(59, 70, 3), HardState: core.HardState{Term: 3, Commit: 58}, Sync: true})
	m.check(t, s, "after a leader snapshot inside the log, with entries")
	MustClose(t, m.reopen(t, b, dir, s))
}

// Gap: an update whose entries would leave a gap fails and writes nothing;
// the store keeps working.
func Gap(t *testing.T, b Backend) {
	dir := t.TempDir()
	s := open(t, b, dir)
	m := newModel()
	m.both(t, s, &node.Update{Entries: Entries(1, 5, 1), Sync: true})
	if err := SaveWait(t, s, &node.Update{Entries: Entries(8, 9, 1), HardState: core.HardState{Term: 5, Commit: 9}, Sync: true}); err == nil {
		t.Fatal("Save of entries leaving a gap succeeded")
	}
	m.check(t, s, "after a rejected update")
	m.both(t, s, &node.Update{Entries: Entries(6, 6, 1), Sync: true})
	MustClose(t, m.reopen(t, b, dir, s))
}

// Model applies random valid updates, several outstanding at a time, to
// the store and to node.MemoryStorage and compares them after every burst
// and after reopening.
func Model(t *testing.T, b Backend) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			dir := t.TempDir()
			s := open(t, b, dir)
			m := newModel()
			w := newWorkload(core.Persisted{})
			seq := 0
			for burst := range 30 {
				n := 1 + rng.IntN(6)
				errs := make(chan error, n)
				for range n {
					u := w.next(rng, seq).update()
					seq++
					if err := m.save(u); err != nil {
						t.Fatalf("model rejects the workload's update: %v", err)
					}
					s.Save(u, func(err error) { errs <- err })
				}
				for range n {
					select {
					case err := <-errs:
						if err != nil {
							t.Fatalf("burst %d: %v", burst, err)
						}
					case <-time.After(waitTimeout):
						t.Fatal("done not called")
					}
				}
				m.check(t, s, fmt.Sprintf("burst %d", burst))
				if burst%10 == 9 {
					s = m.reopen(t, b, dir, s)
				}
			}
			MustClose(t, s)
		})
	}
}

// DiffPersisted describes how got differs from want ("" if equal), with
// nil and empty slices equal.
func DiffPersisted(got, want core.Persisted) string {
	var d []string
	if got.HardState != want.HardState {
		d = append(d, fmt.Sprintf("hard state %+v, want %+v", got.HardState, want.HardState))
	}
	switch {
	case (got.Snapshot == nil) != (want.Snapshot == nil):
		d = append(d, fmt.Sprintf("snapshot %v, want %v", got.Snapshot != nil, want.Snapshot != nil))
	case got.Snapshot != nil:
		if !sameSnapshot(got.Snapshot, want.Snapshot) {
			d = append(d, fmt.Sprintf("snapshot %+v (%s), want %+v (%s)",
				got.Snapshot.Meta, short(got.Snapshot.Data), want.Snapshot.Meta, short(want.Snapshot.Data)))
		}
	}
	if len(got.Entries) != len(want.Entries) {
		d = append(d, fmt.Sprintf("%d entries %s, want %d %s",
			len(got.Entries), Span(got.Entries), len(want.Entries), Span(want.Entries)))
	} else {
		for i := range got.Entries {
			if g, w := got.Entries[i], want.Entries[i]; !sameEntry(g, w) {
				d = append(d, fmt.Sprintf("entry %d is %d/%d/%v/%s, want %d/%d/%v/%s", i,
					g.Index, g.Term, g.Type, short(g.Data), w.Index, w.Term, w.Type, short(w.Data)))
				break
			}
		}
	}
	return strings.Join(d, "; ")
}

func sameEntry(a, b core.Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

func sameSnapshot(a, b *core.Snapshot) bool {
	ac, bc := a.Meta.Config, b.Meta.Config
	return a.Meta.Index == b.Meta.Index && a.Meta.Term == b.Meta.Term &&
		slices.Equal(ac.Voters, bc.Voters) && slices.Equal(ac.Learners, bc.Learners) &&
		slices.Equal(ac.VotersOutgoing, bc.VotersOutgoing) && slices.Equal(ac.LearnersNext, bc.LearnersNext) &&
		ac.AutoLeave == bc.AutoLeave && bytes.Equal(a.Data, b.Data)
}

// HoldsAcked reports how got fails to hold everything acknowledged ("" if
// it holds it): acked is the state after the acknowledged updates, snaps
// every snapshot acknowledged. got's hard state must be at or past acked's
// (same vote in the same term, commit not lower); its snapshot must be one
// acknowledged, not older than acked's; every acknowledged entry after
// got's snapshot must be present with the same term, type and data; and
// got's log must be contiguous, hold nothing that was not acknowledged and
// follow its snapshot.
func HoldsAcked(got, acked core.Persisted, snaps []*core.Snapshot) string {
	var d []string
	gh, ah := got.HardState, acked.HardState
	if gh.Term < ah.Term || gh.Commit < ah.Commit || (gh.Term == ah.Term && ah.Vote != 0 && gh.Vote != ah.Vote) {
		d = append(d, fmt.Sprintf("hard state %+v, acknowledged %+v", gh, ah))
	}
	var snapIndex uint64
	if gs := got.Snapshot; gs != nil {
		snapIndex = gs.Meta.Index
		if !slices.ContainsFunc(snaps, func(s *core.Snapshot) bool { return sameSnapshot(s, gs) }) {
			d = append(d, fmt.Sprintf("snapshot %+v was never acknowledged", gs.Meta))
		}
	}
	if as := acked.Snapshot; as != nil && snapIndex < as.Meta.Index {
		d = append(d, fmt.Sprintf("snapshot at %d, acknowledged one at %d", snapIndex, as.Meta.Index))
	}
	have := make(map[uint64]core.Entry, len(got.Entries))
	for i, e := range got.Entries {
		if i > 0 && e.Index != got.Entries[i-1].Index+1 {
			d = append(d, fmt.Sprintf("log has a gap: %d after %d", e.Index, got.Entries[i-1].Index))
			break
		}
		have[e.Index] = e
	}
	if n := len(got.Entries); n > 0 && got.Entries[0].Index > snapIndex+1 {
		d = append(d, fmt.Sprintf("log starts at %d after a snapshot at %d", got.Entries[0].Index, snapIndex))
	}
	want := make(map[uint64]bool, len(acked.Entries))
	missing := 0
	for _, e := range acked.Entries {
		want[e.Index] = true
		if e.Index <= snapIndex {
			continue
		}
		if g, ok := have[e.Index]; !ok || !sameEntry(g, e) {
			if missing == 0 {
				d = append(d, fmt.Sprintf("acknowledged entry %d/%d missing or different", e.Index, e.Term))
			}
			missing++
		}
	}
	if missing > 1 {
		d = append(d, fmt.Sprintf("%d acknowledged entries missing or different in all", missing))
	}
	for _, e := range got.Entries {
		if e.Index > snapIndex && !want[e.Index] {
			d = append(d, fmt.Sprintf("entry %d/%d was never acknowledged", e.Index, e.Term))
			break
		}
	}
	return strings.Join(d, "; ")
}

// short describes b briefly.
func short(b []byte) string {
	if len(b) <= 16 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q...(%d bytes)", b[:16], len(b))
}
