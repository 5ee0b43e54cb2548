package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/adapters/internal/groupcommit"
	"github.com/forge-consensus/consensus/adapters/internal/guard"
	"github.com/forge-consensus/consensus/adapters/snapfile"
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

	// noGuard turns the guard file off: for the benchmark that measures
	// its cost only.
	noGuard bool
	// applyHook, when set, is called by the committer just before it hands
	// a batch to Pebble; an error fails the batch as a failed write does,
	// before anything of it can be durable. For tests only.
	applyHook func() error
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
	// GuardWrites is the number of writes (each fdatasynced, unless
	// NoSync) of the guard file.
	GuardWrites uint64
}

// Storage is a durable node.Storage, and a node.SnapshotStore (see
// CreateSnapshot and SnapshotData). Its methods may be called from any
// goroutine.
type Storage struct {
	opts  Options
	log   *slog.Logger
	db    *pebble.DB
	guard *guard.File
	// queue holds the Saves waiting for the committer; Close closes it and
	// the committer drains it and stops.
	queue *groupcommit.Queue[request]
	// completions carries committed groups from the committer to the
	// completer, which makes their commit durable in the guard file and
	// calls their done callbacks. The committer closes it when it stops.
	completions chan completion
	stopped     chan struct{} // closed when the committer and the completer have returned

	mu     sync.Mutex
	failed error // the first write failure: every later write fails

	// readMu orders Load against the deletion of snapshot files and the
	// closing of the database.
	readMu   sync.Mutex
	dbClosed bool

	// obsMu guards obsolete, shared by the committer (which adds files and
	// avoids their names) and the completer (which deletes them).
	obsMu    sync.Mutex
	obsolete []obsoleteFile

	// served is the snapshot SnapshotData serves (the stored one, once the
	// batch recording it is committed). The committer publishes it before
	// it hands the batch that superseded the old file to the completer,
	// which deletes that file.
	served snapfile.Served

	closeOnce sync.Once
	closeErr  error

	// Owned by the committer goroutine (and by Open before it starts).
	state   logState
	scratch []byte

	// Owned by the completer goroutine (and by Close after it stops).
	guarded   uint64      // the sequence number the guard file holds
	committed guard.State // the state after the latest commit

	commits, syncs, updates, bytes, guardWrites atomic.Uint64
	space                                       *spaceWatch // see SpaceErr
}

// obsoleteFile is a snapshot file replaced by the commit of sequence
// number seq by the file replacement.
type obsoleteFile struct {
	name        string
	seq         uint64
	replacement snapfile.Ref
}

// request is one queued Save.
type request struct {
	u    *node.Update
	done func(error)
}

// logState is what the committer knows of the stored state: enough to
// check and apply updates as node.MemoryStorage does, and to describe the
// state in the guard file.
type logState struct {
	seq                 uint64 // the commit sequence number of the last commit
	hasSnap             bool
	snapIndex, snapTerm uint64
	ref                 snapfile.Ref // the snapshot file in use, when hasSnap
	hasEntries          bool
	first, last         uint64 // the stored log is first..last, when hasEntries
	lastTerm            uint64 // the term of entry last
	hs                  core.HardState
}

// summary returns the guard state describing st.
func (st *logState) summary() guard.State {
	g := guard.State{Seq: st.seq, HardState: st.hs}
	if st.hasEntries {
		g.First, g.Last, g.LastTerm = st.first, st.last, st.lastTerm
	}
	if st.hasSnap {
		g.SnapIndex, g.SnapTerm = st.snapIndex, st.snapTerm
	}
	return g
}

// summary returns the guard state of p at commit seq.
func summary(seq uint64, p *core.Persisted) guard.State {
	g := guard.State{Seq: seq, HardState: p.HardState}
	if n := len(p.Entries); n > 0 {
		g.First, g.Last, g.LastTerm = p.Entries[0].Index, p.Entries[n-1].Index, p.Entries[n-1].Term
	}
	if p.Snapshot != nil {
		g.SnapIndex, g.SnapTerm = p.Snapshot.Meta.Index, p.Snapshot.Meta.Term
	}
	return g
}

