// Package pebblestore is a durable node.Storage kept in a Pebble database
// (github.com/cockroachdb/pebble) and in snapshot files beside it.
//
// # Writes
//
// Save queues an update for one committer goroutine, which merges whatever
// is queued into one Pebble batch (group commit) and commits it with one
// WAL fsync when any update of the group asks for Sync. Updates are applied
// in call order and their done callbacks are called in that order, from the
// committer goroutine, once the batch is committed (and fsynced). A batch is
// atomic, so after a crash the store holds exactly the updates of some
// prefix of the Save calls, and at least every update whose done(nil) ran
// (with Sync set and Options.NoSync off).
//
// An update is applied as node.MemoryStorage applies it, in field order:
// Snapshot replaces the snapshot and deletes the whole log; LocalSnapshot
// replaces the snapshot and deletes the entries at or below CompactTo;
// Entries delete the stored entries at or above Entries[0].Index and are
// then written; a non-empty HardState replaces the stored one. An update
// whose entries would leave a gap in the log completes with an error and
// writes nothing, as with node.MemoryStorage; so do updates that could not
// be read back (entries not consecutive, an unknown entry type, snapshot
// metadata that does not decode), which node.MemoryStorage accepts. Any
// I/O error fails its update and every later one (fail-stop).
//
// # On-disk layout
//
// Options.Dir holds the Pebble database in the subdirectory "db" and the
// snapshot data in files named snap-<index>-<term>.snap (decimal; a second
// snapshot with the same index and term but other contents, which Raft
// never produces, is named snap-<index>-<term>-<n>.snap so that the file in
// use is never overwritten).
//
// Pebble keys:
//
//	"e" + 8-byte big-endian index   a log entry (core.Entry encoding)
//	"h"                             the hard state (core.HardState encoding)
//	"s"                             the snapshot reference: uvarint length +
//	                                core.SnapshotMeta encoding, uvarint
//	                                length + data file name, CRC-32C of the
//	                                data (4 bytes), data size (8 bytes)
//
// Every value is its CRC-32C (Castagnoli, 4 bytes big-endian) followed by
// the bytes it covers. Error messages name keys as "e/<16 hex digits>"
// (the big-endian index bytes, followed by the index in decimal), "h" and
// "s".
//
// A snapshot file is a 36-byte header (magic "FCSNAPv1", index, term and
// data size as 8-byte big-endian integers, CRC-32C of those 32 bytes), the
// data, and a 12-byte trailer (CRC-32C of the data, the magic again). It is
// written to <name>.tmp, fsynced, renamed and the directory fsynced before
// the batch that references it is committed; the batch that switches to a
// new snapshot file is always fsynced, after which the previous file is
// deleted. Files not referenced by the database (left by a crash) are
// deleted by Open.
//
// # Verification
//
// Open and Load read everything back and check every CRC, the decoding of
// every value, that each entry sits at the key of its index, that the log is
// contiguous, and the snapshot file (header, trailer, size, data CRC and the
// reference's CRC). Any mismatch fails them with an error wrapping
// ErrCorrupt that names the key or the file: a node must refuse to start
// rather than serve wrong data.
//
// # NoSync
//
// Options.NoSync turns every fsync off (Pebble's WAL and the snapshot
// files). It is UNSAFE: writes acknowledged with done(nil) may be lost on a
// power failure or an operating system crash, and after one the store may
// fail verification; Raft's guarantees then no longer hold. Use it only for
// tests and benchmarks.
package pebblestore
