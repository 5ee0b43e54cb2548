package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestSharedSnapshotWhileWritesGoOn takes snapshots of a store that shares
// them while writes go on after each one, and checks that every snapshot
// still restores exactly the state at its index: its bytes do not change
// when the store that shares them is written to, and they equal those of
// a store that never shares.
func TestSharedSnapshotWhileWritesGoOn(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shared := New(Config{ShareSnapshots: true, MaxSessions: 4})
	plain := New(Config{MaxSessions: 4})
	seqs := map[uint64]uint64{}
	type taken struct {
		index uint64
		bytes []byte // as the shared store returned them
		copy  []byte // a copy made at once
		hash  uint64
	}
	var snaps []taken
	for i := uint64(1); i <= 3000; i++ {
		cmd := EncodeCommand(randomCommand(rng, seqs))
		r1, r2 := mustApply(t, shared, i, cmd), mustApply(t, plain, i, cmd)
		if !resultEqual(r1, r2) {
			t.Fatalf("index %d: shared store answered %+v, plain %+v", i, r1, r2)
		}
		if i%97 == 0 {
			b := mustSnapshot(t, shared)
			if want := mustSnapshot(t, plain); !bytes.Equal(b, want) {
				t.Fatalf("index %d: the shared store's snapshot differs from the plain store's", i)
			}
			snaps = append(snaps, taken{i, b, bytes.Clone(b), shared.Hash()})
		}
	}
	checkInvariants(t, shared)
	if len(snaps) < 20 {
		t.Fatalf("only %d snapshots", len(snaps))
	}
	for _, s := range snaps {
		if !bytes.Equal(s.bytes, s.copy) {
			t.Fatalf("the snapshot at %d changed after later writes", s.index)
		}
		// Restored, shared or not, it is the state at its index.
		for _, share := range []bool{false, true} {
			r := New(Config{ShareSnapshots: share, MaxSessions: 4})
			if err := r.Restore(s.bytes); err != nil {
				t.Fatalf("restore the snapshot at %d: %v", s.index, err)
			}
			checkInvariants(t, r)
			if r.Applied() != s.index || r.Hash() != s.hash {
				t.Fatalf("restored at %d: applied %d, hash %#x; want %d, %#x", s.index, r.Applied(), r.Hash(),
					s.index, s.hash)
			}
		}
	}
	// A store restored with sharing goes on like one restored without, and
	// leaves the bytes it shares alone.
	last := snaps[len(snaps)-1]
	a := New(Config{ShareSnapshots: true, MaxSessions: 4})
	b := New(Config{MaxSessions: 4})
	for _, s := range []*Store{a, b} {
		if err := s.Restore(last.bytes); err != nil {
			t.Fatal(err)
		}
	}
	rng = rand.New(rand.NewPCG(3, 4))
	for i := last.index + 1; i <= last.index+1000; i++ {
		cmd := EncodeCommand(randomCommand(rng, seqs))
		if r1, r2 := mustApply(t, a, i, cmd), mustApply(t, b, i, cmd); !resultEqual(r1, r2) {
			t.Fatalf("index %d after restore: %+v vs %+v", i, r1, r2)
		}
		if i%101 == 0 && !bytes.Equal(mustSnapshot(t, a), mustSnapshot(t, b)) {
			t.Fatalf("index %d after restore: snapshots differ", i)
		}
	}
	checkInvariants(t, a)
	if !bytes.Equal(last.bytes, last.copy) {
		t.Fatal("a store restored with sharing modified the bytes it shares")
	}
}

// TestAppendSnapshot checks that AppendSnapshot leaves what is in front of
// it alone and appends exactly Snapshot's bytes.
func TestAppendSnapshot(t *testing.T) {
	for _, share := range []bool{false, true} {
		s := New(Config{ShareSnapshots: share})
		for i := range 100 {
			mustApply(t, s, uint64(i+1), cmdSet(fmt.Sprint("key", i), fmt.Sprint("value ", i), uint64(i%5+1), uint64(i+1)))
		}
		want := mustSnapshot(t, New(Config{}))
		if err := New(Config{}).Restore(want); err != nil {
			t.Fatal(err)
		}
		want = mustSnapshot(t, s)
		prefix := []byte("header")
		got := s.AppendSnapshot(prefix)
		if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("share %v: AppendSnapshot did not append Snapshot's bytes", share)
		}
		r := New(Config{})
		if err := r.Restore(got[len(prefix):]); err != nil || r.Hash() != s.Hash() {
			t.Fatalf("share %v: restore appended snapshot: %v", share, err)
		}
	}
}

// TestShareSnapshotsHoldsStateOnce measures the live heap of a store and
// the snapshot its host keeps: with ShareSnapshots the values are held once,
// in the snapshot; without, twice.
func TestShareSnapshotsHoldsStateOnce(t *testing.T) {
	const keys, valueLen = 2000, 4096
	live := func(share bool) (heap, snap uint64) {
		s := New(Config{ShareSnapshots: share})
		v := make([]byte, valueLen)
		for i := range keys {
			v[0] = byte(i)
			mustApply(t, s, uint64(i+1), EncodeCommand(Command{Op: OpSet, Key: fmt.Sprint("key", i), Value: v}))
		}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b := mustSnapshot(t, s) // what a node keeps as its latest snapshot
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(s)
		runtime.KeepAlive(b)
		return after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc), uint64(len(b))
	}
	sharedGrowth, size := live(true)
	plainGrowth, _ := live(false)
	// Without sharing the snapshot is added to the state; with it, the
	// state moves into the snapshot and the old values are freed.
	if plainGrowth < size*9/10 {
		t.Fatalf("a plain snapshot of %d bytes grew the live heap by only %d bytes: the measurement is off", size,
			plainGrowth)
	}
	if sharedGrowth > size/10 {
		t.Fatalf("a shared snapshot of %d bytes grew the live heap by %d bytes, want < 10 %%", size, sharedGrowth)
	}
}

