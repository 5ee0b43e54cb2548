package kv

import (
	"bytes"
	"slices"
	"testing"
)

func cmdGet(key string, client, seq uint64) []byte {
	return EncodeCommand(Command{Op: OpGet, Key: key, ClientID: client, Seq: seq})
}

func cmdSet(key, value string, client, seq uint64) []byte {
	return EncodeCommand(Command{Op: OpSet, Key: key, Value: []byte(value), ClientID: client, Seq: seq})
}

func cmdDel(key string, client, seq uint64) []byte {
	return EncodeCommand(Command{Op: OpDelete, Key: key, ClientID: client, Seq: seq})
}

func cmdCAS(key, expected, value string, client, seq uint64) []byte {
	return EncodeCommand(Command{Op: OpCAS, Key: key, Expected: []byte(expected), Value: []byte(value), ClientID: client, Seq: seq})
}

// mustApply applies cmd and returns the Result, failing if Apply returned
// another type.
func mustApply(t testing.TB, s *Store, index uint64, cmd []byte) Result {
	t.Helper()
	v := s.Apply(index, cmd)
	r, ok := v.(Result)
	if !ok {
		t.Fatalf("Apply(%d) returned %T, want Result", index, v)
	}
	return r
}

func mustSnapshot(t testing.TB, s *Store) []byte {
	t.Helper()
	b, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return b
}

func wantValue(t testing.TB, s *Store, key, want string, wantFound bool) {
	t.Helper()
	v, ok := s.Get(key)
	if ok != wantFound || string(v) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q, %v", key, v, ok, want, wantFound)
	}
}

func resultEqual(a, b Result) bool {
	return a.Status == b.Status && bytes.Equal(a.Value, b.Value) && a.Found == b.Found &&
		a.OK == b.OK && a.Deduplicated == b.Deduplicated
}

// recomputeHash computes the state hash from scratch, independently of the
// incremental bookkeeping.
func recomputeHash(s *Store) uint64 {
	var h uint64
	each(s, func(k string, v []byte) { h += dataHash([]byte(k), v) })
	for _, sess := range s.sessions {
		h += sessionHash(sess)
	}
	return h
}

// checkInvariants verifies the incremental hash, the cached item hashes and
// the session heap.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	if got, want := s.Hash(), recomputeHash(s); got != want {
		t.Fatalf("incremental hash %#x, recomputed %#x", got, want)
	}
	for k, e := range s.data {
		if e.hash != dataHash([]byte(k), e.value) {
			t.Fatalf("stale item hash for key %q", k)
		}
	}
	n := 0
	var prev string
	each(s, func(k string, v []byte) {
		if v != nil && len(v) == 0 {
			t.Fatalf("key %q stores a non-nil empty value", k)
		}
		if n > 0 && k <= prev {
			t.Fatalf("keys out of order: %q after %q", k, prev)
		}
		if got, ok := s.Get(k); !ok || !bytes.Equal(got, v) {
			t.Fatalf("Get(%q) = %q, %v; the merged state has %q", k, got, ok, v)
		}
		prev = k
		n++
	})
	if n != s.Len() {
		t.Fatalf("%d keys, Len %d", n, s.Len())
	}
	if !s.share && (s.chunks != nil || len(s.deleted) > 0) {
		t.Fatal("a store that does not share its snapshots has a base")
	}
	checkChunks(t, s)
	if len(s.lru) != len(s.sessions) {
		t.Fatalf("heap has %d sessions, map %d", len(s.lru), len(s.sessions))
	}
	for i, sess := range s.lru {
		if sess.pos != i {
			t.Fatalf("session %d at heap position %d records %d", sess.id, i, sess.pos)
		}
		if s.sessions[sess.id] != sess {
			t.Fatalf("session %d in heap but not in map", sess.id)
		}
		if i > 0 && sessionLess(sess, s.lru[(i-1)/2]) {
			t.Fatalf("heap order violated at %d", i)
		}
		if sess.hash != sessionHash(sess) {
			t.Fatalf("stale session hash for client %d", sess.id)
		}
	}
}

// sessionIDs returns the clients with a session, sorted.
func sessionIDs(s *Store) []uint64 {
	var ids []uint64
	for id := range s.sessions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// each calls fn with every key and its value, in ascending key order.
func each(s *Store, fn func(key string, value []byte)) {
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	it := s.iter(keys)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		if k.base {
			fn(string(k.bytes), v)
		} else {
			fn(k.str, v)
		}
	}
}

// checkChunks verifies the base: non-empty chunks of whole records, keys
// strictly ascending across them, baseBytes their total, and no chunks of
// a WriteSnapshot in progress.
func checkChunks(t testing.TB, s *Store) {
	t.Helper()
	if s.next != nil {
		t.Fatal("new chunks left over from a WriteSnapshot")
	}
	total := 0
	var prev []byte
	for i, c := range s.chunks {
		if len(c.offs) == 0 || c.offs[0] != 0 {
			t.Fatalf("chunk %d of %d: %d records, first at %v", i, len(s.chunks), len(c.offs), c.offs)
		}
		for j, off := range c.offs {
			k, _, end := recordAt(c.b, int(off))
			if j+1 < len(c.offs) && end != int(c.offs[j+1]) || j+1 == len(c.offs) && end != len(c.b) {
				t.Fatalf("chunk %d record %d ends at %d, the next starts at %v (chunk of %d bytes)", i, j, end,
					c.offs, len(c.b))
			}
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				t.Fatalf("chunk %d record %d: key %q after %q", i, j, k, prev)
			}
			prev = k
		}
		total += len(c.b)
	}
	if total != s.baseBytes {
		t.Fatalf("chunks hold %d bytes of records, baseBytes %d", total, s.baseBytes)
	}
}
