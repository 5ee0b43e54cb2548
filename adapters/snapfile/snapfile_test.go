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
	if err := Verify(dir, &ref); err != nil {
		t.Fatalf("Verify: %v", err)
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
		if err := Verify(dir, &ref); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: Verify: %v", i, err)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, &ref); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing file read: %v", err)
	}
	if err := Verify(dir, &ref); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing file verified: %v", err)
	}
}

// FuzzDecodeRef: DecodeRef never panics, and what it decodes encodes and
// decodes again to the same reference, followed by the same bytes.
func FuzzDecodeRef(f *testing.F) {
	ref := Ref{Meta: core.SnapshotMeta{Index: 42, Term: 7, Config: core.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
		File: "snap-42-7-1.snap", CRC: 0xdeadbeef, Size: 5}
	enc, err := ref.AppendBinary(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add(append(enc, 1, 2, 3))
	f.Add(enc[:len(enc)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, rest, err := DecodeRef(b)
		if err != nil {
			return
		}
		if !ValidName(r.File) {
			t.Fatalf("decoded an invalid file name %q", r.File)
		}
		enc, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", r, err)
		}
		r2, rest2, err := DecodeRef(append(enc, rest...))
		if err != nil || !r2.Equal(&r) || string(rest2) != string(rest) {
			t.Fatalf("re-decoding %+v: %+v, %q, %v; rest was %q", r, r2, rest2, err, rest)
		}
	})
}

// FuzzCheck: checking a file's contents never panics, Verify agrees with
// it, and contents that pass hold data of the reference's size and CRC.
func FuzzCheck(f *testing.F) {
	data := []byte("state")
	file := append(append(header(7, 2, 5), data...), trailer(CRC(data))...)
	f.Add(file, uint64(7), uint64(2), uint64(5), CRC(data))
	f.Add(file[:len(file)-1], uint64(7), uint64(2), uint64(5), CRC(data))
	f.Add([]byte{}, uint64(0), uint64(0), uint64(0), uint32(0))
	dir := f.TempDir() // a fuzzing process runs one input at a time
	f.Fuzz(func(t *testing.T, b []byte, index, term, size uint64, crc uint32) {
		r := Ref{Meta: core.SnapshotMeta{Index: index, Term: term}, File: Name(index, term, 0), CRC: crc, Size: size}
		got, err := check(b, &r)
		// Verify, reading the same bytes from a file, gives the same verdict.
		if werr := os.WriteFile(filepath.Join(dir, r.File), b, 0o600); werr != nil {
			t.Fatal(werr)
		}
		if verr := Verify(dir, &r); (verr == nil) != (err == nil) || verr != nil && !errors.Is(verr, ErrCorrupt) {
			t.Fatalf("check: %v; Verify: %v", err, verr)
		}
		if err != nil {
			return
		}
		if uint64(len(got)) != size || CRC(got) != crc {
			t.Fatalf("check passed %d bytes of CRC %08x for a reference of %d bytes, CRC %08x", len(got), CRC(got), size, crc)
		}
	})
}
