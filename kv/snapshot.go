package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// Minimum encoded sizes of snapshot list elements, used to bound a decoded
// count by the bytes remaining before anything is allocated.
const (
	minEncodedDataSize    = 2 // key length, value length
	minEncodedSessionSize = 6 // client ID, seq, index, status, flags, value length
	checksumSize          = 4
)

// Snapshot returns the whole replicated state (data, sessions and applied
// index) as deterministic bytes: equal states at the same applied index give
// equal bytes. The format is in the package documentation. The error is
// always nil. With Config.ShareSnapshots the Store keeps references into
// the returned bytes (see AppendSnapshot). WriteSnapshot writes the same
// bytes to an io.Writer without holding them whole.
func (s *Store) Snapshot() ([]byte, error) {
	return s.AppendSnapshot(nil), nil
}

// AppendSnapshot appends the bytes Snapshot returns to b and returns the
// extended slice, so that a host can put its own header in front without
// copying the state; the checksum covers the appended bytes only. b is
// grown at most once.
//
// With Config.ShareSnapshots the Store afterwards keeps its state in the
// returned slice (prefix included), which the caller must then never
// modify, and no longer refers to the previous snapshot: its records are
// the new base, cut into chunks that are pieces of the slice, and the
// sessions' values are in it too. The previous base is held until the end,
// so the state is then briefly in memory twice; WriteSnapshot avoids that.
func (s *Store) AppendSnapshot(b []byte) []byte {
	keys := s.changedKeys()
	sessions := s.sortedSessions()
	// Grown once: nothing below reallocates b, so the chunks and values
	// the Store re-points into it stay valid.
	b = slices.Grow(b, s.sizeBound(keys, sessions))
	start := len(b)
	b = s.appendHeader(b)
	var ck chunker
	it := s.iter(keys)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		if s.share {
			ck.add(len(b))
		}
		b = k.append(b)
		b = appendBytes(b, v)
		if s.share && ck.size(len(b)) >= s.chunkSize {
			ck.cut(b[ck.start:len(b):len(b)])
		}
	}
	if s.share {
		ck.cut(b[ck.start:len(b):len(b)])
	}
	b = binary.AppendUvarint(b, uint64(len(sessions)))
	for _, sess := range sessions {
		b = appendSessionHead(b, sess)
		b, sess.result.Value = s.appendValue(b, sess.result.Value)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
	if s.share {
		// The snapshot is the new base; what changed since the last one
		// is in it.
		s.chunks, s.baseBytes = ck.chunks, ck.bytes
		s.data, s.deleted = make(map[string]entry), nil
	}
	return b
}

// castagnoli is the CRC-32C table of the snapshot checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// changedKeys returns data's keys, sorted.
func (s *Store) changedKeys() []string {
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sortedSessions returns the sessions in ascending ClientID order.
func (s *Store) sortedSessions() []*session {
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	slices.SortFunc(sessions, func(a, b *session) int { return cmp.Compare(a.id, b.id) })
	return sessions
}

// sizeBound returns an upper bound of the snapshot's size: the base's
// records hidden by data or deleted are counted. keys are data's keys.
func (s *Store) sizeBound(keys []string, sessions []*session) int {
	size := 1 + uvarintLen(s.applied) + uvarintLen(uint64(s.count)) +
		uvarintLen(uint64(len(sessions))) + checksumSize + s.baseBytes
	for _, k := range keys {
		v := s.data[k].value
		size += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
	}
	for _, sess := range sessions {
		size += uvarintLen(sess.id) + uvarintLen(sess.lastSeq) + uvarintLen(sess.index) + 2 +
			uvarintLen(uint64(len(sess.result.Value))) + len(sess.result.Value)
	}
	return size
}

// appendHeader appends the snapshot's header: version, applied index and
// data count.
func (s *Store) appendHeader(b []byte) []byte {
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, s.applied)
	return binary.AppendUvarint(b, uint64(s.count))
}

// appendSessionHead appends a session record but its value.
func appendSessionHead(b []byte, sess *session) []byte {
	b = binary.AppendUvarint(b, sess.id)
	b = binary.AppendUvarint(b, sess.lastSeq)
	b = binary.AppendUvarint(b, sess.index)
	return append(b, byte(sess.result.Status), sess.result.flags())
}

// appendValue appends v as a byte string to b and returns b and the value
// the Store keeps: with sharing, the appended copy (capacity-limited);
// otherwise v.
func (s *Store) appendValue(b, v []byte) ([]byte, []byte) {
	b = appendBytes(b, v)
	if !s.share || len(v) == 0 {
		return b, v
	}
	return b, b[len(b)-len(v) : len(b) : len(b)]
}

