package pebblestore

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble"

	"github.com/forge-consensus/consensus/adapters/internal/guard"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// walFiles returns the paths of the database's WAL files.
func walFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, dbSubdir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fillWAL writes entries 1..400 one Save at a time, with hard states and a
// local snapshot at 300, and closes the store: everything is in one WAL.
func fillWAL(t *testing.T, dir string) core.Persisted {
	t.Helper()
	s := openT(t, Options{Dir: dir})
	for i := uint64(1); i <= 400; i++ {
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(i, i, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i - 1}, Sync: true})
		if i == 300 {
			storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(290, 1, "state at 290"), CompactTo: 280, Sync: true})
		}
	}
	p := storagetest.MustLoad(t, s)
	storagetest.MustClose(t, s)
	return p
}

// flipAt xors the byte at off of the file at path with mask.
func flipAt(t *testing.T, path string, off int64, mask byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= mask
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWALCut is the reported bug: a byte flipped in the middle of Pebble's
// WAL makes Pebble replay only the records before it, without an error.
// Open must refuse, name the WAL, say what was lost, and leave the files
// as they were.
func TestWALCut(t *testing.T) {
	dir := t.TempDir()
	fillWAL(t, dir)
	wals := walFiles(t, dir)
	if len(wals) != 1 {
		t.Fatalf("WAL files %v, want one", wals)
	}
	fi, err := os.Stat(wals[0])
	if err != nil {
		t.Fatal(err)
	}
	flipAt(t, wals[0], fi.Size()/2, 0x10)
	before := dirContents(t, dir)

	var logs lockedBuffer
	_, err = Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	wantCorrupt(t, "Open", err, filepath.Base(wals[0]), "replayed to commit", "was acknowledged", "last index 400")
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v is not ErrCorrupt", err)
	}
	if !strings.Contains(logs.String(), "stopped reading at offset") {
		t.Fatalf("Pebble did not cut its WAL (the test no longer reproduces the bug); logs:\n%s", logs.String())
	}
	if after := dirContents(t, dir); !equalContents(before, after) {
		t.Fatal("a refused Open changed the data directory")
	}
	// And again: the refusal is stable.
	_, err = Open(Options{Dir: dir})
	wantCorrupt(t, "second Open", err, "was acknowledged")
}

// dirContents returns every file under dir and its contents.
func dirContents(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		m[path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func equalContents(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// TestGuardSlots: one damaged slot is a crash during a guard write (the
// other is used, with a warning); two are corruption.
func TestGuardSlots(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offsets []int64
		refuse  bool
	}{
		{"slot 0 body", []int64{20}, false},
		{"slot 1 crc", []int64{guard.SlotSize + guard.BodySize}, false},
		{"slot 1 padding", []int64{2*guard.SlotSize - 1}, false},
		{"both", []int64{9, guard.SlotSize + 9}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := fillWAL(t, dir)
			for _, off := range tc.offsets {
				flipAt(t, filepath.Join(dir, guard.Name), off, 0x01)
			}
			var logs lockedBuffer
			s, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if tc.refuse {
				wantCorrupt(t, "Open", err, guard.Name)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v is not ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer storagetest.MustClose(t, s)
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "guard file is damaged") {
				t.Fatalf("no warning about the damaged slot; logs:\n%s", logs.String())
			}
			if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
				t.Fatal(d)
			}
			// The next write repairs the damaged slot.
			storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(401, 401, 1), Sync: true})
			storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(402, 402, 1), Sync: true})
			gr, ok, err := guard.Read(filepath.Join(dir, guard.Name), ErrCorrupt)
			if err != nil || !ok || gr.Damaged != "" {
				t.Fatalf("guard after two writes: %+v %v %v", gr, ok, err)
			}
		})
	}
}

// TestGuardMissingOrAhead covers the other ways the database and the
// guard file disagree.
func TestGuardMissingOrAhead(t *testing.T) {
	t.Run("guard missing", func(t *testing.T) {
		dir := t.TempDir()
		fillStore(t, dir)
		if err := os.Remove(filepath.Join(dir, guard.Name)); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Options{Dir: dir})
		wantCorrupt(t, "Open", err, guard.Name, "is missing")
	})
	t.Run("database missing", func(t *testing.T) {
		dir := t.TempDir()
		fillStore(t, dir)
		if err := os.RemoveAll(filepath.Join(dir, dbSubdir)); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Options{Dir: dir})
		wantCorrupt(t, "Open", err, dbSubdir, "is missing")
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
	})
	t.Run("same commit, other state", func(t *testing.T) {
		// An entry removed behind the adapter's back (as an sstable
		// dropped from a truncated MANIFEST would): the commit number
		// matches but the summary does not.
		dir := t.TempDir()
		fillStore(t, dir)
		rawEdit(t, dir, func(db *pebble.DB) {
			if err := db.Delete(entryKey(20), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		})
		_, err := Open(Options{Dir: dir})
		wantCorrupt(t, "Open", err, "log 4..19", "log 4..20")
	})
	t.Run("old format upgraded", func(t *testing.T) {
		// A store written before the guard existed: no sequence key, no
		// guard file. Open accepts it and creates the guard.
		dir := t.TempDir()
		fillStore(t, dir)
		rawEdit(t, dir, func(db *pebble.DB) {
			if err := db.Delete([]byte(seqKey), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		})
		if err := os.Remove(filepath.Join(dir, guard.Name)); err != nil {
			t.Fatal(err)
		}
		s := openT(t, Options{Dir: dir})
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(21, 21, 1), Sync: true})
		storagetest.MustClose(t, s)
		gr, ok, err := guard.Read(filepath.Join(dir, guard.Name), ErrCorrupt)
		if err != nil || !ok || gr.State.Seq != 1 || gr.State.Last != 21 {
			t.Fatalf("guard after upgrade: %+v %v %v", gr, ok, err)
		}
		s = openT(t, Options{Dir: dir})
		storagetest.MustClose(t, s)
	})
}

// TestCrashBetweenCommitAndGuard: a database ahead of the guard file (a
// crash after Pebble's fsync, before the guard's) is accepted.
func TestCrashBetweenCommitAndGuard(t *testing.T) {
	dir := t.TempDir()
	fillStore(t, dir)
	gpath := filepath.Join(dir, guard.Name)
	old, err := os.ReadFile(gpath)
	if err != nil {
		t.Fatal(err)
	}
	s := openT(t, Options{Dir: dir})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(21, 25, 2), HardState: core.HardState{Term: 2, Vote: 1, Commit: 20}, Sync: true})
	storagetest.MustClose(t, s)
	if err := os.WriteFile(gpath, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	if p := storagetest.MustLoad(t, s); p.Entries[len(p.Entries)-1].Index != 25 {
		t.Fatalf("loaded %s", storagetest.Span(p.Entries))
	}
}
