package boltstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// backend describes this package to the storage conformance suite.
var backend = storagetest.Backend{
	Name: "bolt",
	Open: func(t testing.TB, dir string) (storagetest.Store, error) {
		return Open(Options{Dir: dir})
	},
	IsCorrupt: func(err error) bool { return errors.Is(err, ErrCorrupt) },
	Kind: func(rel string) string {
		switch {
		case rel == FileName:
			return "bolt database"
		case strings.HasPrefix(rel, snapfile.Prefix):
			return "snapshot file"
		}
		return rel
	},
}

// TestStorage runs the storage conformance suite: update kinds, a model,
// SIGKILL crashes and the single-byte corruption campaign.
func TestStorage(t *testing.T) { storagetest.Run(t, backend) }
