package main

import (
	"fmt"
	"io"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// replayConfig is the configuration of simrun replay.
type replayConfig struct {
	Bundle       string
	Verbose      bool
	CheckTimeout time.Duration
}

// parseReplay parses the arguments of simrun replay.
func parseReplay(args []string, stderr io.Writer) (cfg replayConfig, code int, ok bool) {
	fs := newFlagSet("replay", "replay BUNDLE [flags]", stderr)
	fs.BoolVar(&cfg.Verbose, "v", false, "print every event (time in ms, kind, node, peer, a, b, text)")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", 10*time.Second, "linearizability check time-out")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagResult(err), false
	}
	if len(pos) != 1 {
		fs.Usage()
		return cfg, usageError(stderr, "replay", fmt.Errorf("need exactly one bundle, got %d arguments", len(pos))), false
	}
	cfg.Bundle = pos[0]
	return cfg, exitPass, true
}

// runReplay runs simrun replay: it re-runs a bundle's options and checks
// that the verdict and the event hash are what the bundle recorded. It
// returns the exit code of the replayed verdict, or the non-determinism
// code if the event hash differs.
func runReplay(cfg replayConfig, stdout, stderr io.Writer) int {
	b, err := loadBundle(cfg.Bundle)
	if err != nil {
		return usageError(stderr, "replay", err)
	}
	if b.Options.Bugs != 0 {
		if _, err := parseBugsFlag(bugNames(b.Options.Bugs)); err != nil {
			return usageError(stderr, "replay", err)
		}
	}
	t0 := time.Now()
	res := sim.Run(b.Options, sim.Config{CheckTimeout: cfg.CheckTimeout, Trace: sim.TraceOptions{KeepEvents: cfg.Verbose}})
	wall := time.Since(t0)
	for _, e := range res.Trace.Events() {
		fmt.Fprintln(stdout, formatEvent(e))
	}
	printResult(stdout, res, wall)

	code := resultExit(res.Verdict, res.Check)
	same := func(ok bool) string {
		if ok {
			return "identical"
		}
		return "DIFFERENT"
	}
	fmt.Fprintf(stdout, "replay of %s\n", b.Dir)
	fmt.Fprintf(stdout, "  verdict     recorded %-16s replayed %-16s %s\n", b.Verdict, res.Verdict, same(b.Verdict == res.Verdict))
	if b.Repro.Check != res.Check {
		fmt.Fprintf(stdout, "  check       recorded %-16q replayed %-16q DIFFERENT\n", b.Repro.Check, res.Check)
	}
	fmt.Fprintf(stdout, "  event hash  recorded %-16s replayed %-16s %s\n", hexHash(b.Hash), hexHash(res.EventHash), same(b.Hash == res.EventHash))
	if b.Hash != res.EventHash {
		fmt.Fprintf(stdout, "NON-DETERMINISM: the replay's event hash differs from the bundle's (recorded %d events, replayed %d)\n",
			b.Repro.Events, res.Events)
		return exitNonDeterminism
	}
	if b.Verdict != res.Verdict {
		// Same events, other verdict: only the linearizability check's
		// wall-clock time-out can do this.
		fmt.Fprintf(stdout, "note: same events but another verdict (a linearizability check time-out?)\n")
	}
	return code
}
