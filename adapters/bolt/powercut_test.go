package boltstore

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// TestPowerCut runs the suite's power-cut test (storagetest.PowerCut): a
// child saving to a store on a powerfs mount is killed and the file
// system loses what no fsync covered, tearing writes, many times over.
func TestPowerCut(t *testing.T) { storagetest.PowerCut(t, backend) }
