package node

import (
	"io"

	"github.com/forge-consensus/consensus/core"
)

// Storage is a node's durable state: its log, hard state and latest
// snapshot. The node calls it from the one goroutine that drives it and
// never has more than one Save outstanding.
type Storage interface {
	// Load returns what is durable: the hard state, the latest snapshot
	// (nil if none) and the log entries after it, in order. Entries at or
	// below the snapshot's index may be included; the node skips them.
	Load() (core.Persisted, error)
	// Save starts making u durable and calls done exactly once: with nil
	// when every part of u is written (and fsynced if u.Sync), or with the
	// error that stopped it. done may be called before Save returns, or
	// later from the goroutine that drives the node; never concurrently
	// with another call into the node. After a failed write the node stops
	// (fail-stop): it never retries a write or an fsync.
	Save(u *Update, done func(error))
}

// Update is one ordered write to Storage. Its parts apply in field order.
type Update struct {
	// Snapshot, when set, is a snapshot received from the leader: it
	// replaces the stored snapshot and the whole stored log.
	Snapshot *core.Snapshot
	// LocalSnapshot, when set, is a snapshot of this node's own state
	// machine: it replaces the stored snapshot, and stored entries at or
	// below CompactTo are deleted (entries after CompactTo are kept).
	LocalSnapshot *core.Snapshot
	// LocalSnapshotFile, when set, holds LocalSnapshot's data, written by
	// the node into a file from SnapshotStore.CreateSnapshot; LocalSnapshot
	// then carries the metadata only (its Data is nil). Save makes the file
	// durable and verified as the stored snapshot, or aborts it.
	LocalSnapshotFile SnapshotFile
	// CompactTo is the index up to which a LocalSnapshot compacts the log.
	CompactTo uint64
	// Entries are appended after deleting stored entries at or above
	// Entries[0].Index.
	Entries []core.Entry
	// HardState replaces the stored hard state unless it is empty.
	HardState core.HardState
	// Sync requires the write to be fsynced before done is called.
	Sync bool
}

// IsEmpty reports whether u writes nothing.
func (u *Update) IsEmpty() bool {
	return u.Snapshot == nil && u.LocalSnapshot == nil && u.LocalSnapshotFile == nil && len(u.Entries) == 0 && u.HardState.IsEmpty()
}

// SnapshotStore is a Storage that takes a local snapshot's data as a
// stream and reads a stored snapshot's data back on demand. With it and a
// state machine that is a SnapshotWriter, a node never holds its snapshot
// in memory: it streams each local snapshot into a file and loads a
// snapshot's data only to send it to a follower. Both methods are called
// from the goroutine that drives the node, possibly while a Save is in
// flight.
type SnapshotStore interface {
	// CreateSnapshot returns a new file for the data of a local snapshot.
	// The node writes the data to it, then either hands it to Save in
	// Update.LocalSnapshotFile or aborts it. Nothing is durable before
	// that Save completes.
	CreateSnapshot() (SnapshotFile, error)
	// SnapshotData returns the data of the stored snapshot with meta's
	// index and term, read back and verified; an error when no such
	// snapshot is stored (any more, or yet).
	SnapshotData(meta core.SnapshotMeta) ([]byte, error)
}

// SnapshotFile is the data of a local snapshot being written.
type SnapshotFile interface {
	io.Writer
	// Abort discards the file; Save is not called with it afterwards.
	Abort()
}

// SnapshotWriter is a StateMachine that can write its snapshot to a
// stream instead of returning it whole.
type SnapshotWriter interface {
	// WriteSnapshot writes to w exactly the bytes Snapshot would return.
	WriteSnapshot(w io.Writer) error
}

// Transport sends messages to peers. Send must not block and may lose
// messages; the protocol retries. Messages share memory with the node's log
// and must be treated as read-only.
type Transport interface {
	Send(msgs []core.Message)
}

// StateMachine is the application the log drives. The node calls it from
// one goroutine; every call must be deterministic: the same calls in the
// same order give the same results and the same state on every node.
type StateMachine interface {
	// Apply applies a committed command at log index and returns its
	// result, handed to the proposer's future. cmd shares memory with the
	// log: copy what is kept.
	Apply(index uint64, cmd []byte) any
	// Query answers a read-only query against the current state.
	Query(q []byte) (any, error)
	// Snapshot returns the whole state as bytes.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state with a snapshot's bytes.
	Restore(data []byte) error
}