// Open opens the store in o.Dir, creating it if missing, and verifies
// everything stored (see Load) against the guard file: a store that is
// corrupt, or that holds less than the guard file says was acknowledged,
// fails Open with an error wrapping ErrCorrupt that names the bad key or
// file. Nothing on disk is changed before that check passes: the database
// is first opened read-only. Then leftover temporary files, and snapshot
// files older than the one in use, are deleted.
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
	dbDir := filepath.Join(o.Dir, dbSubdir)
	guardPath := filepath.Join(o.Dir, guard.Name)
	gr, hasGuard, err := guard.Read(guardPath, ErrCorrupt)
	if err != nil {
		return nil, fmt.Errorf("pebble storage: %w", err)
	}
	if hasGuard && gr.Damaged != "" {
		logger.Warn("pebble storage: one slot of the guard file is damaged (a crash while writing it?); using the other",
			"file", guardPath, "damage", gr.Damaged, "using", gr.State.String())
	}
	if !o.noGuard {
		// Check what the database holds before Pebble may change anything
		// (a read-write open rewrites the MANIFEST and deletes the files
		// it no longer references, which would erase the evidence).
		exists, err := verifyReadOnly(o.Dir, logger, gr, hasGuard)
		if err != nil {
			return nil, err
		}
		if !exists && hasGuard && gr.State.Seq > 0 {
			return nil, fmt.Errorf("pebble storage: %w: the database %s is missing, but guard file %s says commit %d was acknowledged (%s)",
				ErrCorrupt, dbDir, guardPath, gr.State.Seq, gr.State)
		}
	}
	space := &spaceWatch{dir: o.Dir, log: logger}
	db, err := openDB(dbDir, logger, false, space.eventListener())
	if err != nil {
		return nil, err
	}
	if !o.NoSync {
		// Make the database directory's entry durable, and the data
		// directory's if it was just created.
		err := durable.SyncDir(o.Dir)
		if err == nil && errors.Is(statErr, os.ErrNotExist) {
			err = durable.SyncDir(filepath.Dir(filepath.Clean(o.Dir)))
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("pebble storage: sync data directory: %w", err), closeDB(db))
		}
	}
	s := &Storage{
		opts:        o,
		log:         logger,
		db:          db,
		queue:       groupcommit.New[request](o.BatchDelay, o.BatchBytes),
		completions: make(chan completion, 4),
		stopped:     make(chan struct{}),
		space:       space,
	}
	var check func(uint64, *core.Persisted) error
	if !o.noGuard {
		check = func(seq uint64, p *core.Persisted) error { return checkGuard(o.Dir, seq, p, gr, hasGuard) }
	}
	p, ref, seq, err := s.load(check)
	if err != nil {
		return nil, errors.Join(err, closeDB(db))
	}
	s.state = stateOf(&p, ref, seq)
	s.committed = s.state.summary()
	if ref != nil {
		r := *ref
		s.served.Publish(&r)
	}
	if !o.noGuard {
		if hasGuard {
			s.guarded = gr.State.Seq
			s.guard, err = guard.Open(guardPath, 1-gr.Slot, o.NoSync)
		} else {
			// A new store, or one written before the guard existed.
			s.guarded = seq
			s.guard, err = guard.Create(guardPath, s.committed, o.NoSync)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("pebble storage: %w", err), closeDB(db))
		}
	}
	if err := s.removeRedundant(); err != nil {
		return nil, errors.Join(err, s.closeGuard(), closeDB(db))
	}
	go s.run()
	return s, nil
}

