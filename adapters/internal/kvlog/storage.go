package kvlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/adapters/internal/groupcommit"
	"github.com/forge-consensus/consensus/adapters/internal/guard"
	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// defaultBatchBytes is the group size used when Config.BatchBytes is 0.
const defaultBatchBytes = 4 << 20

// garbagePerCommit bounds the garbage entry keys one commit deletes.
const garbagePerCommit = 512

// Config configures a Storage.
type Config struct {
	// Name prefixes every error and log message ("bolt storage").
	Name string
	// Dir is the data directory, created if missing: it holds the guard
	// file and the snapshot files (and, as the engine decides, the
	// engine's files).
	Dir string
	// NoSync turns the guard's and the snapshot files' fsyncs off (the
	// engine must be opened with its own off too). UNSAFE.
	NoSync bool
	// BatchDelay is how long the committer waits, once a Save is queued,
	// for more to merge into the same transaction (group commit).
	BatchDelay time.Duration
	// BatchBytes stops merging Saves into a group once it reaches this
	// many bytes. 0 means 4 MiB.
	BatchBytes int
	// Logger receives warnings. Nil discards them.
	Logger *slog.Logger
	// OpenEngine opens the engine. With readOnly it must change nothing
	// on disk.
	OpenEngine func(readOnly bool) (Engine, error)
	// Files returns the paths of the engine's files, named in the errors
	// that report damage the engine does not locate itself.
	Files func() []string
	// IsCorrupt reports whether an error of the engine (from OpenEngine,
	// View, Check) is damage of the stored bytes. Nil: every error that
	// does not come from the environment (permissions, locks, space).
	IsCorrupt func(err error) bool
}

// Stats counts the work done by a Storage.
type Stats struct {
	// Commits is the number of engine transactions committed.
	Commits uint64
	// Updates is the number of updates written (done called with nil).
	Updates uint64
	// Bytes is the number of key and value bytes committed, plus
	// snapshot files.
	Bytes uint64
}

// Storage is a durable node.Storage and node.SnapshotStore over an Engine.
// Its methods may be called from any goroutine.
type Storage struct {
	cfg    Config
	log    *slog.Logger
	eng    Engine
	guard  *guard.File
	queue  *groupcommit.Queue[request]
	served snapfile.Served

	stopped chan struct{}

	mu     sync.Mutex
	failed error

	// readMu orders Load against the deletion of snapshot files and the
	// closing of the engine.
	readMu    sync.Mutex
	engClosed bool

	closeOnce sync.Once
	closeErr  error

	// Owned by the committer goroutine (and by Open before it starts).
	state   state
	garbage []span // entry keys to delete, outside the log's bounds

	commits, updates, bytes atomic.Uint64
}

// span is the entry indexes from..to (inclusive).
type span struct{ from, to uint64 }

// request is one queued Save.
type request struct {
	u    *node.Update
	done func(error)
}

var _ node.SnapshotStore = (*Storage)(nil)

