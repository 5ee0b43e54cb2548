package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// shrinkConfig is the configuration of simrun shrink.
type shrinkConfig struct {
	Bundle       string
	Budget       time.Duration // wall-clock budget of the search
	Out          string        // shrunk bundle directory; "" means BUNDLE-shrunk
	CheckTimeout time.Duration
}

// parseShrink parses the arguments of simrun shrink.
func parseShrink(args []string, stderr io.Writer) (cfg shrinkConfig, code int, ok bool) {
	fs := newFlagSet("shrink", "shrink BUNDLE [flags]", stderr)
	fs.DurationVar(&cfg.Budget, "budget", 2*time.Minute, "wall-clock budget of the search")
	fs.StringVar(&cfg.Out, "out", "", "directory of the shrunk bundle (default BUNDLE-shrunk)")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", 10*time.Second, "linearizability check time-out per run")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagResult(err), false
	}
	if len(pos) != 1 {
		fs.Usage()
		return cfg, usageError(stderr, "shrink", fmt.Errorf("need exactly one bundle, got %d arguments", len(pos))), false
	}
	if cfg.Budget <= 0 {
		return cfg, usageError(stderr, "shrink", fmt.Errorf("-budget %v: must be positive", cfg.Budget)), false
	}
	cfg.Bundle = pos[0]
	return cfg, exitPass, true
}

// ddmin reduces items to a 1-minimal subset on which fails still holds
// (Zeller and Hildebrandt's delta debugging): removing any single item of
// the result makes fails false. fails must hold for items; it is called
// with fresh slices in the original order, never twice with the same
// subset, and never after stop returns true, in which case ddmin returns
// the smallest failing subset found so far. The empty subset is tried
// first.
func ddmin[T any](items []T, fails func([]T) bool, stop func() bool) []T {
	cur := make([]int, len(items))
	for i := range cur {
		cur[i] = i
	}
	seen := make(map[string]bool)
	test := func(idx []int) bool {
		var key strings.Builder
		for _, i := range idx {
			key.WriteString(strconv.Itoa(i))
			key.WriteByte(',')
		}
		if r, ok := seen[key.String()]; ok {
			return r
		}
		sub := make([]T, len(idx))
		for j, i := range idx {
			sub[j] = items[i]
		}
		r := fails(sub)
		seen[key.String()] = r
		return r
	}
	pick := func(idx []int) []T {
		out := make([]T, len(idx))
		for j, i := range idx {
			out[j] = items[i]
		}
		return out
	}
	if len(cur) == 0 || stop() {
		return pick(cur)
	}
	if test([]int{}) {
		return pick([]int{})
	}
	n := 2
	for len(cur) >= 2 {
		chunks := split(cur, n)
		reduced := false
		// Try each chunk on its own, then (with more than two chunks,
		// where complements differ from chunks) each complement.
		for _, c := range chunks {
			if stop() {
				return pick(cur)
			}
			if test(c) {
				cur, n, reduced = c, 2, true
				break
			}
		}
		if !reduced && n > 2 {
			for i := range chunks {
				if stop() {
					return pick(cur)
				}
				comp := complement(chunks, i)
				if test(comp) {
					cur, n, reduced = comp, max(n-1, 2), true
					break
				}
			}
		}
		if !reduced {
			if n >= len(cur) {
				break
			}
			n = min(2*n, len(cur))
		}
	}
	return pick(cur)
}

// split cuts idx into n nearly equal, contiguous, non-empty chunks.
func split(idx []int, n int) [][]int {
	n = min(n, len(idx))
	chunks := make([][]int, 0, n)
	start := 0
	for i := range n {
		end := start + (len(idx)-start)/(n-i)
		chunks = append(chunks, idx[start:end:end])
		start = end
	}
	return chunks
}

// complement concatenates every chunk but the i-th.
func complement(chunks [][]int, i int) []int {
	var out []int
	for j, c := range chunks {
		if j != i {
			out = append(out, c...)
		}
	}
	return out
}

// optionClass is a fault class of the options that shrink tries to turn
// off.
type optionClass struct {
	name string
	// off turns the class off in o and reports whether that changed o.
	off func(o *sim.Options) bool
}

// zeroF sets *f to 0 and reports whether it was not.
func zeroF(f *float64) bool {
	changed := *f != 0
	*f = 0
	return changed
}

