package boltstore

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// statFile stats path.
func statFile(path string) (os.FileInfo, error) { return os.Stat(path) }

// isEnv reports whether err comes from the environment (permissions, no
// space, too many files) rather than from the stored bytes.
func isEnv(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EAGAIN)
}
