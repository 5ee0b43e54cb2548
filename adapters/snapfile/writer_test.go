package snapfile

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// files returns the names in dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func testSnap(size int) *core.Snapshot {
	r := rand.New(rand.NewPCG(1, uint64(size)))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return &core.Snapshot{Meta: core.SnapshotMeta{Index: 90, Term: 4, Config: core.ConfState{Voters: []uint64{1, 2, 3}}}, Data: data}
}

// stream writes data to w in pieces of random sizes up to max.
func stream(t *testing.T, w *Writer, data []byte, max int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0))
	for len(data) > 0 {
		n := min(len(data), r.IntN(max+1))
		if k, err := w.Write(data[:n]); err != nil || k != n {
			t.Fatalf("Write of %d bytes: %d, %v", n, k, err)
		}
		data = data[n:]
	}
}

// TestWriterSameAsWrite: Create, Write in pieces and Commit give the file
// Write gives, the same reference and byte count, for empty data, data
// within one buffer, and data over several buffers written in small pieces
// and in pieces larger than the buffer (written around it).
func TestWriterSameAsWrite(t *testing.T) {
	for _, tc := range []struct {
		size, piece int
	}{
		{0, 1},
		{5, 3},
		{WriterBufferSize - HeaderSize, 4096},
		{WriterBufferSize*2 + 12345, 64 << 10},
		{WriterBufferSize*3 + 7, 3 * WriterBufferSize},
	} {
		snap := testSnap(tc.size)
		d1, d2 := t.TempDir(), t.TempDir()
		ref1, n1, err := Write(d1, snap, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Create(d2)
		if err != nil {
			t.Fatal(err)
		}
		if name := filepath.Base(w.Path()); !IsTemp(name) || ValidName(name) {
			t.Fatalf("temporary file %s: IsTemp %v, ValidName %v", name, IsTemp(name), ValidName(name))
		}
		stream(t, w, snap.Data, tc.piece, uint64(tc.size))
		ref2, n2, err := w.Commit(snap.Meta, nil, false)
		if err != nil {
			t.Fatalf("size %d: Commit: %v", tc.size, err)
		}
		if !ref2.Equal(&ref1) || n2 != n1 {
			t.Fatalf("size %d: Commit gives %+v, %d bytes; Write %+v, %d bytes", tc.size, ref2, n2, ref1, n1)
		}
		b1, _ := os.ReadFile(filepath.Join(d1, ref1.File))
		b2, err := os.ReadFile(filepath.Join(d2, ref2.File))
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("size %d: files differ (%d and %d bytes, %v)", tc.size, len(b1), len(b2), err)
		}
		if got := files(t, d2); len(got) != 1 {
			t.Fatalf("directory holds %v after Commit", got)
		}
		// Committed: Abort leaves the file alone, Write and Commit refuse.
		w.Abort()
		if _, err := w.Write([]byte("x")); err == nil {
			t.Fatal("Write after Commit succeeded")
		}
		if _, _, err := w.Commit(snap.Meta, nil, false); err == nil {
			t.Fatal("second Commit succeeded")
		}
		if data, err := Read(d2, &ref2); err != nil || !bytes.Equal(data, snap.Data) {
			t.Fatalf("Read after Abort of a committed writer: %v", err)
		}
	}
}

// TestWriterNoSync: with noSync the file is the same.
func TestWriterNoSync(t *testing.T) {
	dir := t.TempDir()
	snap := testSnap(1000)
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	stream(t, w, snap.Data, 100, 1)
	ref, _, err := w.Commit(snap.Meta, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := Read(dir, &ref); err != nil || !bytes.Equal(data, snap.Data) {
		t.Fatalf("Read: %v", err)
	}
}

// TestWriterAbort: Abort removes the temporary file, before or after data
// reached it, and is idempotent; the writer refuses everything after it.
// Concurrent writers in one directory get distinct files.
func TestWriterAbort(t *testing.T) {
	dir := t.TempDir()
	a, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Path() == b.Path() || len(files(t, dir)) != 2 {
		t.Fatalf("two writers share %s: %v", a.Path(), files(t, dir))
	}
	stream(t, b, testSnap(WriterBufferSize*2).Data, 256<<10, 2)
	a.Abort()
	b.Abort()
	b.Abort()
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("left after Abort: %v", got)
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Fatal("Write after Abort succeeded")
	}
	if _, _, err := b.Commit(core.SnapshotMeta{Index: 1, Term: 1}, nil, false); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if _, err := Create(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

// TestWriterCollision: Commit takes the first name taken does not refuse,
// as Write does.
func TestWriterCollision(t *testing.T) {
	dir := t.TempDir()
	snap := testSnap(10)
	ref1, _, err := Write(dir, snap, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	taken := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	stream(t, w, []byte("other data"), 3, 3)
	ref2, _, err := w.Commit(snap.Meta, taken, false)
	if err != nil {
		t.Fatal(err)
	}
	if ref2.File != "snap-90-4-1.snap" {
		t.Fatalf("second file named %s", ref2.File)
	}
	if d, err := Read(dir, &ref1); err != nil || !bytes.Equal(d, snap.Data) {
		t.Fatalf("first file: %v", err)
	}
	if d, err := Read(dir, &ref2); err != nil || string(d) != "other data" {
		t.Fatalf("second file: %q, %v", d, err)
	}
}

// TestWriterStickyError: a failed write is returned by every later Write
// and Commit, Err reports it, and Abort removes the file.
func TestWriterStickyError(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.writeAt = func(*os.File, []byte, int64) (int, error) { return 0, syscall.EIO }
	big := make([]byte, WriterBufferSize)
	if _, err := w.Write(big); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), w.Path()) {
		t.Fatalf("Write: %v", err)
	}
	w.writeAt = nil
	if _, err := w.Write([]byte("x")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Write after a failure: %v", err)
	}
	if _, _, err := w.Commit(core.SnapshotMeta{Index: 1, Term: 1}, nil, false); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Commit after a failure: %v", err)
	}
	if !errors.Is(w.Err(), syscall.EIO) {
		t.Fatalf("Err: %v", w.Err())
	}
	w.Abort()
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("left after Abort: %v", got)
	}
}

