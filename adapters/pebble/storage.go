package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// defaultBatchBytes is the group size used when Options.BatchBytes is 0.
const defaultBatchBytes = 4 << 20

// dbSubdir is the subdirectory of Options.Dir that holds the database.
const dbSubdir = "db"

// Options configures a Storage.
type Options struct {
	// Dir is the data directory, created if missing. It holds the Pebble
	// database (in the subdirectory "db") and the snapshot files.
	Dir string
	// NoSync turns every fsync off. UNSAFE: acknowledged writes may be lost
	// on a power failure or an operating system crash. Off by default.
	NoSync bool
	// BatchDelay is how long the committer waits, once a Save is queued,
	// for more Saves to merge into the same batch (group commit). With 0
	// it commits as soon as it is free, merging whatever was queued
	// meanwhile. The wait ends early when BatchBytes is reached or on
	// Close.
	BatchDelay time.Duration
	// BatchBytes stops merging Saves into a group once it reaches this
	// many bytes (estimated from entry and snapshot sizes). 0 means 4 MiB.
	BatchBytes int
	// Logger receives warnings and Pebble's messages. Nil discards them.
	Logger *slog.Logger
}

// Stats counts the work done by a Storage.
type Stats struct {
	// Commits is the number of Pebble batches committed.
	Commits uint64
	// Syncs is the number of those batches that were fsynced.
	Syncs uint64
	// Updates is the number of updates written (done called with nil).
	Updates uint64
	// Bytes is the number of bytes written: batch sizes plus snapshot files.
	Bytes uint64
}

// Storage is a durable node.Storage. Its methods may be called from any
// goroutine.
type Storage struct {
	opts   Options
	log    *slog.Logger
	db     *pebble.DB
	signal chan struct{} // a Save was queued (capacity 1)
	// closing is closed by Close: the committer drains the queue and stops.
	closing chan struct{}
	stopped chan struct{} // closed when the committer has returned

	mu          sync.Mutex
	queue       []request
	queuedBytes int
	closed      bool

	// readMu orders Load against the deletion of snapshot files and the
	// closing of the database.
	readMu   sync.Mutex
	dbClosed bool

	closeOnce sync.Once
	closeErr  error

	// Owned by the committer goroutine (and by Open before it starts).
	state    logState
	failed   error    // the first I/O error: every later write fails
	obsolete []string // snapshot files to delete once a synced commit covers their replacement
	scratch  []byte

	commits, syncs, updates, bytes atomic.Uint64
	spaceErr                       atomic.Pointer[error] // see SpaceErr
}

// request is one queued Save.
type request struct {
	u    *node.Update
	done func(error)
	size int
}

// logState is what the committer knows of the stored state: enough to
// check and apply updates as node.MemoryStorage does.
type logState struct {
	hasSnap     bool
	snapIndex   uint64
	ref         snapRef // the snapshot file in use, when hasSnap
	hasEntries  bool
	first, last uint64 // the stored log is first..last, when hasEntries
}

// Open opens the store in o.Dir, creating it if missing, and verifies
// everything stored (see Load): a corrupt store fails Open with an error
// naming the bad key or file. Snapshot files left unreferenced by a crash
// are deleted.
func Open(o Options) (*Storage, error) {
	if o.Dir == "" {
		return nil, errors.New("pebble storage: Options.Dir is empty")
	}
	if o.BatchDelay < 0 {
		return nil, fmt.Errorf("pebble storage: negative Options.BatchDelay %v", o.BatchDelay)
	}
	if o.BatchBytes < 0 {
		return nil, fmt.Errorf("pebble storage: negative Options.BatchBytes %d", o.BatchBytes)
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = defaultBatchBytes
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	_, statErr := os.Stat(o.Dir)
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("pebble storage: create data directory: %w", err)
	}
	s := &Storage{
		opts:    o,
		log:     logger,
		signal:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	db, err := pebble.Open(filepath.Join(o.Dir, dbSubdir), &pebble.Options{
		Logger: pebbleLogger{logger}, EventListener: s.eventListener(),
	})
	if err != nil {
		return nil, fmt.Errorf("pebble storage: open database in %s: %w", o.Dir, err)
	}
	if !o.NoSync {
		// Make the database directory's entry durable, and the data
		// directory's if it was just created.
		err := syncDir(o.Dir)
		if err == nil && errors.Is(statErr, os.ErrNotExist) {
			err = syncDir(filepath.Dir(filepath.Clean(o.Dir)))
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("pebble storage: sync data directory: %w", err), closeDB(db))
		}
	}
	s.db = db
	p, ref, err := s.load()
	if err != nil {
		return nil, errors.Join(err, closeDB(db))
	}
	s.state = stateOf(&p, ref)
	if err := s.removeOrphans(); err != nil {
		return nil, errors.Join(err, closeDB(db))
	}
	go s.run()
	return s, nil
}