// Restore replaces the whole replicated state (data, sessions, applied
// index) with a snapshot made by Snapshot. It checks the checksum and the
// canonical form, and on any error (wrapping ErrInvalidSnapshot) leaves the
// Store unchanged. The Store keeps no reference to data, unless
// Config.ShareSnapshots is set: then the stored values refer to data, which
// the caller must never modify afterwards; its records are the base, cut
// into chunks that are pieces of data, without a copy. The Store lets go
// of data only when a snapshot has merged all of them: the first
// WriteSnapshot after Restore cannot free data before its end, when the
// new chunks are all built.
//
// If the snapshot holds more sessions than Config.MaxSessions, the excess
// is evicted (oldest first) when the next new session is created, not at
// Restore, so that Restore(Snapshot()) reproduces the state exactly.
func (s *Store) Restore(data []byte) error {
	if len(data) < 1+checksumSize {
		return fmt.Errorf("kv: restore: %w: truncated", ErrInvalidSnapshot)
	}
	body := data[:len(data)-checksumSize]
	sum := binary.LittleEndian.Uint32(data[len(body):])
	if crc32.Checksum(body, castagnoli) != sum {
		return fmt.Errorf("kv: restore: %w: checksum mismatch", ErrInvalidSnapshot)
	}

	r := reader{data: body}
	if r.u8("version") != encodingVersion && !r.failed() {
		r.fail("version", "unknown version")
	}
	applied := r.uvarint("applied index")
	var hash uint64

	n := r.count("data count", minEncodedDataSize)
	var kv map[string]entry
	var ck chunker
	if !s.share {
		kv = make(map[string]entry, n)
	}
	var prev []byte
	for i := 0; i < n && !r.failed(); i++ {
		off := r.off
		k := r.bytes("key", MaxKeyLen)
		v := r.bytes("value", MaxValueLen)
		if r.failed() {
			break
		}
		if i > 0 && bytes.Compare(prev, k) >= 0 {
			r.fail("key", "keys not in strictly ascending order")
			break
		}
		prev = k
		h := dataHash(k, v)
		if s.share {
			ck.add(off)
			if ck.size(r.off) >= s.chunkSize {
				ck.cut(data[ck.start:r.off:r.off])
			}
		} else {
			kv[string(k)] = entry{value: cloneBytes(v), hash: h}
		}
		hash += h
	}
	if s.share && !r.failed() {
		ck.cut(data[ck.start:r.off:r.off])
	}

	m := r.count("session count", minEncodedSessionSize)
	sessions := make(map[uint64]*session, m)
	lru := make(sessionHeap, 0, m)
	for i := 0; i < m && !r.failed(); i++ {
		sess := &session{id: r.uvarint("client ID")}
		sess.lastSeq = r.uvarint("session seq")
		sess.index = r.uvarint("session index")
		res, flags := r.result()
		if r.failed() {
			break
		}
		switch {
		case i > 0 && lru[i-1].id >= sess.id:
			r.fail("client ID", "sessions not in strictly ascending order")
		case sess.lastSeq == 0:
			r.fail("session seq", "zero")
		case res.Status != StatusOK:
			r.fail("session result", "status not OK")
		case flags&flagDeduplicated != 0:
			r.fail("session result", "deduplicated")
		}
		if r.failed() {
			break
		}
		res.Value = s.keep(res.Value)
		sess.result = res
		sess.hash = sessionHash(sess)
		hash += sess.hash
		sessions[sess.id] = sess
		lru = append(lru, sess)
	}
	r.finish()
	if err := r.err("restore", ErrInvalidSnapshot); err != nil {
		return err
	}

	// A slice sorted by (index, id) is a valid heap.
	slices.SortFunc(lru, func(a, b *session) int {
		switch {
		case sessionLess(a, b):
			return -1
		case sessionLess(b, a):
			return 1
		}
		return 0
	})
	for i, sess := range lru {
		sess.pos = i
	}
	s.sessions, s.lru = sessions, lru
	s.applied, s.hash, s.count = applied, hash, n
	if s.share {
		s.chunks, s.baseBytes = ck.chunks, ck.bytes
		s.data, s.deleted = make(map[string]entry), nil
	} else {
		s.data = kv
		s.chunks, s.baseBytes, s.deleted = nil, 0, nil
	}
	return nil
}

// keep returns what the Store keeps of a value decoded from a snapshot: v
// itself with sharing, a copy otherwise.
func (s *Store) keep(v []byte) []byte {
	if s.share {
		return v
	}
	return cloneBytes(v)
}
