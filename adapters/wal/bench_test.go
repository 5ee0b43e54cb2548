package wal

import (
	"flag"
	"fmt"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

var recoverMiB = flag.Int("wal.recovermib", 64, "log size of BenchmarkRecover, in MiB")

// BenchmarkAppend saves batches of 128-byte entries, fsynced, one Save at a
// time (each waits for its fsync): the cost of one Ready's write.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := openT(b, Options{Dir: b.TempDir()})
			defer storagetest.MustClose(b, s)
			data := make([]byte, 128)
			for i := range data {
				data[i] = byte(i)
			}
			es := make([]core.Entry, batch)
			done := make(chan error, 1)
			next := uint64(1)
			b.SetBytes(int64(batch * 128))
			b.ResetTimer()
			for range b.N {
				for k := range es {
					es[k] = core.Entry{Index: next + uint64(k), Term: 1, Data: data}
				}
				s.Save(&node.Update{Entries: es, HardState: core.HardState{Term: 1, Commit: next - 1}, Sync: true},
					func(err error) { done <- err })
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				next += uint64(batch)
			}
			b.StopTimer()
			st := s.Stats()
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*batch)/secs, "entries/s")
			b.ReportMetric(float64(st.Syncs)/float64(b.N), "fsyncs/save")
		})
	}
}

// BenchmarkRecover measures Open and Load of a log of -wal.recovermib MiB
// of 128-byte entries in 64 MiB segments.
func BenchmarkRecover(b *testing.B) {
	dir := b.TempDir()
	s := openT(b, Options{Dir: dir, NoSync: true})
	data := make([]byte, 128)
	const batch = 4096
	es := make([]core.Entry, batch)
	next := uint64(1)
	for written := 0; written < *recoverMiB<<20; written += batch * 128 {
		for k := range es {
			es[k] = core.Entry{Index: next + uint64(k), Term: 1, Data: data}
		}
		storagetest.MustSave(b, s, &node.Update{Entries: es, HardState: core.HardState{Term: 1, Commit: next}})
		next += batch
	}
	storagetest.MustClose(b, s)
	b.SetBytes(int64(*recoverMiB) << 20)
	b.ResetTimer()
	for range b.N {
		s := openT(b, Options{Dir: dir})
		p := storagetest.MustLoad(b, s)
		if uint64(len(p.Entries)) != next-1 {
			b.Fatalf("%d entries, want %d", len(p.Entries), next-1)
		}
		storagetest.MustClose(b, s)
	}
}
