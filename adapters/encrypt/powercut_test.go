package encrypt_test

import (
	"errors"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/adapters/wal"
)

// TestPowerCutWal runs the suite's power-cut test (storagetest.PowerCut)
// over the encrypted WAL: the marker file and the encrypted records must
// survive a cut as the plain WAL's do.
func TestPowerCutWal(t *testing.T) {
	storagetest.PowerCut(t, encrypted("wal", openWal, func(err error) bool { return errors.Is(err, wal.ErrCorrupt) }))
}
