package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble"
)

// fatalError is what pebbleLogger.Fatalf panics with: Pebble's fatal
// error, kept as an error so that the committer can recover it and fail
// the write with a clear message instead of crashing the process.
type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }
func (f fatalError) Unwrap() error { return f.err }

// SpaceErr returns a non-nil error, wrapping syscall.ENOSPC, while Pebble's
// background work (flushes, compactions) fails for lack of space, and nil
// once it succeeds again. Pebble retries that work by itself; writes may
// stall meanwhile. A commit that fails for lack of space (Pebble's write-
// ahead log cannot be written) is not reported here: Pebble cannot go on
// after it, so the write fails and the node stops (fail-stop), having
// acknowledged nothing it did not make durable.
func (s *Storage) SpaceErr() error {
	if p := s.space.err.Load(); p != nil {
		return *p
	}
	return nil
}

// spaceWatch follows Pebble's background work for lack of space. It is made
// before the database is opened, as Pebble calls its listener from then on.
type spaceWatch struct {
	dir string
	log *slog.Logger
	err atomic.Pointer[error]
}

// eventListener watches Pebble's background work for lack of space.
func (s *spaceWatch) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			if errors.Is(err, syscall.ENOSPC) {
				e := fmt.Errorf("pebble storage: background work in %s: %w", s.dir, err)
				if s.err.Swap(&e) == nil {
					s.log.Warn("pebble storage: out of space; Pebble retries", "dir", s.dir, "err", err)
				}
				return
			}
			s.log.Error("pebble storage: background error", "dir", s.dir, "err", err)
		},
		FlushEnd: func(i pebble.FlushInfo) {
			if i.Err == nil {
				s.spaceCleared()
			}
		},
		CompactionEnd: func(i pebble.CompactionInfo) {
			if i.Err == nil {
				s.spaceCleared()
			}
		},
	}
}

func (s *spaceWatch) spaceCleared() {
	if s.err.Swap(nil) != nil {
		s.log.Info("pebble storage: space is back; background work succeeds", "dir", s.dir)
	}
}

// fatalErr returns Pebble's fatal error as an error wrapping the first
// error among its arguments.
func fatalErr(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	for _, a := range args {
		if e, ok := a.(error); ok {
			return &msgError{msg: msg, err: e}
		}
	}
	return errors.New(msg)
}

// msgError is a message that already quotes the error it wraps.
type msgError struct {
	msg string
	err error
}

func (e *msgError) Error() string { return e.msg }
func (e *msgError) Unwrap() error { return e.err }