// verifyReadOnly opens the database in dir read-only, if it exists, and
// checks everything it holds against the guard file. It reports whether
// the database exists.
func verifyReadOnly(dir string, logger *slog.Logger, gr guard.Found, hasGuard bool) (exists bool, err error) {
	dbDir := filepath.Join(dir, dbSubdir)
	if _, err := os.Stat(dbDir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	db, err := openDB(dbDir, logger, true, nil)
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	ro := &Storage{opts: Options{Dir: dir}, db: db, log: logger}
	_, _, _, err = ro.load(func(seq uint64, p *core.Persisted) error { return checkGuard(dir, seq, p, gr, hasGuard) })
	if err == nil {
		// Read every block of every table, including data no longer
		// live, so that damage anywhere is found now rather than by a
		// compaction later.
		err = checkLevels(db, dbDir)
	}
	return true, errors.Join(err, closeDB(db))
}

// checkGuard checks the state p, read from a database at commit seq,
// against the guard file.
func checkGuard(dir string, seq uint64, p *core.Persisted, gr guard.Found, hasGuard bool) error {
	dbDir := filepath.Join(dir, dbSubdir)
	guardPath := filepath.Join(dir, guard.Name)
	got := summary(seq, p)
	if !hasGuard {
		if seq > 0 {
			return fmt.Errorf("pebble storage: %w: the guard file %s is missing, but the database %s holds commit %d (%s)",
				ErrCorrupt, guardPath, dbDir, seq, got)
		}
		return nil
	}
	want := gr.State
	switch {
	case seq < want.Seq:
		return fmt.Errorf("pebble storage: %w: the database %s replayed to commit %d (last index %d, hard state commit %d), "+
			"but the guard file %s says commit %d was acknowledged (last index %d, hard state commit %d): "+
			"Pebble cut its write-ahead log or MANIFEST short; one of these files is damaged: %s (database: %s; guard: %s)",
			ErrCorrupt, dbDir, seq, got.Last, got.HardState.Commit, guardPath, want.Seq, want.Last, want.HardState.Commit,
			strings.Join(pebbleLogFiles(dbDir), ", "), got, want)
	case seq == want.Seq && got != want:
		return fmt.Errorf("pebble storage: %w: the database %s at commit %d holds %s, but the guard file %s says it held %s "+
			"(files that may be damaged: %s)",
			ErrCorrupt, dbDir, seq, got, guardPath, want, strings.Join(pebbleLogFiles(dbDir), ", "))
	}
	return nil
}

// pebbleLogFiles lists the database's write-ahead log and MANIFEST files.
func pebbleLogFiles(dbDir string) []string {
	des, err := os.ReadDir(dbDir)
	if err != nil {
		return []string{fmt.Sprintf("(cannot list %s: %v)", dbDir, err)}
	}
	var out []string
	for _, de := range des {
		if n := de.Name(); strings.HasSuffix(n, ".log") || strings.HasPrefix(n, "MANIFEST-") {
			out = append(out, filepath.Join(dbDir, n))
		}
	}
	return out
}

// openDB opens the Pebble database in dbDir, turning Pebble's errors and
// panics into errors that wrap ErrCorrupt unless they come from the
// environment (permissions, a lock held elsewhere, no space).
func openDB(dbDir string, logger *slog.Logger, readOnly bool, listener *pebble.EventListener) (db *pebble.DB, err error) {
	if listener == nil {
		listener = &pebble.EventListener{BackgroundError: func(err error) { logger.Error("pebble storage: background error", "err", err) }}
	}
	defer recoverPebble("open database in "+dbDir, &err)
	db, err = pebble.Open(dbDir, &pebble.Options{
		Logger:           pebbleLogger{logger},
		ReadOnly:         readOnly,
		ErrorIfNotExists: readOnly,
		EventListener:    listener,
	})
	if err != nil {
		err = pebbleError(dbDir, "open database in "+dbDir, err)
		if errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w (Pebble reads these files at open: %s)", err, strings.Join(metadataFiles(dbDir), ", "))
		}
		return nil, err
	}
	return db, nil
}

// metadataFiles lists the files Pebble reads to open the database in
// dbDir, besides its WAL: CURRENT, MANIFEST and OPTIONS files.
func metadataFiles(dbDir string) []string {
	des, err := os.ReadDir(dbDir)
	if err != nil {
		return []string{fmt.Sprintf("(cannot list %s: %v)", dbDir, err)}
	}
	var out []string
	for _, de := range des {
		if n := de.Name(); n == "CURRENT" || strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "OPTIONS-") {
			out = append(out, filepath.Join(dbDir, n))
		}
	}
	return out
}

// pebbleError wraps an error returned by Pebble for the database in dbDir:
// as a corruption unless it comes from the environment, or says the
// database does not exist. Pebble names tables by number ("table
// 000012"): the paths of the files it names are added.
func pebbleError(dbDir, op string, err error) error {
	if errors.Is(err, pebble.ErrDBDoesNotExist) || environmental(err) {
		return fmt.Errorf("pebble storage: %s: %w", op, err)
	}
	if files := namedFiles(dbDir, err.Error()); len(files) > 0 {
		return fmt.Errorf("pebble storage: %s: %w: %w (file %s)", op, ErrCorrupt, err, strings.Join(files, ", "))
	}
	return fmt.Errorf("pebble storage: %s: %w: %w", op, ErrCorrupt, err)
}

// fileNum matches a Pebble file number in a message.
var fileNum = regexp.MustCompile(`\b[0-9]{6}\b`)