// TestWriterCommitRetry: a Commit whose writes fail with ENOSPC can be
// called again and then gives the file Write gives; one whose fsync fails
// cannot, and Abort removes its file.
func TestWriterCommitRetry(t *testing.T) {
	snap := testSnap(WriterBufferSize + 100)
	want, _, err := Write(t.TempDir(), snap, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for fail := 1; fail <= 2; fail++ { // the end of the data and trailer; the header
		dir := t.TempDir()
		w, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		stream(t, w, snap.Data, 64<<10, 4)
		calls := 0
		w.writeAt = func(f *os.File, b []byte, off int64) (int, error) {
			calls++
			if calls == fail {
				// Half written, as a full disk leaves it.
				n, _ := f.WriteAt(b[:len(b)/2], off)
				return n, syscall.ENOSPC
			}
			return f.WriteAt(b, off)
		}
		if _, _, err := w.Commit(snap.Meta, nil, false); !errors.Is(err, syscall.ENOSPC) || w.Err() != nil {
			t.Fatalf("failing write %d: Commit: %v; Err: %v", fail, err, w.Err())
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Fatal("Write after Commit succeeded")
		}
		ref, _, err := w.Commit(snap.Meta, nil, false)
		if err != nil || !ref.Equal(&want) {
			t.Fatalf("failing write %d: retried Commit: %+v, %v", fail, ref, err)
		}
		if d, err := Read(dir, &ref); err != nil || !bytes.Equal(d, snap.Data) {
			t.Fatalf("failing write %d: Read: %v", fail, err)
		}
	}

	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	stream(t, w, snap.Data, 64<<10, 5)
	w.sync = func(*os.File) error { return syscall.ENOSPC }
	if _, _, err := w.Commit(snap.Meta, nil, false); !errors.Is(err, syscall.ENOSPC) || !errors.Is(w.Err(), syscall.ENOSPC) {
		t.Fatalf("failing fsync: Commit: %v; Err: %v", err, w.Err())
	}
	w.sync = nil
	if _, _, err := w.Commit(snap.Meta, nil, false); err == nil {
		t.Fatal("Commit after a failed fsync succeeded")
	}
	w.Abort()
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("left after Abort: %v", got)
	}
}

// TestWriterRenameFails: a Commit whose rename fails leaves the temporary
// file and may be called again; Abort removes the file otherwise.
func TestWriterRenameFails(t *testing.T) {
	dir := t.TempDir()
	snap := testSnap(100)
	// The final name is a non-empty directory: the rename fails.
	blocker := filepath.Join(dir, Name(snap.Meta.Index, snap.Meta.Term, 0))
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, retry := range []bool{false, true} {
		w, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		stream(t, w, snap.Data, 10, 6)
		if _, _, err := w.Commit(snap.Meta, nil, false); err == nil || w.Err() != nil {
			t.Fatalf("Commit over a directory: %v; Err %v", err, w.Err())
		}
		if _, err := os.Stat(w.Path()); err != nil || !IsTemp(filepath.Base(w.Path())) {
			t.Fatalf("temporary file after a failed rename: %v", err)
		}
		if !retry {
			w.Abort()
			if got := files(t, dir); len(got) != 1 {
				t.Fatalf("left after Abort: %v", got)
			}
			continue
		}
		if err := os.RemoveAll(blocker); err != nil {
			t.Fatal(err)
		}
		ref, _, err := w.Commit(snap.Meta, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := Read(dir, &ref); err != nil || !bytes.Equal(d, snap.Data) {
			t.Fatalf("Read: %v", err)
		}
	}
}