func closeDB(db *pebble.DB) error {
	if err := db.Close(); err != nil {
		return fmt.Errorf("pebble storage: close database: %w", err)
	}
	return nil
}

// stateOf returns the log state of what load returned.
func stateOf(p *core.Persisted, ref *snapRef) logState {
	var st logState
	if ref != nil {
		st.hasSnap, st.snapIndex, st.ref = true, ref.meta.Index, *ref
	}
	if n := len(p.Entries); n > 0 {
		st.hasEntries, st.first, st.last = true, p.Entries[0].Index, p.Entries[n-1].Index
	}
	return st
}

// removeOrphans deletes the snapshot files and temporary files in the data
// directory that the database does not reference.
func (s *Storage) removeOrphans() error {
	names, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("pebble storage: list data directory: %w", err)
	}
	for _, de := range names {
		name := de.Name()
		if !strings.HasPrefix(name, snapPrefix) ||
			!(strings.HasSuffix(name, snapSuffix) || strings.HasSuffix(name, snapSuffix+tmpSuffix)) {
			continue
		}
		if s.state.hasSnap && name == s.state.ref.file {
			continue
		}
		if err := os.Remove(filepath.Join(s.opts.Dir, name)); err != nil {
			return fmt.Errorf("pebble storage: remove unreferenced snapshot file: %w", err)
		}
		s.log.Info("pebble storage: removed unreferenced snapshot file", "file", name)
	}
	return nil
}

// Load returns what is stored: the hard state, the snapshot (nil if none)
// with its data read from its file, and every stored log entry in index
// order (entries at or below the snapshot index may be among them). It
// verifies what it reads and fails with an error wrapping ErrCorrupt,
// naming the key or file, on any mismatch. It reflects the Saves whose done
// has been called.
func (s *Storage) Load() (core.Persisted, error) {
	p, _, err := s.load()
	return p, err
}

// load reads and verifies everything stored; it also returns the snapshot
// reference (nil if none).
func (s *Storage) load() (core.Persisted, *snapRef, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	var p core.Persisted
	if s.dbClosed {
		return p, nil, fmt.Errorf("pebble storage: load: %w", ErrClosed)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()

	hs, ok, err := get(snap, hardStateKey)
	if err != nil {
		return p, nil, err
	}
	if ok {
		if err := p.HardState.UnmarshalBinary(hs); err != nil {
			return p, nil, corruptKey([]byte(hardStateKey), "%v", err)
		}
	}

	var ref *snapRef
	sv, ok, err := get(snap, snapshotKey)
	if err != nil {
		return p, nil, err
	}
	if ok {
		r, err := decodeSnapRef(sv)
		if err != nil {
			return p, nil, corruptKey([]byte(snapshotKey), "%v", err)
		}
		ref = &r
		path := filepath.Join(s.opts.Dir, r.file)
		b, err := os.ReadFile(path)
		if err != nil {
			return p, nil, fmt.Errorf("pebble storage: read snapshot file: %w", err) // err names the file
		}
		data, err := checkSnapFile(b, &r)
		if err != nil {
			return p, nil, fmt.Errorf("pebble storage: corrupt snapshot file %s: %w: %v", path, ErrCorrupt, err)
		}
		p.Snapshot = &core.Snapshot{Meta: r.meta}
		if len(data) > 0 {
			p.Snapshot.Data = data[:len(data):len(data)]
		}
	}

	it, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: []byte(entryLower),
		UpperBound: []byte(entryUpper),
	})
	if err != nil {
		return p, nil, fmt.Errorf("pebble storage: read log: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		if len(key) != entryKeyLen {
			return p, nil, errors.Join(corruptKey(key, "entry key of %d bytes", len(key)), it.Close())
		}
		v, err := openValue(key, it.Value())
		if err == nil {
			err = s.decodeEntry(key, v, &p)
		}
		if err != nil {
			return p, nil, errors.Join(err, it.Close())
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return p, nil, fmt.Errorf("pebble storage: read log: %w", err)
	}
	return p, ref, nil
}

