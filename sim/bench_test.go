package sim

import (
	"runtime/debug"
	"testing"
)

// BenchmarkRun5Nodes runs whole 60-second simulations of five nodes under
// the swarm profile (the first 16 seeds that draw five nodes), with the
// garbage collector set as simrun sets it (GOGC=400).
func BenchmarkRun5Nodes(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	var opts []Options
	for seed := uint64(1); len(opts) < 16; seed++ {
		o, err := Draw(seed, "swarm")
		if err != nil {
			b.Fatal(err)
		}
		if o.Nodes == 5 {
			opts = append(opts, o)
		}
	}
	b.ReportAllocs()
	var sim, events float64
	for i := 0; b.Loop(); i++ {
		res := Run(opts[i%len(opts)], Config{})
		if res.Verdict.Failed() {
			b.Fatalf("seed %d: %s: %s", res.Options.Seed, res.Verdict, res.Detail)
		}
		sim += float64(res.SimTime)
		events += float64(res.Events)
	}
	b.ReportMetric(sim/float64(b.Elapsed()), "sim/wall")
	b.ReportMetric(events/float64(b.N), "events/run")
}
