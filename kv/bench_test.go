package kv

import (
	"fmt"
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
