// Package boltstore is a durable node.Storage (and node.SnapshotStore)
// kept in a Bolt database (go.etcd.io/bbolt) and in snapshot files beside
// it.
//
// Options.Dir holds the database file "bolt.db", the guard file
// "commit.guard" and the snapshot files snap-<index>-<term>.snap. The
// records, the group commit, the guard file and what Open verifies are
// those of package adapters/internal/kvlog: every record carries a
// CRC-32C, and Open refuses (with an error wrapping ErrCorrupt that names
// the damaged key and the database file, or the snapshot or guard file) a
// store that is damaged or holds less than it acknowledged.
//
// Bolt keeps all keys in one bucket, "log". Each commit is one Bolt
// read-write transaction; Bolt fsyncs the file before the commit returns
// (Options.NoSync turns that off: UNSAFE). Bolt's data pages carry no
// checksums and its two meta pages let it fall back silently to the
// previous transaction when the newest meta page is damaged: the
// per-record CRCs and the guard file are what catch both. Open also runs
// Bolt's own consistency check (Tx.Check: every page reachable or free,
// none freed twice) on a read-only open before opening for writing, and
// recovers panics and memory faults raised by a damaged file into errors.
package boltstore

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/forge-consensus/consensus/adapters/internal/kvlog"
	"github.com/forge-consensus/consensus/core"
)

// ErrCorrupt is wrapped by the errors of Open and Load when stored data
// fails verification.
var ErrCorrupt = kvlog.ErrCorrupt

// ErrClosed is wrapped by the errors of operations on a closed Storage.
var ErrClosed = kvlog.ErrClosed

// FileName is the name of the database file in Options.Dir.
const FileName = "bolt.db"

// bucket holds every key.
var bucketName = []byte("log")

// Freelist types (Options.FreelistType).
const (
	// FreelistArray keeps Bolt's free pages in a sorted array: compact,
	// but allocation scans it (slow on a large, fragmented file).
	FreelistArray = "array"
	// FreelistMap keeps them in a hash map: faster allocation on a large
	// file, more memory.
	FreelistMap = "map"
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
	// this many bytes. 0 means 4 MiB.
	BatchBytes int
	// FreelistType is FreelistArray (the default, "" too) or FreelistMap.
	FreelistType string
	// Logger receives warnings. Nil discards them.
	Logger *slog.Logger
}

// Storage is a durable node.Storage and node.SnapshotStore in a Bolt
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
// through a read-only open: nothing on disk is changed or created.
func Read(o Options) (core.Persisted, error) {
	cfg, err := kvConfig(o)
	if err != nil {
		return core.Persisted{}, err
	}
	return kvlog.Read(cfg)
}

// kvConfig checks o and returns the store's kvlog configuration.
func kvConfig(o Options) (kvlog.Config, error) {
	var ft bolt.FreelistType
	switch o.FreelistType {
	case "", FreelistArray:
		ft = bolt.FreelistArrayType
	case FreelistMap:
		ft = bolt.FreelistMapType
	default:
		return kvlog.Config{}, fmt.Errorf("bolt storage: unknown freelist type %q (want %s or %s)", o.FreelistType, FreelistArray, FreelistMap)
	}
	path := filepath.Join(o.Dir, FileName)
	return kvlog.Config{
		Name:       "bolt storage",
		Dir:        o.Dir,
		NoSync:     o.NoSync,
		BatchDelay: o.BatchDelay,
		BatchBytes: o.BatchBytes,
		Logger:     o.Logger,
		Files:      func() []string { return []string{path} },
		OpenEngine: func(readOnly bool) (kvlog.Engine, error) {
			return openEngine(path, readOnly, o.NoSync, ft)
		},
		IsCorrupt: isCorrupt,
	}, nil
}

// isCorrupt reports whether an error of Bolt's is damage of the file.
func isCorrupt(err error) bool {
	return !errors.Is(err, bolt.ErrTimeout) && !errors.Is(err, bolt.ErrDatabaseReadOnly) && !isEnv(err)
}

// engine is a kvlog.Engine over a Bolt database.
type engine struct {
	db   *bolt.DB
	path string
}

// openEngine opens the database file at path.
func openEngine(path string, readOnly, noSync bool, ft bolt.FreelistType) (*engine, error) {
	if readOnly {
		// Nothing stored yet, or a crash while Bolt created the file
		// (before anything could be acknowledged): the read-write open
		// initialises it.
		if fi, err := statFile(path); err != nil || fi.Size() == 0 {
			return &engine{path: path}, nil
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      10 * time.Second,
		ReadOnly:     readOnly,
		NoSync:       noSync,
		NoGrowSync:   noSync,
		FreelistType: ft,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !readOnly {
		err := db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketName)
			return err
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("create bucket in %s: %w", path, err), db.Close())
		}
	}
	return &engine{db: db, path: path}, nil
}

// View calls fn with a read-only transaction.
func (e *engine) View(fn func(r kvlog.Reader) error) error {
	if e.db == nil {
		return fn(reader{})
	}
	return e.db.View(func(tx *bolt.Tx) error { return fn(reader{b: tx.Bucket(bucketName)}) })
}

// Commit applies w in one read-write transaction, which Bolt fsyncs.
func (e *engine) Commit(w *kvlog.Write) error {
	return e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return fmt.Errorf("bucket %q missing in %s", bucketName, e.path)
		}
		for _, kv := range w.Sets {
			if err := b.Put(kv.K, kv.V); err != nil {
				return err
			}
		}
		for _, k := range w.Deletes {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Check runs Bolt's consistency check.
func (e *engine) Check() error {
	if e.db == nil {
		return nil
	}
	return e.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("bolt consistency check of %s: %w", e.path, errors.Join(errs...))
		}
		return nil
	})
}

// Close closes the database.
func (e *engine) Close() error {
	if e.db == nil {
		return nil
	}
	return e.db.Close()
}

// reader reads the bucket of a transaction (none: an empty store).
type reader struct{ b *bolt.Bucket }

// Get returns a copy of key's value.
func (r reader) Get(key []byte) ([]byte, bool, error) {
	if r.b == nil {
		return nil, false, nil
	}
	v := r.b.Get(key)
	if v == nil {
		return nil, false, nil
	}
	return append([]byte(nil), v...), true, nil
}

// Scan calls fn for every key in [from, to).
func (r reader) Scan(from, to []byte, keysOnly bool, fn func(k, v []byte) error) error {
	if r.b == nil {
		return nil
	}
	c := r.b.Cursor()
	for k, v := c.Seek(from); k != nil && string(k) < string(to); k, v = c.Next() {
		if keysOnly {
			v = nil
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}
