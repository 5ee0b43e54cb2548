package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{},
		{Dir: t.TempDir(), MaxBatchDelay: -1},
		{Dir: t.TempDir(), MaxBatchBytes: -1},
		{Dir: t.TempDir(), SegmentSize: 100},
	} {
		if s, err := Open(o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

// TestEachUpdateKind checks every kind of update against node.MemoryStorage,
// after the Save and after a reopen.
func TestEachUpdateKind(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testOpts(dir))
	m := node.NewMemoryStorage()
	step := func(name string, u *node.Update, wantErr bool) {
		t.Helper()
		err := storagetest.SaveWait(t, s, u)
		if (err != nil) != wantErr {
			t.Fatalf("%s: Save error %v, want error %v", name, err, wantErr)
		}
		if err == nil {
			m.Save(u, func(err error) {
				if err != nil {
					t.Fatalf("%s: model: %v", name, err)
				}
			})
		}
		want := m.Persisted()
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
			t.Fatalf("%s: %s", name, d)
		}
		storagetest.MustClose(t, s)
		s = openT(t, testOpts(dir))
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
			t.Fatalf("%s, after reopen: %s", name, d)
		}
	}
	defer func() { storagetest.MustClose(t, s) }()
	if p := storagetest.MustLoad(t, s); !p.IsEmpty() || p.Entries != nil {
		t.Fatalf("new store loads %+v", p)
	}
	step("append", &node.Update{Entries: storagetest.NamedEntries(1, 10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 3}, Sync: true}, false)
	step("hard state only", &node.Update{HardState: core.HardState{Term: 2, Vote: 1, Commit: 5}}, false)
	step("conflicting suffix", &node.Update{Entries: storagetest.NamedEntries(8, 12, 2), Sync: true}, false)
	step("gap", &node.Update{Entries: storagetest.NamedEntries(20, 21, 2)}, true)
	step("term going down", &node.Update{Entries: storagetest.NamedEntries(13, 13, 1)}, true)
	step("commit beyond the log", &node.Update{HardState: core.HardState{Term: 2, Vote: 1, Commit: 40}}, true)
	step("local snapshot", &node.Update{LocalSnapshot: storagetest.SnapshotWith(6, 1, "six"), CompactTo: 4, Sync: true}, false)
	step("compaction beyond the snapshot", &node.Update{LocalSnapshot: storagetest.SnapshotWith(7, 2, "x"), CompactTo: 9}, true)
	step("append after compaction", &node.Update{Entries: storagetest.NamedEntries(13, 30, 2), HardState: core.HardState{Term: 2, Vote: 1, Commit: 25}}, false)
	step("second local snapshot", &node.Update{LocalSnapshot: storagetest.SnapshotWith(25, 2, "twenty-five"), CompactTo: 25}, false)
	step("leader snapshot", &node.Update{Snapshot: storagetest.SnapshotWith(50, 3, "fifty"), HardState: core.HardState{Term: 3, Commit: 50}}, false)
	step("append after leader snapshot", &node.Update{Entries: storagetest.NamedEntries(51, 55, 3)}, false)
	step("leader snapshot behind the log", &node.Update{Snapshot: storagetest.SnapshotWith(52, 3, "fifty-two"), Entries: storagetest.NamedEntries(53, 53, 3)}, false)
	if got := listDir(t, dir, ".snap"); len(got) != 1 || got[0] != "snap-52-3.snap" {
		t.Fatalf("snapshot files %v, want only the current one", got)
	}
}

// TestRotationAndRelease appends across many small segments, compacts, and
// checks that only segments whose entries are all gone are removed.
func TestRotationAndRelease(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(dir)
	o.SegmentSize = minSegmentSize
	s := openT(t, o)
	m := node.NewMemoryStorage()
	save := func(u *node.Update) {
		t.Helper()
		storagetest.MustSave(t, s, u)
		m.Save(u, func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	for i := uint64(0); i < 200; i++ {
		save(&node.Update{Entries: storagetest.NamedEntries(i*5+1, i*5+5, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 5}})
	}
	st := s.Stats()
	if st.Rotations < 5 {
		t.Fatalf("only %d rotations", st.Rotations)
	}
	segs := len(listDir(t, dir, segSuffix))
	save(&node.Update{LocalSnapshot: storagetest.SnapshotWith(600, 1, "six hundred"), CompactTo: 590})
	after := listDir(t, dir, segSuffix)
	if len(after) >= segs || s.Stats().Released == 0 {
		t.Fatalf("%d segments before compaction, %d after", segs, len(after))
	}
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
		t.Fatal(d)
	}
	storagetest.MustClose(t, s)
	s = openT(t, o)
	defer storagetest.MustClose(t, s)
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
	// Truncation across a segment boundary, then more appends.
	save(&node.Update{Entries: storagetest.NamedEntries(700, 720, 2), HardState: core.HardState{Term: 2, Vote: 2, Commit: 700}})
	save(&node.Update{Entries: storagetest.NamedEntries(721, 1000, 2)})
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
		t.Fatal(d)
	}
}

// TestLargeUpdate writes an update larger than a segment.
func TestLargeUpdate(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testOpts(dir))
	big := make([]byte, 20<<10)
	u := &node.Update{Entries: []core.Entry{{Index: 1, Term: 1, Data: big}, {Index: 2, Term: 1, Data: big}}, HardState: core.HardState{Term: 1, Commit: 1}}
	storagetest.MustSave(t, s, u)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(3, 5, 1)})
	storagetest.MustClose(t, s)
	s = openT(t, testOpts(dir))
	defer storagetest.MustClose(t, s)
	p := storagetest.MustLoad(t, s)
	if len(p.Entries) != 5 || len(p.Entries[1].Data) != len(big) {
		t.Fatalf("loaded %s", storagetest.Span(p.Entries))
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, testOpts(t.TempDir()))
	storagetest.MustClose(t, s)
	if err := storagetest.SaveWait(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 1, 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close: %v", err)
	}
}