// optionClasses returns the classes shrink tries to turn off, one at a
// time. The fault-schedule rates only matter when Options.Faults is nil
// (the schedule replaces them), so they go as one class, to keep the
// shrunk options honest.
func optionClasses() []optionClass {
	return []optionClass{
		{"network.drop_rate", func(o *sim.Options) bool { return zeroF(&o.Network.DropRate) }},
		{"network.dup_rate", func(o *sim.Options) bool { return zeroF(&o.Network.DupRate) }},
		{"disk.stall_rate", func(o *sim.Options) bool { return zeroF(&o.Disk.StallRate) }},
		{"disk.write_error_rate", func(o *sim.Options) bool { return zeroF(&o.Disk.WriteErrorRate) }},
		{"disk.read_error_rate", func(o *sim.Options) bool { return zeroF(&o.Disk.ReadErrorRate) }},
		{"disk.torn_rate", func(o *sim.Options) bool { return zeroF(&o.Disk.TornRate) }},
		{"drift", func(o *sim.Options) bool { return zeroF(&o.Drift) }},
		{"schedule rates", func(o *sim.Options) bool {
			changed := false
			for _, f := range []*float64{&o.CrashRate, &o.CrashOnWrite, &o.PauseRate, &o.PartitionRate,
				&o.ClogRate, &o.MembershipRate, &o.TransferRate, &o.Storage.FlipRate, &o.Storage.LostWriteRate,
				&o.Storage.MisdirectRate, &o.Storage.LatentRate, &o.Storage.CrashAfter,
				&o.ConfChurn.ReplaceRate, &o.ConfChurn.ReplaceCrash, &o.ConfChurn.RaceRate, &o.ConfChurn.CrashAfterApplyRate} {
				changed = zeroF(f) || changed
			}
			return changed
		}},
	}
}

// shrinker searches for smaller options that fail the same way.
type shrinker struct {
	verdict  sim.Verdict
	check    string
	cfg      sim.Config
	deadline time.Time
	ctx      context.Context
	runs     int
}

// stop reports whether the budget is spent or the user interrupted.
func (s *shrinker) stop() bool {
	return s.ctx.Err() != nil || !time.Now().Before(s.deadline)
}

// fails runs o and reports whether it fails the same way: same verdict
// and same check.
func (s *shrinker) fails(o sim.Options) bool {
	s.runs++
	res := sim.Run(o, s.cfg)
	return res.Verdict == s.verdict && res.Check == s.check
}

// shrinkFaults runs ddmin over the fault decisions of o.
func (s *shrinker) shrinkFaults(o sim.Options) sim.Options {
	o.Faults = ddmin(o.Faults, func(fs []sim.Fault) bool {
		t := o
		t.Faults = fs // never nil: nil would redraw the schedule
		return s.fails(t)
	}, s.stop)
	if o.Faults == nil {
		o.Faults = []sim.Fault{}
	}
	return o
}

// shrinkClasses turns off each option class that the failure does not
// need, and returns the options and the names of the classes turned off.
func (s *shrinker) shrinkClasses(o sim.Options) (sim.Options, []string) {
	var off []string
	for _, c := range optionClasses() {
		if s.stop() {
			break
		}
		t := o
		if !c.off(&t) {
			continue
		}
		if s.fails(t) {
			o = t
			off = append(off, c.name)
		}
	}
	return o, off
}

