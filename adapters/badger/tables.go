package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"

	"github.com/forge-consensus/consensus/adapters/internal/kvlog"
)

// checkTables opens and verifies every table (.sst file) in dir, one at a
// time, on the calling goroutine, before Badger opens them. Badger opens
// its tables on goroutines of its own, and a damaged block there can make
// it panic (a slice out of range while it reads a table's first or last
// key), which ends the process; it also skips, with only a log line, a
// table whose checksum does not match. Here the same damage is an error
// wrapping ErrCorrupt that names the table. Tables are written with the
// options this package always uses (Snappy, 4 KiB blocks, no encryption).
//
// Only the tables the MANIFEST refers to are checked: a table Badger was
// writing when the process died (a file of any length, even empty) is not
// in the MANIFEST yet, and Badger deletes it when it opens.
func checkTables(dir string) error {
	live, err := liveTables(dir)
	if err != nil {
		return err
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return fmt.Errorf("list the tables of %s: %w", dir, err)
	}
	for _, p := range paths {
		if id, ok := table.ParseFileID(filepath.Base(p)); ok && !live[id] {
			continue
		}
		if err := checkTable(p); err != nil {
			return err
		}
	}
	return nil
}

// liveTables returns the IDs of the tables the MANIFEST in dir refers to
// (none when there is no MANIFEST yet).
func liveTables(dir string) (live map[uint64]bool, err error) {
	path := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("badger manifest %s: %w", path, err)
	}
	defer f.Close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			msg, _, _ := strings.Cut(fmt.Sprint(r), "\n")
			err = fmt.Errorf("badger manifest %s: %w: reading it panicked: %s", path, kvlog.ErrCorrupt, msg)
		}
	}()
	m, _, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(dir))
	if err != nil {
		return nil, fmt.Errorf("badger manifest %s: %w: %w", path, kvlog.ErrCorrupt, err)
	}
	live = make(map[uint64]bool, len(m.Tables))
	for id := range m.Tables {
		live[id] = true
	}
	return live, nil
}

// checkTable opens the table at path read-only and verifies every
// block's checksum.
func checkTable(path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			msg, _, _ := strings.Cut(fmt.Sprint(r), "\n")
			err = fmt.Errorf("badger table %s: %w: reading it panicked: %s", path, kvlog.ErrCorrupt, msg)
		}
	}()
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("badger table %s: %w", path, err)
		}
		return fmt.Errorf("badger table %s: %w: %w", path, kvlog.ErrCorrupt, err)
	}
	t, err := table.OpenTable(mf, table.Options{
		ReadOnly:           true,
		ChkMode:            options.OnTableRead,
		BlockSize:          4 << 10,
		BloomFalsePositive: 0.01,
		Compression:        options.Snappy,
	})
	if err != nil {
		return errors.Join(fmt.Errorf("badger table %s: %w: %w", path, kvlog.ErrCorrupt, err), mf.Close(-1))
	}
	// Not t.DecrRef: at zero references it deletes the file.
	if err := t.MmapFile.Close(-1); err != nil {
		return fmt.Errorf("badger table %s: close: %w", path, err)
	}
	return nil
}
