package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/adapters/internal/groupcommit"
	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Defaults of Options.
const (
	DefaultSegmentSize   = 64 << 20
	DefaultMaxBatchBytes = 4 << 20
	DefaultRetryInterval = time.Second
	minSegmentSize       = 4 << 10
	maxSegmentSize       = 1 << 30
)

// Options configures a Storage.
type Options struct {
	// Dir is the data directory, created if missing: segment files and
	// snapshot files.
	Dir string
	// ClusterID and NodeID are written into every segment header; a
	// segment with other IDs is foreign and refused.
	ClusterID, NodeID uint64
	// SegmentSize is the size segment files are preallocated to; 0 means
	// 64 MiB. It must be between 4 KiB and 1 GiB.
	SegmentSize int64
	// MaxBatchDelay is how long the committer waits, once a Save is
	// queued, for more to merge into one write. With 0 it writes as soon as
	// it is free, merging whatever was queued meanwhile.
	MaxBatchDelay time.Duration
	// MaxBatchBytes stops merging Saves into one write once reached
	// (estimated). 0 means 4 MiB.
	MaxBatchBytes int
	// RetryInterval is how often a write waiting for disk space retries;
	// 0 means 1 s.
	RetryInterval time.Duration
	// NoSync turns every fsync off. UNSAFE: acknowledged writes may be
	// lost on a power failure or an operating system crash, and recovery
	// may then refuse the store. Tests and benchmarks only.
	NoSync bool
	// Logger receives warnings (torn writes cut off, disk full). Nil
	// discards them.
	Logger *slog.Logger

	// allocHook, when set (tests), runs before a segment file is
	// allocated; an error from it is the allocation's.
	allocHook func(size int64) error
	// commitHook, when set (tests), runs before a streamed snapshot file
	// is committed; an error from it is the commit's.
	commitHook func() error
}

// Stats counts the work done by a Storage.
type Stats struct {
	Writes    uint64 // writes (one pwrite each)
	Syncs     uint64 // fdatasyncs of those writes
	Updates   uint64 // updates written (done called with nil)
	Bytes     uint64 // bytes of records and snapshot files written
	Rotations uint64 // segments started
	Released  uint64 // segments removed after compaction
}

// Storage is a durable node.Storage kept in a dedicated write-ahead log. Its
// methods may be called from any goroutine.
type Storage struct {
	opts Options
	log  *slog.Logger

	stopped chan struct{} // the committer returned
	want    chan uint64   // to the preallocator: create this segment
	ready   chan prealloc // from the preallocator
	preDone chan struct{}

	queue *groupcommit.Queue[request] // Saves waiting for the committer

	// ioMu is held by the committer while it writes and by Load.
	ioMu   sync.Mutex
	st     logState
	segs   []*segment // oldest first; the last is active
	failed error
	buf    []byte
	enc    []byte // the committer's scratch space for entries records
	// opened is what Open read, served to the first Load if nothing was
	// written since (a node loads right after opening): the log is read
	// once, not twice.
	opened     *core.Persisted
	nextWanted bool
	// pendingHS is a hard state saved without Sync and not written yet
	// (see deferHardState).
	pendingHS *core.HardState

	spaceMu  sync.Mutex
	spaceErr error

	// served is the snapshot SnapshotData serves (the stored one, once
	// durable). The committer publishes it before it removes the file of
	// the one it supersedes.
	served snapfile.Served

	closeOnce sync.Once
	closeErr  error

	writes, syncs, updates, bytes, rotations, released atomic.Uint64

	// inflight counts the Saves queued or being written whose done
	// callbacks have not all returned.
	inflight atomic.Int64
}

// request is one queued Save.
type request struct {
	u    *node.Update
	done func(error)
}

