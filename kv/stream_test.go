package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// twin is a store that shares its snapshots and a plain one, fed the same
// commands: the plain one is the reference.
type twin struct {
	t             testing.TB
	shared, plain *Store
	index         uint64
	seqs          map[uint64]uint64
	keys          int // keys are key(0) .. key(keys-1)
}

func newTwin(t testing.TB, keys, chunkSize, maxSessions int) *twin {
	tw := &twin{
		t:      t,
		shared: New(Config{ShareSnapshots: true, MaxSessions: maxSessions}),
		plain:  New(Config{MaxSessions: maxSessions}),
		seqs:   map[uint64]uint64{},
		keys:   keys,
	}
	tw.shared.chunkSize = chunkSize
	return tw
}

func key(i int) string { return fmt.Sprintf("k%05d", i) }

// apply applies c to both stores and compares answers, lengths and hashes.
func (tw *twin) apply(c Command) {
	tw.t.Helper()
	tw.index++
	cmd := EncodeCommand(c)
	r1, r2 := mustApply(tw.t, tw.shared, tw.index, cmd), mustApply(tw.t, tw.plain, tw.index, cmd)
	if !resultEqual(r1, r2) {
		tw.t.Fatalf("index %d %+v: shared store answered %+v, plain %+v", tw.index, c, r1, r2)
	}
	if tw.shared.Len() != tw.plain.Len() || tw.shared.Hash() != tw.plain.Hash() {
		tw.t.Fatalf("index %d: shared len %d hash %#x, plain %d %#x", tw.index, tw.shared.Len(), tw.shared.Hash(),
			tw.plain.Len(), tw.plain.Hash())
	}
}

// random applies n random commands.
func (tw *twin) random(rng *rand.Rand, n int) {
	tw.t.Helper()
	for range n {
		tw.apply(randomKeyCommand(rng, tw.seqs, tw.keys, tw.plain))
	}
}

// randomKeyCommand returns a random command over keys key(0..keys-1), with
// or without a session among 12 clients (retries and stale Seqs included);
// CAS expects the current value (in s) half the time.
func randomKeyCommand(rng *rand.Rand, seqs map[uint64]uint64, keys int, s *Store) Command {
	k := key(rng.IntN(keys))
	value := func() []byte {
		if rng.IntN(8) == 0 {
			return nil
		}
		return []byte(strings.Repeat(string(rune('a'+rng.IntN(26))), 1+rng.IntN(24)))
	}
	var c Command
	switch rng.IntN(8) {
	case 0, 1, 2:
		c = Command{Op: OpSet, Key: k, Value: value()}
	case 3, 4:
		c = Command{Op: OpDelete, Key: k}
	case 5:
		c = Command{Op: OpGet, Key: k}
	default:
		c = Command{Op: OpCAS, Key: k, Value: value(), Expected: value()}
		if rng.IntN(2) == 0 {
			c.Expected, _ = s.Get(k)
		}
	}
	if rng.IntN(3) > 0 {
		c.ClientID = uint64(1 + rng.IntN(12))
		switch rng.IntN(10) {
		case 0: // a retry of the last Seq
		case 1: // stale
			if seqs[c.ClientID] > 1 {
				c.Seq = seqs[c.ClientID] - 1
				return c
			}
		default:
			seqs[c.ClientID]++
		}
		c.Seq = seqs[c.ClientID]
	}
	return c
}

