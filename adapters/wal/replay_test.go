package wal

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// TestReplayAllocation checks how recovery allocates the entries it
// returns: one slice of exactly the size the segments hold when nothing was
// overwritten, and no reference kept to entries truncated or compacted away
// during the replay.
func TestReplayAllocation(t *testing.T) {
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
	reopen := func() []core.Entry {
		t.Helper()
		storagetest.MustClose(t, s)
		s = openT(t, o)
		if s.opened == nil {
			t.Fatal("Open kept nothing for the first Load")
		}
		es := s.opened.Entries
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
			t.Fatalf("after reopen: %s", d)
		}
		for i, e := range es[len(es):cap(es)] {
			if e.Data != nil {
				t.Fatalf("spare capacity of the loaded entries still refers to data (entry %d, index %d)", len(es)+i, e.Index)
			}
		}
		return es
	}
	for i := uint64(0); i < 100; i++ {
		save(&node.Update{Entries: storagetest.NamedEntries(i*5+1, i*5+5, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 5}})
	}
	if s.Stats().Rotations < 3 {
		t.Fatalf("only %d rotations: the log should span several segments", s.Stats().Rotations)
	}
	if es := reopen(); len(es) != 500 || cap(es) != len(es) {
		t.Fatalf("loaded %d entries into a slice of capacity %d, want 500 in 500", len(es), cap(es))
	}

	// A conflicting suffix overwritten (a truncation record), then a local
	// compaction: the replay drops entries it had already decoded.
	save(&node.Update{Entries: storagetest.NamedEntries(300, 320, 2), HardState: core.HardState{Term: 2, Vote: 2, Commit: 300}})
	save(&node.Update{LocalSnapshot: storagetest.SnapshotWith(250, 1, "two fifty"), CompactTo: 200})
	if es := reopen(); len(es) == 0 || es[0].Index <= 200 || es[len(es)-1].Index != 320 {
		t.Fatalf("loaded %s, want entries above 200 up to 320", storagetest.Span(es))
	}

	// A leader's snapshot replaces the log; only what follows it is kept.
	save(&node.Update{Snapshot: storagetest.SnapshotWith(400, 3, "four hundred"), HardState: core.HardState{Term: 3, Vote: 2, Commit: 400}})
	save(&node.Update{Entries: storagetest.NamedEntries(401, 410, 3)})
	es := reopen()
	if len(es) != 10 || cap(es) > 2*len(es) {
		t.Fatalf("loaded %d entries %s into a slice of capacity %d, want 10 and at most twice that", len(es), storagetest.Span(es), cap(es))
	}
	storagetest.MustClose(t, s)
}

// TestEntryCount checks the allocation hint: exact for a segment written
// by the store, and never more than a third of the bytes it looks at.
func TestEntryCount(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(dir)
	s := openT(t, o)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 40, 1), HardState: core.HardState{Term: 1, Vote: 1}})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(41, 41, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 20}})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(30, 35, 2), HardState: core.HardState{Term: 2, Vote: 1, Commit: 20}}) // truncation, then 6 entries
	storagetest.MustClose(t, s)
	files := listDir(t, dir, segSuffix)
	if len(files) != 1 {
		t.Fatalf("segments %v, want one", files)
	}
	data, err := s.readSeg(segFile{seq: 1, name: files[0], limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if n := entryCount(data); n != 47 {
		t.Errorf("entryCount = %d, want 47 (every entry written, the overwritten ones included)", n)
	}
	for _, b := range [][]byte{nil, make([]byte, 100), data[:headerSize+frameSize+3]} {
		if n := entryCount(b); n != 0 {
			t.Errorf("entryCount of %d bytes without a complete entries record = %d", len(b), n)
		}
	}
}
