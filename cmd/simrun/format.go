package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/sim"
)

// allBugNames lists the names of the plantable bugs.
func allBugNames() []string {
	var names []string
	for b := core.Bug(1); b != 0 && b <= core.AllBugs; b <<= 1 {
		names = append(names, b.String())
	}
	return names
}

// bugNames names the planted bugs of a bug set, comma-separated ("" for none).
func bugNames(bugs uint64) string {
	var names []string
	for b := core.Bug(1); b != 0 && b <= core.AllBugs; b <<= 1 {
		if bugs&uint64(b) != 0 {
			names = append(names, b.String())
		}
	}
	return strings.Join(names, ",")
}

// parseBugsFlag parses a -bugs list and refuses planted bugs in a build that
// cannot plant them.
func parseBugsFlag(s string) (uint64, error) {
	bugs, err := sim.ParseBugs(s)
	if err != nil {
		return 0, fmt.Errorf("-bugs: %w", err)
	}
	if bugs != 0 && !core.BugsEnabled {
		return 0, fmt.Errorf("-bugs %s: planted bugs need a build with -tags simbugs (go run -tags simbugs ./cmd/simrun ...)", s)
	}
	return bugs, nil
}

// checkProfile reports an unknown profile name.
func checkProfile(p string) error {
	for _, known := range sim.Profiles() {
		if p == known {
			return nil
		}
	}
	return fmt.Errorf("unknown profile %q (known: %s)", p, strings.Join(sim.Profiles(), ", "))
}

// hexHash formats an event hash as 16 hex digits.
func hexHash(h uint64) string { return fmt.Sprintf("%016x", h) }

// parseHexHash parses an event hash written by hexHash.
func parseHexHash(s string) (uint64, error) {
	h, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("event hash %q: %w", s, err)
	}
	return h, nil
}

// simDur formats a virtual time.
func simDur(t sim.Time) string { return time.Duration(t).String() }

// allVerdicts lists every verdict, best first.
func allVerdicts() []sim.Verdict {
	return []sim.Verdict{
		sim.VerdictPass, sim.VerdictInconclusive, sim.VerdictSafety, sim.VerdictLinearizability,
		sim.VerdictLiveness, sim.VerdictPanic, sim.VerdictNonDeterminism,
	}
}

// parseVerdict parses a verdict name as written by sim.Verdict.String.
func parseVerdict(s string) (sim.Verdict, error) {
	for _, v := range allVerdicts() {
		if v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown verdict %q", s)
}

// counter is one named coverage counter.
type counter struct {
	name  string
	value uint64
}

// counterList lists the counters of c, named after their JSON tags with
// spaces for underscores, in declaration order (so new counters show up
// without changes here).
func counterList(c sim.Counters) []counter {
	v := reflect.ValueOf(c)
	t := v.Type()
	out := make([]counter, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			name = f.Name
		}
		out = append(out, counter{strings.ReplaceAll(name, "_", " "), v.Field(i).Uint()})
	}
	return out
}

// writeCounters writes the counters of c, a few per line, each line starting
// with indent.
func writeCounters(w io.Writer, c sim.Counters, indent string) {
	const perLine = 3
	list := counterList(c)
	for i := 0; i < len(list); i += perLine {
		var parts []string
		for _, k := range list[i:min(i+perLine, len(list))] {
			parts = append(parts, fmt.Sprintf("%-19s %9d", k.name, k.value))
		}
		fmt.Fprintf(w, "%s%s\n", indent, strings.Join(parts, "   "))
	}
}

// reproLine is the one-line reproduction of a bundle: replay it, or run its
// seed again (only when the options are what the seed draws, not shrunk).
func reproLine(dir string, o sim.Options, drawn bool) string {
	tags := ""
	if o.Bugs != 0 {
		tags = "-tags simbugs "
	}
	s := fmt.Sprintf("reproduce: go run %s./cmd/simrun replay %s", tags, dir)
	if drawn {
		s += fmt.Sprintf("   (or: go run %s./cmd/simrun run -seed %d -profile %s", tags, o.Seed, o.Profile)
		if o.Bugs != 0 {
			s += " -bugs " + bugNames(o.Bugs)
		}
		s += ")"
	} else {
		s += fmt.Sprintf("   (or: go run %s./cmd/simrun run -options %s)", tags, dir+"/repro.json")
	}
	return s
}

// formatEvent formats a trace event as one readable line: time in ms, kind,
// node, peer, a, b and text.
func formatEvent(e sim.Event) string {
	id := func(n uint64) string {
		if n == 0 {
			return "-"
		}
		return "n" + strconv.FormatUint(n, 10)
	}
	s := fmt.Sprintf("%12.3f %-14s %-4s %-4s a=%-6d b=%-6d", float64(e.At)/float64(sim.Millisecond),
		e.Kind, id(e.Node), id(e.Peer), e.A, e.B)
	if e.Text != "" {
		s += " " + e.Text
	}
	return strings.TrimRight(s, " ")
}

// mib formats a byte count in MiB.
func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// parseArgs parses flags interspersed with positional arguments (flag stops
// at the first positional one) and returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// A "--" terminator leaves everything after it positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagResult turns a flag parsing error into an exit code: -h is not an
// error.
func flagResult(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	return exitError
}

// newFlagSet returns a flag set for a subcommand that reports to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: simrun %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// usageError reports a usage error and returns its exit code.
func usageError(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "simrun %s: %v\n", cmd, err)
	return exitError
}
