package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/forge-consensus/consensus/adapters/snapfile"
)

const (
	segSuffix = ".wal"
	tmpSuffix = ".tmp"
)

// segName returns the file name of segment seq.
func segName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segSuffix) }

// parseSegName returns the sequence number in a segment file name.
func parseSegName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(hex, 16, 64)
	return seq, err == nil && seq > 0
}

// segment is one segment file of the log.
type segment struct {
	seq       uint64
	name      string
	f         *os.File // open for the active segment only
	size      int64    // file size
	used      int64    // end of the valid records
	chain     uint32   // chain value at used (before any seal)
	headerCRC uint32
}

// zeroFill extends f to size bytes by writing zeros after its end.
func zeroFill(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := fi.Size(); off < size; {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// prealloc is a segment file created ahead of need, under its temporary
// name, zero-filled and allocated.
type prealloc struct {
	seq  uint64
	f    *os.File
	size int64
	err  error
}

// createSegmentFile creates the temporary file of segment seq, size bytes
// long, allocated and durable.
func (s *Storage) createSegmentFile(seq uint64, size int64) (*os.File, error) {
	path := filepath.Join(s.opts.Dir, segName(seq)+tmpSuffix)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("wal: remove stale %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment file: %w", err)
	}
	if s.opts.allocHook != nil {
		err = s.opts.allocHook(size)
	}
	if err == nil {
		err = allocate(f, size)
	}
	if err == nil && !s.opts.NoSync {
		err = f.Sync()
		if err == nil {
			err = snapfile.SyncDir(s.opts.Dir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("wal: preallocate %s (%d bytes): %w", path, size, errors.Join(err, f.Close(), os.Remove(path)))
	}
	return f, nil
}

// noSpace reports whether err is the disk being full.
func noSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }

// setSpaceErr records (or clears, with nil) the disk-full condition.
func (s *Storage) setSpaceErr(err error) {
	s.spaceMu.Lock()
	defer s.spaceMu.Unlock()
	if err != nil && s.spaceErr == nil {
		s.log.Warn("wal: disk full; writes wait for space", "dir", s.opts.Dir, "err", err)
	}
	if err == nil && s.spaceErr != nil {
		s.log.Info("wal: disk space is back", "dir", s.opts.Dir)
	}
	s.spaceErr = err
}

// SpaceErr reports whether the store is waiting for disk space: nil when
// fine, else an error wrapping syscall.ENOSPC that names the directory.
// Writes that need the space stay queued and are retried every
// Options.RetryInterval; nothing fails because of it.
func (s *Storage) SpaceErr() error {
	s.spaceMu.Lock()
	defer s.spaceMu.Unlock()
	return s.spaceErr
}

// preallocator creates the next segment file when the committer asks,
// retrying while the disk is full, until the committer stops.
func (s *Storage) preallocator() {
	defer close(s.preDone)
	for {
		var seq uint64
		select {
		case seq = <-s.want:
		case <-s.stopped:
			return
		}
		for {
			f, err := s.createSegmentFile(seq, s.opts.SegmentSize)
			if noSpace(err) {
				s.setSpaceErr(fmt.Errorf("wal: no space in %s for the next segment: %w", s.opts.Dir, err))
				select {
				case <-time.After(s.opts.RetryInterval):
					continue
				case <-s.stopped:
					return
				}
			}
			if err == nil {
				s.setSpaceErr(nil)
			}
			s.ready <- prealloc{seq: seq, f: f, size: s.opts.SegmentSize, err: err}
			break
		}
	}
}
