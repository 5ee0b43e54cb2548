package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// runConfig is the configuration of simrun run.
type runConfig struct {
	Seed         uint64
	Profile      string
	Bugs         uint64
	BugsSet      bool   // -bugs was given (overrides the bugs of -options)
	Verbose      bool   // print the event log
	TraceFile    string // write the trace as JSON lines
	BundleDir    string // write a bundle, even on pass
	OptionsFile  string // run these options instead of drawing them
	CheckTimeout time.Duration
}

// parseRun parses the flags of simrun run.
func parseRun(args []string, stderr io.Writer) (cfg runConfig, code int, ok bool) {
	fs := newFlagSet("run", "run -seed S [flags]", stderr)
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed to run (required unless -options)")
	fs.StringVar(&cfg.Profile, "profile", "swarm", "option profile: "+strings.Join(sim.Profiles(), ", "))
	bugs := fs.String("bugs", "", "comma-separated planted bugs (needs -tags simbugs)")
	fs.BoolVar(&cfg.Verbose, "v", false, "print the resolved options and every event (time in ms, kind, node, peer, a, b, text)")
	fs.StringVar(&cfg.TraceFile, "trace", "", "write every event to this file as JSON lines")
	fs.StringVar(&cfg.BundleDir, "bundle", "", "write a bundle to this directory, even if the run passes")
	fs.StringVar(&cfg.OptionsFile, "options", "", "run the options of this repro.json, bundle directory or options JSON (overrides -seed and -profile)")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", 10*time.Second, "linearizability check time-out (a time-out is inconclusive)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagResult(err), false
	}
	if len(pos) > 0 {
		return cfg, usageError(stderr, "run", fmt.Errorf("unexpected arguments %q", pos)), false
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "seed":
			seedSet = true
		case "bugs":
			cfg.BugsSet = true
		}
	})
	if !seedSet && cfg.OptionsFile == "" {
		return cfg, usageError(stderr, "run", fmt.Errorf("need -seed S or -options FILE")), false
	}
	if err := checkProfile(cfg.Profile); err != nil {
		return cfg, usageError(stderr, "run", err), false
	}
	if cfg.Bugs, err = parseBugsFlag(*bugs); err != nil {
		return cfg, usageError(stderr, "run", err), false
	}
	return cfg, exitPass, true
}

// options resolves the options to run and says whether they are what
// sim.Draw gives for their seed and profile.
func (cfg runConfig) options() (o sim.Options, drawn bool, err error) {
	if cfg.OptionsFile != "" {
		o, err = loadOptions(cfg.OptionsFile)
		if err != nil {
			return o, false, err
		}
		if cfg.BugsSet {
			o.Bugs = cfg.Bugs
		}
		return o, false, nil
	}
	o, err = sim.Draw(cfg.Seed, cfg.Profile)
	if err != nil {
		return o, false, fmt.Errorf("draw options: %w", err)
	}
	o.Bugs = cfg.Bugs
	return o, true, nil
}

