// Package encrypt is encryption at rest for any node.Storage: a wrapper
// that seals every entry's data and every snapshot's data with AES-256-GCM
// (crypto/cipher) before the backend (wal, pebble, memory, or any other)
// sees them, and opens them again on Load and SnapshotData. The backend
// needs no change: it stores the ciphertext as it stored the plaintext.
//
// # Keys
//
// A key is 32 random bytes (KeySize), written as base64 or hex. Its ID
// (KeyID) is the first 4 bytes of HMAC-SHA256(key, a fixed label), shown
// as 8 hex digits: an operator never names keys, and a configuration that
// lists the wrong key is told so by ID. A data directory does not use the
// keys directly: each key's data key for the directory is
// HMAC-SHA256(key, label || salt), where salt is 32 random bytes drawn
// when the directory was created and kept in its marker file. Every node
// of a cluster can share one key; their data keys still differ.
//
// # Records
//
// An entry's stored data is
//
//	0xEC | key ID (4) | nonce (12) | AES-GCM(data) with its 16-byte tag
//
// sealed with the authenticated data "fc-enc entry", index, term, entry
// type and key ID: an entry's ciphertext moved to another index or term
// (or turned into another type) does not authenticate, and Load refuses
// it with ErrCorrupt. Empty entries are sealed too, so that no record can
// be replaced by an unauthenticated empty one.
//
// A snapshot's stored data (a leader's, an in-memory local one, or a
// streamed local snapshot file) is
//
//	0xED | key ID (4) | file ID (16 random bytes)
//	frames: kind (1) | sealed length (4) | nonce (12) | sealed bytes
//
// with chunk frames of at most ChunkSize (64 KiB) plaintext each, sealed
// with "fc-enc snapshot chunk", file ID and chunk number, then one end
// frame sealing the plaintext length with "fc-enc snapshot end", file ID,
// the snapshot's index and term and the number of chunks. A streamed file
// is encrypted chunk by chunk as the node writes it (its index and term
// are not known yet); the end frame, written by Save, binds the file to
// them. Chunks cannot be reordered, dropped, spliced in from another
// snapshot, or the file truncated or extended, or served as another
// snapshot, without failing to decrypt.
//
// # Nonces
//
// A nonce is a 32-bit epoch then a 64-bit counter. The counter starts at
// zero in each process and only grows (2^64 records are never reached). The
// epoch is one more than the epoch recorded in the marker file (and than any
// epoch found in a record Load read), and it is written to the marker and
// fsynced before the first record that uses it is sealed. So within one
// data directory no two processes share an epoch, whatever crashes
// happen: a crash after the marker was written only skips an epoch; a
// crash before it leaves no record sealed with the new one. Different data
// directories have different data keys (their salts differ), so sharing a
// key between nodes, or between a node's old and new directory, never
// repeats a (key, nonce) pair. A directory without a marker (memory
// storage) draws a fresh salt per process. The only way to repeat a nonce
// is to roll the marker file back to an older copy while keeping the
// newer records away from Load — an attacker who can do that can also
// write to the disk and is outside what encryption at rest protects
// against.
//
// # Hard state
//
// The hard state (term, vote, commit) is stored by the backend as it is,
// neither encrypted nor authenticated by this package: node.Storage gives
// the wrapper no opaque field to put a sealed copy in, the three numbers
// are not secret (every Raft message carries them in the clear, and every
// stored record's index and term are visible to the backend anyway), and
// the backends already checksum it. What is secret — commands and the state
// machine's state — is in entries and snapshots, which are sealed.
//
// # The marker file
//
// Open writes a file named ENCRYPTION (MarkerName) into a new data
// directory before anything else: the format, the cipher, the salt, the
// epoch and the IDs of the keys stored records may be sealed with. A key
// is listed before its first record is written and dropped once the Save
// that removed its last record is durable (a crash in between leaves it
// listed: a superset, never less; the next process's first write lists
// only the keys in use). Before the backend is opened — Pebble, for one,
// rewrites files when it opens — Open refuses with ErrKey a directory that
// holds files but no marker (written without encryption), one whose marker
// lists none of the configured keys (a wrong key) and one whose marker
// lists a key that is not configured (ErrMissingKey: records still need
// it); CheckPlain refuses an encrypted directory opened without
// encryption. Nothing is read or written in these cases. Load refuses a
// record sealed with a key that is not configured all the same
// (ErrMissingKey), should the marker ever say less than the records.
//
// # Rotation
//
// Configure a new active key and keep the previous one as an old key
// (Options.OldKeys). New records are sealed with the new key; records
// sealed with old keys are read as before. Once the node has taken a
// snapshot that covers every entry sealed with an old key (and compacted
// them away), no stored record uses it: Usage lists the keys still in use,
// the marker stops listing the old key, and it can be removed from the
// configuration.
package encrypt
