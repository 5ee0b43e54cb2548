package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"
)

// buildWithSessions returns a store with data and sessions.
func buildWithSessions(t testing.TB) *Store {
	s := New(Config{})
	idx := uint64(0)
	next := func() uint64 { idx++; return idx }
	for i := 0; i < 50; i++ {
		mustApply(t, s, next(), cmdSet(fmt.Sprintf("key%03d", i), fmt.Sprintf("value %d", i), uint64(i%7+1), uint64(i/7+1)))
	}
	mustApply(t, s, next(), cmdDel("key010", 3, 100))
	mustApply(t, s, next(), cmdCAS("key011", "nope", "x", 4, 100))
	mustApply(t, s, next(), cmdGet("key012", 5, 100))
	mustApply(t, s, next(), cmdSet("", "", 0, 0))
	return s
}

func TestSnapshotDeterministicAcrossHistories(t *testing.T) {
	// a: many keys inserted (growing the map), most deleted again.
	a := New(Config{})
	idx := uint64(0)
	for i := 0; i < 2000; i++ {
		idx++
		mustApply(t, a, idx, cmdSet(fmt.Sprint("tmp", i), "x", 0, 0))
	}
	for i := 0; i < 2000; i++ {
		idx++
		mustApply(t, a, idx, cmdDel(fmt.Sprint("tmp", i), 0, 0))
	}
	for i := 0; i < 100; i++ {
		idx++
		mustApply(t, a, idx, cmdSet(fmt.Sprint("k", i), fmt.Sprint("v", i), 0, 0))
	}
	// b: the surviving keys only, in reverse order, ending at the same index.
	b := New(Config{})
	for i := 99; i >= 0; i-- {
		mustApply(t, b, idx-uint64(i), cmdSet(fmt.Sprint("k", i), fmt.Sprint("v", i), 0, 0))
	}
	// c: the same, overwritten once.
	c := New(Config{})
	for i := 0; i < 100; i++ {
		mustApply(t, c, uint64(i+1), cmdSet(fmt.Sprint("k", i), "old", 0, 0))
	}
	for i := 0; i < 100; i++ {
		mustApply(t, c, idx-99+uint64(i), cmdSet(fmt.Sprint("k", i), fmt.Sprint("v", i), 0, 0))
	}
	sa, sb, sc := mustSnapshot(t, a), mustSnapshot(t, b), mustSnapshot(t, c)
	if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sc) {
		t.Fatal("equal states give different snapshots")
	}
	if a.Hash() != b.Hash() || a.Hash() != c.Hash() {
		t.Fatal("equal states give different hashes")
	}
	// Repeated snapshots of one store are identical.
	for i := 0; i < 5; i++ {
		if !bytes.Equal(mustSnapshot(t, a), sa) {
			t.Fatal("Snapshot is not stable")
		}
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := buildWithSessions(t)
	snap := mustSnapshot(t, src)

	dst := New(Config{})
	mustApply(t, dst, 1, cmdSet("junk", "to be replaced", 77, 5))
	if err := dst.Restore(snap); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, dst)
	if dst.Hash() != src.Hash() || dst.Len() != src.Len() || dst.Applied() != src.Applied() {
		t.Fatalf("restored hash/len/applied %x/%d/%d, want %x/%d/%d",
			dst.Hash(), dst.Len(), dst.Applied(), src.Hash(), src.Len(), src.Applied())
	}
	wantValue(t, dst, "junk", "", false)
	each(src, func(k string, v []byte) { wantValue(t, dst, k, string(v), true) })
	if !slices.Equal(sessionIDs(dst), sessionIDs(src)) {
		t.Fatalf("sessions %v, want %v", sessionIDs(dst), sessionIDs(src))
	}
	for _, id := range sessionIDs(src) {
		s1, i1, _ := src.Session(id)
		s2, i2, _ := dst.Session(id)
		if s1 != s2 || i1 != i2 || !resultEqual(src.sessions[id].result, dst.sessions[id].result) {
			t.Fatalf("session %d differs after restore", id)
		}
	}
	if !bytes.Equal(mustSnapshot(t, dst), snap) {
		t.Fatal("Snapshot(Restore(x)) != x")
	}

	// A retry after restore is still deduplicated, on both.
	for _, s := range []*Store{src, dst} {
		r := mustApply(t, s, 1000, cmdDel("key010", 3, 100))
		if !r.Deduplicated || !r.Found || string(r.Value) != "value 10" {
			t.Fatalf("retry after restore = %+v", r)
		}
		r = mustApply(t, s, 1001, cmdGet("key012", 5, 100))
		if !r.Deduplicated || string(r.Value) != "value 12" {
			t.Fatalf("Get retry after restore = %+v", r)
		}
	}
	// Both continue identically.
	for i := uint64(0); i < 20; i++ {
		c := cmdSet(fmt.Sprint("n", i%4), fmt.Sprint(i), i%9+1, 200+i)
		r1, r2 := mustApply(t, src, 1002+i, c), mustApply(t, dst, 1002+i, c)
		if !resultEqual(r1, r2) {
			t.Fatalf("diverged: %+v vs %+v", r1, r2)
		}
	}
	if !bytes.Equal(mustSnapshot(t, src), mustSnapshot(t, dst)) {
		t.Fatal("restored store diverged from its source")
	}
	// The restored store does not alias the snapshot.
	for i := range snap {
		snap[i] = 0
	}
	wantValue(t, dst, "key001", "value 1", true)
	checkInvariants(t, dst)
}