// Open opens the log in o.Dir, creating it if missing, and verifies
// everything stored by the recovery rules of the package documentation.
// A damaged store fails Open with an error wrapping ErrCorrupt that names
// the file, the offset and what is wrong.
func Open(o Options) (*Storage, error) {
	switch {
	case o.Dir == "":
		return nil, errors.New("wal: Options.Dir is empty")
	case o.SegmentSize == 0:
		o.SegmentSize = DefaultSegmentSize
	case o.SegmentSize < minSegmentSize || o.SegmentSize > maxSegmentSize:
		return nil, fmt.Errorf("wal: Options.SegmentSize %d is not between %d and %d", o.SegmentSize, minSegmentSize, maxSegmentSize)
	}
	if o.MaxBatchDelay < 0 || o.MaxBatchBytes < 0 || o.RetryInterval < 0 {
		return nil, errors.New("wal: negative Options.MaxBatchDelay, MaxBatchBytes or RetryInterval")
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Storage{
		opts: o, log: logger,
		queue: groupcommit.New[request](o.MaxBatchDelay, o.MaxBatchBytes), stopped: make(chan struct{}),
		want: make(chan uint64, 1), ready: make(chan prealloc, 1), preDone: make(chan struct{}),
	}
	if err := s.open(); err != nil {
		for _, g := range s.segs {
			if g.f != nil {
				g.f.Close()
			}
		}
		return nil, err
	}
	go s.preallocator()
	go s.run()
	return s, nil
}

// open recovers the store in the directory.
func (s *Storage) open() error {
	dir := s.opts.Dir
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("wal: create data directory: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) && !s.opts.NoSync {
		if err := snapfile.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return fmt.Errorf("wal: sync parent directory: %w", err)
		}
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wal: list data directory: %w", err)
	}
	var files []segFile
	var snaps []string
	removed := false
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, segSuffix+tmpSuffix) || snapfile.IsTemp(name):
			// Never referenced by any record: redundant.
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("wal: remove left-over file: %w", err)
			}
			s.log.Info("wal: removed left-over temporary file", "file", name)
			removed = true
		case snapfile.ValidName(name):
			snaps = append(snaps, name)
		default:
			if seq, ok := parseSegName(name); ok {
				files = append(files, segFile{seq: seq, name: name, limit: -1})
			}
		}
	}
	if removed && !s.opts.NoSync {
		if err := snapfile.SyncDir(dir); err != nil {
			return fmt.Errorf("wal: sync data directory: %w", err)
		}
	}
	if len(files) == 0 {
		if len(snaps) > 0 {
			return fmt.Errorf("wal: %s: %w: snapshot files (%s) but no log segment", dir, ErrCorrupt, strings.Join(snaps, ", "))
		}
		f, err := s.createSegmentFile(1, s.opts.SegmentSize)
		if err != nil {
			return err
		}
		seg, err := s.startSegment(prealloc{seq: 1, f: f, size: s.opts.SegmentSize}, 0)
		if err != nil {
			return err
		}
		s.segs = []*segment{seg}
		return nil
	}
	slices.SortFunc(files, func(a, b segFile) int { return cmpU64(a.seq, b.seq) })
	for i := 1; i < len(files); i++ {
		if files[i].seq != files[i-1].seq+1 {
			return fmt.Errorf("wal: %s: %w: segment %s is missing (between %s and %s)", dir, ErrCorrupt,
				segName(files[i-1].seq+1), files[i-1].name, files[i].name)
		}
	}
	res, err := s.readLog(files, true, true)
	if err != nil {
		return err
	}
	snap, err := s.verifySnapshot(&res.st)
	if err != nil {
		return err
	}
	s.opened = &core.Persisted{HardState: res.st.hs, Snapshot: snap}
	if len(res.entries) > 0 {
		s.opened.Entries = res.entries
	}
	// Everything is verified: now repair what a crash left.
	rp := res.repair
	if rp.dropSeg != "" {
		if err := os.Remove(filepath.Join(dir, rp.dropSeg)); err != nil {
			return fmt.Errorf("wal: remove segment of an interrupted rotation: %w", err)
		}
		if !s.opts.NoSync {
			if err := snapfile.SyncDir(dir); err != nil {
				return fmt.Errorf("wal: sync data directory: %w", err)
			}
		}
		s.log.Warn("wal: removed a segment holding only its state record", "file", rp.dropSeg, "reason", rp.dropWhy)
	}
	last := rp.lastSeg
	f, err := os.OpenFile(filepath.Join(dir, last.name), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: open active segment: %w", err)
	}
	last.f = f
	s.segs = res.segs
	if rp.cutSeg != "" {
		zero := make([]byte, rp.cutTo-rp.cutFrom)
		_, err := f.WriteAt(zero, rp.cutFrom)
		if err == nil && !s.opts.NoSync {
			err = datasync(f)
		}
		if err != nil {
			return fmt.Errorf("wal: zero torn tail of %s: %w", rp.cutSeg, err)
		}
		s.log.Warn("wal: cut off a torn write at the end of the log",
			"file", filepath.Join(dir, rp.cutSeg), "offset", rp.cutFrom, "bytes", rp.cutTo-rp.cutFrom, "reason", rp.cutWhy)
	}
	s.st = res.st
	s.served.Publish(s.st.snap)
	// Snapshot files the log does not refer to were never acknowledged or
	// are superseded by the verified one.
	for _, name := range snaps {
		if s.st.snap != nil && name == s.st.snap.File {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("wal: remove unreferenced snapshot file: %w", err)
		}
		s.log.Info("wal: removed unreferenced snapshot file", "file", name)
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Load returns what is stored: the hard state, the snapshot (nil if none)
// with its data read and verified, and the stored entries in index order
// (entries at or below the snapshot index may be among them). It reads
// every record back and fails with an error wrapping ErrCorrupt, naming the
// file and offset, on any mismatch. It reflects the Saves whose done has
// been called.
func (s *Storage) Load() (core.Persisted, error) {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	var p core.Persisted
	if s.segs == nil {
		return p, fmt.Errorf("wal: load: %w", ErrClosed)
	}
	if s.pendingHS != nil {
		if err := s.writePending(); err != nil {
			return p, fmt.Errorf("wal: load: %w", err)
		}
	}
	if o := s.opened; o != nil {
		s.opened = nil
		return *o, nil
	}
	files := make([]segFile, len(s.segs))
	for i, g := range s.segs {
		files[i] = segFile{seq: g.seq, name: g.name, limit: g.used}
	}
	res, err := s.readLog(files, true, false)
	if err != nil {
		return p, err
	}
	snap, err := s.verifySnapshot(&res.st)
	if err != nil {
		return p, err
	}
	p.HardState, p.Snapshot = res.st.hs, snap
	if len(res.entries) > 0 {
		p.Entries = res.entries
	}
	return p, nil
}

// Save queues u to be written and returns. done is called once, after u
// is written and fsynced, or with the error that stopped it; from the
// committer goroutine, or before Save returns for a hard state alone
// without u.Sync while no earlier Save is pending. Every write is fsynced,
// whatever u.Sync (not with Options.NoSync), but a hard state alone
// without u.Sync may wait, unwritten, for the next write (see the package
// documentation). Updates are written in the order of the Save calls and
// their done callbacks called in that order. An update that does not fit
// the log (a gap, terms going down, a hard state the log cannot back, a
// compaction beyond its snapshot) fails with an error and writes nothing;
// an I/O error fails its update and every later one (fail-stop). While the
// disk is full (see SpaceErr) updates stay queued. u and its slices must
// stay unchanged until done is called. A streamed local snapshot
// (u.LocalSnapshotFile, from CreateSnapshot) is committed as the stored
// snapshot if u succeeds and removed if it fails (unless a failed write may
// have put its record on disk: recovery decides).
func (s *Storage) Save(u *node.Update, done func(error)) {
	if u == nil {
		done(errors.New("wal: save: nil update"))
		return
	}
	if s.deferNow(u, done) {
		return
	}
	s.inflight.Add(1)
	if !s.queue.Push(request{u: u, done: done}, updateSize(u)) {
		s.inflight.Add(-1)
		if u.LocalSnapshotFile != nil {
			u.LocalSnapshotFile.Abort()
		}
		done(fmt.Errorf("wal: save: %w", ErrClosed))
	}
}

// deferNow takes u at once, on the caller's goroutine, if it is an update
// the committer would not write (see deferHardState) and no earlier Save
// is queued or being written, so that the done callbacks stay in Save
// order; then it calls done before returning and reports true. It saves
// the committer's wake-up and the caller's wait for it.
func (s *Storage) deferNow(u *node.Update, done func(error)) bool {
	if !hardStateAlone(u) || s.inflight.Load() != 0 {
		return false
	}
	select {
	case <-s.queue.Closing():
		return false // Push fails it
	default:
	}
	s.ioMu.Lock()
	if s.inflight.Load() != 0 || s.segs == nil || s.failed != nil {
		s.ioMu.Unlock()
		return false
	}
	s.opened = nil
	group := [1]request{{u: u, done: done}}
	var errs [1]error
	if !s.deferHardState(group[:], errs[:], s.segs[len(s.segs)-1]) {
		s.ioMu.Unlock()
		return false
	}
	s.ioMu.Unlock()
	if errs[0] == nil {
		s.updates.Add(1)
	}
	done(errs[0])
	return true
}

func updateSize(u *node.Update) int {
	n := 64
	for i := range u.Entries {
		n += 16 + len(u.Entries[i].Data)
	}
	return n
}

// Stats returns the counters of the work done so far.
func (s *Storage) Stats() Stats {
	return Stats{
		Writes: s.writes.Load(), Syncs: s.syncs.Load(), Updates: s.updates.Load(),
		Bytes: s.bytes.Load(), Rotations: s.rotations.Load(), Released: s.released.Load(),
	}
}

// Close writes the queued Saves (calling their done callbacks; while the
// disk is full they fail instead), stops the committer and closes the
// files. Later Saves fail with ErrClosed. Calling Close again returns the
// first call's result.
func (s *Storage) Close() error {
	s.closeOnce.Do(func() {
		s.queue.Close()
		<-s.stopped
		<-s.preDone
		select {
		case p := <-s.ready:
			if p.f != nil {
				p.f.Close()
				os.Remove(filepath.Join(s.opts.Dir, segName(p.seq)+tmpSuffix))
			}
		default:
		}
		s.served.Close()
		s.ioMu.Lock()
		defer s.ioMu.Unlock()
		var errs []error
		if s.pendingHS != nil && s.failed == nil {
			if err := s.writePending(); err != nil {
				errs = append(errs, fmt.Errorf("wal: close: %w", err))
			}
		}
		for _, g := range s.segs {
			if g.f != nil {
				errs = append(errs, g.f.Close())
				g.f = nil
			}
		}
		s.segs = nil
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
