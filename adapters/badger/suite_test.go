package badgerstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// backend describes this package to the storage conformance suite.
var backend = storagetest.Backend{
	Name: "badger",
	Open: func(t testing.TB, dir string) (storagetest.Store, error) {
		// Small memtables and value-log files: the campaign copies the
		// directory for every flip.
		return Open(Options{Dir: dir, MemTableSize: 4 << 20, ValueLogFileSize: 1 << 20})
	},
	IsCorrupt: func(err error) bool { return errors.Is(err, ErrCorrupt) },
	Kind: func(rel string) string {
		name := rel[strings.LastIndex(rel, "/")+1:]
		switch {
		case strings.HasSuffix(name, ".vlog"):
			return "badger value log (.vlog)"
		case strings.HasSuffix(name, ".mem"):
			return "badger memtable WAL (.mem)"
		case strings.HasSuffix(name, ".sst"):
			return "badger table (.sst)"
		case strings.HasPrefix(rel, DBSubdir+"/"):
			return "badger " + name
		case strings.HasPrefix(rel, snapfile.Prefix):
			return "snapshot file"
		}
		return rel
	},
}

// TestStorage runs the storage conformance suite: update kinds, a model,
// SIGKILL crashes and the single-byte corruption campaign.
func TestStorage(t *testing.T) { storagetest.Run(t, backend) }
