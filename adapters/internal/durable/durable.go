// Package durable writes whole files so that a crash leaves either the old
// file or the new one, complete and durable, never a mix: the storage
// adapters' snapshot files and pebble's guard file.
package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// TempSuffix is appended to a file's name while WriteFile writes it. A file
// with this suffix left in a directory was never made durable under its
// own name: a crash interrupted its writing.
const TempSuffix = ".tmp"

// WriteFile writes the concatenation of parts to path: into path+TempSuffix
// first, which it fsyncs, closes and renames to path, then fsyncs the
// directory, so that the file and its name are durable when it returns nil.
// With noSync (UNSAFE) nothing is fsynced. On error the temporary file is
// removed and path is as it was (absent, or its old contents).
func WriteFile(path string, noSync bool, parts ...[]byte) error {
	tmp := path + TempSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	for _, p := range parts {
		if err == nil {
			_, err = f.Write(p)
		}
	}
	if err == nil && !noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && !noSync {
		err = SyncDir(filepath.Dir(path))
	}
	if err != nil {
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs a directory, making creations, renames and removals in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