func TestRestoreEmptySnapshot(t *testing.T) {
	snap := mustSnapshot(t, New(Config{}))
	s := buildWithSessions(t)
	if err := s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 || s.Sessions() != 0 || s.Hash() != 0 || s.Applied() != 0 {
		t.Fatalf("restore of empty: len %d sessions %d hash %x applied %d", s.Len(), s.Sessions(), s.Hash(), s.Applied())
	}
}

func TestRestoreCorruptedLeavesStoreUnchanged(t *testing.T) {
	snap := mustSnapshot(t, buildWithSessions(t))
	s := New(Config{})
	mustApply(t, s, 3, cmdSet("mine", "v", 1, 1))
	before := mustSnapshot(t, s)
	hash := s.Hash()
	bad := make([]byte, len(snap))
	for i := range snap {
		for _, flip := range []byte{0x01, 0x80, 0xFF} {
			copy(bad, snap)
			bad[i] ^= flip
			if err := s.Restore(bad); !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("byte %d ^ %#x: Restore error %v, want ErrInvalidSnapshot", i, flip, err)
			}
		}
	}
	for n := 0; n < len(snap); n++ {
		if err := s.Restore(snap[:n]); err == nil {
			t.Fatalf("prefix of %d bytes restored", n)
		}
	}
	if err := s.Restore(append(append([]byte(nil), snap...), 0)); err == nil {
		t.Fatal("snapshot with a trailing byte restored")
	}
	if s.Hash() != hash || !bytes.Equal(mustSnapshot(t, s), before) {
		t.Fatal("a failed Restore changed the store")
	}
	checkInvariants(t, s)
}

// sealed appends a valid checksum to body.
func sealed(body []byte) []byte {
	return binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

func TestRestoreRejectsNonCanonical(t *testing.T) {
	kvPair := func(k, v string) []byte { return append(lenPrefixed(k), lenPrefixed(v)...) }
	sess := func(id, seq, index uint64, status, flags byte) []byte {
		b := binary.AppendUvarint(nil, id)
		b = binary.AppendUvarint(b, seq)
		b = binary.AppendUvarint(b, index)
		return append(b, status, flags, 0)
	}
	body := func(version byte, parts ...[]byte) []byte {
		b := []byte{version}
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	one, two, zero := []byte{1}, []byte{2}, []byte{0}
	valid := sealed(body(1, []byte{5}, two, kvPair("a", "1"), kvPair("b", "2"),
		two, sess(1, 1, 4, 0, 0), sess(2, 3, 5, 0, flagFound|flagOK)))
	s := New(Config{})
	if err := s.Restore(valid); err != nil {
		t.Fatalf("the valid base case is rejected: %v", err)
	}
	cases := map[string][]byte{
		"version 2":             sealed(body(2, zero, zero, zero)),
		"keys unsorted":         sealed(body(1, zero, two, kvPair("b", "1"), kvPair("a", "2"), zero)),
		"duplicate key":         sealed(body(1, zero, two, kvPair("a", "1"), kvPair("a", "2"), zero)),
		"sessions unsorted":     sealed(body(1, zero, zero, two, sess(2, 1, 1, 0, 0), sess(1, 1, 1, 0, 0))),
		"duplicate session":     sealed(body(1, zero, zero, two, sess(1, 1, 1, 0, 0), sess(1, 2, 1, 0, 0))),
		"session seq 0":         sealed(body(1, zero, zero, one, sess(1, 0, 1, 0, 0))),
		"session stale status":  sealed(body(1, zero, zero, one, sess(1, 1, 1, byte(StatusStaleSeq), 0))),
		"session dedup flag":    sealed(body(1, zero, zero, one, sess(1, 1, 1, 0, flagDeduplicated))),
		"session unknown flag":  sealed(body(1, zero, zero, one, sess(1, 1, 1, 0, 0x10))),
		"trailing before crc":   sealed(body(1, zero, zero, zero, zero)),
		"count beyond input":    sealed(body(1, zero, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, zero)),
		"key too long":          sealed(body(1, zero, one, kvPair(string(make([]byte, MaxKeyLen+1)), ""), zero)),
		"overlong applied":      sealed(body(1, []byte{0x80, 0x00}, zero, zero)),
		"session count too big": sealed(body(1, zero, zero, []byte{0x7f}, sess(1, 1, 1, 0, 0))),
	}
	before := mustSnapshot(t, s)
	for name, b := range cases {
		if err := s.Restore(b); !errors.Is(err, ErrInvalidSnapshot) {
			t.Errorf("%s: Restore error %v, want ErrInvalidSnapshot", name, err)
		}
	}
	if !bytes.Equal(mustSnapshot(t, s), before) {
		t.Fatal("a failed Restore changed the store")
	}
}

func TestRestoreBeyondMaxSessions(t *testing.T) {
	src := New(Config{MaxSessions: 10})
	for i := uint64(1); i <= 5; i++ {
		mustApply(t, src, i, cmdSet("k", "v", 100-i, 1)) // client 99 oldest ... 95 newest
	}
	snap := mustSnapshot(t, src)
	dst := New(Config{MaxSessions: 2})
	if err := dst.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if dst.Sessions() != 5 || !bytes.Equal(mustSnapshot(t, dst), snap) {
		t.Fatal("Restore did not reproduce the snapshot exactly")
	}
	mustApply(t, dst, 6, cmdSet("k", "v", 1, 1))
	if got := sessionIDs(dst); !slices.Equal(got, []uint64{1, 95}) {
		t.Fatalf("sessions after the next new client = %v, want [1 95]", got)
	}
	checkInvariants(t, dst)
}