// check compares the two stores in full without changing either: every
// key, queries, sessions, invariants.
func (tw *twin) check() {
	tw.t.Helper()
	checkInvariants(tw.t, tw.shared)
	checkInvariants(tw.t, tw.plain)
	if tw.shared.Len() != tw.plain.Len() || tw.shared.Hash() != tw.plain.Hash() ||
		tw.shared.Applied() != tw.plain.Applied() || tw.shared.Sessions() != tw.plain.Sessions() {
		tw.t.Fatalf("shared len %d hash %#x applied %d sessions %d; plain %d %#x %d %d", tw.shared.Len(),
			tw.shared.Hash(), tw.shared.Applied(), tw.shared.Sessions(), tw.plain.Len(), tw.plain.Hash(),
			tw.plain.Applied(), tw.plain.Sessions())
	}
	for i := range tw.keys + 1 {
		k := key(i)
		v1, ok1 := tw.shared.Get(k)
		v2, ok2 := tw.plain.Get(k)
		if ok1 != ok2 || !bytes.Equal(v1, v2) {
			tw.t.Fatalf("Get(%q): shared %q %v, plain %q %v", k, v1, ok1, v2, ok2)
		}
		q := EncodeCommand(Command{Op: OpGet, Key: k})
		a1, err1 := tw.shared.Query(q)
		a2, err2 := tw.plain.Query(q)
		if err1 != nil || err2 != nil || !resultEqual(a1.(Result), a2.(Result)) {
			tw.t.Fatalf("Query(%q): shared %+v %v, plain %+v %v", k, a1, err1, a2, err2)
		}
	}
	for id := uint64(1); id <= 12; id++ {
		s1, i1, ok1 := tw.shared.Session(id)
		s2, i2, ok2 := tw.plain.Session(id)
		if s1 != s2 || i1 != i2 || ok1 != ok2 {
			tw.t.Fatalf("session %d: shared %d %d %v, plain %d %d %v", id, s1, i1, ok1, s2, i2, ok2)
		}
	}
}

// want returns the snapshot of the reference store, checking on the way
// that the plain store streams the same bytes.
func (tw *twin) want() []byte {
	tw.t.Helper()
	b := mustSnapshot(tw.t, tw.plain)
	var w bytes.Buffer
	if err := tw.plain.WriteSnapshot(&w); err != nil || !bytes.Equal(w.Bytes(), b) {
		tw.t.Fatalf("the plain store's WriteSnapshot (error %v) differs from its Snapshot", err)
	}
	return b
}

// writeShared streams the shared store's snapshot, which must equal the
// reference's.
func (tw *twin) writeShared() []byte {
	tw.t.Helper()
	var w bytes.Buffer
	if err := tw.shared.WriteSnapshot(&w); err != nil {
		tw.t.Fatalf("WriteSnapshot: %v", err)
	}
	if !bytes.Equal(w.Bytes(), tw.want()) {
		tw.t.Fatalf("index %d: the shared store wrote a snapshot that differs from the plain store's", tw.index)
	}
	return w.Bytes()
}

var errDiskFull = errors.New("disk full")

// failingWriter takes limit bytes, then fails with errDiskFull, having
// taken what fits of the Write that crosses the limit.
type failingWriter struct {
	limit  int
	got    bytes.Buffer
	failed bool
	after  int // Write calls after the failure
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.failed {
		f.after++
	}
	if f.got.Len()+len(p) <= f.limit {
		f.got.Write(p)
		return len(p), nil
	}
	n := max(f.limit-f.got.Len(), 0)
	f.got.Write(p[:n])
	f.failed = true
	return n, errDiskFull
}

// failWrite streams the shared store's snapshot into a writer that fails
// after k bytes (want is the snapshot): the error must be returned
// wrapped, nothing written after it, and the state unchanged.
func (tw *twin) failWrite(k int, want []byte) {
	tw.t.Helper()
	old := chunkArrays(tw.shared)
	f := &failingWriter{limit: k}
	err := tw.shared.WriteSnapshot(f)
	if k >= len(want) {
		if err != nil || !bytes.Equal(f.got.Bytes(), want) {
			tw.t.Fatalf("WriteSnapshot into room for all of it: %v", err)
		}
		return
	}
	if !errors.Is(err, errDiskFull) || !strings.HasPrefix(err.Error(), "kv: write snapshot: ") {
		tw.t.Fatalf("WriteSnapshot failing after %d of %d bytes returned %v", k, len(want), err)
	}
	if f.after > 0 || !bytes.Equal(f.got.Bytes(), want[:f.got.Len()]) {
		tw.t.Fatalf("WriteSnapshot failing after %d bytes: %d writes after the failure, or wrong bytes", k, f.after)
	}
	// Nothing the Store let go of is used any more.
	scribbleReleased(old, tw.shared)
	tw.check()
}

