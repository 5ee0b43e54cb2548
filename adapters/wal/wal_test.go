package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

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
		err := saveWait(t, s, u)
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
		if d := diffPersisted(loadT(t, s), want); d != "" {
			t.Fatalf("%s: %s", name, d)
		}
		closeT(t, s)
		s = openT(t, testOpts(dir))
		if d := diffPersisted(loadT(t, s), want); d != "" {
			t.Fatalf("%s, after reopen: %s", name, d)
		}
	}
	defer func() { closeT(t, s) }()
	if p := loadT(t, s); !p.IsEmpty() || p.Entries != nil {
		t.Fatalf("new store loads %+v", p)
	}
	step("append", &node.Update{Entries: ents(1, 10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 3}, Sync: true}, false)
	step("hard state only", &node.Update{HardState: core.HardState{Term: 2, Vote: 1, Commit: 5}}, false)
	step("conflicting suffix", &node.Update{Entries: ents(8, 12, 2), Sync: true}, false)
	step("gap", &node.Update{Entries: ents(20, 21, 2)}, true)
	step("term going down", &node.Update{Entries: ents(13, 13, 1)}, true)
	step("commit beyond the log", &node.Update{HardState: core.HardState{Term: 2, Vote: 1, Commit: 40}}, true)
	step("local snapshot", &node.Update{LocalSnapshot: snapAt(6, 1, "six"), CompactTo: 4, Sync: true}, false)
	step("compaction beyond the snapshot", &node.Update{LocalSnapshot: snapAt(7, 2, "x"), CompactTo: 9}, true)
	step("append after compaction", &node.Update{Entries: ents(13, 30, 2), HardState: core.HardState{Term: 2, Vote: 1, Commit: 25}}, false)
	step("second local snapshot", &node.Update{LocalSnapshot: snapAt(25, 2, "twenty-five"), CompactTo: 25}, false)
	step("leader snapshot", &node.Update{Snapshot: snapAt(50, 3, "fifty"), HardState: core.HardState{Term: 3, Commit: 50}}, false)
	step("append after leader snapshot", &node.Update{Entries: ents(51, 55, 3)}, false)
	step("leader snapshot behind the log", &node.Update{Snapshot: snapAt(52, 3, "fifty-two"), Entries: ents(53, 53, 3)}, false)
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
		mustSave(t, s, u)
		m.Save(u, func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	for i := uint64(0); i < 200; i++ {
		save(&node.Update{Entries: ents(i*5+1, i*5+5, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 5}})
	}
	st := s.Stats()
	if st.Rotations < 5 {
		t.Fatalf("only %d rotations", st.Rotations)
	}
	segs := len(listDir(t, dir, segSuffix))
	save(&node.Update{LocalSnapshot: snapAt(600, 1, "six hundred"), CompactTo: 590})
	after := listDir(t, dir, segSuffix)
	if len(after) >= segs || s.Stats().Released == 0 {
		t.Fatalf("%d segments before compaction, %d after", segs, len(after))
	}
	if d := diffPersisted(loadT(t, s), m.Persisted()); d != "" {
		t.Fatal(d)
	}
	closeT(t, s)
	s = openT(t, o)
	defer closeT(t, s)
	if d := diffPersisted(loadT(t, s), m.Persisted()); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
	// Truncation across a segment boundary, then more appends.
	save(&node.Update{Entries: ents(700, 720, 2), HardState: core.HardState{Term: 2, Vote: 2, Commit: 700}})
	save(&node.Update{Entries: ents(721, 1000, 2)})
	if d := diffPersisted(loadT(t, s), m.Persisted()); d != "" {
		t.Fatal(d)
	}
}

// TestLargeUpdate writes an update larger than a segment.
func TestLargeUpdate(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testOpts(dir))
	big := make([]byte, 20<<10)
	u := &node.Update{Entries: []core.Entry{{Index: 1, Term: 1, Data: big}, {Index: 2, Term: 1, Data: big}}, HardState: core.HardState{Term: 1, Commit: 1}}
	mustSave(t, s, u)
	mustSave(t, s, &node.Update{Entries: ents(3, 5, 1)})
	closeT(t, s)
	s = openT(t, testOpts(dir))
	defer closeT(t, s)
	p := loadT(t, s)
	if len(p.Entries) != 5 || len(p.Entries[1].Data) != len(big) {
		t.Fatalf("loaded %s", span(p.Entries))
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, testOpts(t.TempDir()))
	closeT(t, s)
	if err := saveWait(t, s, &node.Update{Entries: ents(1, 1, 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close: %v", err)
	}
}

func TestForeignStore(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testOpts(dir))
	mustSave(t, s, &node.Update{Entries: ents(1, 3, 1)})
	closeT(t, s)
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
