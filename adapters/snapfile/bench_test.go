package snapfile

import (
	"flag"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

var benchMiB = flag.Int("snapfile.benchmib", 128, "snapshot size of BenchmarkSnapshot, in MiB")

// BenchmarkSnapshot makes a snapshot of -snapfile.benchmib MiB durable,
// fsynced: with Write, the data built whole in memory first (as a state
// machine's Snapshot returns it: its allocation is counted), and streamed
// through Create, Write in 64 KiB pieces and Commit (as a SnapshotWriter
// writes it); and WriteOnly, Write without the building of the data. Each
// is one snapshot per iteration; -count repeats each subbenchmark in a row,
// so run them one at a time (-bench BenchmarkSnapshot/Stream ...) to
// interleave them.
func BenchmarkSnapshot(b *testing.B) {
	size := *benchMiB << 20
	piece := make([]byte, 64<<10)
	for i := range piece {
		piece[i] = byte(i * 7)
	}
	meta := core.SnapshotMeta{Index: 1000, Term: 3, Config: core.ConfState{Voters: []uint64{1, 2, 3}}}
	b.Run("Write", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for range b.N {
			data := make([]byte, 0, size)
			for len(data) < size {
				data = append(data, piece...)
			}
			if _, _, err := Write(dir, &core.Snapshot{Meta: meta, Data: data}, nil, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same without building the data: the cost of Write alone.
	b.Run("WriteOnly", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for range b.N {
			b.StopTimer()
			data := make([]byte, 0, size)
			for len(data) < size {
				data = append(data, piece...)
			}
			b.StartTimer()
			if _, _, err := Write(dir, &core.Snapshot{Meta: meta, Data: data}, nil, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Stream", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for range b.N {
			w, err := Create(dir)
			if err != nil {
				b.Fatal(err)
			}
			for n := 0; n < size; n += len(piece) {
				if _, err := w.Write(piece); err != nil {
					b.Fatal(err)
				}
			}
			if _, _, err := w.Commit(meta, nil, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}