// chunkArrays returns the arrays of the chunks a store refers to, by the
// address of their last byte, with their bytes up to it.
func chunkArrays(s *Store) map[*byte][]byte {
	m := map[*byte][]byte{}
	for _, cs := range [][]chunk{s.chunks, s.next} {
		for _, c := range cs {
			if cap(c.b) == 0 {
				continue // let go during WriteSnapshot
			}
			full := c.b[:cap(c.b)]
			m[&full[len(full)-1]] = full
		}
	}
	return m
}

// chunkBytes returns the bytes of the chunks a store refers to: their
// arrays (counted once each) and offsets.
func chunkBytes(s *Store) int {
	n := 0
	for _, b := range chunkArrays(s) {
		n += len(b)
	}
	for _, cs := range [][]chunk{s.chunks, s.next} {
		for _, c := range cs {
			n += 4 * len(c.offs)
		}
	}
	return n
}

// scribbleReleased overwrites the arrays of old that s no longer refers
// to, so that a later use of them shows.
func scribbleReleased(old map[*byte][]byte, s *Store) {
	now := chunkArrays(s)
	for id, b := range old {
		if _, kept := now[id]; !kept {
			for i := range b {
				b[i] = 0xee
			}
		}
	}
}

// TestWriteSnapshotEqualsSnapshot: for random states, with and without
// sharing and with chunks from one record to the default size,
// WriteSnapshot writes Snapshot's bytes, and restoring them reproduces the
// state.
func TestWriteSnapshotEqualsSnapshot(t *testing.T) {
	for i, chunkSize := range []int{1, 50, 700, defaultChunkSize} {
		rng := rand.New(rand.NewPCG(uint64(i), 5))
		tw := newTwin(t, 300, chunkSize, 8)
		for round := range 30 {
			tw.random(rng, 1+rng.IntN(200))
			var b []byte
			if round%3 == 2 {
				b = mustSnapshot(t, tw.shared) // a contiguous base now and then
				if !bytes.Equal(b, tw.want()) {
					t.Fatalf("chunk size %d round %d: Snapshot differs", chunkSize, round)
				}
			} else {
				b = tw.writeShared()
			}
			for _, share := range []bool{false, true} {
				r := New(Config{ShareSnapshots: share, MaxSessions: 8})
				r.chunkSize = chunkSize
				if err := r.Restore(bytes.Clone(b)); err != nil {
					t.Fatal(err)
				}
				checkInvariants(t, r)
				var w bytes.Buffer
				if err := r.WriteSnapshot(&w); err != nil || !bytes.Equal(w.Bytes(), b) ||
					r.Hash() != tw.plain.Hash() || r.Applied() != tw.plain.Applied() {
					t.Fatalf("chunk size %d round %d share %v: the restored store differs (%v)", chunkSize, round,
						share, err)
				}
			}
			tw.check()
		}
	}
}

// TestWriteSnapshotEmpty: an empty store, and one emptied after a
// snapshot, stream the same bytes as Snapshot.
func TestWriteSnapshotEmpty(t *testing.T) {
	tw := newTwin(t, 10, 16, 4)
	tw.writeShared()
	tw.apply(Command{Op: OpSet, Key: key(1), Value: []byte("v")})
	tw.writeShared()
	tw.apply(Command{Op: OpDelete, Key: key(1)})
	tw.writeShared()
	tw.check()
	if len(tw.shared.chunks) != 0 || tw.shared.baseBytes != 0 {
		t.Fatalf("an empty store has %d chunks, %d bytes", len(tw.shared.chunks), tw.shared.baseBytes)
	}
}

// buildFailing returns a twin whose shared store has a base of many small
// chunks (written by WriteSnapshot, so each its own array) and changes of
// every kind since: keys set, overwritten, deleted, deleted and set again,
// and sessions whose cached values are in the base.
func buildFailing(t testing.TB, keys, chunkSize int, seed uint64) (*twin, *rand.Rand) {
	rng := rand.New(rand.NewPCG(seed, 77))
	tw := newTwin(t, keys, chunkSize, 6)
	for i := 0; i < keys; i += 2 {
		tw.apply(Command{Op: OpSet, Key: key(i), Value: []byte(fmt.Sprint("value ", i))})
	}
	tw.random(rng, keys/2)
	tw.writeShared()
	tw.random(rng, keys/2)
	for i := range 4 {
		k := key(rng.IntN(keys))
		tw.apply(Command{Op: OpDelete, Key: k})
		tw.apply(Command{Op: OpSet, Key: k, Value: []byte("back")})
		tw.seqs[uint64(i+1)]++
		tw.apply(Command{Op: OpSet, Key: key(2 * i), Value: []byte("x"), ClientID: uint64(i + 1),
			Seq: tw.seqs[uint64(i+1)]})
	}
	return tw, rng
}

