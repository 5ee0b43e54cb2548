package powerfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// mount mounts a file system for t: skipped where FUSE cannot be mounted,
// failed instead under CI (CI=true).
func mount(t *testing.T) *FS {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs FUSE: %v", err)
		}
		t.Skip(err)
	}
	mnt := t.TempDir()
	f, err := Mount(mnt, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

func write(t *testing.T, p string, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, p string) {
	t.Helper()
	d, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func cut(t *testing.T, f *FS, tear bool) CutReport {
	t.Helper()
	r, err := f.Cut(tear, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cut: %v", r)
	return r
}

func content(t *testing.T, p string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func wantContent(t *testing.T, p, want string) {
	t.Helper()
	got, ok := content(t, p)
	if !ok {
		t.Fatalf("%s: missing, want %q", filepath.Base(p), want)
	}
	if got != want {
		t.Fatalf("%s: %q, want %q", filepath.Base(p), got, want)
	}
}

func wantMissing(t *testing.T, p string) {
	t.Helper()
	if got, ok := content(t, p); ok {
		t.Fatalf("%s: exists (%q) after the cut, want it gone", filepath.Base(p), got)
	}
}

func TestUnsyncedWriteLost(t *testing.T) {
	f := mount(t)
	p := filepath.Join(f.Dir(), "a")
	write(t, p, "synced.", true)
	syncDir(t, f.Dir())
	write(t, p, "unsynced.", false)
	wantContent(t, p, "synced.unsynced.")
	r := cut(t, f, false)
	wantContent(t, p, "synced.")
	if r.DroppedWrites != 1 || r.DroppedBytes != 9 {
		t.Fatalf("report %+v: want 1 write of 9 bytes dropped", r)
	}
	// What was synced survives a second cut too.
	cut(t, f, false)
	wantContent(t, p, "synced.")
}

func TestNewFileNeedsDirSync(t *testing.T) {
	f := mount(t)
	sub := filepath.Join(f.Dir(), "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	write(t, filepath.Join(sub, "fsynced"), "data", true) // the file, not sub
	write(t, filepath.Join(sub, "both"), "data", true)
	syncDir(t, sub)
	write(t, filepath.Join(sub, "late"), "data", true) // after the directory's fsync
	cut(t, f, false)
	wantMissing(t, filepath.Join(sub, "late"))
	wantContent(t, filepath.Join(sub, "fsynced"), "data") // covered by the directory fsync after it
	wantContent(t, filepath.Join(sub, "both"), "data")

	write(t, filepath.Join(f.Dir(), "x"), "data", true)
	cut(t, f, false)
	wantMissing(t, filepath.Join(f.Dir(), "x"))
	if err := os.Mkdir(filepath.Join(f.Dir(), "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.Dir(), "d", "y"), "data", true)
	syncDir(t, filepath.Join(f.Dir(), "d"))
	cut(t, f, false) // d itself was never synced in the root
	wantMissing(t, filepath.Join(f.Dir(), "d"))
}

func TestRename(t *testing.T) {
	f := mount(t)
	cur, tmp := filepath.Join(f.Dir(), "CURRENT"), filepath.Join(f.Dir(), "CURRENT.tmp")
	write(t, cur, "old", true)
	syncDir(t, f.Dir())
	// Not covered: the rename reverts, the replaced file comes back.
	write(t, tmp, "new", true)
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	wantContent(t, cur, "new")
	cut(t, f, false)
	wantContent(t, cur, "old")
	wantMissing(t, tmp)
	// Covered by the directory's fsync: it survives.
	write(t, tmp, "new", true)
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	cut(t, f, false)
	wantContent(t, cur, "new")
	wantMissing(t, tmp)
	// A renamed file whose data was never synced keeps only its synced data.
	write(t, tmp, "unsynced", false)
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	cut(t, f, false)
	wantContent(t, cur, "")
}

func TestUnlinkAndTruncate(t *testing.T) {
	f := mount(t)
	p, q := filepath.Join(f.Dir(), "p"), filepath.Join(f.Dir(), "q")
	write(t, p, "pp", true)
	write(t, q, "0123456789", true)
	syncDir(t, f.Dir())
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(q, 3); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, p)
	wantContent(t, q, "012")
	cut(t, f, false)
	wantContent(t, p, "pp")
	wantContent(t, q, "0123456789")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	cut(t, f, false)
	wantMissing(t, p)
}

func TestTear(t *testing.T) {
	f := mount(t)
	p := filepath.Join(f.Dir(), "wal")
	write(t, p, "head:", true)
	syncDir(t, f.Dir())
	data := bytes.Repeat([]byte("0123456789"), 200) // spans four sector boundaries
	write(t, p, string(data), false)
	r := cut(t, f, true)
	got, _ := content(t, p)
	if r.TornWrites != 1 || len(got) <= len("head:") || len(got) >= len("head:")+len(data) {
		t.Fatalf("report %+v, content %q: want one write torn, a strict prefix of it kept", r, got)
	}
	if want := "head:" + string(data[:len(got)-5]); got != want {
		t.Fatalf("torn content %q is not a prefix of the write", got)
	}
	if len(got)%SectorSize != 0 {
		t.Fatalf("torn at %d bytes: not a sector boundary", len(got))
	}
	// A write within one sector is never torn: it lands whole or not at all.
	write(t, p, "tail", false)
	if r := cut(t, f, true); r.TornWrites != 0 {
		t.Fatalf("report %+v: a write within a sector was torn", r)
	}
	if got2, _ := content(t, p); got2 != got {
		t.Fatalf("after the second cut %q, want %q", got2, got)
	}
}
