package linearizability

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkCheck checks a realistic linearizable history: 4 clients, 8
// keys, 2000 operations, 3% of them open.
func BenchmarkCheck(b *testing.B) {
	h := genHistory(rand.New(rand.NewPCG(1, 2)), realistic())
	b.ReportAllocs()
	var res Result
	for b.Loop() {
		res = Check(h, time.Second)
	}
	if res.Verdict != Ok {
		b.Fatalf("verdict %v, want ok", res.Verdict)
	}
	b.ReportMetric(float64(len(h.Ops)), "ops/history")
	b.ReportMetric(float64(res.Open+res.Dropped), "open/history")
}

// BenchmarkCheckStaleRead checks the same history with one stale read.
func BenchmarkCheckStaleRead(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := genHistory(rng, realistic())
	if !staleRead(rng, h) {
		b.Fatal("no stale read")
	}
	b.ReportAllocs()
	var res Result
	for b.Loop() {
		res = Check(h, time.Second)
	}
	if res.Verdict != Illegal {
		b.Fatalf("verdict %v, want illegal", res.Verdict)
	}
}
