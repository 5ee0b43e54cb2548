package powerfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the user and group the test runs commands as.
const nobody = 65534

// asNobody runs the shell command script as user and group nobody and
// returns its error and output.
func asNobody(script string) (string, error) {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// mountFor mounts a file system with o for t on a mount point every user
// can reach (t.TempDir makes directories only root can enter).
func mountFor(t *testing.T, o MountOptions) *FS {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs FUSE: %v", err)
		}
		t.Skip(err)
	}
	mnt := t.TempDir()
	for _, d := range []string{filepath.Dir(mnt), mnt} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := MountWith(mnt, t.TempDir(), o)
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

// TestAllowOther checks that a mount with AllowOther serves another user
// as a disk would (files it makes are its own, modes are enforced), also
// after a cut, and that a plain mount serves root only.
func TestAllowOther(t *testing.T) {
	f := mountFor(t, MountOptions{AllowOther: true})
	home := filepath.Join(f.Dir(), "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	syncDir(t, f.Dir())
	if out, err := asNobody("echo data > " + home + "/a && sync " + home + "/a && sync " + home); err != nil {
		t.Fatalf("user nobody cannot write in its directory on the mount: %v: %s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(home, "a"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != nobody || st.Gid != nobody {
		t.Fatalf("a file user nobody made belongs to %d:%d, want %d:%d", st.Uid, st.Gid, nobody, nobody)
	}
	if out, err := asNobody("echo data > " + f.Dir() + "/b"); err == nil {
		t.Fatalf("user nobody wrote in root's directory (mode 0755): modes are not enforced (%s)", out)
	}
	cut(t, f, false)
	wantContent(t, filepath.Join(home, "a"), "data\n")
	if out, err := asNobody("cat " + home + "/a"); err != nil || out != "data" {
		t.Fatalf("after a cut user nobody reads %q, %v: want %q", out, err, "data")
	}

	plain := mountFor(t, MountOptions{})
	if out, err := asNobody("ls " + plain.Dir()); err == nil {
		t.Fatalf("user nobody lists a mount without AllowOther: %s", out)
	}
}
