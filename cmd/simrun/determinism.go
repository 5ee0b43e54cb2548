package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// determinismConfig is the configuration of simrun check-determinism.
type determinismConfig struct {
	Seeds     uint64
	StartSeed uint64
	Profile   string
	Workers   int
	Bugs      uint64
	Progress  time.Duration // interval of progress lines; 0 means 1 s
}

// parseDeterminism parses the flags of simrun check-determinism.
func parseDeterminism(args []string, stderr io.Writer) (cfg determinismConfig, code int, ok bool) {
	fs := newFlagSet("check-determinism", "check-determinism [flags]", stderr)
	fs.Uint64Var(&cfg.Seeds, "seeds", 50, "number of seeds, each run twice")
	fs.Uint64Var(&cfg.StartSeed, "start-seed", 1, "first seed")
	fs.StringVar(&cfg.Profile, "profile", "swarm", "option profile: "+strings.Join(sim.Profiles(), ", "))
	fs.IntVar(&cfg.Workers, "workers", runtime.GOMAXPROCS(0), "seeds checked in parallel")
	bugs := fs.String("bugs", "", "comma-separated planted bugs (needs -tags simbugs)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagResult(err), false
	}
	if len(pos) > 0 {
		return cfg, usageError(stderr, "check-determinism", fmt.Errorf("unexpected arguments %q", pos)), false
	}
	if cfg.Bugs, err = parseBugsFlag(*bugs); err != nil {
		return cfg, usageError(stderr, "check-determinism", err), false
	}
	return cfg, exitPass, true
}

// determinismRun is the outcome of checking one seed.
type determinismRun struct {
	seed             uint64
	hash1, hash2     uint64
	events1, events2 uint64
	verdict1         sim.Verdict
	verdict2         sim.Verdict
	report           string // how the runs diverge; "" if they do not
	err              error
}

// firstDivergence returns the first index at which two sequences of
// running hashes differ (the shorter one's length if one is a prefix of the
// other), or false if they are equal.
func firstDivergence(a, b []uint64) (int, bool) {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i, true
		}
	}
	return n, len(a) != len(b)
}

// checkSeed runs a seed twice, keeping the running hashes, and compares.
func checkSeed(seed uint64, cfg determinismConfig) determinismRun {
	r := determinismRun{seed: seed}
	o, err := sim.Draw(seed, cfg.Profile)
	if err != nil {
		r.err = fmt.Errorf("seed %d: %w", seed, err)
		return r
	}
	o.Bugs = cfg.Bugs
	simCfg := sim.Config{Trace: sim.TraceOptions{KeepHashes: true}, SkipLinearizability: true}
	a := sim.Run(o, simCfg)
	b := sim.Run(o, simCfg)
	r.hash1, r.hash2, r.events1, r.events2 = a.EventHash, b.EventHash, a.Events, b.Events
	r.verdict1, r.verdict2 = a.Verdict, b.Verdict
	if a.EventHash == b.EventHash && a.Verdict == b.Verdict {
		return r
	}
	idx, _ := firstDivergence(a.Trace.Hashes(), b.Trace.Hashes())
	r.report = describeDivergence(o, idx)
	return r
}

// describeDivergence re-runs o twice keeping every event and describes
// where the two runs part: the events before and the first differing
// event of each. The re-runs may not diverge where the first pair did (or
// at all); idx is where the first pair diverged.
func describeDivergence(o sim.Options, idx int) string {
	simCfg := sim.Config{Trace: sim.TraceOptions{KeepEvents: true, KeepHashes: true}, SkipLinearizability: true}
	a := sim.Run(o, simCfg)
	b := sim.Run(o, simCfg)
	ea, eb := a.Trace.Events(), b.Trace.Events()
	var s strings.Builder
	fmt.Fprintf(&s, "  first runs diverged at event %d\n", idx)
	j, diverged := firstDivergence(a.Trace.Hashes(), b.Trace.Hashes())
	if !diverged {
		fmt.Fprintf(&s, "  the re-runs with every event kept did not diverge; event %d of the re-run:\n", idx)
		if idx < len(ea) {
			fmt.Fprintf(&s, "    %s\n", formatEvent(ea[idx]))
		}
		return s.String()
	}
	fmt.Fprintf(&s, "  re-runs diverged at event %d, after:\n", j)
	for i := max(0, j-3); i < j && i < len(ea); i++ {
		fmt.Fprintf(&s, "    %s\n", formatEvent(ea[i]))
	}
	for k, ev := range [][]sim.Event{ea, eb} {
		if j < len(ev) {
			fmt.Fprintf(&s, "  run %d: %s\n", k+1, formatEvent(ev[j]))
		} else {
			fmt.Fprintf(&s, "  run %d: (ended after %d events)\n", k+1, len(ev))
		}
	}
	return s.String()
}

// runDeterminism runs simrun check-determinism: every seed twice, with
// the same options, comparing the event hashes. It prints "N seeds
// deterministic" or, for each seed that is not, the first diverging event
// of each run, and returns the exit code (6 for non-determinism).
func runDeterminism(ctx context.Context, cfg determinismConfig, stdout, stderr io.Writer) int {
	if err := checkProfile(cfg.Profile); err != nil {
		return usageError(stderr, "check-determinism", err)
	}
	if cfg.Workers < 1 {
		return usageError(stderr, "check-determinism", fmt.Errorf("-workers %d: need at least 1", cfg.Workers))
	}
	if cfg.Progress <= 0 {
		cfg.Progress = time.Second
	}
	start := time.Now()
	jobs := make(chan uint64)
	results := make(chan determinismRun, cfg.Workers)
	interrupted := false // written by the dispatcher before it closes jobs
	go func() {
		defer close(jobs)
		for i := uint64(0); i < cfg.Seeds; i++ {
			select {
			case jobs <- cfg.StartSeed + i:
			case <-ctx.Done():
				interrupted = true
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range jobs {
				results <- checkSeed(seed, cfg)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	var all []determinismRun
	tick := time.NewTicker(cfg.Progress)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case r, ok := <-results:
			if !ok {
				done = true
				break
			}
			all = append(all, r)
		case <-tick.C:
			fmt.Fprintf(stderr, "determinism: %d of %d seeds checked\n", len(all), cfg.Seeds)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seed < all[j].seed })

	code, bad := exitPass, 0
	for _, r := range all {
		switch {
		case r.err != nil:
			fmt.Fprintf(stdout, "ERROR %v\n", r.err)
			code = worstExit(code, exitError)
		case r.report != "":
			bad++
			fmt.Fprintf(stdout, "NON-DETERMINISM seed %d: event hash %s (%d events, %s) vs %s (%d events, %s)\n%s",
				r.seed, hexHash(r.hash1), r.events1, r.verdict1, hexHash(r.hash2), r.events2, r.verdict2, r.report)
			code = worstExit(code, exitNonDeterminism)
		}
	}
	if interrupted {
		fmt.Fprintf(stdout, "interrupted after %d of %d seeds\n", len(all), cfg.Seeds)
	}
	wall := time.Since(start).Round(time.Millisecond)
	if bad == 0 {
		fmt.Fprintf(stdout, "%d seeds deterministic (profile %s, seeds %d..%d, each run twice, %v)\n",
			len(all), cfg.Profile, cfg.StartSeed, cfg.StartSeed+uint64(len(all))-1, wall)
	} else {
		fmt.Fprintf(stdout, "%d of %d seeds NOT deterministic (%v)\n", bad, len(all), wall)
	}
	return code
}
