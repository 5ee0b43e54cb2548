package encrypt_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/adapters/wal"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// BenchmarkWriteCost measures the cost of encryption at rest on the write
// path: a plain WAL and an encrypted one (in directories of their own)
// take the same Saves of 256-byte entries, fsynced, interleaved Save by
// Save so that both see the same machine load. It reports the writes
// (entries) per second of each and their ratio (encrypted/plain); sync=false
// (the WAL's UNSAFE NoSync) shows the CPU cost alone, without the fsync
// that dominates a real write.
func BenchmarkWriteCost(b *testing.B) {
	for _, batch := range []int{1, 64} {
		for _, sync := range []bool{true, false} {
			b.Run(fmt.Sprintf("batch=%d/sync=%v", batch, sync), func(b *testing.B) {
				plainDir, encDir := b.TempDir(), b.TempDir()
				open := func(dir string) func() (node.Storage, error) {
					return func() (node.Storage, error) {
						return wal.Open(wal.Options{Dir: dir, ClusterID: 7, NodeID: 1, NoSync: !sync})
					}
				}
				plain, err := open(plainDir)()
				if err != nil {
					b.Fatal(err)
				}
				defer storagetest.MustClose(b, plain.(storagetest.Store))
				enc, err := encrypt.Open(encrypt.Options{Dir: encDir, Key: testKey(b, 1), NoSync: !sync}, open(encDir))
				if err != nil {
					b.Fatal(err)
				}
				defer storagetest.MustClose(b, enc)
				data := make([]byte, 256)
				for i := range data {
					data[i] = byte(i)
				}
				es := make([]core.Entry, batch)
				done := make(chan error, 1)
				next := uint64(1)
				var tPlain, tEnc time.Duration
				save := func(s node.Storage) time.Duration {
					for k := range es {
						es[k] = core.Entry{Index: next + uint64(k), Term: 1, Data: data}
					}
					start := time.Now()
					s.Save(&node.Update{Entries: es, HardState: core.HardState{Term: 1, Commit: next - 1}, Sync: true},
						func(err error) { done <- err })
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					return time.Since(start)
				}
				b.ResetTimer()
				for i := range b.N {
					if i%2 == 0 { // alternate which goes first
						tPlain += save(plain)
						tEnc += save(enc)
					} else {
						tEnc += save(enc)
						tPlain += save(plain)
					}
					next += uint64(batch)
				}
				b.StopTimer()
				n := float64(b.N * batch)
				b.ReportMetric(n/tPlain.Seconds(), "plain-writes/s")
				b.ReportMetric(n/tEnc.Seconds(), "encrypted-writes/s")
				b.ReportMetric(tPlain.Seconds()/tEnc.Seconds(), "enc/plain")
			})
		}
	}
}