// TestSharedStoreMatchesPlainManyKeys drives a sharing store and a plain one
// with the same random Sets, Deletes and CASes over 500 keys, the sharing
// one snapshotting at random (each snapshot becomes its base, in chunks of
// about 64 bytes, contiguous or streamed): answers, lengths, hashes and
// snapshots must agree throughout.
func TestSharedStoreMatchesPlainManyKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	shared, plain := New(Config{ShareSnapshots: true}), New(Config{})
	shared.chunkSize = 64
	for i := uint64(1); i <= 20000; i++ {
		key := fmt.Sprint("key", rng.IntN(500))
		var c Command
		switch rng.IntN(6) {
		case 0, 1:
			c = Command{Op: OpDelete, Key: key}
		case 2:
			v, _ := plain.Get(key)
			c = Command{Op: OpCAS, Key: key, Expected: v, Value: []byte(fmt.Sprint("cas", i))}
		default:
			c = Command{Op: OpSet, Key: key, Value: []byte(fmt.Sprint("v", i))[:rng.IntN(6)]}
		}
		cmd := EncodeCommand(c)
		if r1, r2 := mustApply(t, shared, i, cmd), mustApply(t, plain, i, cmd); !resultEqual(r1, r2) {
			t.Fatalf("index %d %+v: shared %+v, plain %+v", i, c, r1, r2)
		}
		if shared.Len() != plain.Len() || shared.Hash() != plain.Hash() {
			t.Fatalf("index %d: shared len %d hash %#x, plain %d %#x", i, shared.Len(), shared.Hash(), plain.Len(),
				plain.Hash())
		}
		if rng.IntN(500) == 0 {
			var a []byte
			if rng.IntN(2) == 0 {
				a = mustSnapshot(t, shared)
			} else {
				var w bytes.Buffer
				if err := shared.WriteSnapshot(&w); err != nil {
					t.Fatal(err)
				}
				a = w.Bytes()
			}
			if b := mustSnapshot(t, plain); !bytes.Equal(a, b) {
				t.Fatalf("index %d: snapshots differ", i)
			}
			checkInvariants(t, shared)
		}
	}
	checkInvariants(t, shared)
	if a, b := mustSnapshot(t, shared), mustSnapshot(t, plain); !bytes.Equal(a, b) {
		t.Fatal("final snapshots differ")
	}
}

// TestSharedSnapshotAllocations: a snapshot of a sharing store allocates a
// bounded number of times (its bytes, its index, the sorted keys changed
// since the last one, a new map), not once per key.
func TestSharedSnapshotAllocations(t *testing.T) {
	s := New(Config{ShareSnapshots: true})
	for i := range 5000 {
		mustApply(t, s, uint64(i+1), cmdSet(fmt.Sprint("key", i), "value", 0, 0))
	}
	mustSnapshot(t, s)
	next := uint64(5001)
	allocs := testing.AllocsPerRun(5, func() {
		for i := range 10 { // a few keys changed since, so that both sides merge
			mustApply(t, s, next, cmdSet(fmt.Sprint("key", i*400), "new value", 0, 0))
			next++
		}
		mustSnapshot(t, s)
	})
	// 10 Sets (a command and a value each, plus map growth) and the
	// snapshot's few: far below one per key.
	if allocs > 100 {
		t.Fatalf("%.0f allocations for a snapshot of 5,000 keys", allocs)
	}
}

// TestStreamedSnapshotsMatchPlain drives a store that shares its snapshots
// (in chunks of one record to the default size) and a plain one with the
// same random commands over 400 keys and 12 session clients (8 kept), and
// compares them after every step (answers, Hash, Len, a query) and in full
// every 100 steps. Between steps the shared store snapshots at random, by
// Snapshot, WriteSnapshot or a WriteSnapshot that fails part way, or both
// stores restore the latest snapshot: every snapshot must equal the plain
// store's. (Snapshots are taken at random rather than after every step:
// each one merges the changes into the shared store's base, and merges of
// many changes at once must be tested too.)
func TestStreamedSnapshotsMatchPlain(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		tw := newTwin(t, 400, []int{1, 40, 300, defaultChunkSize}[seed%4], 8)
		for step := 1; step <= 2500; step++ {
			tw.random(rng, 1)
			q := EncodeCommand(Command{Op: OpGet, Key: key(rng.IntN(tw.keys))})
			a1, err1 := tw.shared.Query(q)
			a2, err2 := tw.plain.Query(q)
			if err1 != nil || err2 != nil || !resultEqual(a1.(Result), a2.(Result)) {
				t.Fatalf("seed %d step %d: query answered %+v %v, plain %+v %v", seed, step, a1, err1, a2, err2)
			}
			switch rng.IntN(60) {
			case 0:
				if !bytes.Equal(mustSnapshot(t, tw.shared), tw.want()) {
					t.Fatalf("seed %d step %d: Snapshot differs", seed, step)
				}
			case 1, 2:
				tw.writeShared()
			case 3:
				want := tw.want()
				tw.failWrite(rng.IntN(len(want)), want)
			case 4:
				b := tw.want()
				if rng.IntN(2) == 0 {
					b = tw.writeShared()
				}
				for _, s := range []*Store{tw.shared, tw.plain} {
					if err := s.Restore(bytes.Clone(b)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if step%100 == 0 {
				tw.check()
			}
		}
		tw.check()
		tw.writeShared()
	}
}
