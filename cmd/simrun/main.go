// Command simrun is the command-line front end of the deterministic Raft
// simulator (package sim): it fuzzes many seeds in parallel, runs or replays
// one, shrinks a failure to the fault decisions that matter and checks that
// runs are deterministic.
//
// Usage:
//
//	simrun fuzz [-seeds N] [-duration D] [-workers W] [-profile P] [-start-seed S]
//	            [-out DIR] [-bugs LIST] [-check-timeout D] [-max-failures N]
//	simrun run -seed S [-profile P] [-bugs LIST] [-v] [-trace FILE] [-bundle DIR]
//	           [-options FILE] [-check-timeout D]
//	simrun replay BUNDLE [-v] [-check-timeout D]
//	simrun shrink BUNDLE [-budget D] [-out DIR] [-check-timeout D]
//	simrun check-determinism [-seeds N] [-start-seed S] [-profile P] [-workers W] [-bugs LIST]
//	simrun help
//
// A failure bundle is a directory (fuzz writes <out>/seed-<S>) holding
// repro.json (format version, commit, Go version, seed, profile, the fully
// resolved options including the fault schedule, verdict, failed check and
// detail, failing node and time, event hash and count, coverage counters),
// trace.jsonl (one JSON object per event), history.json and history.html
// (the client history and porcupine's timeline of it) and faults.json (the
// fault decisions that shrink reduces).
//
// Exit codes:
//
//	0  pass (inconclusive linearizability checks are counted, not failures)
//	1  usage or internal error
//	2  safety violation
//	3  linearizability violation
//	4  liveness failure
//	5  panic in the code under test
//	6  non-determinism
//	7  a membership change applied above the durable commit index, or a
//	   restart below one (the safety checks applied-durable and
//	   restart-below-applied)
//
// When a command finds several failures its exit code is the most severe,
// in the order non-determinism > panic > applied-durable > safety >
// linearizability > liveness. "go run" turns every non-zero exit code into 1; scripts that
// look at the code run a built binary. Planted bugs (-bugs) need a build
// with -tags simbugs.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// Runs allocate briskly and keep little: trading some memory (well
		// under 512 MiB per worker) for less collection speeds fuzzing up.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// dispatch runs the subcommand named by args[0] and returns the exit code.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stdout)
		return exitPass
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
		return exitPass
	case "fuzz":
		cfg, code, ok := parseFuzz(rest, stderr)
		if !ok {
			return code
		}
		return runFuzz(ctx, cfg, stdout, stderr)
	case "run":
		cfg, code, ok := parseRun(rest, stderr)
		if !ok {
			return code
		}
		return runOne(cfg, stdout, stderr)
	case "replay":
		cfg, code, ok := parseReplay(rest, stderr)
		if !ok {
			return code
		}
		return runReplay(cfg, stdout, stderr)
	case "shrink":
		cfg, code, ok := parseShrink(rest, stderr)
		if !ok {
			return code
		}
		return runShrink(ctx, cfg, stdout, stderr)
	case "check-determinism":
		cfg, code, ok := parseDeterminism(rest, stderr)
		if !ok {
			return code
		}
		return runDeterminism(ctx, cfg, stdout, stderr)
	}
	fmt.Fprintf(stderr, "simrun: unknown command %q\n\n", cmd)
	printUsage(stderr)
	return exitError
}

// usage is the text of simrun help.
const usage = `simrun: the command-line front end of the deterministic Raft simulator.

Commands:
  fuzz               run many seeds in parallel, write a bundle per failure,
                     print counters and the coverage table
  run                run one seed and print its verdict, event hash and counters
  replay BUNDLE      re-run a bundle and check verdict and event hash are identical
  shrink BUNDLE      reduce a failing bundle's fault decisions and options
  check-determinism  run each seed twice and compare event hashes
  help               this text

Run "simrun COMMAND -h" for the flags of a command.

Examples:
  go run ./cmd/simrun fuzz -seeds 1000
  go run ./cmd/simrun fuzz -duration 10m -workers 2 -profile lease
  go run ./cmd/simrun run -seed 17 -v
  go run ./cmd/simrun run -seed 17 -bundle /tmp/seed-17
  go run ./cmd/simrun replay simrun-failures/seed-17
  go run ./cmd/simrun shrink simrun-failures/seed-17 -budget 2m
  go run ./cmd/simrun check-determinism -seeds 50
  go run -tags simbugs ./cmd/simrun fuzz -seeds 50 -bugs read-local
  go run -tags simbugs ./cmd/simrun fuzz -seeds 200 -profile storage -bugs storage-ignores-checksums

Profiles: swarm (default: each fault class on with some probability,
silent storage faults on 3 seeds in 10), calm (no faults), lease (swarm
with lease reads, bounded drift, no pauses), storage (swarm with silent
storage faults on every seed: bit flips, lost and misdirected writes,
latent read errors on a minority of the nodes).

Planted bugs (-bugs, comma-separated; need -tags simbugs):
  {{BUGS}}

Bundle (fuzz writes DIR/seed-<S>):
  repro.json    format version, commit, Go version, seed, profile, resolved
                options (with the fault schedule as run), verdict, check,
                detail, failing node and time, event hash, counters
  trace.jsonl   every event of the run, one JSON object per line
  history.json  the client history; history.html its porcupine timeline
  faults.json   the fault decisions (what shrink reduces)

Exit codes:
  0  pass (inconclusive linearizability checks are reported, not failures)
  1  usage or internal error
  2  safety violation
  3  linearizability violation
  4  liveness failure
  5  panic
  6  non-determinism
  7  a membership change applied above the durable commit index, or a
     restart below one (safety checks applied-durable, restart-below-applied)
With several failures the most severe wins: non-determinism > panic >
  applied-durable > safety > linearizability > liveness.
"go run" reports any non-zero code as 1 ("exit status N" on stderr); build
the binary (go build -o simrun ./cmd/simrun) where the code matters.
`

// printUsage writes the usage text to w.
func printUsage(w io.Writer) {
	fmt.Fprint(w, strings.Replace(usage, "{{BUGS}}", strings.Join(allBugNames(), ", "), 1))
}
