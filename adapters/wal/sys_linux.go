//go:build linux

package wal

import (
	"errors"
	"os"
	"syscall"
)

// allocate makes f size bytes long with its blocks allocated (reading as
// zeros), with fallocate, or by writing zeros where that is unsupported.
func allocate(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
			return zeroFill(f, size)
		}
		return err
	}
}

// datasync flushes f's data and the metadata needed to read it back.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// adviseHuge asks the kernel to back b, a large buffer about to be filled,
// with transparent huge pages where it allows them (madvise mode): reading
// a segment then takes a fault per 2 MiB instead of one per 4 KiB page. A
// hint: errors are ignored.
func adviseHuge(b []byte) { _ = syscall.Madvise(b, syscall.MADV_HUGEPAGE) }
