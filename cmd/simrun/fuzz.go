package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// fuzzConfig is the configuration of simrun fuzz.
type fuzzConfig struct {
	Seeds        uint64        // seeds to run; 0 with a Duration means until it passes
	Duration     time.Duration // stop dispatching seeds after this long; 0 means no limit
	Workers      int           // goroutines running seeds
	Profile      string        // option profile of sim.Draw
	StartSeed    uint64        // first seed
	Out          string        // bundles go to Out/seed-<S>
	Bugs         uint64        // planted bugs (simbugs builds)
	CheckTimeout time.Duration // linearizability check time-out per seed
	MaxFailures  int           // stop dispatching after this many failures; 0 means no limit
	Progress     time.Duration // interval of progress lines; 0 means 1 s
}

// defaultFuzzSeeds is the number of seeds fuzz runs without -seeds or
// -duration.
const defaultFuzzSeeds = 100

// parseFuzz parses the flags of simrun fuzz. ok is false when the command
// must stop with the exit code code (usage error or -h).
func parseFuzz(args []string, stderr io.Writer) (cfg fuzzConfig, code int, ok bool) {
	fs := newFlagSet("fuzz", "fuzz [flags]", stderr)
	fs.Uint64Var(&cfg.Seeds, "seeds", 0, fmt.Sprintf("number of seeds to run (default %d unless -duration is set)", defaultFuzzSeeds))
	fs.DurationVar(&cfg.Duration, "duration", 0, "run seeds until this much wall time has passed (with -seeds: whichever comes first)")
	fs.IntVar(&cfg.Workers, "workers", runtime.GOMAXPROCS(0), "seeds run in parallel")
	fs.StringVar(&cfg.Profile, "profile", "swarm", "option profile: "+strings.Join(sim.Profiles(), ", "))
	fs.Uint64Var(&cfg.StartSeed, "start-seed", 1, "first seed")
	fs.StringVar(&cfg.Out, "out", "simrun-failures", "directory for failure bundles (one seed-<S> directory each)")
	bugs := fs.String("bugs", "", "comma-separated planted bugs (needs -tags simbugs)")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", 10*time.Second, "linearizability check time-out per seed (a time-out is inconclusive)")
	fs.IntVar(&cfg.MaxFailures, "max-failures", 10, "stop after this many failures (0: never)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagResult(err), false
	}
	if len(pos) > 0 {
		return cfg, usageError(stderr, "fuzz", fmt.Errorf("unexpected arguments %q", pos)), false
	}
	if cfg.Bugs, err = parseBugsFlag(*bugs); err != nil {
		return cfg, usageError(stderr, "fuzz", err), false
	}
	if err := cfg.validate(); err != nil {
		return cfg, usageError(stderr, "fuzz", err), false
	}
	return cfg, exitPass, true
}

// validate checks the configuration and fills in defaults.
func (cfg *fuzzConfig) validate() error {
	if err := checkProfile(cfg.Profile); err != nil {
		return err
	}
	if cfg.Workers < 1 {
		return fmt.Errorf("-workers %d: need at least 1", cfg.Workers)
	}
	if cfg.Duration < 0 || cfg.MaxFailures < 0 || cfg.CheckTimeout < 0 {
		return fmt.Errorf("negative -duration, -max-failures or -check-timeout")
	}
	if cfg.Seeds == 0 && cfg.Duration == 0 {
		cfg.Seeds = defaultFuzzSeeds
	}
	if cfg.Progress <= 0 {
		cfg.Progress = time.Second
	}
	return nil
}

// seedRun is the outcome of one seed of a fuzz run.
type seedRun struct {
	seed uint64
	res  *sim.Result
	wall time.Duration
	err  error
}

// fuzzStats aggregates the outcomes of a fuzz run. Only failures keep their
// full results (with their histories); every other seed is summed and
// dropped.
type fuzzStats struct {
	seeds        uint64
	simTime      sim.Time
	runWall      time.Duration // sum of the per-seed wall times
	checkWall    time.Duration // sum of the linearizability check times
	maxCheckWall time.Duration
	maxCheckSeed uint64
	verdicts     map[sim.Verdict]uint64
	counters     sim.Counters
	cov          coverage // per class, the seeds that reached it
	peakSys      uint64
	peakHeap     uint64
	failures     []*sim.Result
	inconclusive []uint64
	errs         []error
}

// add accounts for one seed.
func (st *fuzzStats) add(r seedRun) {
	st.seeds++
	if r.err != nil {
		st.errs = append(st.errs, r.err)
		return
	}
	res := r.res
	st.simTime += res.SimTime
	st.runWall += r.wall
	st.checkWall += res.CheckWall
	if res.CheckWall > st.maxCheckWall {
		st.maxCheckWall, st.maxCheckSeed = res.CheckWall, r.seed
	}
	st.verdicts[res.Verdict]++
	st.counters.Add(&res.Counters)
	st.cov.add(r.seed, &res.Counters)
	switch {
	case res.Verdict.Failed():
		st.failures = append(st.failures, res)
	case res.Verdict == sim.VerdictInconclusive:
		st.inconclusive = append(st.inconclusive, r.seed)
	}
}

