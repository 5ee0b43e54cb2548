// Command raftbench compares the forge core with go.etcd.io/raft/v3 in the
// same in-memory, single-goroutine 3-node harness.
//
//	go run ./cmd/raftbench -n 200000 -w 1000,1 -impl both -runs 3
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/forge-consensus/consensus/bench/harness"
)

func main() {
	harness.ReexecWithMadvFree()
	n := flag.Int("n", 200000, "proposals per measurement")
	wList := flag.String("w", "1000,1", "comma-separated outstanding-proposal windows")
	impl := flag.String("impl", "both", "implementation: both, forge or etcd")
	runs := flag.Int("runs", 1, "repeat each measurement this many times")
	stat := flag.String("stat", "median", "with -runs > 1, report the median of each metric or the best run (highest entries/s): median or best")
	tick := flag.Int("tick", 0, "tick every node once every this many loop iterations during the measurement (0: never)")
	verbose := flag.Bool("v", false, "print every run to stderr")
	warmup := flag.Int("warmup", 1, "unmeasured runs of every cell before the measured ones")
	retry := flag.Int("retry", 0, "repeat a run up to this many times while other processes disturb it (see -max-foreign)")
	maxForeign := flag.Float64("max-foreign", 0.05, "a run is disturbed when other processes used more than this many CPUs on average during it")
	flag.Parse()

	var ws []int
	for _, f := range strings.Split(*wList, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || w < 1 {
			fatalf("bad -w entry %q", f)
		}
		ws = append(ws, w)
	}
	var impls []string
	switch *impl {
	case "both":
		impls = []string{"forge", "etcd"}
	case "forge", "etcd":
		impls = []string{*impl}
	default:
		fatalf("bad -impl %q (both, forge or etcd)", *impl)
	}
	if *runs < 1 {
		*runs = 1
	}
	if *stat != "median" && *stat != "best" {
		fatalf("bad -stat %q (median or best)", *stat)
	}

	type key struct {
		impl string
		w    int
	}
	results := map[key][]harness.Result{}
	failed := map[key]error{}
	// Interleave implementations and windows run by run, so slow drift of
	// the machine affects all of them alike.
	for run := -*warmup; run < *runs; run++ {
		for _, w := range ws {
			for _, im := range impls {
				k := key{im, w}
				if failed[k] != nil {
					continue
				}
				if run < 0 {
					if _, err := harness.Run(im, harness.Options{N: *n, W: w, TickEvery: *tick}); err != nil {
						failed[k] = err
						fmt.Fprintf(os.Stderr, "%s W=%d: %v\n", im, w, err)
					}
					continue
				}
				var res harness.Result
				var err error
				for attempt := 0; ; attempt++ {
					load0 := sampleLoad()
					res, err = harness.Run(im, harness.Options{N: *n, W: w, TickEvery: *tick})
					foreign := sampleLoad().foreignSince(load0)
					if err != nil || foreign <= *maxForeign {
						break
					}
					if attempt >= *retry {
						fmt.Fprintf(os.Stderr, "warning: %s W=%d: other processes used %.0f%% of a CPU during the run; numbers are disturbed\n", im, w, 100*foreign)
						break
					}
					if *verbose {
						fmt.Fprintf(os.Stderr, "run %d %s W=%d disturbed (other processes used %.0f%% of a CPU, %.0f entries/s); retrying\n", run+1, im, w, 100*foreign, res.EntriesPerSec)
					}
					time.Sleep(2 * time.Second)
				}
				if err != nil {
					failed[k] = err
					fmt.Fprintf(os.Stderr, "%s W=%d: %v\n", im, w, err)
					continue
				}
				results[k] = append(results[k], res)
				if *verbose {
					fmt.Fprintf(os.Stderr, "run %d %-5s W=%-5d %10.0f entries/s %6.2f allocs/entry %7.0f B/entry p50 %v p99 %v max %v cpu/wall %.2f faults %d gc %d iter %d msgs/entry %.2f readys/entry %.2f\n",
						run+1, im, w, res.EntriesPerSec, res.AllocsPerEntry, res.BytesPerEntry, res.P50, res.P99, res.Max, res.CPU.Seconds()/res.Elapsed.Seconds(), res.PageFaults, res.NumGC,
						res.Iterations, float64(res.Messages)/float64(res.N), float64(res.Readys)/float64(res.N))
				}
			}
		}
	}

	label := "median"
	if *stat == "best" {
		label = "best"
	}
	if *runs == 1 {
		label = "1 run"
	}
	fmt.Printf("N=%d proposals of %d bytes, 3 nodes, one goroutine, %d run(s) per cell (%s)\n\n", *n, harness.PayloadSize, *runs, label)
	fmt.Println("| impl | W | entries/s | allocs/entry | p50 | p99 |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	summary := map[key]harness.Result{}
	for _, w := range ws {
		for _, im := range impls {
			k := key{im, w}
			rs := results[k]
			if len(rs) == 0 {
				msg := "failed"
				if errors.Is(failed[k], harness.ErrUnimplemented) {
					msg = "unimplemented"
				}
				fmt.Printf("| %s | %d | %s | | | |\n", im, w, msg)
				continue
			}
			s := summarize(rs, *stat)
			summary[k] = s
			fmt.Printf("| %s | %d | %.0f | %.2f | %s | %s |\n", im, w, s.EntriesPerSec, s.AllocsPerEntry, fmtDur(s.P50), fmtDur(s.P99))
		}
	}
	fmt.Println()
	for _, w := range ws {
		f, okf := summary[key{"forge", w}]
		e, oke := summary[key{"etcd", w}]
		if !okf || !oke {
			continue
		}
		fmt.Printf("W=%d: forge/etcd throughput %.2fx (%.0f vs %.0f entries/s), allocs/entry %.2fx (%.2f vs %.2f), p50 %.2fx, p99 %.2fx\n",
			w, f.EntriesPerSec/e.EntriesPerSec, f.EntriesPerSec, e.EntriesPerSec,
			ratio(f.AllocsPerEntry, e.AllocsPerEntry), f.AllocsPerEntry, e.AllocsPerEntry,
			ratio(float64(f.P50), float64(e.P50)), ratio(float64(f.P99), float64(e.P99)))
	}
	if len(failed) > 0 {
		os.Exit(1)
	}
}

// summarize reduces repeated runs to one Result: the run with the highest
// throughput ("best"), or the per-metric median ("median").
func summarize(rs []harness.Result, stat string) harness.Result {
	if stat == "best" {
		best := rs[0]
		for _, r := range rs[1:] {
			if r.EntriesPerSec > best.EntriesPerSec {
				best = r
			}
		}
		return best
	}
	med := func(get func(harness.Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	out := rs[0]
	out.EntriesPerSec = med(func(r harness.Result) float64 { return r.EntriesPerSec })
	out.AllocsPerEntry = med(func(r harness.Result) float64 { return r.AllocsPerEntry })
	out.BytesPerEntry = med(func(r harness.Result) float64 { return r.BytesPerEntry })
	out.P50 = time.Duration(med(func(r harness.Result) float64 { return float64(r.P50) }))
	out.P99 = time.Duration(med(func(r harness.Result) float64 { return float64(r.P99) }))
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "raftbench: "+format+"\n", args...)
	os.Exit(2)
}

// load is a sample of machine-wide busy CPU time (from /proc/stat) and of
// this process's CPU time.
type load struct {
	at      time.Time
	busy    float64 // seconds, all CPUs, all processes
	own     float64 // seconds, this process
	hasBusy bool
}

func sampleLoad() load {
	l := load{at: time.Now()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		l.own = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return l
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return l
	}
	var total, idle float64
	for i, v := range f[1:] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return l
		}
		total += x
		if i == 3 || i == 4 { // idle, iowait
			idle += x
		}
	}
	const userHZ = 100 // USER_HZ is 100 on Linux
	l.busy = (total - idle) / userHZ
	l.hasBusy = true
	return l
}

// foreignSince returns the average number of CPUs that other processes
// kept busy since l0 (0 when unknown).
func (l load) foreignSince(l0 load) float64 {
	if !l.hasBusy || !l0.hasBusy {
		return 0
	}
	wall := l.at.Sub(l0.at).Seconds()
	if wall <= 0 {
		return 0
	}
	f := ((l.busy - l0.busy) - (l.own - l0.own)) / wall
	if f < 0 {
		return 0
	}
	return f
}
