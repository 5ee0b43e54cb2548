package pebblestore

import (
	"sync"
	"testing"

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
	defer closeT(b, s)
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
	defer closeT(b, s)
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
