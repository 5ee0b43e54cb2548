// Package pebblestore is a durable node.Storage kept in a Pebble database
// (github.com/cockroachdb/pebble) and in snapshot files beside it.
//
// # Writes
//
// Save queues an update for one committer goroutine, which merges whatever
// is queued into one Pebble batch (group commit) and commits it with one
// WAL fsync when any update of the group asks for Sync. Every batch also
// sets the commit sequence number (key "q"), one more than the last. The
// committer hands each committed batch to a completer goroutine, which
// records the latest synced commit in the guard file (one pwrite and one
// fdatasync for all the batches waiting) and only then calls the batches'
// done callbacks, in Save order; meanwhile the committer writes the next
// batch, so Pebble's fsync of one batch overlaps the guard's fdatasync of
// the one before. A batch is atomic, so after a crash the store holds
// exactly the updates of some prefix of the Save calls, and at least every
// update whose done(nil) ran (with Sync set and Options.NoSync off).
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
// Options.Dir holds the Pebble database in the subdirectory "db", the guard
// file "commit.guard", and the snapshot data in files named
// snap-<index>-<term>.snap (decimal; a second snapshot with the same index
// and term but other contents, which Raft never produces, is named
// snap-<index>-<term>-<n>.snap so that the file in use is never
// overwritten).
//
// Pebble keys:
//
//	"e" + 8-byte big-endian index   a log entry (core.Entry encoding)
//	"h"                             the hard state (core.HardState encoding)
//	"q"                             the commit sequence number (8 bytes)
//	"s"                             the snapshot reference: uvarint length +
//	                                core.SnapshotMeta encoding, uvarint
//	                                length + data file name, CRC-32C of the
//	                                data (4 bytes), data size (8 bytes)
//
// Every value is its CRC-32C (Castagnoli, 4 bytes big-endian) followed by
// the bytes it covers. Error messages name keys as "e/<16 hex digits>"
// (the big-endian index bytes, followed by the index in decimal), "h", "q"
// and "s".
//
// The guard file is two 4096-byte slots, written alternately in place. A
// slot holds the magic "FCGUARD1", the commit sequence number of the latest
// synced commit and a summary of the state that commit left (first and last
// log index, last entry's term, hard state, snapshot index and term), a
// CRC-32C of those 80 bytes, and zeros. A new store creates it (both slots)
// before its first commit; a store written before the guard existed (no
// "q" key, no guard file) gets one at its first Open.
//
// A snapshot file is a 36-byte header (magic "FCSNAPv1", index, term and
// data size as 8-byte big-endian integers, CRC-32C of those 32 bytes), the
// data, and a 12-byte trailer (CRC-32C of the data, the magic again): the
// format of package adapters/snapfile, which writes and reads them. It is
// written to <name>.tmp, fsynced, renamed, the directory fsynced, and read
// back and verified before the batch that references it is committed; the
// batch that switches to a new snapshot file is always fsynced. The
// previous file is deleted only after that batch is recorded in the guard
// file and the new file has been read back and verified again (with
// NoSync, at Close). A file written for a batch that fails before it is
// handed to Pebble is removed (no key can refer to it); one whose batch
// Pebble may have made durable is kept, and Open decides (below).
//
// # Streamed snapshots
//
// Storage is a node.SnapshotStore. CreateSnapshot creates a temporary file
// in Options.Dir, snap-stream-<16 random hex digits>.snap.tmp (created
// exclusively: it collides with no other, and no other write uses such a
// name), into which the node writes a local snapshot's data, buffered
// (snapfile.Create). It may be called while Saves are being written: it
// touches nothing the committer uses. An update with
// node.Update.LocalSnapshotFile set (and the snapshot's metadata, without
// data, in LocalSnapshot) is written as one with the data in
// LocalSnapshot: the committer commits the file in place of writing one
// (rest of the data, trailer, header, fsync, rename to
// snap-<index>-<term>.snap or the next free name, directory fsync, read
// back and verified: the file snapfile.Write makes of the same snapshot,
// byte for byte), then commits the batch that references it, with the
// same "s" key, the same compaction of the log, the same fsync, guard
// record and deletion of the previous file as above. Only the last
// snapshot of a batch is stored: the file of a streamed snapshot that a
// later update of the same batch supersedes is removed. So is the file of
// every update that fails, alone (its file is not one of this store's, has
// failed, was committed or aborted, or the update also carries data or
// does not fit the log: the store goes on) or with the store, unless the
// file was committed and its batch handed to Pebble (above: Open decides).
// As for a snapshot written whole, a failure to commit the file (ENOSPC
// included) fails the update and the store (fail-stop): this store does
// not wait out a full disk, unlike adapters/wal. SnapshotData serves the
// data of the stored snapshot (local, streamed or not, or a leader's),
// read and verified, from the moment the batch that records it is
// committed, and the one Open found; a snapshot superseded meanwhile is
// still read whole (its file is opened before the completer can delete
// it). It takes its own lock, never waiting for a write in progress.
//
// # What Open guarantees
//
// A store that holds less than it acknowledged, or holds it damaged, is
// refused: Open fails with an error wrapping ErrCorrupt that names the
// damaged file (or key), and changes nothing on disk. In order:
//
//   - The guard file is read. One bad slot with the other valid is a crash
//     during a guard write: the valid slot is used and a WARN is logged.
//     Two bad slots, or a file of the wrong size, are corruption.
//   - The database is opened read-only (Pebble replays its WAL in memory
//     and writes nothing), everything is read back and checked (below), and
//     the commit sequence number is compared with the guard's. Pebble treats
//     a bad record in its last WAL file as the end of the log, and a bad
//     record in its MANIFEST as the end of the MANIFEST, and opens without
//     an error (it logs "stopped reading at offset" at INFO); the guard is
//     what notices. A database behind the guard ("replayed to commit X
//     (last index ...), but the guard file says commit Y was acknowledged
//     (last index ...)") is refused, naming Pebble's WAL and MANIFEST
//     files; so is a database at the guard's commit whose state differs
//     from the guard's summary, a missing guard file beside a database that
//     has a sequence number, and a missing database beside a guard that
//     records a commit. A database ahead of the guard is a crash between
//     Pebble's fsync and the guard's, and is accepted.
//   - Every table is then read whole (Pebble's CheckLevels), so that a bad
//     block in data no longer live is found now, not by a later compaction.
//   - Only then is the database opened for writing, read and checked again,
//     and the redundant files deleted: leftover temporary files (streamed
//     snapshot files never committed among them), and snapshot files of an
//     index at or below the verified snapshot in use. An unreferenced
//     snapshot file of a higher index (a crash between writing or
//     committing it and committing its reference) is kept, with a WARN,
//     and never served: the snapshot in use is the one the database
//     refers to.
//
// Errors Pebble returns at open or while the store is read (block checksum
// mismatches, a malformed MANIFEST, CURRENT or OPTIONS file) wrap
// ErrCorrupt too, unless they come from the environment (permissions, a
// lock held by another process, no space); the paths of the tables Pebble
// names by number, or of the files Pebble reads at open, are added. A panic
// Pebble raises on the caller's goroutine (its Logger.Fatalf, or a runtime
// error on damaged data) during Open, Load, the commit of a batch or Close
// is recovered and returned as an error wrapping ErrCorrupt. Raised on one
// of Pebble's own goroutines (a flush or compaction failing to write its
// MANIFEST, an invariant violation found by a compaction), it cannot be
// recovered and ends the process; Open's checks make such damage unlikely
// to be met there first.
//
// The single-byte corruption campaign of package adapters/storagetest
// (any byte of any file of a stopped node's directory) checks this: every
// flip ends in a refusal naming a file or in a store that holds exactly
// what it acknowledged.
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
// # Cost
//
// The guard adds one fdatasync per synced commit, after Pebble's fsync: a
// single client waiting for each write sees about twice the latency
// (BenchmarkGuardCost measures both, interleaved); under many clients the
// guard's sync overlaps the next batch's commit (BenchmarkGuardCostGrouped).
//
// # NoSync
//
// Options.NoSync turns every fsync off (Pebble's WAL, the snapshot files
// and the guard file, which is then written only by Close, after Pebble's
// Close has synced its WAL). It is UNSAFE: writes acknowledged with
// done(nil) may be lost on a power failure or an operating system crash,
// and after one the store may fail verification; Raft's guarantees then no
// longer hold. Use it only for tests and benchmarks.
package pebblestore
