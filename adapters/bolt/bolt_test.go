package boltstore

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Offsets in a Bolt meta page: a 16-byte page header, then magic, version,
// page size, flags (4 bytes each), the root bucket (16), the freelist page
// (8), the high-water page (8), the transaction ID (8) and the checksum
// (8).
const (
	metaTxidOff     = 16 + 16 + 16 + 8 + 8
	metaChecksumOff = metaTxidOff + 8
)

// TestMetaPageFallbackRefused: a damaged newest meta page makes Bolt open
// silently at the previous transaction, without the last acknowledged
// commit. The guard file notices: Open refuses, naming the database file
// and the guard file.
func TestMetaPageFallbackRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 5}, Sync: true})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(11, 12, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 12}, Sync: true})
	storagetest.MustClose(t, s)

	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := os.Getpagesize()
	newest := 0
	if binary.LittleEndian.Uint64(b[pageSize+metaTxidOff:]) > binary.LittleEndian.Uint64(b[metaTxidOff:]) {
		newest = 1
	}
	b[newest*pageSize+metaChecksumOff] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// Bolt itself opens without an error, at the older transaction.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("bolt refuses the file itself (%v): this test no longer shows a silent fallback", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = Open(Options{Dir: dir})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open after a meta page fallback: %v, want a refusal", err)
	}
	for _, name := range []string{FileName, "commit.guard", "lost acknowledged writes"} {
		if !strings.Contains(err.Error(), name) {
			t.Fatalf("error %q does not name %q", err, name)
		}
	}
	t.Log(err)
}

// TestFreelistMap: the map freelist opens, writes and reopens; an unknown
// freelist type is refused naming it.
func TestFreelistMap(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		s, err := Open(Options{Dir: dir, FreelistType: FreelistMap})
		if err != nil {
			t.Fatal(err)
		}
		p := storagetest.MustLoad(t, s)
		next := uint64(len(p.Entries)) + 1
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(next, next+99, 1), Sync: true})
		storagetest.MustClose(t, s)
	}
	if _, err := Open(Options{Dir: dir, FreelistType: "list"}); err == nil || !strings.Contains(err.Error(), `"list"`) {
		t.Fatalf("unknown freelist type: %v", err)
	}
}

// boltKeys returns the entry indexes stored in the database in dir.
func boltKeys(t *testing.T, dir string) []uint64 {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []uint64
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketName).ForEach(func(k, _ []byte) error {
			if len(k) == 9 && k[0] == 'e' {
				out = append(out, binary.BigEndian.Uint64(k[1:]))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGarbageDeleted: entries compacted away or cut by an overwrite are
// not read, and are deleted a few hundred per commit, including those a
// restart finds.
func TestGarbageDeleted(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 1500, 1), Sync: true})
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(1400, 1, "snap"), CompactTo: 1400, Sync: true})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1451, 1460, 2), Sync: true}) // cuts 1461..1500
	storagetest.MustClose(t, s)
	if n := len(boltKeys(t, dir)); n <= 60 {
		t.Fatalf("%d keys: garbage deleted faster than expected, the test proves nothing", n)
	}
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		storagetest.MustSave(t, s, &node.Update{HardState: core.HardState{Term: 2, Vote: 1, Commit: uint64(1401 + i)}, Sync: true})
	}
	p := storagetest.MustLoad(t, s)
	storagetest.MustClose(t, s)
	if len(p.Entries) != 60 || p.Entries[0].Index != 1401 || p.Entries[59].Index != 1460 || p.Entries[59].Term != 2 {
		t.Fatalf("log %s", storagetest.Span(p.Entries))
	}
	if keys := boltKeys(t, dir); len(keys) != 60 || keys[0] != 1401 || keys[59] != 1460 {
		t.Fatalf("%d entry keys stored (%v..%v), want exactly 1401..1460", len(keys), keys[0], keys[len(keys)-1])
	}
}
