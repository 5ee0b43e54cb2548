package badgerstore

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// TestPowerCut runs the suite's power-cut test (storagetest.PowerCut): a
// child saving to a store on a powerfs mount is killed and the file
// system loses what no fsync covered, many times over. Badger writes its
// memtable WAL through a shared mmap and msyncs it: the dirty pages reach
// the mount as writes, the msync as an fsync. The store is reopened in
// another child, never in the process serving the mount.
func TestPowerCut(t *testing.T) { storagetest.PowerCut(t, backend) }
