package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// writeSlack is what the buffer of WriteSnapshot holds beyond a chunk
// before it grows: room for the record that ends a chunk.
const writeSlack = 4 << 10

// WriteSnapshot writes to w exactly the bytes Snapshot would return for the
// current state (same format, same checksum), without ever holding them
// whole: they go to w in pieces of about a chunk (1 MiB). w must not retain
// them (as io.Writer requires) nor call the Store's methods.
//
// An error of w (or a short write, reported as io.ErrShortWrite) is
// returned wrapped, nothing more is written, and the state is as before:
// answers, Hash and snapshot bytes are unchanged.
//
// Without Config.ShareSnapshots the Store does not change. With it, the
// snapshot written becomes the Store's new base, as with AppendSnapshot,
// except that the Store refers to nothing it wrote: it keeps its own copy
// of the records, in chunks of about 1 MiB. The merge of the old base with
// what changed since builds them one at a time, and lets go of each chunk
// of the old base once it has passed it, so that the Store holds about one
// copy of the state at any moment, plus a chunk, the changes since the
// last snapshot and the sessions' values (which it copies first, to refer
// to no old chunk), instead of two. Chunks of a base that are pieces of one
// array, after Restore, Snapshot or AppendSnapshot, free nothing until the
// merge has passed them all: the first WriteSnapshot after those holds the
// array and the new chunks together at its end. After an error, the chunks
// written so far stand in for the part of the old base they cover.
func (s *Store) WriteSnapshot(w io.Writer) error {
	keys := s.changedKeys()
	sessions := s.sortedSessions()
	if s.share {
		ownSessionValues(sessions)
	}
	sw := snapshotWriter{w: w, buf: make([]byte, 0, min(s.sizeBound(keys, sessions), s.chunkSize+writeSlack))}
	sw.buf = s.appendHeader(sw.buf)
	if err := s.writeRecords(&sw, keys); err != nil {
		return err
	}
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(sessions)))
	for _, sess := range sessions {
		sw.buf = appendSessionHead(sw.buf, sess)
		sw.buf = appendBytes(sw.buf, sess.result.Value)
		if len(sw.buf) >= s.chunkSize {
			if err := sw.flush(false); err != nil {
				return err
			}
		}
	}
	return sw.flush(true)
}

// writeRecords writes the data records to sw, after the header already in
// its buffer. With sharing it makes them the new base, chunk by chunk,
// letting go of the old chunks as the merge passes them; on an error (or a
// panic of the writer) it leaves the base as the new chunks followed by the
// old records not yet merged (see abortWrite).
func (s *Store) writeRecords(sw *snapshotWriter, keys []string) error {
	it := s.iter(keys)
	var ck chunker
	done := false
	if s.share {
		defer func() {
			if !done {
				s.abortWrite(&it)
			}
		}()
	}
	passed := 0 // old chunks let go
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		if s.share {
			for ; passed < it.c; passed++ {
				s.chunks[passed] = chunk{}
			}
			ck.add(len(sw.buf))
		}
		sw.buf = k.append(sw.buf)
		sw.buf = appendBytes(sw.buf, v)
		if len(sw.buf) >= s.chunkSize {
			if s.share {
				// The new chunk is reachable from the Store before the
				// write, which may fail.
				ck.cut(bytes.Clone(sw.buf[ck.start:]))
				s.next = ck.chunks
			}
			if err := sw.flush(false); err != nil {
				return err
			}
		}
	}
	if !s.share {
		return nil
	}
	if len(ck.offs) > 0 {
		ck.cut(bytes.Clone(sw.buf[ck.start:]))
	}
	// The merge is complete: the new chunks hold the state's records, and
	// nothing changed since them.
	s.chunks, s.next, s.baseBytes = ck.chunks, nil, ck.bytes
	s.data, s.deleted = make(map[string]entry), nil
	done = true
	return nil
}

// abortWrite leaves the base, after writeRecords stopped with the merge at
// it, as the new chunks written (s.next) followed by the old records the
// merge has not consumed. The state is unchanged: the records written are
// those of the state's keys up to the last one written, and all of the old
// records left have greater keys. data and deleted still hide or remove
// what they did: a key set since is still in data (the new chunks may hold
// the same value), and a key deleted since is in no chunk written.
func (s *Store) abortWrite(it *mergeIter) {
	rest := it.chunks[it.c:]
	base := make([]chunk, 0, len(s.next)+len(rest))
	base = append(base, s.next...)
	if len(rest) > 0 && it.r > 0 {
		// The chunk the merge stopped in: its records from it.r on, the
		// offsets rebased (the Store owns them).
		c := rest[0]
		o := c.offs[it.r]
		offs := c.offs[it.r:]
		for i := range offs {
			offs[i] -= o
		}
		base = append(base, chunk{b: c.b[o:], offs: offs})
		rest = rest[1:]
	}
	base = append(base, rest...)
	s.chunks, s.next = base, nil
	s.baseBytes = 0
	for _, c := range base {
		s.baseBytes += len(c.b)
	}
}

// ownSessionValues copies the sessions' values into one new array and
// re-points them there, so that none refers to a chunk of the base, which
// WriteSnapshot is about to let go, or to a snapshot's bytes.
func ownSessionValues(sessions []*session) {
	n := 0
	for _, sess := range sessions {
		n += len(sess.result.Value)
	}
	if n == 0 {
		return
	}
	arena := make([]byte, 0, n)
	for _, sess := range sessions {
		v := sess.result.Value
		if len(v) == 0 {
			continue
		}
		arena = append(arena, v...)
		sess.result.Value = arena[len(arena)-len(v) : len(arena) : len(arena)]
	}
}

// snapshotWriter buffers the bytes of a snapshot on their way to w and
// computes their checksum.
type snapshotWriter struct {
	w   io.Writer
	buf []byte
	crc uint32 // CRC-32C of the bytes written so far
}

// flush writes the buffer to w and empties it; with last, it appends the
// checksum first.
func (sw *snapshotWriter) flush(last bool) error {
	sw.crc = crc32.Update(sw.crc, castagnoli, sw.buf)
	if last {
		sw.buf = binary.LittleEndian.AppendUint32(sw.buf, sw.crc)
	}
	n, err := sw.w.Write(sw.buf)
	if err == nil && n < len(sw.buf) {
		err = io.ErrShortWrite
	}
	sw.buf = sw.buf[:0]
	if err != nil {
		return fmt.Errorf("kv: write snapshot: %w", err)
	}
	return nil
}