// decodeEntry decodes the checked value v of the entry key and appends the
// entry to p, checking that it continues the log.
func (s *Storage) decodeEntry(key, v []byte, p *core.Persisted) error {
	var e core.Entry
	if err := e.UnmarshalBinary(v); err != nil {
		return corruptKey(key, "%v", err)
	}
	index := binary.BigEndian.Uint64(key[1:])
	if e.Index != index {
		return corruptKey(key, "holds the entry of index %d", e.Index)
	}
	if n := len(p.Entries); n > 0 && p.Entries[n-1].Index+1 != index {
		return corruptKey(key, "the log has a gap: the previous entry is %d", p.Entries[n-1].Index)
	}
	p.Entries = append(p.Entries, e)
	return nil
}

// get returns the checked value of key (a copy), or ok false if absent.
func get(r pebble.Reader, key string) (v []byte, ok bool, err error) {
	raw, closer, err := r.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pebble storage: read key %s: %w", key, err)
	}
	defer closer.Close()
	body, err := openValue([]byte(key), raw)
	if err != nil {
		return nil, false, err
	}
	return append([]byte(nil), body...), true, nil
}

// Save queues u to be written and returns. done is called once, from the
// committer goroutine, after u is committed (and fsynced if u.Sync, unless
// Options.NoSync), or with the error that stopped it; after Close it is
// called at once with an error wrapping ErrClosed. Updates are written in
// the order of the Save calls, and their done callbacks called in that
// order. u and its slices must stay unchanged until done is called.
//
// done runs on the committer goroutine, which waits for it to return. A
// node.Node is not safe for concurrent use, so its host must hand the
// completion to the goroutine that drives the node (runner.Runner does).
func (s *Storage) Save(u *node.Update, done func(error)) {
	if u == nil {
		done(errors.New("pebble storage: save: nil update"))
		return
	}
	size := updateSize(u)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		done(fmt.Errorf("pebble storage: save: %w", ErrClosed))
		return
	}
	s.queue = append(s.queue, request{u: u, done: done, size: size})
	s.queuedBytes += size
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// updateSize estimates the bytes u adds to a batch.
func updateSize(u *node.Update) int {
	n := 64
	for i := range u.Entries {
		n += 32 + len(u.Entries[i].Data)
	}
	if u.Snapshot != nil {
		n += len(u.Snapshot.Data)
	}
	if u.LocalSnapshot != nil {
		n += len(u.LocalSnapshot.Data)
	}
	return n
}

// Stats returns the counters of the work done so far.
func (s *Storage) Stats() Stats {
	return Stats{
		Commits: s.commits.Load(),
		Syncs:   s.syncs.Load(),
		Updates: s.updates.Load(),
		Bytes:   s.bytes.Load(),
	}
}

// Close writes the queued Saves (calling their done callbacks), stops the
// committer and closes the database. Later Saves fail with ErrClosed.
// Calling Close again returns the first call's result.
func (s *Storage) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		<-s.stopped
		s.readMu.Lock()
		s.dbClosed = true
		err := closeDB(s.db)
		s.readMu.Unlock()
		if err == nil {
			// Closing the database flushed and synced its log: the
			// snapshot files replaced by unsynced commits can go.
			s.deleteObsolete()
		}
		s.closeErr = err
	})
	return s.closeErr
}

// pebbleLogger routes Pebble's messages to slog.
type pebbleLogger struct{ l *slog.Logger }

// Infof logs an informational message from Pebble.
func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf panics with Pebble's fatal error, as Pebble expects Fatalf not to
// return; whoever recovers it reports it. The committer recovers the panic of a failed commit
// (see applyBatch) and fails the write with the error, which wraps Pebble's
// cause (syscall.ENOSPC for a full disk).
func (p pebbleLogger) Fatalf(format string, args ...any) {
	panic(fatalError{fatalErr(format, args...)})
}
