package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
)

// BenchmarkApplySet applies Sets of 64-byte values over 1024 keys from 16
// session clients, the common write path of the simulator.
func BenchmarkApplySet(b *testing.B) {
	const keys, clients = 1024, 16
	value := make([]byte, 64)
	cmds := make([][]byte, 4096)
	seqs := make([]uint64, clients)
	for i := range cmds {
		c := i % clients
		seqs[c]++
		cmds[i] = EncodeCommand(Command{Op: OpSet, Key: fmt.Sprintf("key-%04d", i%keys), Value: value,
			ClientID: uint64(c + 1), Seq: seqs[c]})
	}
	b.ReportAllocs()
	b.ResetTimer()
	var s *Store
	for i := 0; i < b.N; i++ {
		j := i % len(cmds)
		if j == 0 {
			// Sequence numbers restart with each pass over cmds.
			b.StopTimer()
			s = New(Config{})
			b.StartTimer()
		}
		if r := s.Apply(uint64(i+1), cmds[j]).(Result); r.Status != StatusOK || r.Deduplicated {
			b.Fatalf("apply %d: %+v", i, r)
		}
	}
}

// BenchmarkApplySetNoSession is BenchmarkApplySet without sessions (Seq 0).
func BenchmarkApplySetNoSession(b *testing.B) {
	value := make([]byte, 64)
	cmds := make([][]byte, 1024)
	for i := range cmds {
		cmds[i] = EncodeCommand(Command{Op: OpSet, Key: fmt.Sprintf("key-%04d", i), Value: value})
	}
	s := New(Config{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Apply(uint64(i+1), cmds[i%len(cmds)])
	}
}

// BenchmarkSnapshot snapshots a store of 10,000 keys and 100 sessions.
func BenchmarkSnapshot(b *testing.B) {
	s := New(Config{})
	for i := 0; i < 10000; i++ {
		s.Apply(uint64(i+1), cmdSet(fmt.Sprintf("key-%05d", i), "some value", uint64(i%100+1), uint64(i/100+1)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplySetShared is BenchmarkApplySetNoSession on a store that
// shares its snapshots, with 100,000 keys in its base: every Set looks the
// old value up by binary search.
func BenchmarkApplySetShared(b *testing.B) {
	s := New(Config{ShareSnapshots: true})
	value := make([]byte, 64)
	for i := 0; i < 100000; i++ {
		s.Apply(uint64(i+1), EncodeCommand(Command{Op: OpSet, Key: fmt.Sprintf("key-%06d", i), Value: value}))
	}
	if _, err := s.Snapshot(); err != nil {
		b.Fatal(err)
	}
	cmds := make([][]byte, 1024)
	for i := range cmds {
		cmds[i] = EncodeCommand(Command{Op: OpSet, Key: fmt.Sprintf("key-%06d", i*97), Value: value})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Apply(uint64(100001+i), cmds[i%len(cmds)])
	}
}

// benchSnapshots caches, per number of keys, the snapshot of a store of that
// many keys (key-%07d) with 128-byte values.
var benchSnapshots = map[int][]byte{}

// benchStore returns a store restored from the snapshot of keys keys, with
// sharing or not; a sharing store has streamed one snapshot already, so
// that its base is in chunks of its own, as it is on a node that streams
// its snapshots.
func benchStore(b *testing.B, keys int, share bool) *Store {
	snap := benchSnapshots[keys]
	if snap == nil {
		s := New(Config{})
		value := make([]byte, 128)
		for i := range keys {
			binary.BigEndian.PutUint64(value, uint64(i))
			s.Apply(uint64(i+1), EncodeCommand(Command{Op: OpSet, Key: fmt.Sprintf("key-%07d", i), Value: value}))
		}
		snap = mustSnapshot(b, s)
		benchSnapshots[keys] = snap
	}
	s := New(Config{ShareSnapshots: share})
	if err := s.Restore(bytes.Clone(snap)); err != nil {
		b.Fatal(err)
	}
	if share {
		if err := s.WriteSnapshot(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// benchChanges applies 1,000 Sets of existing keys, the changes between two
// snapshots.
func benchChanges(s *Store, keys int, round int) {
	value := make([]byte, 128)
	for i := range 1000 {
		k := (round*1000 + i) * 7919 % keys
		value[0] = byte(round)
		s.Apply(s.Applied()+1, EncodeCommand(Command{Op: OpSet, Key: fmt.Sprintf("key-%07d", k), Value: value}))
	}
}

// BenchmarkAppendSnapshot snapshots, with AppendSnapshot, stores of 100,000
// and 1,000,000 keys with 128-byte values, 1,000 of them changed since the
// last snapshot, with and without sharing. With sharing, peak-B is the
// most bytes of state the store and the snapshot hold at once: the old
// base and the new snapshot (with its offsets).
func BenchmarkAppendSnapshot(b *testing.B) {
	for _, keys := range []int{100000, 1000000} {
		for _, share := range []bool{false, true} {
			b.Run(fmt.Sprintf("keys=%d/share=%v", keys, share), func(b *testing.B) {
				s := benchStore(b, keys, share)
				peak := 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					benchChanges(s, keys, i)
					before := chunkBytes(s)
					b.StartTimer()
					snap := s.AppendSnapshot(nil)
					b.StopTimer()
					b.SetBytes(int64(len(snap)))
					if share {
						peak = max(peak, before+chunkBytes(s))
					}
					b.StartTimer()
				}
				if share {
					b.ReportMetric(float64(peak), "peak-B")
				}
			})
		}
	}
}

// BenchmarkWriteSnapshot is BenchmarkAppendSnapshot with WriteSnapshot to
// io.Discard. With sharing, peak-B is the most bytes of chunks the store
// refers to at any Write: old ones not merged yet and new ones.
func BenchmarkWriteSnapshot(b *testing.B) {
	for _, keys := range []int{100000, 1000000} {
		for _, share := range []bool{false, true} {
			b.Run(fmt.Sprintf("keys=%d/share=%v", keys, share), func(b *testing.B) {
				s := benchStore(b, keys, share)
				peak, size := 0, 0
				measure := writerFunc(func(p []byte) (int, error) {
					peak = max(peak, chunkBytes(s))
					size += len(p)
					return len(p), nil
				})
				// One measured stream, then the timed ones.
				benchChanges(s, keys, 0)
				if err := s.WriteSnapshot(measure); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					benchChanges(s, keys, i+1)
					b.StartTimer()
					if err := s.WriteSnapshot(io.Discard); err != nil {
						b.Fatal(err)
					}
				}
				if share {
					b.ReportMetric(float64(peak), "peak-B")
				}
			})
		}
	}
}