// sampleMemory records the peak memory use of the process.
func (st *fuzzStats) sampleMemory() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.peakSys = max(st.peakSys, ms.Sys)
	st.peakHeap = max(st.peakHeap, ms.HeapInuse)
}

// runFuzz runs simrun fuzz: seeds StartSeed, StartSeed+1, ... on Workers
// goroutines until Seeds have run, Duration has passed, MaxFailures seeds
// have failed or ctx is cancelled (seeds already running finish). It
// prints a progress line to stderr about once a second and the summary
// and a bundle and reproduction line per failure to stdout, and returns
// the exit code.
func runFuzz(ctx context.Context, cfg fuzzConfig, stdout, stderr io.Writer) int {
	if err := cfg.validate(); err != nil {
		return usageError(stderr, "fuzz", err)
	}
	start := time.Now()
	var (
		failed     atomic.Int64
		stopReason string // written by the dispatcher before it closes jobs
		wg         sync.WaitGroup
	)
	jobs := make(chan uint64)
	results := make(chan seedRun, cfg.Workers)

	go func() {
		defer close(jobs)
		var deadline <-chan time.Time
		if cfg.Duration > 0 {
			t := time.NewTimer(cfg.Duration)
			defer t.Stop()
			deadline = t.C
		}
		for i := uint64(0); cfg.Seeds == 0 || i < cfg.Seeds; i++ {
			if cfg.MaxFailures > 0 && failed.Load() >= int64(cfg.MaxFailures) {
				stopReason = fmt.Sprintf("stopped after %d failures (-max-failures)", failed.Load())
				return
			}
			select {
			case jobs <- cfg.StartSeed + i:
			case <-deadline:
				stopReason = fmt.Sprintf("stopped after -duration %v", cfg.Duration)
				return
			case <-ctx.Done():
				stopReason = "interrupted"
				return
			}
		}
	}()
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range jobs {
				r := runSeed(seed, cfg)
				if r.err != nil || r.res.Verdict.Failed() {
					failed.Add(1) // before the result is queued: stop dispatching soon
				}
				results <- r
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	st := &fuzzStats{verdicts: make(map[sim.Verdict]uint64)}
	st.sampleMemory()
	sample := time.NewTicker(min(250*time.Millisecond, cfg.Progress))
	defer sample.Stop()
	lastProgress := start
	for done := false; !done; {
		select {
		case r, ok := <-results:
			if !ok {
				done = true
				break
			}
			st.add(r)
		case now := <-sample.C:
			st.sampleMemory()
			if now.Sub(lastProgress) >= cfg.Progress {
				lastProgress = now
				printProgress(stderr, st, now.Sub(start))
			}
		}
	}
	st.sampleMemory()
	wall := time.Since(start)

	code := exitPass
	sort.Slice(st.failures, func(i, j int) bool { return st.failures[i].Options.Seed < st.failures[j].Options.Seed })
	sort.Slice(st.inconclusive, func(i, j int) bool { return st.inconclusive[i] < st.inconclusive[j] })
	printFuzzSummary(stdout, cfg, st, wall, stopReason)
	for _, err := range st.errs {
		fmt.Fprintf(stdout, "ERROR %v\n", err)
		code = worstExit(code, exitError)
	}
	for _, res := range st.failures {
		code = worstExit(code, reportFailure(stdout, stderr, cfg, res))
	}
	return code
}

// runSeed runs one seed of a fuzz run.
func runSeed(seed uint64, cfg fuzzConfig) seedRun {
	o, err := sim.Draw(seed, cfg.Profile)
	if err != nil {
		return seedRun{seed: seed, err: fmt.Errorf("seed %d: %w", seed, err)}
	}
	o.Bugs = cfg.Bugs
	t0 := time.Now()
	res := sim.Run(o, sim.Config{CheckTimeout: cfg.CheckTimeout})
	return seedRun{seed: seed, res: res, wall: time.Since(t0)}
}

// printProgress writes one progress line.
func printProgress(w io.Writer, st *fuzzStats, elapsed time.Duration) {
	fmt.Fprintf(w, "seeds %d (%.1f/s) sim/wall %.0fx failures %d\n",
		st.seeds, float64(st.seeds)/elapsed.Seconds(), simWallRatio(st.simTime, elapsed),
		len(st.failures)+len(st.errs))
}

// simWallRatio is simulated time over wall time.
func simWallRatio(simTime sim.Time, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(simTime) / float64(wall)
}

// printFuzzSummary writes the summary of a fuzz run.
func printFuzzSummary(w io.Writer, cfg fuzzConfig, st *fuzzStats, wall time.Duration, stopReason string) {
	last := cfg.StartSeed + st.seeds - 1
	fmt.Fprintf(w, "simrun fuzz: %d seeds", st.seeds)
	if st.seeds > 0 {
		fmt.Fprintf(w, " (%d..%d)", cfg.StartSeed, last)
	}
	fmt.Fprintf(w, ", profile %s, %d workers", cfg.Profile, cfg.Workers)
	if cfg.Bugs != 0 {
		fmt.Fprintf(w, ", planted bugs %s", bugNames(cfg.Bugs))
	}
	fmt.Fprintln(w)
	if stopReason != "" {
		fmt.Fprintf(w, "%-14s%s\n", "stopped", stopReason)
	}
	secs := wall.Seconds()
	fmt.Fprintf(w, "%-14s%v\n", "wall time", wall.Round(time.Millisecond))
	fmt.Fprintf(w, "%-14s%.1f seeds/s, %.0f seeds/min\n", "throughput", float64(st.seeds)/secs, 60*float64(st.seeds)/secs)
	fmt.Fprintf(w, "%-14s%v, sim/wall %.0fx (per worker %.0fx)\n", "simulated",
		time.Duration(st.simTime).Round(time.Second), simWallRatio(st.simTime, wall), simWallRatio(st.simTime, st.runWall))
	share := 0.0
	if st.runWall > 0 {
		share = 100 * float64(st.checkWall) / float64(st.runWall)
	}
	fmt.Fprintf(w, "%-14s%.1f%% of run time (%v of %v; slowest check %v, seed %d)\n", "porcupine", share,
		st.checkWall.Round(time.Millisecond), st.runWall.Round(time.Millisecond),
		st.maxCheckWall.Round(time.Millisecond), st.maxCheckSeed)
	fmt.Fprintf(w, "%-14s%d", "inconclusive", len(st.inconclusive))
	if n := len(st.inconclusive); n > 0 {
		fmt.Fprintf(w, " (seeds %s)", seedList(st.inconclusive, 20))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-14ssys %s, heap in use %s\n", "peak memory", mib(st.peakSys), mib(st.peakHeap))
	var vs []string
	for _, v := range allVerdicts() {
		if n := st.verdicts[v]; n > 0 {
			vs = append(vs, fmt.Sprintf("%s %d", v, n))
		}
	}
	if len(st.errs) > 0 {
		vs = append(vs, fmt.Sprintf("error %d", len(st.errs)))
	}
	fmt.Fprintf(w, "%-14s%s\n", "verdicts", strings.Join(vs, ", "))
	fmt.Fprintln(w, "counters (summed over seeds)")
	writeCounters(w, st.counters, "  ")
	writeCoverage(w, &st.cov, &st.counters)
	for _, warn := range coverageWarnings(cfg.Profile, st.counters) {
		fmt.Fprintf(w, "%-14s%s\n", "WARNING", warn)
	}
	fmt.Fprintf(w, "%-14s%d\n", "failures", len(st.failures)+len(st.errs))
}

// seedList formats up to limit seeds.
func seedList(seeds []uint64, limit int) string {
	var parts []string
	for i, s := range seeds {
		if i == limit {
			parts = append(parts, fmt.Sprintf("... %d more", len(seeds)-limit))
			break
		}
		parts = append(parts, fmt.Sprint(s))
	}
	return strings.Join(parts, " ")
}

// reportFailure writes the bundle of a failed seed and prints the failure
// and its reproduction line; it returns the failure's exit code.
func reportFailure(stdout, stderr io.Writer, cfg fuzzConfig, res *sim.Result) int {
	code := resultExit(res.Verdict, res.Check)
	fmt.Fprintf(stdout, "FAIL %s\n", failureLine(res))
	dir := filepath.Join(cfg.Out, fmt.Sprintf("seed-%d", res.Options.Seed))
	bw, err := writeBundle(dir, res, true, cfg.CheckTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "simrun fuzz: seed %d: %v\n", res.Options.Seed, err)
		code = worstExit(code, exitError)
	}
	if bw.RerunHash != 0 && !bw.Deterministic {
		fmt.Fprintf(stdout, "  NON-DETERMINISM: re-running seed %d for its trace gave event hash %s, the first run %s\n",
			res.Options.Seed, hexHash(bw.RerunHash), hexHash(res.EventHash))
		code = worstExit(code, exitNonDeterminism)
	}
	fmt.Fprintf(stdout, "  bundle: %s (%d fault decisions)\n", dir, len(res.Faults))
	fmt.Fprintf(stdout, "  %s\n", reproLine(dir, res.Options, true))
	return code
}

// failureLine describes a failed run in one line.
func failureLine(res *sim.Result) string {
	s := fmt.Sprintf("seed %d: %s", res.Options.Seed, res.Verdict)
	if res.Check != "" && res.Check != res.Verdict.String() {
		s += " (" + res.Check + ")"
	}
	s += " at " + simDur(res.FailAt)
	if res.FailNode != 0 {
		s += fmt.Sprintf(" on n%d", res.FailNode)
	}
	if d, _, _ := strings.Cut(res.Detail, "\n"); d != "" {
		s += ": " + d
	}
	return s
}
