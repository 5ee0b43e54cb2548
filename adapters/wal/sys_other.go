//go:build !linux

package wal

import "os"

// allocate makes f size bytes long by writing zeros.
func allocate(f *os.File, size int64) error { return zeroFill(f, size) }

// datasync flushes f.
func datasync(f *os.File) error { return f.Sync() }

// adviseHuge does nothing outside Linux.
func adviseHuge([]byte) {}
