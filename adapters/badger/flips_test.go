package badgerstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// EnvEngineFlips sets the number of flips of TestEngineFileFlips (default
// 40).
const EnvEngineFlips = "BADGER_ENGINE_FLIPS"

// TestEngineFileFlips complements the suite's campaign, where Badger's
// 1 MiB DISCARD file (value-log garbage-collection statistics, mostly
// zeros) draws 95% of the flips: here every flip lands in a table,
// MANIFEST, KEYREGISTRY, value log or write-ahead log file, chosen
// uniformly by file, then by byte. Each must end in a refusal that names
// a file, or in a store holding everything acknowledged.
func TestEngineFileFlips(t *testing.T) {
	n := 40
	if v := os.Getenv(EnvEngineFlips); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("%s: %v", EnvEngineFlips, err)
		}
	}
	opts := func(dir string) Options { return Options{Dir: dir, MemTableSize: 4 << 20, ValueLogFileSize: 1 << 20} }
	src := filepath.Join(t.TempDir(), "node")
	m := node.NewMemoryStorage()
	var snaps []*core.Snapshot
	s, err := Open(opts(src))
	if err != nil {
		t.Fatal(err)
	}
	save := func(u *node.Update) {
		t.Helper()
		u.Sync = true
		m.Save(u, func(error) {})
		storagetest.MustSave(t, s, u)
		if u.LocalSnapshot != nil {
			snaps = append(snaps, u.LocalSnapshot)
		}
	}
	last := uint64(0)
	for round := range 3 {
		for range 40 {
			save(&node.Update{Entries: storagetest.NamedEntries(last+1, last+5, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: last + 3}})
			last += 5
		}
		save(&node.Update{LocalSnapshot: storagetest.SnapshotWith(last-20, 1, fmt.Sprint("state ", round)), CompactTo: last - 30})
		storagetest.MustClose(t, s)
		if s, err = Open(opts(src)); err != nil {
			t.Fatal(err)
		}
	}
	save(&node.Update{Entries: storagetest.NamedEntries(last+1, last+3, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: last + 3}})
	storagetest.MustClose(t, s)
	acked := m.Persisted()

	var files []string
	for _, f := range dbFiles(filepath.Join(src, DBSubdir)) {
		if fi, err := os.Stat(f); err == nil && fi.Size() > 0 && filepath.Base(f) != "DISCARD" {
			rel, _ := filepath.Rel(src, f)
			files = append(files, rel)
		}
	}
	sort.Strings(files)
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[string]*[3]int{} // refused naming a file, intact, bad
	var bad []string
	for k := range n {
		rel := files[rng.IntN(len(files))]
		dir := filepath.Join(t.TempDir(), "trial")
		copyTree(t, src, dir)
		path := filepath.Join(dir, rel)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		off := rng.IntN(len(b))
		b[off] ^= byte(1 + rng.IntN(255))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if counts[rel] == nil {
			counts[rel] = &[3]int{}
		}
		var p core.Persisted
		st, err := Open(opts(dir))
		if err == nil {
			p, err = st.Load()
			err = errors.Join(err, st.Close())
		}
		switch {
		case err != nil && errors.Is(err, ErrCorrupt) && strings.Contains(err.Error(), dir):
			counts[rel][0]++
		case err != nil:
			counts[rel][2]++
			bad = append(bad, fmt.Sprintf("flip %d: %s byte %d: %v", k, rel, off, err))
		default:
			if d := storagetest.HoldsAcked(p, acked, snaps); d != "" {
				counts[rel][2]++
				bad = append(bad, fmt.Sprintf("flip %d: %s byte %d: lost: %s", k, rel, off, d))
			} else {
				counts[rel][1]++
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d flips over the engine files:\n%-28s %8s %8s %8s\n", n, "file", "refused", "intact", "BAD")
	for _, f := range files {
		if c := counts[f]; c != nil {
			fmt.Fprintf(&sb, "%-28s %8d %8d %8d\n", f, c[0], c[1], c[2])
		}
	}
	t.Log(sb.String())
	for _, b := range bad {
		t.Error(b)
	}
}
