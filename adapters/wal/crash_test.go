package wal

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// TestCrash runs the conformance suite's SIGKILL crash test (see
// storagetest.Crash) on small segments, 16 KiB, so that kills land in
// rotations and releases too; TestStorage runs it on 64 KiB segments.
func TestCrash(t *testing.T) {
	b := backend
	b.Name = "wal, 16 KiB segments"
	b.Open = func(t testing.TB, dir string) (storagetest.Store, error) {
		o := testOpts(dir)
		o.SegmentSize = 16 << 10
		return Open(o)
	}
	storagetest.Crash(t, b)
}
