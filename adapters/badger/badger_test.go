package badgerstore

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// copyTree copies the files under src to dst, as a process crash leaves
// them (the page cache survives it).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWALRecordCutRefused: Badger treats a bad record in its write-ahead
// log as the end of the log and opens without the commits after it. A
// damaged last record of an acknowledged commit is refused: the guard
// file says that commit was acknowledged.
func TestWALRecordCutRefused(t *testing.T) {
	dir, crashed := t.TempDir(), filepath.Join(t.TempDir(), "crashed")
	s, err := Open(Options{Dir: dir, MemTableSize: 4 << 20, ValueLogFileSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 5}, Sync: true})
	marker := []byte("the-last-acknowledged-entry")
	storagetest.MustSave(t, s, &node.Update{Entries: []core.Entry{{Index: 11, Term: 1, Data: marker}}, HardState: core.HardState{Term: 1, Vote: 1, Commit: 11}, Sync: true})
	copyTree(t, dir, crashed)
	storagetest.MustClose(t, s)

	// Find the last record in the memtable's write-ahead log and damage it.
	mems, _ := filepath.Glob(filepath.Join(crashed, DBSubdir, "*.mem"))
	damaged := false
	for _, m := range mems {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, marker); i >= 0 {
			b[i+3] ^= 0x01
			if err := os.WriteFile(m, b, 0o600); err != nil {
				t.Fatal(err)
			}
			damaged = true
		}
	}
	if !damaged {
		t.Fatalf("no write-ahead log file among %v holds the last entry", mems)
	}
	_, err = Open(Options{Dir: crashed, MemTableSize: 4 << 20, ValueLogFileSize: 1 << 20})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open after a cut write-ahead log: %v, want a refusal", err)
	}
	for _, want := range []string{"commit.guard", ".mem", "lost acknowledged writes"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %q", err, want)
		}
	}
	t.Log(err)
	// And it stays refused.
	if _, err := Open(Options{Dir: crashed, MemTableSize: 4 << 20, ValueLogFileSize: 1 << 20}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("second Open: %v, want a refusal", err)
	}
}

// TestOptionsValidated: out-of-range options are refused, naming them.
func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{
		{ValueLogFileSize: 1000},
		{ValueLogFileSize: 2 << 30},
		{MemTableSize: 1000},
		{ValueThreshold: 2 << 20},
		{ValueThreshold: -1},
		{MemTableSize: 1 << 20, ValueThreshold: 1 << 19},
	} {
		o.Dir = t.TempDir()
		if s, err := Open(o); err == nil {
			storagetest.MustClose(t, s)
			t.Errorf("%+v: accepted", o)
		}
	}
}

// TestTableBeingWrittenIgnored: a table file Badger was writing when the
// process died (not yet in the MANIFEST; empty or part-written) does not
// make Open refuse the store: Badger deletes it. Before, the adapter's own
// table check refused the store after a SIGKILL ("mmapping ... with size:
// 0"), in one CI run of the crash test.
func TestTableBeingWrittenIgnored(t *testing.T) {
	for _, content := range [][]byte{nil, bytes.Repeat([]byte{0}, 4096)} {
		dir := t.TempDir()
		o := Options{Dir: dir, MemTableSize: 4 << 20, ValueLogFileSize: 1 << 20}
		s, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 10}, Sync: true})
		storagetest.MustClose(t, s)
		if err := os.WriteFile(filepath.Join(dir, DBSubdir, "000999.sst"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err = Open(o)
		if err != nil {
			t.Fatalf("a table not in the MANIFEST (%d bytes) refused the store: %v", len(content), err)
		}
		if p := storagetest.MustLoad(t, s); len(p.Entries) != 10 {
			t.Fatalf("loaded %s, want 10 entries", storagetest.Span(p.Entries))
		}
		storagetest.MustClose(t, s)
	}
}