// TestWriteSnapshotFailsCleanly fails WriteSnapshot after every possible
// number of bytes on a small store (and after a sample of them on a larger
// one): the error is returned, and the store is indistinguishable from
// before and goes on like the plain one, through further failures and
// snapshots.
func TestWriteSnapshotFailsCleanly(t *testing.T) {
	tw, _ := buildFailing(t, 40, 20, 1)
	want := tw.want()
	if len(tw.shared.chunks) < 8 {
		t.Fatalf("only %d chunks", len(tw.shared.chunks))
	}
	for k := 0; k <= len(want); k++ {
		tw, rng := buildFailing(t, 40, 20, 1)
		tw.failWrite(k, want)
		// It goes on like the plain store: a failure again, then success.
		tw.random(rng, 20)
		tw.check()
		w2 := tw.want()
		tw.failWrite(rng.IntN(len(w2)), w2)
		tw.random(rng, 20)
		tw.writeShared()
		tw.random(rng, 20)
		tw.check()
	}

	tw, _ = buildFailing(t, 3000, 512, 2)
	want = tw.want()
	rng := rand.New(rand.NewPCG(3, 3))
	for range 40 {
		k := rng.IntN(len(want) + 1)
		tw, rng2 := buildFailing(t, 3000, 512, 2)
		tw.failWrite(k, want)
		tw.random(rng2, 200)
		tw.writeShared()
		tw.check()
	}
}

// TestWriteSnapshotWithoutSharingFails: a plain store streams unchanged,
// and a failure leaves it unchanged too.
func TestWriteSnapshotWithoutSharingFails(t *testing.T) {
	tw, _ := buildFailing(t, 40, 24, 3)
	want := tw.want()
	for k := range len(want) {
		f := &failingWriter{limit: k}
		if err := tw.plain.WriteSnapshot(f); !errors.Is(err, errDiskFull) || f.after > 0 {
			t.Fatalf("after %d bytes: %v, %d writes after", k, err, f.after)
		}
		if !bytes.Equal(mustSnapshot(t, tw.plain), want) {
			t.Fatal("a failed WriteSnapshot changed the plain store")
		}
	}
}

// shortWriter takes at most n bytes per Write and does not say why.
type shortWriter struct{ n int }

func (w shortWriter) Write(p []byte) (int, error) { return min(len(p), w.n), nil }

// panicWriter panics on its first Write.
type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("writer panics") }

// TestWriteSnapshotShortWriteAndPanic: a short write without an error is
// io.ErrShortWrite; a writer that panics leaves the store consistent.
func TestWriteSnapshotShortWriteAndPanic(t *testing.T) {
	tw, rng := buildFailing(t, 200, 64, 4)
	if err := tw.shared.WriteSnapshot(shortWriter{10}); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write: %v", err)
	}
	tw.check()
	tw.random(rng, 50)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		_ = tw.shared.WriteSnapshot(panicWriter{})
	}()
	tw.check()
	tw.random(rng, 50)
	tw.writeShared()
}

