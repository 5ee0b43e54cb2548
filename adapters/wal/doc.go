// Package wal is a durable node.Storage kept in a dedicated write-ahead
// log: segment files of records, and snapshot files beside them (package
// adapters/snapfile).
//
// # Writes
//
// Save queues an update for one committer goroutine, which encodes
// whatever is queued (up to Options.MaxBatchBytes, waiting up to
// Options.MaxBatchDelay for more) into one write at the end of the active
// segment (one pwrite), makes it durable with one fdatasync, and then calls
// the done callbacks in Save order. Every write is fsynced, whatever
// Update.Sync says: recovery relies on a write being durable before the
// next one starts (see the torn-write rule). A group made only of updates
// that hold a hard state and nothing else, none with Update.Sync (a commit
// index the node can learn again), is not written at all: its latest hard
// state is kept and its record goes out at the start of the next write (or
// at Load or Close), so a leader does not pay an fdatasync for every commit
// index it learns while no new entry waits; a crash may lose it, as it may
// lose any unsynced write. An update is applied as
// node.MemoryStorage applies it, in field order; one that does not fit the
// log (a gap, entry terms going down, a hard state whose commit index the
// log and snapshot cannot back or whose term is below the last entry's or
// the snapshot's, a compaction beyond its snapshot's index) completes with
// an error and writes nothing. Any other write or fsync error fails its
// update and every later one (fail-stop); nothing is retried, except the
// creation of files when the disk is full (see Disk full).
//
// # Segment files
//
// Options.Dir holds segments named <16 hex digits of the sequence
// number>.wal, each preallocated to Options.SegmentSize (fallocate, or zeros
// written) so that appends never change the file size. A segment is
// created under the name <name>.tmp ahead of need (when the active one is
// half full), by a background goroutine. Starting it writes its header and
// state record into the .tmp file, fsyncs it, renames it and fsyncs the
// directory; only then is a seal record naming it appended to the previous
// segment and fsynced, and only then does the new segment receive records.
//
// A segment starts with a 64-byte header (little-endian): magic
// "FCWALSEG", format version (4 bytes: 2; 1 is still read), 4 zero bytes, cluster ID, node ID,
// sequence number, first index (8 bytes each), the chain value it continues
// (4 bytes), 4 zero bytes, the CRC-32C of the preceding 56 bytes, 4 zero
// bytes. Records follow, 8-byte aligned:
//
//	frame    payload length (4), type (1), 3 zero bytes, offset in the
//	         segment of the write the record belongs to (4), CRC-32C of
//	         the preceding 12 bytes (4): the length and type have their
//	         own check
//	payload  then zero padding to a multiple of 8
//	trailer  CRC-32C of frame, payload and padding (4); chain value (4)
//
// The chain value is the CRC-32C of the record's checksum continued from
// the previous record's chain value; a segment's first record continues
// from its header CRC, and a header carries the chain value of the previous
// segment's last record before its seal. So a record cannot be dropped,
// reordered or spliced from elsewhere unnoticed, within or across segments.
//
// Record types (payloads use unsigned varints):
//
//	1 state      first record of every segment: hard state, flags, snapshot
//	             reference, first live entry index, next index, last term.
//	             It makes the segment stand alone once older ones are gone.
//	2 entries    first index, count, then per entry term, type, data
//	3 hard state term, vote, commit
//	4 snapshot   kind (1 leader snapshot: replaces the log; 2 local:
//	             compacts), compaction index, snapshot reference (metadata,
//	             file name, data CRC and size)
//	5 truncation drop the entries at and above an index; written before
//	             entries that overwrite a conflicting suffix, so an index
//	             going back is corruption unless a truncation says so
//	6 seal       the segment ends; number and header CRC of the next one
//	7 write end  no payload; ends every write (format version 2): the
//	             records of a write apply only with it
//
// The committer keeps an in-memory index of the log (runs of entries of one
// term in one segment), so truncation and release never scan. After a
// write that changed the snapshot, snapshot files other than the current
// one are removed (the new one was written, fsynced and read back and
// verified before its record), and then the oldest segments none of whose
// entries is still in the log; never the active segment. When an update
// fails, the snapshot files written for it (and for the updates of its
// group not yet written) are removed if no write was ever started with a
// record referring to them; a file whose record a failed write may have
// put on disk is kept, and recovery decides (it keeps the file the
// verified log refers to and removes the others).
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
// LocalSnapshot: the committer commits the file (rest of the data,
// trailer, header, fsync, rename to snap-<index>-<term>.snap, directory
// fsync, read back and verified: the file snapfile.Write makes of the same
// snapshot, byte for byte), then writes the same snapshot record and
// compacts and releases by the same rules. An update whose file is not one
// of this store's, has failed or was aborted, or that also carries data,
// fails without failing the store; whenever an update with a file fails,
// the file is removed, unless a write holding its record was started (see
// above). SnapshotData serves the data of the stored snapshot
// (local, streamed or not, or a leader's), read and verified, from the
// moment its write is durable; a snapshot superseded meanwhile is still
// read whole (its file is opened before it can be removed). It takes its
// own lock, never waiting for a write in progress.
//
// # Recovery rules
//
// Open reads every segment and checks every record, then the snapshot file;
// the first Load after Open returns what Open read, later ones read the log
// again.
//
//   - Write without its end (format version 2). The records of a write
//     are applied only when its write-end record is read. In the last
//     segment, records of a write without its end, before a torn write or
//     the end of the log, are a write a power cut interrupted (nothing of
//     it was acknowledged): they are zeroed with the tail, and a WARN says
//     so. Elsewhere (before a seal, or a record of another write) it is
//     corruption. State and seal records are writes of their own.
//     Version 1 segments, which have no write-end records, are still read
//     with each record standing alone, and records this version appends to
//     them too.
//   - Torn write. In the last segment, a damaged record with nothing
//     valid after it, that runs into a never-written sector (the part of
//     the record within some 512-byte aligned sector is all zero; a
//     record's frame and trailer never are) or
//     past the end of the file, is the evidence a crash leaves in a write
//     that was never acknowledged: it is zeroed, with everything after it,
//     and a WARN names the file and offset. Non-zero bytes after the end of
//     the log (an all-zero frame) with no valid record among them are zeroed
//     the same way. A record "valid after it" is a self-consistent record
//     (frame check and checksum) belonging to a later write (its write
//     offset lies beyond the damaged record); records of the same write may
//     have reached the disk out of order and do not count.
//   - A damaged record without that evidence (a flipped byte in a complete
//     record, even the last), a self-consistent record out of place in the
//     chain, a damaged record followed by a later write, a bad or foreign
//     segment header (other cluster or node ID), a missing segment (a gap
//     in the numbers, a seal naming a segment that is not there, entries
//     that only a removed segment could hold), a segment not sealed but
//     followed by another, a state record that disagrees with the log
//     before it, entries that leave a gap, overlap or go back without a
//     truncation record, entry terms that decrease, a hard state whose
//     commit index the log and snapshot cannot back or whose term is below
//     the last entry's or the snapshot's, and a snapshot file that does not
//     match its reference: Open refuses with an error wrapping ErrCorrupt
//     naming the file, the offset and what is wrong.
//   - Recovery deletes or rewrites only what it proved redundant: .tmp
//     files (never referenced: segments being created, snapshot files
//     being written, streamed ones included, whole or not), snapshot files
//     the verified log does not refer to (committed, but their record was
//     never written), the torn tail above, and a last segment holding only its
//     state record when the previous segment lacks its seal (a rotation
//     interrupted before the seal was durable: the state record copies what
//     the previous segment holds).
//
// Residual ambiguity: a record whose payload itself holds a whole 512-byte
// aligned sector of zeros, damaged by a flipped byte while it is in the last
// write of the log, looks like a torn write and is cut off. Raft entries
// rarely hold such runs; avoiding it entirely would need the payload
// whitened.
//
// # Disk full
//
// ENOSPC while creating or extending a segment file, or while writing a
// snapshot file, does not fail the update or the store: the write stays
// queued and is retried every Options.RetryInterval, and SpaceErr reports
// the condition. Since the next segment is created when the active one is
// half full, SpaceErr usually reports it while writes still succeed. A
// streamed snapshot file is retried the same way when its commit fails in
// writing its last buffered data, trailer or header, or in its rename: the
// bytes are still in memory and are written again at their offsets. It
// cannot be retried once its fsync has failed (the kernel may have dropped
// the pages it could not write and report the next fsync as a success;
// the data, streamed, is no longer in memory to be written again): the
// update fails like any other I/O failure. ENOSPC while the node writes
// the data (the file's Write, on the node's goroutine) is returned to the
// node, which aborts the file; the store does not fail.
//
// # NoSync
//
// Options.NoSync turns every fsync off. It is UNSAFE: acknowledged writes
// may be lost on a power failure or an operating system crash, and recovery
// may then refuse the store. Use it only for tests and benchmarks.
package wal
