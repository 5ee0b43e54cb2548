//go:build linux

package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

// TestAppendAndLoad runs the appends and the read back on every
// file-based storage type, and on postgres when CONSENSUS_TEST_POSTGRES_DSN
// is set, and checks that every entry comes back and the store has a size.
func TestAppendAndLoad(t *testing.T) {
	backends := map[string]backend{}
	for typ, o := range fileTypes {
		backends[typ] = fileBackend{dir: t.TempDir(), opener: o}
	}
	if dsn := os.Getenv(envDSN); dsn != "" {
		pg, err := newPGBackend(dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pg.close)
		backends["postgres"] = pg
	} else {
		t.Logf("postgres not tested: %s is not set", envDSN)
	}
	for typ, be := range backends {
		loc := be.loc(newID() + "_test_" + typ)
		t.Cleanup(func() {
			if err := be.remove(loc); err != nil {
				t.Error(err)
			}
		})
		res, err := appendN(be, loc, 16, 20, 128)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if res.entries != 320 || len(res.lat) != 20 || res.diskUsed <= 0 {
			t.Errorf("%s: %d entries, %d Saves timed, %d bytes used", typ, res.entries, len(res.lat), res.diskUsed)
		}
		lr, err := openLoad(be, loc, 320)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if lr.entries != 320 {
			t.Errorf("%s: loaded %d entries", typ, lr.entries)
		}
		if !be.exists(loc) {
			t.Errorf("%s: exists(%s) is false", typ, loc)
		}
	}
}

// TestPostgresSyncs counts the server's WAL flushes of 20 one-entry Saves,
// each a transaction committed with synchronous_commit on: at least one
// each.
func TestPostgresSyncs(t *testing.T) {
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		t.Skipf("%s is not set", envDSN)
	}
	pg, err := newPGBackend(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.close()
	loc := pg.loc(newID() + "_test_syncs")
	defer func() {
		if err := pg.remove(loc); err != nil {
			t.Error(err)
		}
	}()
	n, err := pgSyncs(pg, loc, func(loc string) error {
		_, err := appendN(pg, loc, 1, 20, 128)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Errorf("%d WAL flushes counted for 20 committed Saves", n)
	}
}

// TestWithParam adds a parameter to both forms of DSN.
func TestWithParam(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u:p@h:5432/db?sslmode=disable": "postgres://u:p@h:5432/db?application_name=x&sslmode=disable",
		"host=h dbname=db":                         "host=h dbname=db application_name=x",
	} {
		if got, err := withParam(dsn, "application_name", "x"); err != nil || got != want {
			t.Errorf("withParam(%q) = %q, %v; want %q", dsn, got, err, want)
		}
	}
}

// TestThousands formats with commas.
func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", 100000: "100,000"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
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

// TestSyscallCount reads strace -c's summary, the sync calls only.
func TestSyscallCount(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	summary := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 80.00    0.500000         250      2000           fdatasync
 10.00    0.050000         500       100           fsync
  5.00    0.010000          10        30           msync
  5.00    0.010000          10         7           write
------ ----------- ----------- --------- --------- ----------------
100.00    0.550000                  2137           total
`
	if err := os.WriteFile(p, []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := syscallCount(p)
	if err != nil || n["fdatasync"] != 2000 || n["fsync"] != 100 || n["msync"] != 30 || len(n) != 3 {
		t.Errorf("syscallCount = %v, %v; want fdatasync 2000, fsync 100, msync 30", n, err)
	}
}

// TestPeakRSS resets and reads the peak resident set size.
func TestPeakRSS(t *testing.T) {
	debug.FreeOSMemory() // heap pages freed by earlier tests but still resident would take the 64 MiB below
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
