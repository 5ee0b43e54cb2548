package boltstore

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// TestPowerCut runs the suite's power-cut test (storagetest.PowerCut): a
// child saving to a store on a powerfs mount is killed and the file
// system loses what no fsync covered, many times over. The store is
// reopened in another child: bolt reads its file through mmap, which must
// not fault on the mount from the process serving it.
func TestPowerCut(t *testing.T) { storagetest.PowerCut(t, backend) }
