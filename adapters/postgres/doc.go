// Package pgstore is an experimental durable node.Storage kept in a
// PostgreSQL database (through github.com/jackc/pgx/v5).
//
// # Layout
//
// Each node has a schema of its own (see SchemaName: one per cluster and
// node), holding five tables. Every column is a bigint or a bytea, and every
// row carries a CRC-32C (Castagnoli) of all its other columns, including
// its key, preceded by the name of its table: Load recomputes each one and
// refuses a row that does not match, so damage done to a row (by hand, by
// a restore gone wrong, by a bug elsewhere) is found rather than served.
//
//	meta(id, version, identity, owner, crc)       one row: the format
//	                                              version (1), the identity
//	                                              given at creation
//	                                              (cluster and node) and
//	                                              the owner token of the
//	                                              process that opened it last
//	hard_state(id, term, vote, commit_index, crc) one row: the hard state
//	snapshot(id, idx, term, meta, size, chunks,   one row: the snapshot's
//	         data_crc, crc)                       metadata (core.SnapshotMeta
//	                                              encoding), its data's size,
//	                                              chunk count and CRC
//	snapshot_chunks(n, idx, term, data, crc)      the snapshot's data in
//	                                              chunks of 1 MiB
//	entries(idx, term, type, data, crc)           the log, one row an entry
//
// Errors name a damaged row as table[key] (entries[17], meta[1],
// snapshot_chunks[0]) and wrap ErrCorrupt.
//
// # Writes
//
// Save queues an update for one committer goroutine, which merges whatever
// is queued into one transaction (group commit): SET LOCAL
// synchronous_commit TO on, a check that this process still owns the
// schema (a row lock on meta, which a later Open takes over), the deletes
// and inserts of the updates (pipelined: one round trip), then COMMIT. The
// done callbacks are called, in Save order, only after COMMIT returned: with
// synchronous_commit on, PostgreSQL has then flushed the commit to its WAL.
// A transaction is atomic, so after a crash of the node, of PostgreSQL or of
// the machine the schema holds exactly the updates of a prefix of the Save
// calls, at least every one acknowledged.
//
// Any failure of a transaction (the server gone, the connection cut, a
// COMMIT whose outcome is unknown, a timeout) fails its updates and every
// later one: the store is fail-stop, as node.Storage requires, and never
// acknowledges what PostgreSQL did not commit. A restarted node reopens the
// schema and carries on from what PostgreSQL holds.
//
// An update is applied as node.MemoryStorage applies it, in field order;
// one whose entries would leave a gap completes with an error and writes
// nothing.
//
// # Ownership
//
// Open locks the meta row (waiting for any write transaction of a previous
// owner, such as a killed process's, to end), reads and verifies the whole
// schema and only then, in the same transaction, writes a new random owner
// token into meta: nothing changes in a schema that fails verification.
// Every write transaction checks the token under
// the same row lock and fails if another process has opened the schema
// since: two processes never write one schema, and a transaction of a
// killed process can never commit after its successor has loaded the
// state. Open also refuses a schema created for another identity (another
// cluster or node).
//
// This backend is experimental: its durability is PostgreSQL's (fsync on,
// synchronous_commit on, which it enforces per transaction), and a node
// stops when the server does.
package pgstore