func TestForeignStore(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testOpts(dir))
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 3, 1)})
	storagetest.MustClose(t, s)
	o := testOpts(dir)
	o.NodeID = 2
	_, err := Open(o)
	if !errors.Is(err, ErrCorrupt) || !contains(err, "foreign segment", filepath.Join(dir, segName(1))) {
		t.Fatalf("Open with another node ID: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(1))); err != nil {
		t.Fatal(err)
	}
}

// TestMaxBatchDelay: with a long MaxBatchDelay the committer waits until
// the queued Saves reach MaxBatchBytes, then writes them with one pwrite and
// one fdatasync; a group under the limit is written at Close.
func TestMaxBatchDelay(t *testing.T) {
	u := func(i uint64) *node.Update {
		return &node.Update{Entries: storagetest.NamedEntries(i, i, 1), HardState: core.HardState{Term: 1, Commit: i}}
	}
	o := testOpts(t.TempDir())
	o.SegmentSize = 1 << 20 // no rotation
	o.MaxBatchDelay, o.MaxBatchBytes = time.Hour, 5*updateSize(u(1))
	s := openT(t, o)
	errs := make(chan error, 6)
	for i := range uint64(5) {
		s.Save(u(i+1), func(err error) { errs <- err })
	}
	for range 5 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("a full group is still waiting")
		}
	}
	if st := s.Stats(); st.Writes != 1 || st.Syncs != 1 || st.Updates != 5 {
		t.Fatalf("stats %+v, want one write and one sync of 5 updates", st)
	}
	s.Save(u(6), func(err error) { errs <- err })
	storagetest.MustClose(t, s)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Writes != 2 || st.Updates != 6 {
		t.Fatalf("stats %+v after Close, want a second write", st)
	}
}

// TestDeferredHardState checks that an update of a hard state alone without
// Sync is not written until the next write, which carries it; that a crash
// before then loses it and nothing else; and that Load and Close write it.
func TestDeferredHardState(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testOpts(dir))
	defer func() { storagetest.MustClose(t, s) }()
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 5, 1),
		HardState: core.HardState{Term: 1, Vote: 1, Commit: 1}, Sync: true})
	before := s.Stats()
	storagetest.MustSave(t, s, &node.Update{HardState: core.HardState{Term: 1, Vote: 1, Commit: 3}})
	storagetest.MustSave(t, s, &node.Update{HardState: core.HardState{Term: 1, Vote: 1, Commit: 4}})
	if st := s.Stats(); st.Writes != before.Writes || st.Syncs != before.Syncs || st.Updates != before.Updates+2 {
		t.Fatalf("after two unsynced hard states: %+v, want no write and two more updates than %+v", st, before)
	}
	// A crash now finds the last synced state.
	crashed := crashCopy(t, dir)
	if p := storagetest.MustLoad(t, crashed); p.HardState.Commit != 1 || len(p.Entries) != 5 {
		t.Fatalf("after a crash before the next write: commit %d, %d entries; want 1, 5", p.HardState.Commit, len(p.Entries))
	}
	storagetest.MustClose(t, crashed)
	// The next write carries the deferred hard state: one write, one sync.
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(6, 6, 1), Sync: true})
	if st := s.Stats(); st.Writes != before.Writes+1 || st.Syncs != before.Syncs+1 {
		t.Fatalf("after the next write: %+v, want one write and one sync more than %+v", st, before)
	}
	crashed = crashCopy(t, dir)
	if p := storagetest.MustLoad(t, crashed); p.HardState.Commit != 4 || len(p.Entries) != 6 {
		t.Fatalf("after a crash after the next write: commit %d, %d entries; want 4, 6", p.HardState.Commit, len(p.Entries))
	}
	storagetest.MustClose(t, crashed)
	// Load writes a deferred hard state before reading.
	storagetest.MustSave(t, s, &node.Update{HardState: core.HardState{Term: 1, Vote: 1, Commit: 5}})
	if p := storagetest.MustLoad(t, s); p.HardState.Commit != 5 {
		t.Fatalf("Load after an unsynced hard state: commit %d, want 5", p.HardState.Commit)
	}
	// Close writes it too.
	storagetest.MustSave(t, s, &node.Update{HardState: core.HardState{Term: 1, Vote: 1, Commit: 6}})
	storagetest.MustClose(t, s)
	s = openT(t, testOpts(dir))
	if p := storagetest.MustLoad(t, s); p.HardState.Commit != 6 || len(p.Entries) != 6 {
		t.Fatalf("after Close and reopen: commit %d, %d entries; want 6, 6", p.HardState.Commit, len(p.Entries))
	}
	// With nothing else pending, it is taken before Save returns.
	taken := false
	s.Save(&node.Update{HardState: core.HardState{Term: 1, Vote: 1, Commit: 6}}, func(err error) { taken = err == nil })
	if !taken {
		t.Fatal("an unsynced hard state with nothing pending was not taken before Save returned")
	}
	// A refused hard state is refused, not deferred.
	if err := storagetest.SaveWait(t, s, &node.Update{HardState: core.HardState{Term: 1, Vote: 1, Commit: 9}}); err == nil {
		t.Fatal("a commit index beyond the log was accepted")
	}
}

// crashCopy opens a copy of the files in dir as they are now: what a crash
// of the process would leave.
func crashCopy(t *testing.T, dir string) *Storage {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return openT(t, testOpts(dst))
}