// Open opens the store (see the package documentation for what it
// verifies).
func Open(cfg Config) (s *Storage, err error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%s: the data directory is empty", cfg.Name)
	}
	if cfg.BatchDelay < 0 {
		return nil, fmt.Errorf("%s: negative batch delay %v", cfg.Name, cfg.BatchDelay)
	}
	if cfg.BatchBytes < 0 {
		return nil, fmt.Errorf("%s: negative batch size %d", cfg.Name, cfg.BatchBytes)
	}
	if cfg.BatchBytes == 0 {
		cfg.BatchBytes = defaultBatchBytes
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	_, statErr := os.Stat(cfg.Dir)
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("%s: create data directory: %w", cfg.Name, err)
	}
	s = &Storage{cfg: cfg, log: logger, stopped: make(chan struct{})}
	guardPath := filepath.Join(cfg.Dir, guard.Name)
	gr, hasGuard, err := guard.Read(guardPath, ErrCorrupt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	if hasGuard && gr.Damaged != "" {
		logger.Warn(cfg.Name+": one slot of the guard file is damaged (a crash while writing it?); using the other",
			"file", guardPath, "damage", gr.Damaged, "using", gr.State.String())
	}
	check := func(st *state) error { return s.checkGuard(st, gr, hasGuard) }

	// The verification pass: read-only, so that nothing on disk changes
	// before the store is known to hold what it acknowledged.
	if err := s.verifyReadOnly(check); err != nil {
		return nil, err
	}
	eng, err := s.openEngine(false)
	if err != nil {
		return nil, err
	}
	s.eng = eng
	st, _, garbage, err := s.read(check, false, true)
	if err != nil {
		return nil, errors.Join(err, eng.Close())
	}
	s.state, s.garbage = st, garbage
	if !cfg.NoSync {
		err := durable.SyncDir(cfg.Dir)
		if err == nil && errors.Is(statErr, os.ErrNotExist) {
			err = durable.SyncDir(filepath.Dir(filepath.Clean(cfg.Dir)))
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s: sync data directory: %w", cfg.Name, err), eng.Close())
		}
	}
	if hasGuard {
		s.guard, err = guard.Open(guardPath, 1-gr.Slot, cfg.NoSync)
	} else {
		s.guard, err = guard.Create(guardPath, st.summary(), cfg.NoSync)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", cfg.Name, err), eng.Close())
	}
	if err := s.removeRedundant(); err != nil {
		return nil, errors.Join(err, s.guard.Close(), eng.Close())
	}
	if st.hasSnap {
		r := st.ref
		s.served.Publish(&r)
	}
	s.queue = groupcommit.New[request](cfg.BatchDelay, cfg.BatchBytes)
	go s.run()
	return s, nil
}

// verifyReadOnly opens the engine read-only, reads and checks everything
// and closes it.
func (s *Storage) verifyReadOnly(check func(*state) error) error {
	eng, err := s.openEngine(true)
	if errors.Is(err, ErrNeedsRecovery) {
		// A crash left the engine's log to be cut (Badger's preallocated
		// write-ahead log): only the read-write open can, and the checks
		// after it (the guard's included) still run.
		s.log.Info(s.cfg.Name+": the database needs recovery; verifying it after the read-write open", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	ro := &Storage{cfg: s.cfg, log: s.log, eng: eng}
	_, _, _, err = ro.read(check, true, false)
	if err == nil {
		err = s.guarded("check the database", eng.Check)
	}
	return errors.Join(err, eng.Close())
}

// openEngine opens the engine, classifying its errors.
func (s *Storage) openEngine(readOnly bool) (eng Engine, err error) {
	err = s.guarded("open the database", func() error {
		var err error
		eng, err = s.cfg.OpenEngine(readOnly)
		return err
	})
	return eng, err
}

// guarded runs fn, turning a panic or memory fault it raises into an
// error wrapping ErrCorrupt, and an error it returns into one wrapping
// ErrCorrupt unless it comes from the environment. Errors name the
// engine's files.
func (s *Storage) guarded(op string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %s: %w: the engine panicked: %v (files: %s)",
				s.cfg.Name, op, ErrCorrupt, r, strings.Join(s.files(), ", "))
		}
	}()
	err = fn()
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNeedsRecovery) {
		return err
	}
	corrupt := !environmental(err)
	if s.cfg.IsCorrupt != nil {
		corrupt = s.cfg.IsCorrupt(err)
	}
	if corrupt {
		return fmt.Errorf("%s: %s: %w: %w (files: %s)", s.cfg.Name, op, ErrCorrupt, err, strings.Join(s.files(), ", "))
	}
	return fmt.Errorf("%s: %s: %w", s.cfg.Name, op, err)
}

// files returns the engine's files.
func (s *Storage) files() []string {
	if s.cfg.Files == nil {
		return []string{s.cfg.Dir}
	}
	return s.cfg.Files()
}

// environmental reports whether err comes from the environment rather
// than from the stored bytes.
func environmental(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(err.Error(), "timeout") ||
		strings.Contains(err.Error(), "lock held") || strings.Contains(err.Error(), "acquire directory lock")
}

