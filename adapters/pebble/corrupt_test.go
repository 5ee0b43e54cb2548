package pebblestore

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// fillStore writes entries 1..20, a hard state and a snapshot at 5 that
// compacts up to 3.
func fillStore(t *testing.T, dir string) {
	t.Helper()
	s := openT(t, Options{Dir: dir})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 20, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 20}, Sync: true})
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(5, 1, "state at five"), CompactTo: 3, Sync: true})
	storagetest.MustClose(t, s)
}

// rawEdit opens the database directly and applies edit to it.
func rawEdit(t *testing.T, dir string, edit func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, dbSubdir), &pebble.Options{Logger: pebbleLogger{discardLogger()}})
	if err != nil {
		t.Fatal(err)
	}
	edit(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// flipValue flips one byte of the value stored at key, at offset from the
// end (0: the last byte).
func flipValue(t *testing.T, db *pebble.DB, key []byte, fromEnd int) {
	t.Helper()
	v, closer, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	v = append([]byte(nil), v...)
	closer.Close()
	v[len(v)-1-fromEnd] ^= 0x20
	if err := db.Set(key, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// wantCorrupt checks that err is a corruption error mentioning all of
// names.
func wantCorrupt(t *testing.T, what string, err error, names ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("%s: error %q does not name %q", what, err, n)
		}
	}
	t.Logf("%s: %v", what, err)
}

// TestCorruptValue: a flipped byte in any stored value fails Open (and
// Load, when it happens under an open store) with an error naming the key.
func TestCorruptValue(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
		want string
	}{
		{"entry", entryKey(17), "corrupt value at key e/0000000000000011 (index 17)"},
		{"first entry", entryKey(4), "key e/0000000000000004"},
		{"last entry", entryKey(20), "key e/0000000000000014"},
		{"hard state", []byte(hardStateKey), "corrupt value at key h"},
		{"snapshot reference", []byte(snapshotKey), "corrupt value at key s"},
	} {
		for _, fromEnd := range []int{0, 5} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				fillStore(t, dir)
				rawEdit(t, dir, func(db *pebble.DB) { flipValue(t, db, tc.key, fromEnd) })
				_, err := Open(Options{Dir: dir})
				wantCorrupt(t, "Open", err, tc.want)
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error %v is not ErrCorrupt", err)
				}
			})
		}
	}
}

// TestCorruptValueWhileOpen corrupts a value behind an open store's back
// (the test hook is the store's own database handle): Load fails naming
// the key.
func TestCorruptValueWhileOpen(t *testing.T) {
	dir := t.TempDir()
	fillStore(t, dir)
	s := openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	storagetest.MustLoad(t, s)
	flipValue(t, s.db, entryKey(9), 3)
	_, err := s.Load()
	wantCorrupt(t, "Load", err, "corrupt value at key e/0000000000000009")
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v is not ErrCorrupt", err)
	}
}

// TestMisplacedEntries: a valid value under the wrong key, or a missing
// entry in the middle of the log, fails Open naming the key.
func TestMisplacedEntries(t *testing.T) {
	t.Run("wrong key", func(t *testing.T) {
		dir := t.TempDir()
		fillStore(t, dir)
		rawEdit(t, dir, func(db *pebble.DB) {
			v, closer, err := db.Get(entryKey(8))
			if err != nil {
				t.Fatal(err)
			}
			err = db.Set(entryKey(9), v, pebble.Sync)
			closer.Close()
			if err != nil {
				t.Fatal(err)
			}
		})
		_, err := Open(Options{Dir: dir})
		wantCorrupt(t, "Open", err, "key e/0000000000000009", "holds the entry of index 8")
	})
	t.Run("gap", func(t *testing.T) {
		dir := t.TempDir()
		fillStore(t, dir)
		rawEdit(t, dir, func(db *pebble.DB) {
			if err := db.Delete(entryKey(12), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		})
		_, err := Open(Options{Dir: dir})
		wantCorrupt(t, "Open", err, "key e/000000000000000d", "gap")
	})
}

// TestCorruptSnapshotFile: a damaged, truncated or missing snapshot file
// fails Open and Load with an error naming the file.
func TestCorruptSnapshotFile(t *testing.T) {
	const name = "snap-5-1.snap"
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte // nil: remove the file
	}{
		{"data byte", func(b []byte) []byte { b[snapfile.HeaderSize+3] ^= 1; return b }},
		{"header byte", func(b []byte) []byte { b[10] ^= 1; return b }},
		{"trailer byte", func(b []byte) []byte { b[len(b)-2] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
		{"empty", func(b []byte) []byte { return nil }},
		{"data and trailer consistent", func(b []byte) []byte {
			// Rewrite the data and its trailer CRC: only the database's
			// CRC notices.
			data := []byte("state at fivE")
			b = append(b[:snapfile.HeaderSize], data...)
			b = binary.BigEndian.AppendUint32(b, snapfile.CRC(data))
			return append(b, "FCSNAPv1"...)
		}},
		{"missing", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fillStore(t, dir)
			path := filepath.Join(dir, name)
			damage := func() {
				if tc.damage == nil {
					if err := os.Remove(path); err != nil {
						t.Fatal(err)
					}
					return
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tc.damage(b), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// Under an open store: Load fails.
			s := openT(t, Options{Dir: dir})
			damage()
			_, err := s.Load()
			wantCorrupt(t, "Load", err, name)
			storagetest.MustClose(t, s)
			// And so does Open.
			_, err = Open(Options{Dir: dir})
			wantCorrupt(t, "Open", err, name)
			if tc.damage != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
