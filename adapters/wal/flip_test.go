package wal

import (
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

var (
	flipCount = flag.Int("wal.flips", 200, "single-byte flips of TestFlipCampaign")
	flipSeed  = flag.Uint64("wal.flipseed", 1, "seed of TestFlipCampaign")
)

// flipStore writes a store with rotations, a conflicting suffix, a
// released prefix and a snapshot, closes it and returns what it holds.
func flipStore(t *testing.T, dir string) core.Persisted {
	t.Helper()
	s := openT(t, rotOpts(dir))
	for i := uint64(0); i < 120; i++ {
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(i*5+1, i*5+5, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 5}})
	}
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(598, 630, 2), HardState: core.HardState{Term: 2, Vote: 3, Commit: 600}})
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(300, 1, "state at 300"), CompactTo: 150})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(631, 640, 2), HardState: core.HardState{Term: 2, Vote: 3, Commit: 635}})
	p := storagetest.MustLoad(t, s)
	storagetest.MustClose(t, s)
	return p
}

// TestFlipCampaign flips one byte at a time, at seeded random places of
// every file of a closed store (half of them in the written part of a
// segment), and checks that each flip ends in a refusal wrapping ErrCorrupt
// that names the data directory, or in a store that holds exactly what was
// acknowledged — never less.
func TestFlipCampaign(t *testing.T) {
	base := t.TempDir()
	want := flipStore(t, base)
	des, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var names []string
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(base, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[de.Name()] = b
		names = append(names, de.Name())
	}
	rng := rand.New(rand.NewPCG(*flipSeed, 99))
	n := *flipCount
	if testing.Short() {
		n = 100
	}
	refused, intact := 0, 0
	for k := range n {
		name := names[k%len(names)]
		b := files[name]
		off := rng.IntN(len(b))
		if _, ok := parseSegName(name); ok && rng.IntN(2) == 0 {
			// In the written part: before the zero tail.
			end := len(b)
			for end > 0 && b[end-1] == 0 {
				end--
			}
			off = rng.IntN(max(end, 1))
		}
		bit := byte(1) << rng.IntN(8)
		dir := t.TempDir()
		for nm, data := range files {
			c := data
			if nm == name {
				c = append([]byte(nil), data...)
				c[off] ^= bit
			}
			if err := os.WriteFile(filepath.Join(dir, nm), c, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		o := rotOpts(dir)
		s, err := Open(o)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !contains(err, dir) {
				t.Fatalf("flip %d (%s offset %d bit %#x): error does not name the damage: %v", k, name, off, bit, err)
			}
			refused++
			continue
		}
		p, err := s.Load()
		s.Close()
		if err != nil {
			t.Fatalf("flip %d (%s offset %d): Open succeeded, Load failed: %v", k, name, off, err)
		}
		if d := storagetest.DiffPersisted(p, want); d != "" {
			t.Fatalf("flip %d (%s offset %d bit %#x): store serves other data: %s", k, name, off, bit, d)
		}
		intact++
	}
	t.Logf("%d flips over %d files: %d refused naming the damage, %d recovered intact", n, len(names), refused, intact)
}