// checkGuard checks the state st read from the engine against the guard.
func (s *Storage) checkGuard(st *state, gr guard.Found, hasGuard bool) error {
	guardPath := filepath.Join(s.cfg.Dir, guard.Name)
	got := st.summary()
	if !hasGuard {
		if st.seq > 0 {
			return fmt.Errorf("%s: %w: the guard file %s is missing, but the database holds commit %d (%s; files: %s)",
				s.cfg.Name, ErrCorrupt, guardPath, st.seq, got, strings.Join(s.files(), ", "))
		}
		return nil
	}
	want := gr.State
	switch {
	case got.Seq < want.Seq:
		return fmt.Errorf("%s: %w: the database holds commit %d (last index %d, hard state commit %d), "+
			"but the guard file %s says commit %d was acknowledged (last index %d, hard state commit %d): "+
			"the database lost acknowledged writes; one of these files is damaged: %s (database: %s; guard: %s)",
			s.cfg.Name, ErrCorrupt, got.Seq, got.Last, got.HardState.Commit, guardPath, want.Seq, want.Last, want.HardState.Commit,
			strings.Join(s.files(), ", "), got, want)
	case got.Seq == want.Seq && got != want:
		return fmt.Errorf("%s: %w: the database at commit %d holds %s, but the guard file %s says it held %s (files: %s)",
			s.cfg.Name, ErrCorrupt, got.Seq, got, guardPath, want, strings.Join(s.files(), ", "))
	}
	return nil
}

// corruptKey returns the error for a bad record at key.
func (s *Storage) corruptKey(key []byte, format string, args ...any) error {
	return fmt.Errorf("%s: %w: bad record at key %s: %s (files: %s)",
		s.cfg.Name, ErrCorrupt, keyName(key), fmt.Sprintf(format, args...), strings.Join(s.files(), ", "))
}

// Load returns what is stored: the hard state, the snapshot (nil if none)
// with its data read from its file, and the log entries. It verifies
// everything it reads and fails with an error wrapping ErrCorrupt, naming
// the key or file, on any mismatch. It reflects the Saves whose done has
// been called.
func (s *Storage) Load() (core.Persisted, error) {
	_, p, _, err := s.read(nil, true, false)
	return p, err
}

// read reads and checks the meta record and the log, and calls check (if
// not nil) with the state before the snapshot file is read. With withData
// it reads the entries' and the snapshot's data into p; with findGarbage
// it lists the entry keys outside the log's bounds.
func (s *Storage) read(check func(*state) error, withData, findGarbage bool) (st state, p core.Persisted, garbage []span, err error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.engClosed {
		return st, p, nil, fmt.Errorf("%s: load: %w", s.cfg.Name, ErrClosed)
	}
	err = s.guarded("read the database", func() error {
		return s.eng.View(func(r Reader) error {
			var err error
			st, err = s.readState(r, &p)
			if err != nil {
				return err
			}
			if findGarbage {
				garbage, err = s.findGarbage(r, &st)
			}
			return err
		})
	})
	if err != nil {
		return st, p, nil, err
	}
	if check != nil {
		if err := check(&st); err != nil {
			return st, p, nil, err
		}
	}
	p.HardState = st.hs
	if st.hasSnap {
		if !withData {
			if err := snapfile.Verify(s.cfg.Dir, &st.ref); err != nil {
				return st, p, nil, s.snapError(err)
			}
		} else {
			data, err := snapfile.Read(s.cfg.Dir, &st.ref)
			if err != nil {
				return st, p, nil, s.snapError(err)
			}
			p.Snapshot = &core.Snapshot{Meta: st.ref.Meta}
			if len(data) > 0 {
				p.Snapshot.Data = data[:len(data):len(data)]
			}
		}
	}
	if !withData {
		p = core.Persisted{}
	}
	return st, p, garbage, nil
}

