package durable

import (
	"os"
	"path/filepath"
	"testing"
)

// wantFile fails the test unless path holds want.
func wantFile(t *testing.T, path, want string) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || string(b) != want {
		t.Fatalf("%s holds %q (%v), want %q", path, b, err, want)
	}
}

// noTemp fails the test if dir holds a temporary file.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if filepath.Ext(de.Name()) == TempSuffix {
			t.Fatalf("temporary file %s left", de.Name())
		}
	}
}

// TestWriteFile: the parts are written in order, replace an existing file,
// and leave no temporary file, with and without fsync.
func TestWriteFile(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := WriteFile(path, noSync, []byte("head,"), nil, []byte("body,"), []byte("tail")); err != nil {
			t.Fatal(err)
		}
		wantFile(t, path, "head,body,tail")
		if err := WriteFile(path, noSync, []byte("new")); err != nil {
			t.Fatal(err)
		}
		wantFile(t, path, "new")
		noTemp(t, dir)
	}
}

// TestWriteFileFails: a write that cannot complete returns an error naming
// the file, removes its temporary file and leaves what was there.
func TestWriteFileFails(t *testing.T) {
	dir := t.TempDir()
	// The rename fails: path is a directory that is not empty.
	path := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, false, []byte("data"))
	if err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	if fi, serr := os.Stat(path); serr != nil || !fi.IsDir() {
		t.Fatalf("%s changed: %v", path, serr)
	}
	noTemp(t, dir)
	// The temporary file cannot be created: no such directory.
	if err := WriteFile(filepath.Join(dir, "missing", "f"), false, []byte("data")); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