// namedFiles returns the paths of the files of dbDir whose numbers msg
// mentions.
func namedFiles(dbDir, msg string) []string {
	var out []string
	for _, num := range fileNum.FindAllString(msg, -1) {
		m, _ := filepath.Glob(filepath.Join(dbDir, num+".*"))
		for _, f := range m {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// checkLevels reads every table of db, checking every block's checksum
// and the order of every key (Pebble's DB.CheckLevels).
func checkLevels(db *pebble.DB, dbDir string) (err error) {
	defer recoverPebble("check the tables of "+dbDir, &err)
	if err := db.CheckLevels(nil); err != nil {
		return pebbleError(dbDir, "check the tables of "+dbDir, err)
	}
	return nil
}

// environmental reports whether err comes from the environment rather
// than from the stored bytes.
func environmental(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EAGAIN) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.EROFS) ||
		strings.Contains(err.Error(), "lock held")
}

// recoverPebble, deferred, turns a panic raised by Pebble on the calling
// goroutine (its Fatalf, or a runtime error on damaged data) into *err,
// wrapping ErrCorrupt.
func recoverPebble(op string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(fatalError); ok {
		if environmental(f.err) {
			*err = fmt.Errorf("pebble storage: %s: pebble failed: %w", op, f.err)
			return
		}
		*err = fmt.Errorf("pebble storage: %s: %w: pebble failed: %w", op, ErrCorrupt, f.err)
		return
	}
	*err = fmt.Errorf("pebble storage: %s: %w: pebble panicked: %v", op, ErrCorrupt, r)
}

func closeDB(db *pebble.DB) (err error) {
	defer recoverPebble("close database", &err)
	if err := db.Close(); err != nil {
		return fmt.Errorf("pebble storage: close database: %w", err)
	}
	return nil
}

// stateOf returns the log state of what load returned.
func stateOf(p *core.Persisted, ref *snapfile.Ref, seq uint64) logState {
	st := logState{seq: seq, hs: p.HardState}
	if ref != nil {
		st.hasSnap, st.snapIndex, st.snapTerm, st.ref = true, ref.Meta.Index, ref.Meta.Term, *ref
	}
	if n := len(p.Entries); n > 0 {
		st.hasEntries, st.first, st.last, st.lastTerm = true, p.Entries[0].Index, p.Entries[n-1].Index, p.Entries[n-1].Term
	}
	return st
}

// removeRedundant deletes what Open proved redundant: temporary files
// (snapshot or guard files whose writing a crash interrupted) and snapshot
// files of an index at or below the verified snapshot in use. Other
// snapshot files are kept (with a warning): a crash between writing a
// snapshot file and committing its reference leaves one, and only a later
// snapshot proves it redundant.
func (s *Storage) removeRedundant() error {
	names, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("pebble storage: list data directory: %w", err)
	}
	for _, de := range names {
		name := de.Name()
		if name == guard.Name+durable.TempSuffix {
			if err := os.Remove(filepath.Join(s.opts.Dir, name)); err != nil {
				return fmt.Errorf("pebble storage: remove temporary file: %w", err)
			}
			continue
		}
		if !strings.HasPrefix(name, snapfile.Prefix) {
			continue
		}
		if s.state.hasSnap && name == s.state.ref.File {
			continue
		}
		var why string
		switch index, ok := snapNameIndex(name); {
		case snapfile.IsTemp(name):
			why = "temporary file"
		case !snapfile.ValidName(name):
			continue
		case ok && s.state.hasSnap && index <= s.state.snapIndex:
			why = fmt.Sprintf("older than the snapshot in use (%s)", s.state.ref.File)
		default:
			s.log.Warn("pebble storage: keeping a snapshot file the database does not reference", "file", name)
			continue
		}
		if err := os.Remove(filepath.Join(s.opts.Dir, name)); err != nil {
			return fmt.Errorf("pebble storage: remove redundant snapshot file: %w", err)
		}
		s.log.Info("pebble storage: removed redundant snapshot file", "file", name, "why", why)
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
	p, _, _, err := s.load(nil)
	return p, err
}

// load reads and verifies everything stored; it also returns the snapshot
// reference (nil if none) and the commit sequence number (0 if none). If
// check is not nil it is called with the sequence number and what the
// database holds (the snapshot without its data) before the snapshot file
// is read: a database cut short refers to an older snapshot file, and the
// guard's verdict says more than that file's absence.
func (s *Storage) load(check func(seq uint64, p *core.Persisted) error) (p core.Persisted, ref *snapfile.Ref, seq uint64, err error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.dbClosed {
		return p, nil, 0, fmt.Errorf("pebble storage: load: %w", ErrClosed)
	}
	defer recoverPebble("load", &err)
	snap := s.db.NewSnapshot()
	defer snap.Close()

	sq, ok, err := s.get(snap, seqKey)
	if err != nil {
		return p, nil, 0, err
	}
	if ok {
		if len(sq) != 8 {
			return p, nil, 0, corruptKey([]byte(seqKey), "sequence number of %d bytes", len(sq))
		}
		seq = binary.BigEndian.Uint64(sq)
	}

	hs, ok, err := s.get(snap, hardStateKey)
	if err != nil {
		return p, nil, 0, err
	}
	if ok {
		if err := p.HardState.UnmarshalBinary(hs); err != nil {
			return p, nil, 0, corruptKey([]byte(hardStateKey), "%v", err)
		}
	}

	sv, ok, err := s.get(snap, snapshotKey)
	if err != nil {
		return p, nil, 0, err
	}
	if ok {
		r, err := decodeSnapRef(sv)
		if err != nil {
			return p, nil, 0, corruptKey([]byte(snapshotKey), "%v", err)
		}
		ref = &r
	}

	it, err := snap.NewIter(&pebble.IterOptions{
		LowerBound: []byte(entryLower),
		UpperBound: []byte(entryUpper),
	})
	if err != nil {
		return p, nil, 0, pebbleError(filepath.Join(s.opts.Dir, dbSubdir), "read log", err)
	}
	// One allocation for the log rather than a slice growing (and copied)
	// millions of times.
	if n := s.entryHint(it); n > 0 {
		p.Entries = make([]core.Entry, 0, n)
	}
	if err := it.Error(); err != nil {
		return p, nil, 0, errors.Join(pebbleError(filepath.Join(s.opts.Dir, dbSubdir), "read log", err), it.Close())
	}
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()
		if len(key) != entryKeyLen {
			return p, nil, 0, errors.Join(corruptKey(key, "entry key of %d bytes", len(key)), it.Close())
		}
		v, err := openValue(key, it.Value())
		if err == nil {
			err = s.decodeEntry(key, v, &p)
		}
		if err != nil {
			return p, nil, 0, errors.Join(err, it.Close())
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return p, nil, 0, pebbleError(filepath.Join(s.opts.Dir, dbSubdir), "read log", err)
	}
	if check != nil {
		q := p
		if ref != nil {
			q.Snapshot = &core.Snapshot{Meta: ref.Meta}
		}
		if err := check(seq, &q); err != nil {
			return p, nil, 0, err
		}
	}
	if ref != nil {
		data, err := snapfile.Read(s.opts.Dir, ref)
		if err != nil {
			// err names the file. A missing file is damage too.
			if errors.Is(err, snapfile.ErrCorrupt) || errors.Is(err, os.ErrNotExist) {
				return p, nil, 0, fmt.Errorf("pebble storage: %w: %w", ErrCorrupt, err)
			}
			return p, nil, 0, fmt.Errorf("pebble storage: %w", err)
		}
		p.Snapshot = &core.Snapshot{Meta: ref.Meta}
		if len(data) > 0 {
			p.Snapshot.Data = data[:len(data):len(data)]
		}
	}
	return p, ref, seq, nil
}

// entryHint returns how many entries lie between the first and the last
// entry key, to size the slice the log is read into. It is bounded by the
// store's size on disk (an entry takes more than 4 bytes there), so that a
// damaged key cannot ask for an absurd allocation; the read checks the
// keys.
func (s *Storage) entryHint(it *pebble.Iterator) int {
	if !it.First() || len(it.Key()) != entryKeyLen {
		return 0
	}
	first := binary.BigEndian.Uint64(it.Key()[1:])
	if !it.Last() || len(it.Key()) != entryKeyLen {
		return 0
	}
	last := binary.BigEndian.Uint64(it.Key()[1:])
	if last < first {
		return 0
	}
	return int(min(last-first+1, s.db.Metrics().DiskSpaceUsage()/4))
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
func (s *Storage) get(r pebble.Reader, key string) (v []byte, ok bool, err error) {
	raw, closer, err := r.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, pebbleError(filepath.Join(s.opts.Dir, dbSubdir), "read key "+key, err)
	}
	defer closer.Close()
	body, err := openValue([]byte(key), raw)
	if err != nil {
		return nil, false, err
	}
	return append([]byte(nil), body...), true, nil
}

// Save queues u to be written and returns. done is called once, from the
// completer goroutine, after u is committed (and fsynced if u.Sync, unless
// Options.NoSync, and its commit recorded in the guard file), or with the
// error that stopped it; after Close it is
// called at once with an error wrapping ErrClosed. Updates are written in
// the order of the Save calls, and their done callbacks called in that
// order. u and its slices must stay unchanged until done is called. A
// streamed snapshot file in u.LocalSnapshotFile (from CreateSnapshot) is
// the store's from then on: committed if u is written, removed if not.
//
// done runs on the completer goroutine, which waits for it to return. A
// node.Node is not safe for concurrent use, so its host must hand the
// completion to the goroutine that drives the node (runner.Runner does).
func (s *Storage) Save(u *node.Update, done func(error)) {
	if u == nil {
		done(errors.New("pebble storage: save: nil update"))
		return
	}
	if !s.queue.Push(request{u: u, done: done}, updateSize(u)) {
		if u.LocalSnapshotFile != nil {
			u.LocalSnapshotFile.Abort()
		}
		done(fmt.Errorf("pebble storage: save: %w", ErrClosed))
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
		Commits:     s.commits.Load(),
		Syncs:       s.syncs.Load(),
		Updates:     s.updates.Load(),
		Bytes:       s.bytes.Load(),
		GuardWrites: s.guardWrites.Load(),
	}
}

// Close writes the queued Saves (calling their done callbacks), stops the
// committer, closes the database (which syncs its log) and records the
// last commit in the guard file. Later Saves fail with ErrClosed. Calling
// Close again returns the first call's result.
func (s *Storage) Close() error {
	s.closeOnce.Do(func() {
		s.queue.Close()
		<-s.stopped
		s.served.Close()
		s.readMu.Lock()
		s.dbClosed = true
		err := closeDB(s.db)
		s.readMu.Unlock()
		if err == nil && s.failure() == nil {
			// Closing the database synced its log: every commit is
			// durable, and the snapshot files they replaced can go.
			if s.guard != nil && s.committed.Seq > s.guarded {
				err = s.writeGuard(s.committed)
				if err == nil {
					s.guarded = s.committed.Seq
					s.guardWrites.Add(1)
				}
			}
			if err == nil {
				s.deleteObsolete(s.committed.Seq)
			}
		}
		s.closeErr = errors.Join(err, s.closeGuard())
	})
	return s.closeErr
}

// closeGuard closes the guard file, if open.
func (s *Storage) closeGuard() error {
	if s.guard == nil {
		return nil
	}
	if err := s.guard.Close(); err != nil {
		return fmt.Errorf("pebble storage: %w", err)
	}
	return nil
}

// writeGuard records g in the guard file (which must be open).
func (s *Storage) writeGuard(g guard.State) error {
	if err := s.guard.Write(g); err != nil {
		return fmt.Errorf("pebble storage: %w", err)
	}
	return nil
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

// pebbleLogger routes Pebble's messages to slog.
type pebbleLogger struct{ l *slog.Logger }

// Infof logs an informational message from Pebble.
func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf logs Pebble's fatal error and panics, as Pebble expects Fatalf not
// to return. The Storage recovers the panic where Pebble raises it on the
// caller's goroutine (Open, Load, the commit of a batch, Close) and turns it
// into an error (wrapping the cause Pebble gave, syscall.ENOSPC for a full
// disk); raised on one of Pebble's own goroutines (flushes and compactions)
// it ends the process.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	err := fatalErr(format, args...)
	p.l.Error(err.Error(), "component", "pebble")
	panic(fatalError{err})
}

// Read reads and verifies what the store in dir holds, as Open does
// (against the guard file too), through a read-only open of the database:
// it changes nothing on disk (a read-write open rewrites the MANIFEST),
// and creates nothing. A directory without a database is an error.
// Another process must not have the store open for writing.
func Read(dir string, logger *slog.Logger) (core.Persisted, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dbDir := filepath.Join(dir, dbSubdir)
	gr, hasGuard, err := guard.Read(filepath.Join(dir, guard.Name), ErrCorrupt)
	if err != nil {
		return core.Persisted{}, fmt.Errorf("pebble storage: %w", err)
	}
	if _, err := os.Stat(dbDir); err != nil {
		return core.Persisted{}, fmt.Errorf("pebble storage: no database: %w", err)
	}
	db, err := openDB(dbDir, logger, true, nil)
	if err != nil {
		return core.Persisted{}, err
	}
	ro := &Storage{opts: Options{Dir: dir}, db: db, log: logger}
	p, _, _, err := ro.load(func(seq uint64, p *core.Persisted) error { return checkGuard(dir, seq, p, gr, hasGuard) })
	return p, errors.Join(err, closeDB(db))
}