// snapError wraps an error reading the snapshot file in use.
func (s *Storage) snapError(err error) error {
	if errors.Is(err, snapfile.ErrCorrupt) || errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w: %w", s.cfg.Name, ErrCorrupt, err)
	}
	return fmt.Errorf("%s: %w", s.cfg.Name, err)
}

// readState reads the meta record and the entries it names into p.
func (s *Storage) readState(r Reader, p *core.Persisted) (state, error) {
	var st state
	mv, ok, err := r.Get([]byte(metaKey))
	if err != nil {
		return st, err
	}
	if !ok {
		return st, nil
	}
	body, err := unseal(mv)
	if err == nil {
		st, err = decodeMeta(body)
	}
	if err != nil {
		return st, s.corruptKey([]byte(metaKey), "%v", err)
	}
	if !st.hasEntries {
		return st, nil
	}
	n := st.last - st.first + 1
	if n > 1<<40 {
		return st, s.corruptKey([]byte(metaKey), "log bounds %d..%d", st.first, st.last)
	}
	if n < 1<<20 {
		p.Entries = make([]core.Entry, 0, n)
	}
	next := st.first
	err = r.Scan(entryKey(st.first), entryKey(st.last+1), false, func(k, v []byte) error {
		if len(k) != entryKeyLen || k[0] != entryPrefix {
			return s.corruptKey(k, "not an entry key")
		}
		index := binary.BigEndian.Uint64(k[1:])
		if index != next {
			return s.corruptKey(entryKey(next), "missing (the next key holds index %d)", index)
		}
		b, err := unseal(v)
		if err != nil {
			return s.corruptKey(k, "%v", err)
		}
		var e core.Entry
		if err := e.UnmarshalBinary(b); err != nil {
			return s.corruptKey(k, "%v", err)
		}
		if e.Index != index {
			return s.corruptKey(k, "holds the entry of index %d", e.Index)
		}
		if e.Type != core.EntryNormal && e.Type != core.EntryConfChange {
			return s.corruptKey(k, "entry of unknown type %v", e.Type)
		}
		p.Entries = append(p.Entries, e)
		next++
		return nil
	})
	if err != nil {
		return st, err
	}
	if next != st.last+1 {
		return st, s.corruptKey(entryKey(next), "missing (the log is %d..%d)", st.first, st.last)
	}
	if t := p.Entries[len(p.Entries)-1].Term; t != st.lastTerm {
		return st, s.corruptKey(entryKey(st.last), "last entry of term %d, the meta record says %d", t, st.lastTerm)
	}
	return st, nil
}

// findGarbage lists the entry keys outside st's log, as spans.
func (s *Storage) findGarbage(r Reader, st *state) ([]span, error) {
	var out []span
	add := func(k, _ []byte) error {
		if len(k) != entryKeyLen {
			return nil // not ours; never read
		}
		i := binary.BigEndian.Uint64(k[1:])
		if n := len(out); n > 0 && out[n-1].to+1 == i {
			out[n-1].to = i
		} else {
			out = append(out, span{i, i})
		}
		return nil
	}
	if !st.hasEntries {
		return out, r.Scan(entryLower, entryUpper, true, add)
	}
	if err := r.Scan(entryLower, entryKey(st.first), true, add); err != nil {
		return nil, err
	}
	if st.last < 1<<64-1 {
		return out, r.Scan(entryKey(st.last+1), entryUpper, true, add)
	}
	return out, nil
}

