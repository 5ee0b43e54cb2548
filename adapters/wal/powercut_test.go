package wal

import (
	"os"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// TestPowerCut runs the suite's power-cut test (storagetest.PowerCut)
// without torn writes: a child saving to a store on a powerfs mount is
// killed and the file system loses what no fsync covered, many times over.
func TestPowerCut(t *testing.T) {
	storagetest.PowerCutWith(t, backend, storagetest.PowerCutOptions{Tear: false})
}

// TestPowerCutTorn is the power-cut test with torn writes. It fails today
// and runs only with STORAGE_POWERCUT_TORN=1: when the last write (one
// group of updates, one pwrite) is torn at a sector boundary, recovery
// keeps the valid records before the tear, so an unacknowledged update can
// land in part. Its truncation record (a conflicting suffix) then removes
// acknowledged entries while the entries replacing them and its hard state
// are lost: the store holds less than was acknowledged. See
// docs/testing.md (power loss).
func TestPowerCutTorn(t *testing.T) {
	if os.Getenv("STORAGE_POWERCUT_TORN") != "1" {
		t.Skip("known failure (a torn write group lands in part); STORAGE_POWERCUT_TORN=1 runs it")
	}
	storagetest.PowerCut(t, backend)
}
