package pgstore

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// BenchmarkAppend saves batches of 1, 64 and 1024 entries of 128 bytes,
// one Save at a time (each a transaction committed with
// synchronous_commit on before the next starts), and reports entries
// appended per second and the 50th and 99th percentile of a Save's
// latency.
func BenchmarkAppend(b *testing.B) {
	dsn := testDSN(b)
	for _, batch := range []int{1, 64, 1024} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			schema := schemaOf(b.TempDir())
			b.Cleanup(func() { dropSchema(b, dsn, schema) })
			s, err := Open(Options{DSN: dsn, Schema: schema})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, 128)
			lat := make([]time.Duration, 0, b.N)
			done := make(chan error, 1)
			next := uint64(1)
			b.ResetTimer()
			for range b.N {
				es := make([]core.Entry, batch)
				for k := range es {
					es[k] = core.Entry{Index: next, Term: 1, Data: data}
					next++
				}
				start := time.Now()
				s.Save(&node.Update{Entries: es, HardState: core.HardState{Term: 1, Vote: 1, Commit: next - 1}, Sync: true}, func(err error) { done <- err })
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "appends/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
