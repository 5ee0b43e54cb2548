// Package kv is a replicated key-value state machine: the application that a
// Raft host loop applies committed commands to.
//
// A Store is deterministic. The same commands applied in the same order, at
// the same log indexes, give the same results, the same state, the same
// Snapshot bytes and the same Hash on every replica. Nothing in the package
// depends on map iteration order, time, randomness or the platform.
//
// # Commands
//
// A client request is a Command (Get, Set, Delete or compare-and-set),
// encoded with EncodeCommand and proposed to Raft. Once committed, the host
// hands the bytes to Store.Apply, which returns a Result; results travel back
// to clients encoded with EncodeResult. Linearizable reads that do not go
// through the log (ReadIndex) are answered by Store.Query.
//
// # Exactly-once
//
// A command with Seq > 0 belongs to the session of its ClientID. A client
// numbers its commands with increasing Seq and retries a command with the
// same Seq until it gets an answer. The Store remembers, per client, the last
// applied Seq and its Result: a retry of that command is answered from this
// cache without being applied again, and an older Seq is refused with
// StatusStaleSeq. A client must therefore have at most one command in flight.
//
// The number of sessions is bounded by Config.MaxSessions. When a new client
// arrives at the bound, the session least recently applied to (lowest log
// index; ties broken by lower ClientID) is evicted. An evicted client loses
// exactly-once for a retry still in flight: the retry is treated as a new
// command and applied again.
//
// # Memory
//
// By default the Store keeps every key in a map, and Snapshot returns a
// separate copy of the state. With Config.ShareSnapshots the latest
// snapshot's records are the state: they are cut into chunks of about
// 1 MiB, keys are looked up in them by binary search (over the chunks'
// first keys, then over a chunk's 4-byte record offsets), and only the
// keys changed since live in maps until the next snapshot merges them in.
//
// Snapshot and AppendSnapshot merge into one new array, and the chunks are
// then pieces of it: a host that keeps its latest snapshot (a Raft node
// does, to send it to peers) holds the state once instead of about two and
// a half times, but while a snapshot is taken the old one and the new one
// are both whole in memory. WriteSnapshot streams the snapshot to an
// io.Writer (a file) instead, in pieces of about a chunk: the merge copies
// the records into new chunks one at a time and lets go of each old chunk
// as soon as it has passed it, so the Store holds about one copy of the
// state at any moment, plus a chunk and the changes since the last
// snapshot. Only chunks that are pieces of one array (after Restore or
// AppendSnapshot) must all be passed before the array can be freed: the
// first WriteSnapshot after those holds the old array and the new chunks
// together at its end. A WriteSnapshot that fails leaves the state as it
// was, its new chunks standing in for the old records they cover.
//
// # Encodings
//
// Commands, results and snapshots have compact, versioned, canonical binary
// encodings: integers and lengths are unsigned varints (encoding/binary), and
// the decoders reject unknown versions and enums, overlong varints, lengths
// beyond the limits (MaxKeyLen, MaxValueLen) or beyond the input, and
// trailing bytes, so a value has exactly one encoding. Decoders never panic,
// never allocate more than the input's length warrants, and never return
// slices aliasing their input.
//
//	Command:  version (1), Op, ClientID, Seq, Key, Value, Expected
//	Result:   version (1), Status, flags (bit 0 Found, bit 1 OK,
//	          bit 2 Deduplicated), Value
//	Snapshot: version (1), applied index, data count, then per key in
//	          ascending byte order Key, Value; session count, then per
//	          session in ascending ClientID order ClientID, last Seq, last
//	          index, Status, flags, Value; then a CRC-32C (Castagnoli) of
//	          everything before it, 4 bytes little-endian
//
// A byte string is its length followed by its bytes; an empty one decodes as
// nil.
package kv
