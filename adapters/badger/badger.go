// Package badgerstore is a durable node.Storage (and node.SnapshotStore)
// kept in a Badger database (github.com/dgraph-io/badger/v4) and in
// snapshot files beside it.
//
// Options.Dir holds the Badger database in the subdirectory "db", the
// guard file "commit.guard" and the snapshot files
// snap-<index>-<term>.snap. The records, the group commit, the guard file
// and what Open verifies are those of package adapters/internal/kvlog:
// every record carries a CRC-32C, and Open refuses (with an error wrapping
// ErrCorrupt that names the damaged key and the database's files, or the
// snapshot or guard file) a store that is damaged or holds less than it
// acknowledged.
//
// Each commit is one Badger transaction, opened with SyncWrites: Badger
// fsyncs its write-ahead log (and value log) before the commit returns
// (Options.NoSync turns that off: UNSAFE). Badger cuts its write-ahead log
// at the first bad record on replay and opens without an error; the guard
// file is what notices the lost commits. Open first opens the database
// read-only, without compactions, reads everything back and runs Badger's
// table checksum verification (DB.VerifyChecksum), then reopens it for
// writing. Before the read-only open every table is opened and verified
// on the caller's goroutine (checkTables): Badger opens tables on its own
// goroutines, where a damaged block can crash the process, and it skips a
// table whose checksum fails with only a log line. After a crash Badger must cut its preallocated write-ahead log
// at the end of the valid records, which a read-only open cannot do: Open
// then skips the read-only pass, and the checks after the read-write open
// (the guard's included) decide; a refusal then stays a refusal, since the
// guard file still records the lost commits. Values are read with their value-log checksums verified, and
// table blocks are verified as they are read.
//
// Badger does not fsync the directory when it creates a file (see
// dirsync.go): the store fsyncs it after a commit that created files, and
// Open repairs what a power cut leaves of an unsynced creation (an empty
// memtable WAL or value-log file, removed; a level-0 table the MANIFEST
// names whose file is gone, dropped from the MANIFEST so that its
// memtable WAL is replayed again), logging a warning for each.
//
// A transaction holds at most 15% of Options.MemTableSize (Badger's
// limit): groups are capped below that, and a single update larger than
// the cap fails (and with it the store).
package badgerstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/forge-consensus/consensus/adapters/internal/kvlog"
	"github.com/forge-consensus/consensus/core"
)

// ErrCorrupt is wrapped by the errors of Open and Load when stored data
// fails verification.
var ErrCorrupt = kvlog.ErrCorrupt

// ErrClosed is wrapped by the errors of operations on a closed Storage.
var ErrClosed = kvlog.ErrClosed

// DBSubdir is the subdirectory of Options.Dir that holds the database.
const DBSubdir = "db"

// Defaults of Options.
const (
	DefaultValueLogFileSize = 64 << 20
	DefaultValueThreshold   = 1 << 20
	DefaultMemTableSize     = 64 << 20
)

// Options configures a Storage.
type Options struct {
	// Dir is the data directory, created if missing.
	Dir string
	// NoSync turns every fsync off. UNSAFE: acknowledged writes may be
	// lost on a power failure or an operating system crash.
	NoSync bool
	// BatchDelay is how long the committer waits, once a Save is queued,
	// for more Saves to merge into the same transaction (group commit).
	BatchDelay time.Duration
	// BatchBytes stops merging Saves into a transaction once it reaches
	// this many bytes. 0 means a quarter of Badger's transaction limit
	// (15% of MemTableSize), at most 4 MiB.
	BatchBytes int
	// ValueLogFileSize is the size of each value-log file, in bytes:
	// 1 MiB to 2 GiB - 1. 0 means DefaultValueLogFileSize.
	ValueLogFileSize int64
	// ValueThreshold: values of at least this many bytes go to the value
	// log, smaller ones stay in the LSM tree. 0 means
	// DefaultValueThreshold (1 MiB, the most Badger allows: every entry of
	// a usual size stays in the tree), or 15% of MemTableSize if smaller. Values in the value log are
	// reclaimed by value-log garbage collection, run every minute.
	ValueThreshold int64
	// MemTableSize is the size of each memtable, in bytes; it bounds a
	// transaction (15% of it). 0 means DefaultMemTableSize.
	MemTableSize int64
	// Logger receives warnings (and Badger's messages at DEBUG). Nil
	// discards them.
	Logger *slog.Logger
}

