package wal

import (
	"errors"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// backend describes this package to the storage conformance suite. Small
// segments (64 KiB) make the suite's stores rotate and release segments,
// and keep the corruption campaign's copies small.
var backend = storagetest.Backend{
	Name: "wal",
	Open: func(t testing.TB, dir string) (storagetest.Store, error) {
		return Open(Options{Dir: dir, ClusterID: 7, NodeID: 1, SegmentSize: 64 << 10})
	},
	IsCorrupt: func(err error) bool { return errors.Is(err, ErrCorrupt) },
	Kind: func(rel string) string {
		switch {
		case strings.HasSuffix(rel, segSuffix):
			return "wal segment"
		case strings.HasPrefix(rel, "snap-"):
			return "snapshot file"
		}
		return rel
	},
}

// TestStorage runs the storage conformance suite: update kinds, a model,
// SIGKILL crashes and the single-byte corruption campaign.
func TestStorage(t *testing.T) { storagetest.Run(t, backend) }