// runOne runs simrun run: one run, its verdict, detail, event hash and
// counters on stdout, optionally its event log, trace file and bundle. It
// returns the exit code of the verdict.
func runOne(cfg runConfig, stdout, stderr io.Writer) int {
	o, drawn, err := cfg.options()
	if err != nil {
		return usageError(stderr, "run", err)
	}
	if o.Bugs != 0 {
		if _, err := parseBugsFlag(bugNames(o.Bugs)); err != nil {
			return usageError(stderr, "run", err)
		}
	}
	simCfg := sim.Config{CheckTimeout: cfg.CheckTimeout, Trace: sim.TraceOptions{KeepEvents: cfg.Verbose}}
	var (
		traceF *os.File
		traceW *bufio.Writer
	)
	if cfg.TraceFile != "" {
		if traceF, err = os.Create(cfg.TraceFile); err != nil {
			return usageError(stderr, "run", fmt.Errorf("trace: %w", err))
		}
		traceW = bufio.NewWriterSize(traceF, 1<<20)
		simCfg.Trace.Writer = traceW
	}
	if cfg.Verbose {
		b, err := json.Marshal(o)
		if err != nil {
			return usageError(stderr, "run", fmt.Errorf("options: %w", err))
		}
		fmt.Fprintf(stdout, "options %s\n", b)
	}

	t0 := time.Now()
	res := sim.Run(o, simCfg)
	wall := time.Since(t0)
	code := resultExit(res.Verdict, res.Check)

	if traceF != nil {
		err := res.Trace.Err()
		if ferr := traceW.Flush(); err == nil {
			err = ferr
		}
		if cerr := traceF.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintf(stderr, "simrun run: trace %s: %v\n", cfg.TraceFile, err)
			code = worstExit(code, exitError)
		}
	}
	if cfg.Verbose {
		w := bufio.NewWriter(stdout)
		for _, e := range res.Trace.Events() {
			fmt.Fprintln(w, formatEvent(e))
		}
		if err := w.Flush(); err != nil {
			fmt.Fprintf(stderr, "simrun run: event log: %v\n", err)
			code = worstExit(code, exitError)
		}
	}
	printResult(stdout, res, wall)
	if cfg.TraceFile != "" {
		fmt.Fprintf(stdout, "%-13s%s\n", "trace", cfg.TraceFile)
	}
	if cfg.BundleDir != "" {
		bw, err := writeBundle(cfg.BundleDir, res, drawn, cfg.CheckTimeout)
		if err != nil {
			fmt.Fprintf(stderr, "simrun run: %v\n", err)
			code = worstExit(code, exitError)
		}
		if bw.RerunHash != 0 && !bw.Deterministic {
			fmt.Fprintf(stdout, "NON-DETERMINISM: re-running for the trace gave event hash %s, the first run %s\n",
				hexHash(bw.RerunHash), hexHash(res.EventHash))
			code = worstExit(code, exitNonDeterminism)
		}
		fmt.Fprintf(stdout, "%-13s%s\n", "bundle", cfg.BundleDir)
		fmt.Fprintln(stdout, reproLine(cfg.BundleDir, res.Options, drawn))
	}
	return code
}

// printResult writes what a run found: verdict, detail, event hash,
// times and counters.
func printResult(w io.Writer, res *sim.Result, wall time.Duration) {
	o := res.Options
	fmt.Fprintf(w, "seed %d, profile %s, %d nodes, %d clients, %d fault decisions", o.Seed, o.Profile, o.Nodes, o.Clients, len(res.Faults))
	if o.Bugs != 0 {
		fmt.Fprintf(w, ", planted bugs %s", bugNames(o.Bugs))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-13s%s\n", "verdict", res.Verdict)
	if res.Check != "" {
		fmt.Fprintf(w, "%-13s%s\n", "check", res.Check)
	}
	if res.Verdict.Failed() {
		at := simDur(res.FailAt)
		if res.FailNode != 0 {
			at += fmt.Sprintf(" on n%d", res.FailNode)
		}
		fmt.Fprintf(w, "%-13s%s\n", "failed at", at)
	}
	if res.Detail != "" {
		fmt.Fprintf(w, "%-13s%s\n", "detail", strings.ReplaceAll(strings.TrimRight(res.Detail, "\n"), "\n", "\n             "))
	}
	fmt.Fprintf(w, "%-13s%s (%d events)\n", "event hash", hexHash(res.EventHash), res.Events)
	fmt.Fprintf(w, "%-13s%s in %v wall (%.0fx), linearizability check %v\n", "simulated", simDur(res.SimTime),
		wall.Round(time.Millisecond), simWallRatio(res.SimTime, wall), res.CheckWall.Round(time.Millisecond))
	fmt.Fprintln(w, "counters")
	writeCounters(w, res.Counters, "  ")
	writeReached(w, &res.Counters)
}
