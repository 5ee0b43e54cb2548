package server

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/node"
)

// DefaultMinFreeSpace is storage.min_free_space when unset: 64 MiB.
const DefaultMinFreeSpace = 64 << 20

// spacePollInterval is how often the free-space guard reads the file
// system's free space.
const spacePollInterval = time.Second

// NoSpaceError says the node refuses writes for lack of space in its
// storage directory. It matches node.ErrNoSpace and syscall.ENOSPC with
// errors.Is.
type NoSpaceError struct {
	// Dir is the storage directory.
	Dir string
	// Free is the space left for the node's user, in bytes.
	Free uint64
	// Need is storage.min_free_space, in bytes.
	Need uint64
	// Cause is the storage's own report (its SpaceErr), if that is why.
	Cause error
}

func (e *NoSpaceError) Error() string {
	msg := fmt.Sprintf("no space left on device in %s, %d bytes free, need %d", e.Dir, e.Free, e.Need)
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns node.ErrNoSpace, syscall.ENOSPC and the cause.
func (e *NoSpaceError) Unwrap() []error {
	errs := []error{node.ErrNoSpace, syscall.ENOSPC}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// spaceReporter is a storage that can say it is out of space while its
// writes wait for space (adapters/wal, adapters/pebble).
type spaceReporter interface{ SpaceErr() error }

// spaceGuard refuses writes while the storage directory has less than
// min free bytes, or while the storage reports it is out of space. It reads
// the free space every spacePollInterval; Raft's own traffic (appends from
// the leader, hard state) is never refused and uses the reserve.
type spaceGuard struct {
	dir     string
	min     uint64
	storage spaceReporter // nil if the storage cannot tell
	log     *slog.Logger

	err  atomic.Pointer[NoSpaceError] // nil while writes are admitted
	stop chan struct{}
	done chan struct{}
}

// newSpaceGuard checks dir once and starts polling it.
func newSpaceGuard(dir string, min uint64, storage any, log *slog.Logger) *spaceGuard {
	g := &spaceGuard{dir: dir, min: min, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	g.storage, _ = storage.(spaceReporter)
	g.poll()
	go g.run()
	return g
}

func (g *spaceGuard) run() {
	defer close(g.done)
	t := time.NewTicker(spacePollInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.poll()
		}
	}
}

// poll reads the free space and the storage's report, and logs changes.
func (g *spaceGuard) poll() {
	var st syscall.Statfs_t
	if err := syscall.Statfs(g.dir, &st); err != nil {
		g.log.Warn("free-space check failed", "dir", g.dir, "err", err)
		return // keep the last verdict
	}
	free := st.Bavail * uint64(st.Bsize)
	var cause error
	if g.storage != nil {
		cause = g.storage.SpaceErr()
	}
	var now *NoSpaceError
	if free < g.min || cause != nil {
		now = &NoSpaceError{Dir: g.dir, Free: free, Need: g.min, Cause: cause}
	}
	was := g.err.Swap(now)
	switch {
	case now != nil && was == nil:
		g.log.Warn("storage is out of space: refusing writes, serving reads", "dir", g.dir,
			"free", free, "need", g.min, "cause", cause)
	case now == nil && was != nil:
		g.log.Info("storage has space again: accepting writes", "dir", g.dir, "free", free, "need", g.min)
	}
}

// Admit returns nil, or the *NoSpaceError that refuses writes.
func (g *spaceGuard) Admit() error {
	if e := g.err.Load(); e != nil {
		return e
	}
	return nil
}

// Close stops polling.
func (g *spaceGuard) Close() {
	close(g.stop)
	<-g.done
}

// admitWrite is the node's AdmitWrite: it refuses writes while the storage
// is short of space.
func (s *Server) admitWrite() error {
	if s.space == nil {
		return nil
	}
	return s.space.Admit()
}

// spaceCheck is the health check of storage space.
func (s *Server) spaceCheck() admin.Check {
	c := admin.Check{Name: "storage_space", Healthy: true}
	if err := s.admitWrite(); err != nil {
		c.Healthy, c.Message = false, err.Error()+"; writes are refused, reads are served"
	}
	return c
}
