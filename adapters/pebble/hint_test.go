package pebblestore

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// TestLoadAllocatesOnce checks that Load reads the log into one slice of
// the log's size, before and after a reopen and after a compaction.
func TestLoadAllocatesOnce(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, NoSync: true})
	for i := uint64(0); i < 50; i++ {
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(i*20+1, i*20+20, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 20}})
	}
	check := func(when string, want int) {
		t.Helper()
		p := storagetest.MustLoad(t, s)
		if len(p.Entries) != want || cap(p.Entries) != want {
			t.Fatalf("%s: Load gave %d entries in a slice of capacity %d, want %d in %d", when, len(p.Entries), cap(p.Entries), want, want)
		}
	}
	check("after the writes", 1000)
	storagetest.MustClose(t, s)
	s = openT(t, Options{Dir: dir, NoSync: true})
	defer storagetest.MustClose(t, s)
	check("after a reopen", 1000)
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(900, 1, "nine hundred"), CompactTo: 900})
	check("after a compaction", 100)
}
