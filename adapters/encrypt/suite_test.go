package encrypt_test

import (
	"errors"
	"testing"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/adapters/wal"
	"github.com/forge-consensus/consensus/node"
)

// testKey returns a fixed key made of one repeated byte.
func testKey(t testing.TB, b byte) encrypt.Key {
	t.Helper()
	raw := make([]byte, encrypt.KeySize)
	for i := range raw {
		raw[i] = b + byte(i)
	}
	k, err := encrypt.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openWal(dir string) func() (node.Storage, error) {
	return func() (node.Storage, error) {
		return wal.Open(wal.Options{Dir: dir, ClusterID: 7, NodeID: 1, SegmentSize: 64 << 10})
	}
}

func openPebble(dir string) func() (node.Storage, error) {
	return func() (node.Storage, error) { return pebblestore.Open(pebblestore.Options{Dir: dir}) }
}

// encrypted describes an encrypted backend to the conformance suite.
func encrypted(name string, open func(dir string) func() (node.Storage, error), inner func(error) bool) storagetest.Backend {
	return storagetest.Backend{
		Name: "encrypted " + name,
		Open: func(t testing.TB, dir string) (storagetest.Store, error) {
			return encrypt.Open(encrypt.Options{Dir: dir, Key: testKey(t, 1)}, open(dir))
		},
		IsCorrupt: func(err error) bool {
			return inner(err) || errors.Is(err, encrypt.ErrCorrupt) || errors.Is(err, encrypt.ErrKey)
		},
	}
}

// TestSuiteWal runs the storage conformance suite over the encrypted WAL:
// every kind of update reads back decrypted as it was written, across
// reopens, SIGKILL crashes and single-byte corruption (the marker file
// included).
func TestSuiteWal(t *testing.T) {
	storagetest.Run(t, encrypted("wal", openWal, func(err error) bool { return errors.Is(err, wal.ErrCorrupt) }))
}

// TestSuitePebble runs the suite's update kinds over encrypted Pebble.
func TestSuitePebble(t *testing.T) {
	b := encrypted("pebble", openPebble, func(err error) bool { return errors.Is(err, pebblestore.ErrCorrupt) })
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, storagetest.Backend)
	}{
		{"Append", storagetest.Append}, {"Overwrite", storagetest.Overwrite}, {"Compact", storagetest.Compact},
		{"StreamedSnapshot", storagetest.StreamedSnapshot}, {"LeaderSnapshot", storagetest.LeaderSnapshot},
		{"Gap", storagetest.Gap}, {"Model", storagetest.Model},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}
