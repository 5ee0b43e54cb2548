package pebblestore

import (
	"errors"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/internal/guard"
	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// backend describes this package to the storage conformance suite.
var backend = storagetest.Backend{
	Name: "pebble",
	Open: func(t testing.TB, dir string) (storagetest.Store, error) {
		return Open(Options{Dir: dir})
	},
	IsCorrupt: func(err error) bool { return errors.Is(err, ErrCorrupt) },
	Kind:      fileKind,
}

// fileKind names the kind of a file of the data directory.
func fileKind(rel string) string {
	name := rel[strings.LastIndex(rel, "/")+1:]
	switch {
	case strings.HasPrefix(rel, dbSubdir+"/") && strings.HasSuffix(name, ".log"):
		return "pebble WAL (.log)"
	case strings.HasSuffix(name, ".sst"):
		return "pebble sstable (.sst)"
	case strings.HasPrefix(name, "MANIFEST-"):
		return "pebble MANIFEST"
	case strings.HasPrefix(name, "OPTIONS-"):
		return "pebble OPTIONS"
	case strings.HasPrefix(name, "marker."):
		return "pebble marker"
	case name == "CURRENT":
		return "pebble CURRENT"
	case name == "LOCK":
		return "pebble LOCK"
	case strings.HasPrefix(name, snapfile.Prefix):
		return "snapshot file"
	case name == guard.Name:
		return "guard file"
	}
	return name
}

// TestStorage runs the storage conformance suite: update kinds, a model,
// SIGKILL crashes and the single-byte corruption campaign.
func TestStorage(t *testing.T) { storagetest.Run(t, backend) }