// runShrink runs simrun shrink: it reduces a failing bundle's fault
// decisions (ddmin) and fault classes while the run still fails with the
// same verdict and check, within the budget, and writes the shrunk
// bundle. It returns the exit code of the shrunk run's verdict (the
// failure it still has), 1 if the bundle does not fail as recorded, or
// the non-determinism code.
func runShrink(ctx context.Context, cfg shrinkConfig, stdout, stderr io.Writer) int {
	start := time.Now()
	b, err := loadBundle(cfg.Bundle)
	if err != nil {
		return usageError(stderr, "shrink", err)
	}
	if !b.Verdict.Failed() {
		return usageError(stderr, "shrink", fmt.Errorf("bundle %s did not fail (verdict %s): nothing to shrink", b.Dir, b.Verdict))
	}
	if b.Options.Bugs != 0 {
		if _, err := parseBugsFlag(bugNames(b.Options.Bugs)); err != nil {
			return usageError(stderr, "shrink", err)
		}
	}
	out := cfg.Out
	if out == "" {
		out = filepath.Clean(b.Dir) + "-shrunk"
	}
	s := &shrinker{
		verdict: b.Verdict, check: b.Repro.Check, ctx: ctx, deadline: start.Add(cfg.Budget),
		// Only a linearizability failure needs the history checked: every
		// other verdict is decided before the check.
		cfg: sim.Config{CheckTimeout: cfg.CheckTimeout, SkipLinearizability: b.Verdict != sim.VerdictLinearizability},
	}

	// The bundle must reproduce before anything else.
	first := sim.Run(b.Options, sim.Config{CheckTimeout: cfg.CheckTimeout})
	s.runs++
	if first.EventHash != b.Hash {
		fmt.Fprintf(stdout, "NON-DETERMINISM: %s replays with event hash %s, recorded %s\n", b.Dir, hexHash(first.EventHash), hexHash(b.Hash))
		return exitNonDeterminism
	}
	if first.Verdict != s.verdict || first.Check != s.check {
		return usageError(stderr, "shrink", fmt.Errorf("bundle %s replays as %s (%s), recorded %s (%s)", b.Dir,
			first.Verdict, first.Check, s.verdict, s.check))
	}
	before := len(b.Options.Faults)
	fmt.Fprintf(stdout, "shrinking %s: %s (%s), %d fault decisions, budget %v\n", b.Dir, s.verdict, s.check, before, cfg.Budget)

	o := s.shrinkFaults(b.Options)
	fmt.Fprintf(stdout, "  fault decisions: %d -> %d (%d runs)\n", before, len(o.Faults), s.runs)
	o, off := s.shrinkClasses(o)
	if len(off) > 0 {
		fmt.Fprintf(stdout, "  turned off: %s\n", strings.Join(off, ", "))
		// With less noise fewer decisions may do.
		if n := len(o.Faults); n > 1 && !s.stop() {
			o = s.shrinkFaults(o)
			if len(o.Faults) < n {
				fmt.Fprintf(stdout, "  fault decisions: %d -> %d\n", n, len(o.Faults))
			}
		}
	}
	if s.stop() {
		fmt.Fprintf(stdout, "  budget spent: the result is smaller but may not be minimal\n")
	}

	// The shrunk run, checked in full, makes the bundle.
	res := sim.Run(o, sim.Config{CheckTimeout: cfg.CheckTimeout})
	s.runs++
	if res.Verdict != s.verdict || res.Check != s.check {
		// Every accepted step failed the same way, so this is a run that
		// is not reproducible (or a linearizability time-out).
		fmt.Fprintf(stdout, "NON-DETERMINISM: the shrunk options now give %s (%s), not %s (%s)\n",
			res.Verdict, res.Check, s.verdict, s.check)
		return exitNonDeterminism
	}
	code := resultExit(res.Verdict, res.Check)
	bw, err := writeBundle(out, res, false, cfg.CheckTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "simrun shrink: %v\n", err)
		code = worstExit(code, exitError)
	}
	if bw.RerunHash != 0 && !bw.Deterministic {
		fmt.Fprintf(stdout, "NON-DETERMINISM: re-running the shrunk options for the trace gave event hash %s, the first run %s\n",
			hexHash(bw.RerunHash), hexHash(res.EventHash))
		code = worstExit(code, exitNonDeterminism)
	}
	fmt.Fprintf(stdout, "shrunk: %d -> %d fault decisions, %d runs in %v\n", before, len(o.Faults), s.runs,
		time.Since(start).Round(time.Millisecond))
	if n := len(o.Faults); n > 0 && n <= 10 {
		fmt.Fprintln(stdout, "remaining fault decisions:")
		for _, f := range o.Faults {
			fmt.Fprintf(stdout, "  %s\n", describeFault(f))
		}
	}
	fmt.Fprintf(stdout, "FAIL %s\n", failureLine(res))
	fmt.Fprintf(stdout, "  bundle: %s\n", out)
	fmt.Fprintf(stdout, "  %s\n", reproLine(out, res.Options, false))
	return code
}

// describeFault formats a fault decision for people.
func describeFault(f sim.Fault) string {
	s := fmt.Sprintf("%-12s %s", simDur(f.At), f.Kind)
	if f.Dur != 0 {
		s += " for " + simDur(f.Dur)
	}
	if f.Kind == sim.FaultPartition {
		s += fmt.Sprintf(" shape %d", f.Shape)
		if f.OneWay {
			s += " one-way"
		}
		if f.Flap {
			s += " flapping"
		}
	}
	return s + fmt.Sprintf(" (r %d)", f.R)
}
