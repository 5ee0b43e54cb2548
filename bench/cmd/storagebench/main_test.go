//go:build linux

package main

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestAppendAndLoad runs the appends and the read back on every storage
// type and checks that every entry comes back.
func TestAppendAndLoad(t *testing.T) {
	for _, typ := range names() {
		dir := filepath.Join(t.TempDir(), typ)
		res, err := appendN(openers[typ], dir, 16, 20, 128)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if res.entries != 320 || len(res.lat) != 20 || res.diskUsed <= 0 {
			t.Errorf("%s: %d entries, %d Saves timed, %d bytes on disk", typ, res.entries, len(res.lat), res.diskUsed)
		}
		lr, err := openLoad(openers[typ], dir, 320)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if lr.entries != 320 {
			t.Errorf("%s: loaded %d entries", typ, lr.entries)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for s, want := range map[string]int64{"1GiB": 1 << 30, "64MiB": 64 << 20, "0": 0, "4096": 4096} {
		if got, err := parseBytes(s); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v", s, got, err)
		}
	}
	if _, err := parseBytes("-1MiB"); err == nil {
		t.Error("negative size accepted")
	}
}

// TestSyscallCount reads strace -c's summary.
func TestSyscallCount(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	summary := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 90.00    0.500000         250      2000           fdatasync
 10.00    0.050000         500       100           fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.550000                  2100           total
`
	if err := os.WriteFile(p, []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := syscallCount(p); err != nil || n != 2100 {
		t.Errorf("syscallCount = %d, %v; want 2100", n, err)
	}
}

// TestPeakRSS resets and reads the peak resident set size.
func TestPeakRSS(t *testing.T) {
	if err := resetPeakRSS(); err != nil {
		t.Skipf("cannot reset VmHWM: %v", err)
	}
	b, err := peakRSS()
	if err != nil || b <= 0 {
		t.Fatalf("peakRSS = %d, %v", b, err)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = 1
	}
	after, err := peakRSS()
	if err != nil || after < b+32<<20 {
		t.Errorf("peakRSS after touching 64 MiB = %d, before %d (%v)", after, b, err)
	}
	runtime.KeepAlive(buf)
}
