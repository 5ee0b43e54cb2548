package guard

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (not its modification time) to stable
// storage.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
