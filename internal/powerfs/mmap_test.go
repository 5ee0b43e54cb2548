package powerfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// envMmapFile names the file the child of TestMmapWrite maps.
const envMmapFile = "POWERFS_MMAP_FILE"

// mmapChild maps the two pages of the file at p shared and writable, fills
// the first with 'a' and msyncs it, fills the second with 'b' and unmaps
// it without an msync.
func mmapChild(t *testing.T, p string) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps := os.Getpagesize()
	m, err := syscall.Mmap(int(f.Fd()), 0, 2*ps, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(m[:ps], bytes.Repeat([]byte{'a'}, ps))
	if _, _, errno := syscall.Syscall(syscall.SYS_MSYNC, uintptr(unsafe.Pointer(&m[0])), uintptr(ps), 4 /* MS_SYNC */); errno != 0 {
		t.Fatalf("msync: %v", errno)
	}
	copy(m[ps:], bytes.Repeat([]byte{'b'}, ps))
	if err := syscall.Munmap(m); err != nil {
		t.Fatal(err)
	}
}

// TestMmapWrite checks that writes through a shared writable mapping are
// modelled: the kernel writes the dirty pages back as writes (at msync,
// at close or at the latest at the unmount of a cut) and msync is an
// fsync, so a cut keeps the msynced page and drops the other. The mapping
// is made in a child process: a page fault on the mount from the process
// serving it can deadlock (the faulting thread blocks the garbage
// collector's stop-the-world while the goroutines that would answer it
// are stopped).
func TestMmapWrite(t *testing.T) {
	if p := os.Getenv(envMmapFile); p != "" {
		mmapChild(t, p)
		return
	}
	f := mount(t)
	ps := os.Getpagesize()
	p := filepath.Join(f.Dir(), "m")
	zeros := string(make([]byte, 2*ps))
	write(t, p, zeros, true)
	syncDir(t, f.Dir())
	before := f.Stats()

	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapWrite$", "-test.count=1")
	cmd.Env = append(os.Environ(), envMmapFile+"="+p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	a, b := string(bytes.Repeat([]byte{'a'}, ps)), string(bytes.Repeat([]byte{'b'}, ps))
	wantContent(t, p, a+b)
	if st := f.Stats(); st.Writes == before.Writes || st.Fsyncs == before.Fsyncs {
		t.Fatalf("stats %+v after %+v: want the mapped pages written back and the msync seen as an fsync", st, before)
	}
	r := cut(t, f, false)
	wantContent(t, p, a+zeros[ps:])
	if r.DroppedWrites == 0 || r.DroppedBytes < int64(ps) {
		t.Fatalf("report %+v: want the unsynced page's write dropped", r)
	}
}
