package wal

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// TestPowerCut runs the suite's power-cut test (storagetest.PowerCut): a
// child saving to a store on a powerfs mount is killed and the file system
// loses what no fsync covered, tearing the last writes at sector
// boundaries, many times over. Every acknowledged update is kept and none
// lands in part (each write ends with a write-end record).
func TestPowerCut(t *testing.T) {
	storagetest.PowerCut(t, backend)
}