// removeRedundant deletes leftover temporary files and snapshot files of
// an index at or below the snapshot in use; it keeps (with a warning)
// newer unreferenced ones.
func (s *Storage) removeRedundant() error {
	des, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("%s: list data directory: %w", s.cfg.Name, err)
	}
	for _, de := range des {
		name := de.Name()
		if name == guard.Name+durable.TempSuffix {
			if err := os.Remove(filepath.Join(s.cfg.Dir, name)); err != nil {
				return fmt.Errorf("%s: remove temporary file: %w", s.cfg.Name, err)
			}
			continue
		}
		if !strings.HasPrefix(name, snapfile.Prefix) || (s.state.hasSnap && name == s.state.ref.File) {
			continue
		}
		switch index, ok := snapNameIndex(name); {
		case snapfile.IsTemp(name):
		case !snapfile.ValidName(name):
			continue
		case ok && s.state.hasSnap && index <= s.state.ref.Meta.Index:
		default:
			s.log.Warn(s.cfg.Name+": keeping a snapshot file the database does not reference", "file", name)
			continue
		}
		if err := os.Remove(filepath.Join(s.cfg.Dir, name)); err != nil {
			return fmt.Errorf("%s: remove redundant snapshot file: %w", s.cfg.Name, err)
		}
	}
	return nil
}

// snapNameIndex returns the snapshot index in a snapshot file name.
func snapNameIndex(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, snapfile.Prefix)
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(strings.TrimSuffix(rest, ".snap"), "-")
	var index uint64
	if _, err := fmt.Sscan(digits, &index); err != nil {
		return 0, false
	}
	return index, true
}

// Save queues u to be written and returns. done is called once, from the
// committer goroutine, after u is committed (fsynced unless NoSync) and
// recorded in the guard file, or with the error that stopped it; after
// Close at once with an error wrapping ErrClosed. Updates are written,
// and their done callbacks called, in the order of the Save calls. u must
// stay unchanged until done is called. A streamed snapshot file in
// u.LocalSnapshotFile is the store's from then on.
func (s *Storage) Save(u *node.Update, done func(error)) {
	if u == nil {
		done(fmt.Errorf("%s: save: nil update", s.cfg.Name))
		return
	}
	if !s.queue.Push(request{u: u, done: done}, updateSize(u)) {
		if u.LocalSnapshotFile != nil {
			u.LocalSnapshotFile.Abort()
		}
		done(fmt.Errorf("%s: save: %w", s.cfg.Name, ErrClosed))
	}
}

// updateSize estimates the bytes u adds to a transaction.
func updateSize(u *node.Update) int {
	n := 64
	for i := range u.Entries {
		n += 48 + len(u.Entries[i].Data)
	}
	return n
}

// Stats returns the counters of the work done so far.
func (s *Storage) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Updates: s.updates.Load(), Bytes: s.bytes.Load()}
}

// Close writes the queued Saves (calling their done callbacks), stops the
// committer and closes the engine and the guard file. Later Saves fail
// with ErrClosed. Calling Close again returns the first call's result.
func (s *Storage) Close() error {
	s.closeOnce.Do(func() {
		s.queue.Close()
		<-s.stopped
		s.served.Close()
		s.readMu.Lock()
		s.engClosed = true
		err := s.guarded("close the database", s.eng.Close)
		s.readMu.Unlock()
		s.closeErr = errors.Join(err, s.guard.Close())
	})
	return s.closeErr
}

// failure returns the first write failure, or nil.
func (s *Storage) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// setFailed records err as the write failure if none is recorded yet.
func (s *Storage) setFailed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = err
	}
}

// Read reads and verifies what the store of cfg holds, as Open does
// (against the guard file too), through a read-only open of the engine:
// it changes nothing on disk and creates nothing. A database that needs
// the recovery only a read-write open does (a crash cut Badger's log) is
// refused with an error wrapping ErrNeedsRecovery. Another process must
// not have the store open for writing.
func Read(cfg Config) (core.Persisted, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(cfg.Dir); err != nil {
		return core.Persisted{}, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	gr, hasGuard, err := guard.Read(filepath.Join(cfg.Dir, guard.Name), ErrCorrupt)
	if err != nil {
		return core.Persisted{}, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	s := &Storage{cfg: cfg, log: logger}
	eng, err := s.openEngine(true)
	if err != nil {
		return core.Persisted{}, err
	}
	ro := &Storage{cfg: cfg, log: logger, eng: eng}
	_, p, _, err := ro.read(func(st *state) error { return s.checkGuard(st, gr, hasGuard) }, true, false)
	return p, errors.Join(err, eng.Close())
}
