package kv

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// defaultChunkSize is the size a chunk of the base is cut at: a chunk holds
// whole records and ends with the first one that takes it to this size or
// beyond.
const defaultChunkSize = 1 << 20

// chunk is a piece of the base: consecutive data records, encoded as in a
// snapshot, in ascending key order. b may alias a snapshot (after
// AppendSnapshot or Restore) or be the Store's own copy (after
// WriteSnapshot).
type chunk struct {
	b    []byte   // the records, from the first one's start to the last one's end
	offs []uint32 // offset in b of each record; never empty, offs[0] == 0
}

// firstKey returns the key of the chunk's first record.
func (c *chunk) firstKey() []byte { return keyAt(c.b, 0) }

// keyAt returns the key of the record at off in b (aliasing b).
func keyAt(b []byte, off int) []byte {
	n, k := binary.Uvarint(b[off:])
	off += k
	return b[off : off+int(n) : off+int(n)]
}

// recordAt decodes the data record (key, value) at off in b, which holds
// valid records, and returns them (aliasing b; an empty value is nil) and
// the offset after the record.
func recordAt(b []byte, off int) (key, value []byte, next int) {
	n, k := binary.Uvarint(b[off:])
	off += k
	key = b[off : off+int(n) : off+int(n)]
	off += int(n)
	n, k = binary.Uvarint(b[off:])
	off += k
	if n > 0 {
		value = b[off : off+int(n) : off+int(n)]
	}
	return key, value, off + int(n)
}

// baseFind returns the value of key in the base, and whether it is there:
// a binary search over the chunks' first keys, then over the records of the
// chunk that may hold key.
func (s *Store) baseFind(key []byte) ([]byte, bool) {
	cs := s.chunks
	// i: the first chunk whose first key is greater than key.
	i, j := 0, len(cs)
	for i < j {
		h := int(uint(i+j) >> 1)
		if bytes.Compare(cs[h].firstKey(), key) <= 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == 0 {
		return nil, false
	}
	c := &cs[i-1]
	i, j = 0, len(c.offs)
	for i < j {
		h := int(uint(i+j) >> 1)
		k, v, _ := recordAt(c.b, int(c.offs[h]))
		switch cmp := bytes.Compare(k, key); {
		case cmp == 0:
			return v, true
		case cmp < 0:
			i = h + 1
		default:
			j = h
		}
	}
	return nil, false
}

// chunker cuts records laid out one after the other in an array into
// chunks. The caller adds each record's offset, then cuts the chunk with
// its bytes, as they are or copied.
type chunker struct {
	chunks []chunk
	offs   []uint32 // the current chunk's record offsets (scratch, reused)
	start  int      // offset in the array of the current chunk's first record
	bytes  int      // record bytes of the chunks cut
}

// add notes a record at off in the array.
func (c *chunker) add(off int) {
	if len(c.offs) == 0 {
		c.start = off
	}
	c.offs = append(c.offs, uint32(off-c.start))
}

// size returns the bytes of the current chunk, which has records, the last
// one ending at end in the array.
func (c *chunker) size(end int) int { return end - c.start }

// cut ends the current chunk, if it has records; recs are its bytes (from
// c.start to the end of its last record).
func (c *chunker) cut(recs []byte) {
	if len(c.offs) == 0 {
		return
	}
	c.chunks = append(c.chunks, chunk{b: recs, offs: slices.Clone(c.offs)})
	c.bytes += len(recs)
	c.offs = c.offs[:0]
}

// mergeKey is a key met by mergeIter: from the base (bytes) or from data
// (str).
type mergeKey struct {
	bytes []byte
	str   string
	base  bool
}

func (k mergeKey) append(b []byte) []byte {
	if k.base {
		return appendBytes(b, k.bytes)
	}
	return appendString(b, k.str)
}

// mergeIter walks the state's keys in ascending order: the base's records
// less those deleted or set since, and data's keys, sorted in keys.
type mergeIter struct {
	chunks  []chunk
	data    map[string]entry
	deleted map[string]struct{}
	keys    []string
	c, r    int // the next base record: chunks[c].offs[r]
	j       int // the next data key: keys[j]
}

// iter returns a mergeIter over the state; keys are data's keys, sorted.
func (s *Store) iter(keys []string) mergeIter {
	return mergeIter{chunks: s.chunks, data: s.data, deleted: s.deleted, keys: keys}
}

// next returns the next key present and its value; ok is false at the end.
// A base record is consumed (the position moves past it) when it is
// returned, skipped as deleted, or hidden by data's key returned.
func (it *mergeIter) next() (k mergeKey, v []byte, ok bool) {
	for it.c < len(it.chunks) || it.j < len(it.keys) {
		c := 1 // base exhausted: data's key comes first
		var bk, bv []byte
		if it.c < len(it.chunks) {
			ch := &it.chunks[it.c]
			bk, bv, _ = recordAt(ch.b, int(ch.offs[it.r]))
			// Compared as strings without converting (which would
			// allocate a string per record).
			switch {
			case it.j == len(it.keys) || string(bk) < it.keys[it.j]:
				c = -1
			case string(bk) == it.keys[it.j]:
				c = 0
			}
		}
		if c <= 0 {
			it.r++
			if it.r == len(it.chunks[it.c].offs) {
				it.c++
				it.r = 0
			}
		}
		if c < 0 {
			if len(it.deleted) > 0 {
				if _, gone := it.deleted[string(bk)]; gone {
					continue
				}
			}
			return mergeKey{bytes: bk, base: true}, bv, true
		}
		// data's key; on a tie it hides base's
		key := it.keys[it.j]
		it.j++
		return mergeKey{str: key}, it.data[key].value, true
	}
	return mergeKey{}, nil, false
}
