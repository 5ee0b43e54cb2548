package pebblestore

import (
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

func benchEntry(index uint64, data []byte) *node.Update {
	return &node.Update{
		Entries:   []core.Entry{{Index: index, Term: 1, Data: data}},
		HardState: core.HardState{Term: 1, Vote: 1, Commit: index - 1},
		Sync:      true,
	}
}

func reportSaves(b *testing.B, s *Storage) {
	secs := b.Elapsed().Seconds()
	st := s.Stats()
	b.ReportMetric(float64(b.N)/secs, "saves/s")
	b.ReportMetric(float64(st.Syncs)/secs, "fsyncs/s")
	if st.Syncs > 0 {
		b.ReportMetric(float64(st.Updates)/float64(st.Syncs), "saves/fsync")
	}
}

// BenchmarkSave saves one 128-byte entry at a time, fsynced, waiting for
// each to complete: the latency-bound path of a node with one outstanding
// Save.
func BenchmarkSave(b *testing.B) {
	s := openT(b, Options{Dir: b.TempDir()})
	defer storagetest.MustClose(b, s)
	data := make([]byte, 128)
	done := make(chan error, 1)
	b.ResetTimer()
	for i := range b.N {
		s.Save(benchEntry(uint64(i+1), data), func(err error) { done <- err })
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportSaves(b, s)
}

// BenchmarkSaveGrouped keeps up to 256 Saves of one 128-byte entry
// outstanding: group commit merges them, one fsync covering many.
func BenchmarkSaveGrouped(b *testing.B) {
	s := openT(b, Options{Dir: b.TempDir()})
	defer storagetest.MustClose(b, s)
	data := make([]byte, 128)
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range b.N {
		sem <- struct{}{}
		wg.Add(1)
		s.Save(benchEntry(uint64(i+1), data), func(err error) {
			if err != nil {
				b.Error(err)
			}
			<-sem
			wg.Done()
		})
	}
	wg.Wait()
	b.StopTimer()
	reportSaves(b, s)
}

// BenchmarkGuardCost measures what the guard file costs one client: it
// saves one fsynced 128-byte entry at a time, alternating between a store
// with the guard and one without (interleaved, so that both see the same
// disk and machine load), and reports the mean latency of each and their
// ratio.
func BenchmarkGuardCost(b *testing.B) {
	with := openT(b, Options{Dir: b.TempDir()})
	defer storagetest.MustClose(b, with)
	without := openT(b, Options{Dir: b.TempDir(), noGuard: true})
	defer storagetest.MustClose(b, without)
	data := make([]byte, 128)
	done := make(chan error, 1)
	var tWith, tWithout time.Duration
	save := func(s *Storage, i int) time.Duration {
		start := time.Now()
		s.Save(benchEntry(uint64(i+1), data), func(err error) { done <- err })
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			tWith += save(with, i)
			tWithout += save(without, i)
		} else {
			tWithout += save(without, i)
			tWith += save(with, i)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(tWith.Microseconds())/n, "µs/save-guard")
	b.ReportMetric(float64(tWithout.Microseconds())/n, "µs/save-noguard")
	b.ReportMetric(float64(tWith)/float64(tWithout), "ratio")
	if g := with.Stats().GuardWrites; g < uint64(b.N) {
		b.Fatalf("%d guard writes for %d saves", g, b.N)
	}
}

// BenchmarkGuardCostGrouped is BenchmarkGuardCost with up to 256 Saves
// outstanding (group commit): the stores alternate every 1,000 Saves, and
// the throughput of each and their ratio are reported. The guard's
// fdatasync overlaps the committer's next Pebble batch.
func BenchmarkGuardCostGrouped(b *testing.B) {
	with := openT(b, Options{Dir: b.TempDir()})
	defer storagetest.MustClose(b, with)
	without := openT(b, Options{Dir: b.TempDir(), noGuard: true})
	defer storagetest.MustClose(b, without)
	data := make([]byte, 128)
	next := map[*Storage]uint64{with: 1, without: 1}
	run := func(s *Storage, n int) time.Duration {
		sem := make(chan struct{}, 256)
		var wg sync.WaitGroup
		start := time.Now()
		for range n {
			sem <- struct{}{}
			wg.Add(1)
			s.Save(benchEntry(next[s], data), func(err error) {
				if err != nil {
					b.Error(err)
				}
				<-sem
				wg.Done()
			})
			next[s]++
		}
		wg.Wait()
		return time.Since(start)
	}
	var tWith, tWithout time.Duration
	b.ResetTimer()
	for left := b.N; left > 0; left -= 1000 {
		n := min(left, 1000)
		tWith += run(with, n)
		tWithout += run(without, n)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(n/tWith.Seconds(), "saves/s-guard")
	b.ReportMetric(n/tWithout.Seconds(), "saves/s-noguard")
	b.ReportMetric(tWithout.Seconds()/tWith.Seconds(), "throughput-ratio")
}
