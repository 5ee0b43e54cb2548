package harness

import (
	"errors"
	"testing"
)

// benchmark measures b.N proposals at window w. The warm-up run, setup
// (election) and the harness's own preallocation are outside the timer.
func benchmark(b *testing.B, impl string, w int) {
	defer func() {
		if p := recover(); p != nil {
			if s, ok := p.(string); ok && s == "unimplemented" {
				b.Skipf("%s: %v", impl, ErrUnimplemented)
			}
			panic(p)
		}
	}()
	// Warm up with an identical unmeasured run, so that the measured run
	// finds the heap already mapped: otherwise whichever benchmark runs
	// first in the process pays for first-touch page faults (tens of
	// thousands of them, at 10-20 µs each on a VM) and the others do not.
	if _, err := Run(impl, Options{N: b.N, W: w}); err != nil {
		if errors.Is(err, ErrUnimplemented) {
			b.Skip(err)
		}
		b.Fatal(err)
	}
	r, err := New(impl, Options{N: b.N, W: w})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Setup(); err != nil {
		if errors.Is(err, ErrUnimplemented) {
			b.Skip(err)
		}
		b.Fatal(err)
	}
	r.Prepare()
	b.ReportAllocs()
	b.ResetTimer()
	res, err := r.Measure()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.EntriesPerSec, "entries/s")
	b.ReportMetric(res.AllocsPerEntry, "allocs/entry")
	b.ReportMetric(float64(res.P50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(res.P99.Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(res.PageFaults), "faults")
}

func BenchmarkForgeW1000(b *testing.B) { benchmark(b, "forge", 1000) }
func BenchmarkEtcdW1000(b *testing.B)  { benchmark(b, "etcd", 1000) }
func BenchmarkForgeW1(b *testing.B)    { benchmark(b, "forge", 1) }
func BenchmarkEtcdW1(b *testing.B)     { benchmark(b, "etcd", 1) }
