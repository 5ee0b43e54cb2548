package pebblestore

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Golden bytes written by this package before it used package snapfile
// (its own encoder of the snapshot key and writer of snapshot files): the
// stores written then must open now, so the formats must not change.
const (
	goldenRef  = "2a275aad0d01042a0700030102030104000010736e61702d34322d372d312e736e6170deadbeef0000000000000005"
	goldenFile = "4643534e41507631000000000000002a00000000000000070000000000000005164509d4737461746566db68df4643534e41507631"
)

func goldenMeta() core.SnapshotMeta {
	return core.SnapshotMeta{Index: 42, Term: 7, Config: core.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}}
}

// TestSnapshotKeyFormat: the snapshot key's value is encoded as before,
// and the old encoding decodes to the same reference.
func TestSnapshotKeyFormat(t *testing.T) {
	ref := snapfile.Ref{Meta: goldenMeta(), File: "snap-42-7-1.snap", CRC: 0xdeadbeef, Size: 5}
	v, err := encodeSnapRef(&ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(v); got != goldenRef {
		t.Fatalf("snapshot key value\n%s, was\n%s", got, goldenRef)
	}
	old, _ := hex.DecodeString(goldenRef)
	body, err := openValue([]byte(snapshotKey), old)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSnapRef(body)
	if err != nil || !got.Equal(&ref) {
		t.Fatalf("old value decodes to %+v, %v; want %+v", got, err, ref)
	}
	if _, err := decodeSnapRef(append(body, 0)); err == nil {
		t.Fatal("a value with a byte after the reference decoded")
	}
}

// TestSnapshotFileFormat: a snapshot file is written byte for byte as
// before, and the old file reads back.
func TestSnapshotFileFormat(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	snap := &core.Snapshot{Meta: goldenMeta(), Data: []byte("state")}
	storagetest.MustSave(t, s, &node.Update{Snapshot: snap, HardState: core.HardState{Term: 7, Commit: 42}, Sync: true})
	storagetest.MustClose(t, s)
	ref := snapfile.Ref{Meta: snap.Meta, File: "snap-42-7.snap", CRC: snapfile.CRC(snap.Data), Size: 5}
	b, err := os.ReadFile(filepath.Join(dir, ref.File))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString(goldenFile)
	if !bytes.Equal(b, want) {
		t.Fatalf("wrote %s\n%x, was\n%x", ref.File, b, want)
	}
	data, err := snapfile.Read(dir, &ref)
	if err != nil || string(data) != "state" {
		t.Fatalf("Read: %q, %v", data, err)
	}
}
