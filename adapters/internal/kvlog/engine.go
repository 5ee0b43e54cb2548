// Package kvlog is a durable node.Storage on top of a transactional
// key-value engine: the part the Bolt and Badger backends
// (adapters/bolt, adapters/badger) share. An engine adapter supplies a
// handful of operations (Engine); kvlog supplies the record layout,
// per-record checksums, the guard file, group commit, snapshot files
// (adapters/snapfile, streamed or whole) and the verification at Open.
//
// # Writes
//
// Save queues an update for one committer goroutine, which merges whatever
// is queued into one engine transaction (group commit, adapters/internal/
// groupcommit), commits it (the engine fsyncs before the commit returns,
// unless NoSync), records the commit in the guard file (pwrite and
// fdatasync) and only then calls the updates' done callbacks, in Save
// order. A transaction is atomic, so after a crash the store holds exactly
// the updates of some prefix of the Save calls, and at least every update
// whose done(nil) ran. Updates are applied as node.MemoryStorage applies
// them; one whose entries would leave a gap, or that could not be read
// back, fails alone and writes nothing. Any I/O error fails its update and
// every later one (fail-stop).
//
// # Records
//
// Engine keys:
//
//	"e" + 8-byte big-endian index   a log entry (core.Entry encoding)
//	"m"                             the meta record: commit sequence
//	                                number, log bounds first..last and the
//	                                last entry's term, the hard state, and
//	                                the snapshot file's reference
//	                                (snapfile.Ref: metadata, file name,
//	                                data CRC and size)
//
// Every value is its CRC-32C (4 bytes big-endian) followed by the bytes it
// covers. The log is exactly the entries first..last named by the meta
// record, every one of which must be present: entry keys outside those
// bounds (compacted, or overwritten by a shorter suffix) are garbage,
// never read, and deleted a few hundred per commit, so that no
// transaction grows with the size of a compaction.
//
// # What Open guarantees
//
// The engine is first opened read-only: the meta record and every entry
// it names are read and checked (CRC, decoding, the index in each entry
// matching its key, no entry missing, the last entry's term), the engine's
// own structures are checked (Engine.Check) and the commit sequence
// number is compared with the guard file's; a store behind the guard, or
// at the guard's commit with another state, is refused. Only then is the
// engine opened for writing and read again. Any failure is an error
// wrapping ErrCorrupt that names the damaged key and the engine's files,
// or the snapshot file or guard file; panics (and memory faults in mapped
// files) raised on the caller's goroutine are recovered into such errors.
package kvlog

// Engine is a transactional key-value store under a Storage. Its methods
// are called from one goroutine at a time, except View, which may run
// beside Commit and must see a consistent state.
type Engine interface {
	// View calls fn with a consistent read-only view of the store.
	View(fn func(r Reader) error) error
	// Commit applies w atomically: after a crash the store holds all of
	// it or none of it. Unless the engine was opened with sync off, w is
	// durable (fsynced) when Commit returns nil.
	Commit(w *Write) error
	// Check verifies the engine's own structures (page or block
	// checksums, free lists), reading everything it holds.
	Check() error
	// Close closes the engine.
	Close() error
}

// Reader reads a consistent view.
type Reader interface {
	// Get returns a copy of key's value, or ok false if absent.
	Get(key []byte) (v []byte, ok bool, err error)
	// Scan calls fn for every key in [from, to), in order. k and v are
	// valid during the call only; with keysOnly v is nil.
	Scan(from, to []byte, keysOnly bool, fn func(k, v []byte) error) error
}

// Write is a set of changes committed at once: Sets, in order (a later
// Set of a key wins), then Deletes.
type Write struct {
	Deletes [][]byte
	Sets    []KV
}

// KV is a key and its value.
type KV struct{ K, V []byte }

// Bytes returns the number of key and value bytes w writes.
func (w *Write) Bytes() int {
	n := 0
	for _, k := range w.Deletes {
		n += len(k)
	}
	for _, kv := range w.Sets {
		n += len(kv.K) + len(kv.V)
	}
	return n
}
