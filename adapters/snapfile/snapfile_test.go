package snapfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

func TestWriteReadVerify(t *testing.T) {
	dir := t.TempDir()
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: 7, Term: 2, Config: core.ConfState{Voters: []uint64{1, 2}}}, Data: []byte("state")}
	ref, n, err := Write(dir, snap, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if ref.File != "snap-7-2.snap" || n != int64(HeaderSize+5+TrailerSize) {
		t.Fatalf("ref %+v, %d bytes", ref, n)
	}
	ref2, _, err := Write(dir, snap, func(name string) bool { return name == ref.File }, false)
	if err != nil || ref2.File != "snap-7-2-1.snap" {
		t.Fatalf("second file %q: %v", ref2.File, err)
	}
	data, err := Read(dir, &ref)
	if err != nil || string(data) != "state" {
		t.Fatalf("Read: %q, %v", data, err)
	}
	enc, err := ref.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, rest, err := DecodeRef(append(enc, 9))
	if err != nil || !got.Equal(&ref) || len(rest) != 1 {
		t.Fatalf("DecodeRef: %+v %v %v", got, rest, err)
	}
	if _, _, err := DecodeRef(enc[:len(enc)-1]); err == nil {
		t.Fatal("short reference decoded")
	}
	// Every single-byte flip is refused, naming the file.
	path := filepath.Join(dir, ref.File)
	orig, _ := os.ReadFile(path)
	for i := range orig {
		b := append([]byte(nil), orig...)
		b[i] ^= 0x10
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(dir, &ref); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: %v", i, err)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, &ref); err == nil {
		t.Fatal("missing file read")
	}
}