// Storage is a durable node.Storage and node.SnapshotStore in a Badger
// database. Its methods may be called from any goroutine.
type Storage = kvlog.Storage

// Open opens the store in o.Dir, creating it if missing, and verifies
// everything stored (see the package documentation).
func Open(o Options) (*Storage, error) {
	cfg, err := kvConfig(o)
	if err != nil {
		return nil, err
	}
	return kvlog.Open(cfg)
}

// Read reads and verifies what the store in o.Dir holds, as Open does,
// through a read-only open: nothing on disk is changed or created (only
// o.Dir, the sizes and o.Logger are used). A database that a crash left
// to be recovered by a read-write open is refused (kvlog.ErrNeedsRecovery):
// start the node on it once first.
func Read(o Options) (core.Persisted, error) {
	cfg, err := kvConfig(o)
	if err != nil {
		return core.Persisted{}, err
	}
	return kvlog.Read(cfg)
}

// kvConfig checks o, fills its defaults and returns the store's kvlog
// configuration.
func kvConfig(o Options) (kvlog.Config, error) {
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.ValueThreshold == 0 {
		o.ValueThreshold = min(DefaultValueThreshold, o.MemTableSize*15/100)
	}
	switch {
	case o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30:
		return kvlog.Config{}, fmt.Errorf("badger storage: value log file size %d out of range [1 MiB, 2 GiB)", o.ValueLogFileSize)
	case o.MemTableSize < 1<<20:
		return kvlog.Config{}, fmt.Errorf("badger storage: memtable size %d below 1 MiB", o.MemTableSize)
	case o.ValueThreshold < 0 || o.ValueThreshold > DefaultValueThreshold || o.ValueThreshold > o.MemTableSize*15/100:
		return kvlog.Config{}, fmt.Errorf("badger storage: value threshold %d out of range (0, min(1 MiB, 15%% of the memtable size)]", o.ValueThreshold)
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = int(min(4<<20, o.MemTableSize*15/100/4))
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dbDir := filepath.Join(o.Dir, DBSubdir)
	return kvlog.Config{
		Name:       "badger storage",
		Dir:        o.Dir,
		NoSync:     o.NoSync,
		BatchDelay: o.BatchDelay,
		BatchBytes: o.BatchBytes,
		Logger:     logger,
		Files:      func() []string { return dbFiles(dbDir) },
		OpenEngine: func(readOnly bool) (kvlog.Engine, error) {
			return openEngine(dbDir, readOnly, o, logger)
		},
	}, nil
}

// dbFiles lists the files of the database directory.
func dbFiles(dbDir string) []string {
	des, err := os.ReadDir(dbDir)
	if err != nil {
		return []string{dbDir}
	}
	var out []string
	for _, de := range des {
		if n := de.Name(); n != "LOCK" {
			out = append(out, filepath.Join(dbDir, n))
		}
	}
	sort.Strings(out)
	return out
}

// engine is a kvlog.Engine over a Badger database.
type engine struct {
	db   *badger.DB
	dir  string
	stop chan struct{}
	wg   sync.WaitGroup
	// dirs fsyncs dir after a commit that created files (nil with NoSync
	// or read-only).
	dirs *dirSyncer
}

// openEngine opens the database in dir.
func openEngine(dir string, readOnly bool, o Options, logger *slog.Logger) (*engine, error) {
	if readOnly {
		if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); errors.Is(err, os.ErrNotExist) {
			return &engine{dir: dir}, nil // nothing stored yet
		}
		if err := checkTables(dir); err != nil {
			return nil, err
		}
	}
	if !o.NoSync {
		if err := repairCut(dir, readOnly, logger); err != nil {
			return nil, err
		}
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(!o.NoSync).
		WithReadOnly(readOnly).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithValueThreshold(o.ValueThreshold).
		WithMemTableSize(o.MemTableSize).
		WithVerifyValueChecksum(true).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{logger})
	if readOnly {
		opts = opts.WithNumCompactors(0)
	}
	db, err := badger.Open(opts)
	if readOnly && err != nil && strings.Contains(err.Error(), "Log truncate required") {
		return nil, fmt.Errorf("open badger database %s read-only: %w: %w", dir, kvlog.ErrNeedsRecovery, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open badger database %s: %w", dir, err)
	}
	e := &engine{db: db, dir: dir, stop: make(chan struct{})}
	if !readOnly && !o.NoSync {
		// The memtable WAL and value-log file Badger created as it opened
		// are not all in a synced directory yet.
		e.dirs = &dirSyncer{dir: dir}
		if err := e.dirs.sync(); err != nil {
			return nil, errors.Join(err, db.Close())
		}
	}
	if !readOnly {
		e.wg.Add(1)
		go e.gc()
	}
	return e, nil
}

// gc runs value-log garbage collection every minute until Close.
func (e *engine) gc() {
	defer e.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			for e.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// View calls fn with a read-only transaction.
func (e *engine) View(fn func(r kvlog.Reader) error) error {
	if e.db == nil {
		return fn(reader{})
	}
	return e.db.View(func(txn *badger.Txn) error { return fn(reader{txn: txn}) })
}

// Commit applies w in one transaction, which Badger fsyncs (SyncWrites).
func (e *engine) Commit(w *kvlog.Write) error {
	txn := e.db.NewTransaction(true)
	defer txn.Discard()
	for _, kv := range w.Sets {
		if err := txn.Set(kv.K, kv.V); err != nil {
			return err
		}
	}
	for _, k := range w.Deletes {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	if e.dirs != nil {
		// A commit that filled the memtable went to a new WAL file.
		return e.dirs.sync()
	}
	return nil
}

// Check verifies the checksums of every table.
func (e *engine) Check() error {
	if e.db == nil {
		return nil
	}
	if err := e.db.VerifyChecksum(); err != nil {
		return fmt.Errorf("badger table checksums in %s: %w", e.dir, err)
	}
	return nil
}

// Close stops garbage collection and closes the database.
func (e *engine) Close() error {
	if e.db == nil {
		return nil
	}
	if e.stop != nil {
		close(e.stop)
		e.wg.Wait()
	}
	return e.db.Close()
}

// reader reads a transaction (none: an empty store).
type reader struct{ txn *badger.Txn }

// Get returns a copy of key's value.
func (r reader) Get(key []byte) ([]byte, bool, error) {
	if r.txn == nil {
		return nil, false, nil
	}
	item, err := r.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	return v, err == nil, err
}

// Scan calls fn for every key in [from, to).
func (r reader) Scan(from, to []byte, keysOnly bool, fn func(k, v []byte) error) error {
	if r.txn == nil {
		return nil
	}
	io := badger.DefaultIteratorOptions
	io.PrefetchValues = false
	it := r.txn.NewIterator(io)
	defer it.Close()
	for it.Seek(from); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if string(k) >= string(to) {
			break
		}
		var v []byte
		if !keysOnly {
			var err error
			if v, err = item.ValueCopy(nil); err != nil {
				return fmt.Errorf("read the value of key %x: %w", k, err)
			}
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// badgerLogger routes Badger's messages to slog: errors and warnings at
// their level, the rest at DEBUG.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