// TestWriteSnapshotReleasesOldChunks streams the snapshot of a store of
// 20,000 keys whose base is in small chunks, with changes since, and at
// every Write of the stream checks that the chunks the store refers to (the
// old ones not yet merged and the new ones) never add up to much more than
// one state: the old chunks are let go as the merge passes them. It also
// overwrites each chunk let go, so that a later use of one would show in
// the bytes written or in the state.
func TestWriteSnapshotReleasesOldChunks(t *testing.T) {
	const keys, chunkSize = 20000, 2048
	tw := newTwin(t, keys, chunkSize, 64)
	for i := range keys {
		tw.apply(Command{Op: OpSet, Key: key(i), Value: []byte(fmt.Sprintf("value %032d", i))})
	}
	tw.writeShared()
	rng := rand.New(rand.NewPCG(9, 9))
	changed := 0
	for i := range 1500 {
		k := key(rng.IntN(keys + 500))
		if i%3 == 0 {
			tw.apply(Command{Op: OpDelete, Key: k})
			continue
		}
		// Session results hold old values, which are in the old chunks.
		id := uint64(1 + i%64)
		tw.seqs[id]++
		v := []byte(fmt.Sprintf("new value %d", i))
		tw.apply(Command{Op: OpSet, Key: k, Value: v, ClientID: id, Seq: tw.seqs[id]})
		changed += len(k) + len(v) + 2 + 4
	}
	want := tw.want()
	before := chunkBytes(tw.shared)
	old := chunkArrays(tw.shared)
	if len(old) < 300 {
		t.Fatalf("only %d chunks", len(old))
	}
	// One state, the changes, and a chunk in the making beside the one
	// being merged (with room for a record and offsets).
	limit := before + changed + 2*(chunkSize+writeSlack)
	if limit > before*3/2 {
		t.Fatalf("the limit %d is too loose for a state of %d bytes to show anything", limit, before)
	}
	writes, peak := 0, 0
	var got bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		writes++
		n := chunkBytes(tw.shared)
		peak = max(peak, n)
		if n > limit {
			t.Fatalf("write %d: the store refers to %d bytes of chunks; the state before had %d, the limit is %d",
				writes, n, before, limit)
		}
		scribbleReleased(old, tw.shared)
		return got.Write(p)
	})
	if err := tw.shared.WriteSnapshot(w); err != nil {
		t.Fatal(err)
	}
	if writes < len(old)/2 {
		t.Fatalf("%d writes for %d chunks", writes, len(old))
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("the bytes written differ from the plain store's snapshot")
	}
	scribbleReleased(old, tw.shared)
	if n := len(chunkArrays(tw.shared)); n == 0 {
		t.Fatal("no chunks after the snapshot")
	}
	for id := range chunkArrays(tw.shared) {
		if _, isOld := old[id]; isOld {
			t.Fatal("the store still refers to an old chunk after the snapshot")
		}
	}
	tw.check()
	tw.random(rng, 500)
	tw.writeShared()
	t.Logf("state %d bytes of chunks before, peak %d during the write (limit %d), %d after; %d writes",
		before, peak, limit, chunkBytes(tw.shared), writes)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestWriteSnapshotLetsGoOfSharedArrays: after a WriteSnapshot, a store
// that shared the bytes it was restored from, or those of its last
// AppendSnapshot, no longer refers to them: overwriting them changes
// nothing.
func TestWriteSnapshotLetsGoOfSharedArrays(t *testing.T) {
	for _, restore := range []bool{false, true} {
		tw, rng := buildFailing(t, 500, 256, 5)
		var shared []byte
		if restore {
			shared = bytes.Clone(tw.want())
			if err := tw.shared.Restore(shared); err != nil {
				t.Fatal(err)
			}
		} else {
			shared = tw.shared.AppendSnapshot([]byte("header"))
		}
		if len(tw.shared.chunks) < 10 {
			t.Fatalf("only %d chunks", len(tw.shared.chunks))
		}
		// Changes since, session results holding values of the shared
		// bytes among them.
		tw.random(rng, 300)
		tw.writeShared()
		for i := range shared {
			shared[i] = 0xee
		}
		tw.check()
		tw.random(rng, 300)
		tw.writeShared()
		tw.check()
	}
}

// TestWriteSnapshotNoChanges: a shared store streams its snapshot again
// and again without changes in between, and restored from it.
func TestWriteSnapshotNoChanges(t *testing.T) {
	tw, _ := buildFailing(t, 300, 100, 6)
	b := tw.writeShared()
	for range 3 {
		if !bytes.Equal(tw.writeShared(), b) {
			t.Fatal("snapshots differ")
		}
	}
	tw.check()
}
