//go:build linux

// Command storagecompare measures our cluster beside the machine's commit
// floor in one interleaved run: for each client count and each round it
// runs the floor (bench/cmd/commitfloor), then our cluster with each
// storage type (consensusd with storage.type wal, pebble, bolt, badger or
// postgres), one after the other, and reports medians. A postgres cluster
// keeps each node in a schema of its own, created for the run and dropped
// after it, in the database CONSENSUS_TEST_POSTGRES_DSN names (as the
// tests use); without that variable postgres is skipped, saying so.
//
// Every system is three processes on loopback with fsync on, driven by a
// separate client process (commitfloor -drive for the floor, loadgen over
// the binary client protocol for ours) writing 128-byte values. The
// systems are started and warmed up once, then measured in turn:
//
//	round 1: c=1: floor, wal, pebble; c=100: floor, wal, pebble; c=1000: ...
//	round 2: ...
//
// so that a slow quarter hour of the shared disk hurts all of them alike.
// While ours run it samples the leader's resident memory (VmRSS in
// /proc/PID/status) and afterwards estimates its live log (the
// forge_consensus_log_entries metric times the bytes of an entry) and its
// state's size (its newest snapshot file). With -profile it takes CPU profiles of each cluster's
// leader in extra, unmeasured runs.
//
// From bench/:
//
//	go run ./cmd/storagecompare                              # the full run
//	go run ./cmd/storagecompare -rounds 1 -scale 0.1         # a quick look
//	go run ./cmd/storagecompare -systems floor,pebble -profile 1,100
//	go run ./cmd/storagecompare -systems floor,wal,pebble,bolt,badger,postgres -scale 0.3
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "storagecompare:", err)
		os.Exit(1)
	}
}

type options struct {
	repo, bench, work string
	systems           []string
	clients           []int
	ns                []int
	rounds            int
	warmup            int
	runWarmup         int
	size              int
	profile           []int
	profileSeconds    int
	rssKeys           []int
	heap              bool
	memoryLimit       int64 // memory_limit of every node (0: none)
	port              int   // the floor's first port; clusters from port+100 on
	keep              bool
	serverEnv         []string // extra environment of every system's server processes
}

func run() error {
	var (
		o       options
		systems = flag.String("systems", "floor,wal,pebble", "systems in the order each round runs them: floor, floor+apply (commitfloor -apply), and"+
			" storage types of our cluster (wal, pebble, bolt, badger, postgres), each optionally with +TRANSPORT (default +grpc; +tcp)")
		clients = flag.String("clients", "1,100,1000", "client counts")
		ns      = flag.String("n", "3000,50000,100000", "writes timed per run, one per client count")
		scale   = flag.Float64("scale", 1, "multiply every -n and -warmup by this (a quick look: 0.1)")
		profile = flag.String("profile", "", "client counts at which to take a CPU profile of each cluster's leader"+
			" (extra runs, not in the table), e.g. 1,100")
	)
	flag.StringVar(&o.repo, "repo", "..", "the repository's root (the consensus module)")
	flag.StringVar(&o.work, "work", "", "directory for binaries, data, logs and profiles (default: a new temporary one)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds (the table gives medians)")
	flag.IntVar(&o.warmup, "warmup", 150000, "writes (100 clients) to each system once it is up, unmeasured: a fresh"+
		" Pebble is slower until it has recycled its first write-ahead log")
	flag.IntVar(&o.runWarmup, "run-warmup", 1000, "writes before each timed run, unmeasured")
	flag.IntVar(&o.size, "size", 128, "bytes per value")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 10, "length of each CPU profile")
	rssKeys := flag.String("rss-keys", "", "after the rounds, write this many distinct keys to each cluster (100"+
		" clients) and report the leader's memory against a large state; a comma list runs one after the other"+
		" (empty: skip)")
	flag.BoolVar(&o.heap, "heap", false, "with -rss-keys: after each large-state run save the leader's heap profile"+
		" (after a GC) and print its Go memory statistics")
	flag.IntVar(&o.port, "port", 27601, "first port: the floor's replicas use it and the next two, the clusters"+
		" ports from port+100 on (10 raft ports each, +100 API, +200 client, +300 pprof)")
	flag.Int64Var(&o.memoryLimit, "memory-limit", 0, "memory_limit (bytes) in every node's configuration (0: none)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	gomaxprocs := flag.Int("gomaxprocs", 0, "set GOMAXPROCS of every system's server processes (0: Go's default)")
	flag.Parse()
	o.systems = strings.Split(*systems, ",")
	if *gomaxprocs > 0 {
		o.serverEnv = append(o.serverEnv, fmt.Sprintf("GOMAXPROCS=%d", *gomaxprocs))
	}
	var err error
	if o.clients, err = ints(*clients); err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	if o.ns, err = ints(*ns); err != nil || len(o.ns) != len(o.clients) {
		return fmt.Errorf("-n: one positive count per client count (%v)", err)
	}
	for i := range o.ns {
		o.ns[i] = max(1, int(float64(o.ns[i])**scale))
	}
	o.warmup = int(float64(o.warmup) * *scale)
	if *rssKeys != "" {
		if o.rssKeys, err = ints(*rssKeys); err != nil {
			return fmt.Errorf("-rss-keys: %w", err)
		}
	}
	if *profile != "" {
		if o.profile, err = ints(*profile); err != nil {
			return fmt.Errorf("-profile: %w", err)
		}
	}
	if o.repo, err = filepath.Abs(o.repo); err != nil {
		return err
	}
	if o.bench, err = os.Getwd(); err != nil {
		return err
	}
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "storagecompare-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(o.work)
		}
	}
	return compare(o)
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// bins are the built commands.
type bins struct{ consensusd, loadgen, commitfloor string }

func build(o options) (bins, error) {
	dir := filepath.Join(o.work, "bin")
	b := bins{filepath.Join(dir, "consensusd"), filepath.Join(dir, "loadgen"), filepath.Join(dir, "commitfloor")}
	for _, t := range []struct{ dir, out, pkg string }{
		{o.repo, b.consensusd, "./cmd/consensusd"},
		{o.repo, b.loadgen, "./cmd/loadgen"},
		{o.bench, b.commitfloor, "./cmd/commitfloor"},
	} {
		cmd := exec.Command("go", "build", "-o", t.out, t.pkg)
		cmd.Dir = t.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w\n%s", t.pkg, err, out)
		}
	}
	return b, nil
}

// sample is one timed run's figures.
type sample struct {
	ops            float64
	p50, p99, p999 time.Duration
	errors         int
	line           string
	mem            memory
	cpu            time.Duration // CPU time of the system's server processes per write (warm-up included)
	clientCPU      time.Duration // CPU time of the load generator per write (warm-up included)
	busy           float64       // the machine's busy fraction of all CPUs over the run (/proc/stat)
}

// memory is the leader's memory during a run of our cluster.
type memory struct {
	maxRSS   int64 // bytes, the largest sample of VmRSS
	lastRSS  int64 // bytes, VmRSS once the run is over
	logBytes int64 // the live log after the run (entries × (value + entryOverhead))
	state    int64 // the newest snapshot file after the run
}

var resultRE = regexp.MustCompile(`([0-9.]+) (?:ops|writes)/s\s+p50 (\S+)\s+p99 (\S+)\s+p999 (\S+)`)

// parse reads the result line of loadgen or commitfloor -drive.
func parse(out string) (sample, error) {
	line := strings.TrimSpace(strings.SplitN(strings.TrimSpace(out), "\n", 2)[0])
	m := resultRE.FindStringSubmatch(line)
	if m == nil {
		return sample{}, fmt.Errorf("no result in %q", out)
	}
	s := sample{line: line}
	var err error
	if s.ops, err = strconv.ParseFloat(m[1], 64); err != nil {
		return s, err
	}
	for i, d := range []*time.Duration{&s.p50, &s.p99, &s.p999} {
		if *d, err = time.ParseDuration(m[2+i]); err != nil {
			return s, err
		}
	}
	if e := regexp.MustCompile(`errors=(\d+)`).FindStringSubmatch(line); e != nil {
		s.errors, _ = strconv.Atoi(e[1])
	}
	return s, nil
}

// system is one thing measured: the floor or a cluster of ours.
type system interface {
	name() string
	start() error
	// drive runs one client process: warm writes unmeasured, then n timed,
	// from clients clients; keys distinct keys (0: the client's default).
	drive(clients, n, warm, keys int) (sample, error)
	stop()
}

func compare(o options) error {
	fmt.Printf("storagecompare: building into %s\n", o.work)
	b, err := build(o)
	if err != nil {
		return err
	}
	var systems []system
	defer func() {
		for _, s := range systems {
			s.stop()
		}
	}()
	runID := newRunID()
	for k, name := range o.systems {
		var s system
		switch name {
		case "floor":
			s = &floor{bin: b.commitfloor, port: o.port, dir: filepath.Join(o.work, "floor"), size: o.size, env: o.serverEnv}
		case "floor+apply":
			s = &floor{bin: b.commitfloor, port: o.port + 50, dir: filepath.Join(o.work, "floor-apply"), size: o.size,
				env: o.serverEnv, apply: true}
		default:
			storage, transport, _ := strings.Cut(name, "+")
			if transport == "" {
				transport = "grpc"
			}
			cl := &cluster{bins: b, storage: storage, transport: transport, label: name, base: o.port + 100 + 10*k,
				dir: filepath.Join(o.work, "ours-"+name), size: o.size, env: o.serverEnv, memoryLimit: o.memoryLimit}
			if storage == "postgres" {
				dsn := os.Getenv(envDSN)
				if dsn == "" {
					fmt.Printf("%s: skipped: %s is not set (a PostgreSQL database the run may create schemas in)\n",
						cl.name(), envDSN)
					continue
				}
				cl.pg = &pgSchemas{dsn: dsn, prefix: schemaPrefix(runID, name)}
			}
			s = cl
		}
		fmt.Printf("starting %s\n", s.name())
		if err := s.start(); err != nil {
			return fmt.Errorf("%s: %w", s.name(), err)
		}
		systems = append(systems, s)
		if cl, ok := s.(*cluster); ok {
			// The floor of a node's memory: its RSS with an empty state
			// (nothing written yet), after the election has settled.
			time.Sleep(2 * time.Second)
			if lead, err := cl.leader(); err == nil {
				pid := cl.procs[lead-1].Process.Pid
				cl.emptyRSS = rss(pid)
				fmt.Printf("%s: the leader's RSS with an empty state, idle: %s (anonymous %s, file-backed %s: the"+
					" binary's pages)\n", s.name(), mib(cl.emptyRSS), mib(status(pid, "RssAnon:")), mib(status(pid, "RssFile:")))
			}
		}
		if o.warmup > 0 {
			if _, err := s.drive(100, o.warmup, 0, 0); err != nil {
				return fmt.Errorf("%s: warm-up: %w", s.name(), err)
			}
		}
	}
	// results[system][clients index] = samples, one per round
	results := make([][][]sample, len(systems))
	for i := range results {
		results[i] = make([][]sample, len(o.clients))
	}
	begin, load0 := time.Now(), loadAvg()
	for r := 1; r <= o.rounds; r++ {
		for ci, c := range o.clients {
			for si, s := range systems {
				res, err := s.drive(c, o.ns[ci], o.runWarmup, 0)
				if err != nil {
					return fmt.Errorf("round %d, %s, %d clients: %w", r, s.name(), c, err)
				}
				fmt.Printf("round %d  %-12s %s  [%s]\n", r, s.name(), res.line, time.Now().UTC().Format("15:04:05"))
				results[si][ci] = append(results[si][ci], res)
			}
		}
	}
	fmt.Printf("\nmeasured from %s to %s UTC, load average %s before and %s after\n", begin.UTC().Format("2006-01-02 15:04"),
		time.Now().UTC().Format("15:04"), load0, loadAvg())
	printTable(o, systems, results)
	printMemory(o, systems, results)
	if len(o.rssKeys) > 0 {
		if err := largeState(o, systems); err != nil {
			return err
		}
	}
	for _, c := range o.profile {
		ci := slices.Index(o.clients, c)
		for si, s := range systems {
			cl, ok := s.(*cluster)
			if !ok {
				continue
			}
			// Long enough to outlast the profile: the measured rate × (seconds + 3).
			n := o.ns[max(ci, 0)]
			if ci >= 0 {
				n = int(median(results[si][ci], func(x sample) float64 { return x.ops }) * float64(o.profileSeconds+3))
			}
			path := filepath.Join(o.work, "profiles", fmt.Sprintf("%s-c%d.pprof", s.name(), c))
			res, err := cl.profile(path, o.profileSeconds, c, n)
			if err != nil {
				return fmt.Errorf("%s: profile at %d clients: %w", s.name(), c, err)
			}
			fmt.Printf("profile %s (during: %s)\n  go tool pprof -top %s %s\n", path, res.line, b.consensusd, path)
		}
	}
	return nil
}

// largeState writes o.rssKeys distinct keys to each cluster in turn and
// reports the leader's memory beside its log and state, and (with -heap)
// its Go heap.
func largeState(o options, systems []system) error {
	fmt.Printf("\nleader memory with a large state: distinct keys of %d bytes, 100 clients\n", o.size)
	fmt.Println("| system | keys | writes/s | leader max RSS | RSS after | live log | state (snapshot) | max RSS / (log + state) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	var heaps []string
	for _, keys := range o.rssKeys {
		for _, s := range systems {
			cl, ok := s.(*cluster)
			if !ok {
				continue
			}
			res, err := s.drive(100, keys, 0, keys)
			if err != nil {
				return fmt.Errorf("%s: large state: %w", s.name(), err)
			}
			m := res.mem
			fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %s | %.2f |\n", s.name(), keys, res.ops, mib(m.maxRSS),
				mib(m.lastRSS), mib(m.logBytes), mib(m.state), ratio(m))
			if o.heap {
				path := filepath.Join(o.work, "profiles", fmt.Sprintf("%s-heap-%d.pprof", s.name(), keys))
				stats, err := cl.heapProfile(path)
				if err != nil {
					return fmt.Errorf("%s: heap profile: %w", s.name(), err)
				}
				heaps = append(heaps, fmt.Sprintf("%s, %d keys: %s\n  go tool pprof -sample_index=inuse_space -top %s %s",
					s.name(), keys, stats, filepath.Join(o.work, "bin", "consensusd"), path))
			}
		}
	}
	for _, h := range heaps {
		fmt.Println(h)
	}
	return nil
}

func median(xs []sample, f func(sample) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func dur(f float64) string {
	d := time.Duration(f)
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}

func printTable(o options, systems []system, results [][][]sample) {
	ops := func(x sample) float64 { return x.ops }
	p50 := func(x sample) float64 { return float64(x.p50) }
	p99 := func(x sample) float64 { return float64(x.p99) }
	fl := slices.IndexFunc(systems, func(s system) bool { return s.name() == "floor" })
	fmt.Printf("\nmedians of %d interleaved rounds, %d-byte values, fsync on, 3 processes + 1 client process on loopback\n\n",
		o.rounds, o.size)
	hdr := "| clients |"
	sep := "|---:|"
	for _, s := range systems {
		hdr += fmt.Sprintf(" %s writes/s | p50 | p99 |", s.name())
		sep += "---:|---:|---:|"
	}
	fmt.Println(hdr)
	fmt.Println(sep)
	for ci, c := range o.clients {
		row := fmt.Sprintf("| %d |", c)
		for si, s := range systems {
			xs := results[si][ci]
			w, l50, l99 := median(xs, ops), median(xs, p50), median(xs, p99)
			if fl >= 0 && si != fl {
				fw, f99 := median(results[fl][ci], ops), median(results[fl][ci], p99)
				row += fmt.Sprintf(" %.0f (%.0f %%) | %s | %s (%.2f×) |", w, 100*w/fw, dur(l50), dur(l99), l99/f99)
			} else {
				row += fmt.Sprintf(" %.0f | %s | %s |", w, dur(l50), dur(l99))
			}
			_ = s
		}
		fmt.Println(row)
	}
	fmt.Println("\n(ours: % of the floor's writes/s; p99 as a multiple of the floor's. Target: ≥ 90 %, ≤ 1.2×.)")
	fmt.Println("\nspread over the rounds (writes/s, lowest–highest, and the highest as % of the lowest), and the median" +
		" CPU time (user + system) of the system's three server processes per write:")
	for ci, c := range o.clients {
		for si, s := range systems {
			xs := results[si][ci]
			lo := slices.MinFunc(xs, func(a, b sample) int { return cmpF(a.ops, b.ops) }).ops
			hi := slices.MaxFunc(xs, func(a, b sample) int { return cmpF(a.ops, b.ops) }).ops
			errs := 0
			for _, x := range xs {
				errs += x.errors
			}
			cpu := median(xs, func(x sample) float64 { return float64(x.cpu) })
			ccpu := median(xs, func(x sample) float64 { return float64(x.clientCPU) })
			busy := median(xs, func(x sample) float64 { return x.busy })
			fmt.Printf("  %5d clients  %-16s %8.0f – %8.0f  (%3.0f %%)  errors %d  server CPU per write %.1f µs, client %.1f µs, machine busy %.0f %%\n", c, s.name(),
				lo, hi, 100*hi/lo, errs, cpu/1e3, ccpu/1e3, 100*busy)
		}
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ratio(m memory) float64 {
	if m.logBytes+m.state == 0 {
		return 0
	}
	return float64(m.maxRSS) / float64(m.logBytes+m.state)
}

func printMemory(o options, systems []system, results [][][]sample) {
	fmt.Println("\nleader memory during the timed runs (largest over the rounds; log and state after that run):")
	fmt.Println("| system | clients | leader max RSS | live log | state (snapshot) | RSS / (log + state) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for si, s := range systems {
		if _, ok := s.(*cluster); !ok {
			continue
		}
		for ci, c := range o.clients {
			m := slices.MaxFunc(results[si][ci], func(a, b sample) int { return cmpF(float64(a.mem.maxRSS), float64(b.mem.maxRSS)) }).mem
			fmt.Printf("| %s | %d | %s | %s | %s | %.2f |\n", s.name(), c, mib(m.maxRSS), mib(m.logBytes), mib(m.state), ratio(m))
		}
	}
}

// floor is bench/cmd/commitfloor: replicas started with -serve, clients
// with -drive.
type floor struct {
	bin  string
	port int
	dir  string
	size int
	env  []string
	proc *exec.Cmd
	// apply runs commitfloor -apply: every replica applies every write
	// to a key-value store.
	apply bool
}

func (f *floor) name() string {
	if f.apply {
		return "floor+apply"
	}
	return "floor"
}

func (f *floor) start() error {
	f.proc = exec.Command(f.bin, "-serve", "-port", fmt.Sprint(f.port), "-dir", f.dir, fmt.Sprintf("-apply=%v", f.apply))
	f.proc.Env = append(os.Environ(), f.env...)
	out, err := f.proc.StdoutPipe()
	if err != nil {
		return err
	}
	f.proc.Stderr = os.Stderr
	if err := f.proc.Start(); err != nil {
		return err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("commitfloor -serve: %w", err)
	}
	if !strings.Contains(line, "listening") {
		return fmt.Errorf("commitfloor -serve said %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return nil
}

func (f *floor) drive(clients, n, warm, _ int) (sample, error) {
	cmd := exec.Command(f.bin, "-drive", "-port", fmt.Sprint(f.port), "-clients", fmt.Sprint(clients),
		"-n", fmt.Sprint(n), "-warmup", fmt.Sprint(warm), "-size", fmt.Sprint(f.size))
	cmd.Stderr = os.Stderr
	pids := children(f.proc.Process.Pid)
	before := cpuTime(pids)
	busy0, all0 := machineTicks()
	out, err := cmd.Output()
	if err != nil {
		return sample{}, fmt.Errorf("commitfloor -drive: %w", err)
	}
	s, err := parse(string(out))
	s.cpu = (cpuTime(pids) - before) / time.Duration(n+warm)
	s.clientCPU = processCPU(cmd) / time.Duration(n+warm)
	s.busy = busyFraction(busy0, all0)
	return s, err
}

func (f *floor) stop() {
	if f.proc != nil && f.proc.Process != nil {
		_ = f.proc.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = f.proc.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = f.proc.Process.Kill()
			<-done
		}
	}
}

// cluster is three consensusd processes with one storage type.
type cluster struct {
	bins      bins
	storage   string
	transport string
	label     string // storage, or storage+transport
	env       []string
	base      int // raft ports base..base+2; HTTP API base+100..; client protocol base+200..
	dir       string
	size      int
	procs     []*exec.Cmd
	emptyRSS  int64 // the leader's VmRSS once started, before any write
	// pg is set for storage type postgres: the nodes' schemas.
	pg *pgSchemas
	// memoryLimit is the nodes' memory_limit (0: none).
	memoryLimit int64
}

func (c *cluster) name() string { return "ours-" + c.label }

func (c *cluster) apiAddr(id int) string { return fmt.Sprintf("127.0.0.1:%d", c.base+100+id-1) }

func (c *cluster) pprofAddr(id int) string { return fmt.Sprintf("127.0.0.1:%d", c.base+300+id-1) }

func (c *cluster) clientAddrs() string {
	var a []string
	for i := 1; i <= 3; i++ {
		a = append(a, fmt.Sprintf("127.0.0.1:%d", c.base+200+i-1))
	}
	return strings.Join(a, ",")
}

// config is a node's configuration: as consensusd local-cluster writes
// it, with this cluster's storage type.
func (c *cluster) config(id int) string {
	var peers strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&peers, "  - {id: %d, address: 127.0.0.1, port: %d}\n", i, c.base+i-1)
	}
	storage := fmt.Sprintf("  path: %s\n", filepath.Join(c.dir, fmt.Sprintf("node%d", id)))
	if c.pg != nil {
		// The DSN stays in the environment, not in the file.
		storage = fmt.Sprintf("  postgres:\n    dsn: ${%s}\n    schema: %s\n", envDSN, c.pg.schema(id))
	}
	return fmt.Sprintf(`node_id: %d
cluster_id: bench
bind_addr: 127.0.0.1
bind_port: %d
peers:
%sraft:
  heartbeat_interval: 50ms
  election_timeout_min: 500ms
  election_timeout_max: 1s
transport:
  type: %s
storage:
  type: %s
%sapi:
  addr: %s
  client_addr: 127.0.0.1:%d
admin_api:
  allow_unauthenticated: true
memory_limit: %d
`, id, c.base+id-1, peers.String(), c.transport, c.storage, storage, c.apiAddr(id),
		c.base+200+id-1, c.memoryLimit)
}

func (c *cluster) start() error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	for id := 1; id <= 3; id++ {
		cfg := filepath.Join(c.dir, fmt.Sprintf("node%d.yaml", id))
		if err := os.WriteFile(cfg, []byte(c.config(id)), 0o644); err != nil {
			return err
		}
		logf, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("node%d.log", id)))
		if err != nil {
			return err
		}
		p := exec.Command(c.bins.consensusd, "-config", cfg, "-log-level", "warn", "-pprof", c.pprofAddr(id))
		p.Stdout, p.Stderr = logf, logf
		p.Env = append(os.Environ(), c.env...)
		if err := p.Start(); err != nil {
			logf.Close()
			return err
		}
		logf.Close() // the child has its own descriptor
		c.procs = append(c.procs, p)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.leader(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("no leader after 30 s (logs in %s): %w", c.dir, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leader returns the ID of the node that says it is the leader.
func (c *cluster) leader() (int, error) {
	hc := http.Client{Timeout: 2 * time.Second}
	for id := 1; id <= 3; id++ {
		resp, err := hc.Get("http://" + c.apiAddr(id) + "/status")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `"role":"leader"`) {
			return id, nil
		}
	}
	return 0, errors.New("no node says it is the leader")
}

func (c *cluster) drive(clients, n, warm, keys int) (sample, error) {
	lead, err := c.leader()
	if err != nil {
		return sample{}, err
	}
	args := []string{"-addrs", c.clientAddrs(), "-clients", fmt.Sprint(clients), "-n", fmt.Sprint(n),
		"-warmup", fmt.Sprint(warm), "-size", fmt.Sprint(c.size)}
	if keys > 0 {
		args = append(args, "-keys", fmt.Sprint(keys))
	}
	cmd := exec.Command(c.bins.loadgen, args...)
	cmd.Stderr = os.Stderr
	ctx, cancel := context.WithCancel(context.Background())
	rssc := make(chan int64, 1)
	go func() { rssc <- sampleRSS(ctx, c.procs[lead-1].Process.Pid) }()
	var pids []int
	for _, p := range c.procs {
		pids = append(pids, p.Process.Pid)
	}
	before := cpuTime(pids)
	busy0, all0 := machineTicks()
	out, err := cmd.Output()
	cpu := cpuTime(pids) - before
	busy := busyFraction(busy0, all0)
	cancel()
	maxRSS := <-rssc
	if err != nil {
		return sample{}, fmt.Errorf("loadgen: %w", err)
	}
	s, err := parse(string(out))
	if err != nil {
		return s, err
	}
	s.mem.maxRSS = maxRSS
	s.mem.lastRSS = rss(c.procs[lead-1].Process.Pid)
	s.cpu = cpu / time.Duration(n+warm)
	s.clientCPU = processCPU(cmd) / time.Duration(n+warm)
	s.busy = busy
	// The live log in memory: count the live entries and charge each its
	// value, key and headers (forge_consensus_log_size counts their
	// encoded size, which leaves out the in-memory overhead).
	if ents, err := c.metric(lead, "forge_consensus_log_entries"); err == nil {
		s.mem.logBytes = ents * int64(c.size+entryOverhead)
	}
	s.mem.state = newestSnapshot(filepath.Join(c.dir, fmt.Sprintf("node%d", lead)))
	return s, nil
}

// profile takes a CPU profile of the leader, and one of a follower (saved
// beside it, "-follower" before the extension), while loadgen runs n
// writes from clients clients.
func (c *cluster) profile(path string, seconds, clients, n int) (sample, error) {
	lead, err := c.leader()
	if err != nil {
		return sample{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return sample{}, err
	}
	follower := 1
	if follower == lead {
		follower = 2
	}
	fpath := strings.TrimSuffix(path, filepath.Ext(path)) + "-follower" + filepath.Ext(path)
	got := make(chan error, 2)
	take := func(id int, path string) {
		hc := http.Client{Timeout: time.Duration(seconds+30) * time.Second}
		resp, err := hc.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", c.pprofAddr(id), seconds))
		if err != nil {
			got <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			got <- fmt.Errorf("profile: %s", resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			got <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		got <- errors.Join(err, f.Close())
	}
	go take(lead, path)
	go take(follower, fpath)
	time.Sleep(200 * time.Millisecond) // the profiles start first
	res, err := c.drive(clients, n, 0, 0)
	return res, errors.Join(err, <-got, <-got)
}

// heapProfile saves the leader's heap profile, taken after a garbage
// collection, to path and returns its Go memory statistics in one line.
func (c *cluster) heapProfile(path string) (string, error) {
	lead, err := c.leader()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	get := func(query string) ([]byte, error) {
		hc := http.Client{Timeout: 60 * time.Second}
		resp, err := hc.Get(fmt.Sprintf("http://%s/debug/pprof/heap?%s", c.pprofAddr(lead), query))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("heap profile: %s", resp.Status)
		}
		return io.ReadAll(resp.Body)
	}
	b, err := get("gc=1")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	// The text form ends with runtime.MemStats, read right after the
	// profile's collection: HeapAlloc is about the live heap.
	txt, err := get("debug=1")
	if err != nil {
		return "", err
	}
	return memStats(string(txt)), nil
}

// memStats picks the figures that say where a process's memory is from the
// "# Name = value" lines of a debug=1 heap profile.
func memStats(txt string) string {
	v := map[string]int64{}
	for _, l := range strings.Split(txt, "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "#" && f[2] == "=" {
			if n, err := strconv.ParseInt(f[3], 10, 64); err == nil {
				v[f[1]] = n
			}
		}
	}
	return fmt.Sprintf("HeapAlloc %s, HeapInuse %s, HeapIdle %s (released %s), Stack %s, Sys %s, NextGC %s, GC runs %d",
		mib(v["HeapAlloc"]), mib(v["HeapInuse"]), mib(v["HeapIdle"]), mib(v["HeapReleased"]), mib(v["StackInuse"]),
		mib(v["Sys"]), mib(v["NextGC"]), v["NumGC"])
}

// metric reads a gauge from a node's Prometheus metrics.
func (c *cluster) metric(id int, name string) (int64, error) {
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + c.apiAddr(id) + "/consensus/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			v, err := strconv.ParseFloat(f[1], 64)
			return int64(v), err
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// newestSnapshot returns the size of the newest file under dir whose name
// starts with "snap".
func newestSnapshot(dir string) int64 {
	var size int64
	var newest time.Time
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "snap") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().After(newest) {
			newest, size = fi.ModTime(), fi.Size()
		}
		return nil
	})
	return size
}

// entryOverhead is what a log entry of our key-value store holds beside
// its value: the index, term and type, the command's header, session and
// key (about 10 bytes here), rounded up.
const entryOverhead = 48

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// children returns the PIDs of pid's child processes.
func children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if v, err := strconv.Atoi(f); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// cpuTime is the user and system CPU time the processes used so far
// (/proc/PID/stat, in clock ticks of 10 ms).
func cpuTime(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// processCPU returns the user and system CPU time of a finished command.
func processCPU(cmd *exec.Cmd) time.Duration {
	if cmd.ProcessState == nil {
		return 0
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// machineTicks returns the busy and total CPU ticks of the machine, all
// CPUs together, from the first line of /proc/stat (busy: all but idle and
// iowait).
func machineTicks() (busy, all int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i := 1; i < len(f); i++ {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		if i == 8 || i == 9 || i == 10 {
			continue // steal, guest and guest_nice: not this machine's time, or counted in user
		}
		all += v
		if i != 4 && i != 5 {
			busy += v
		}
	}
	return busy, all
}

// busyFraction returns the machine's busy fraction since machineTicks
// returned busy0 and all0.
func busyFraction(busy0, all0 int64) float64 {
	busy, all := machineTicks()
	if all <= all0 {
		return 0
	}
	return float64(busy-busy0) / float64(all-all0)
}

// sampleRSS returns the largest VmRSS of process pid, read every 50 ms
// until ctx ends.
func sampleRSS(ctx context.Context, pid int) int64 {
	var top int64
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		top = max(top, rss(pid))
		select {
		case <-ctx.Done():
			return top
		case <-t.C:
		}
	}
}

// rss reads VmRSS from /proc/pid/status, in bytes (0 if it cannot).
func rss(pid int) int64 { return status(pid, "VmRSS:") }

// status reads a field given in kB (VmRSS:, RssAnon:, ...) from
// /proc/pid/status, in bytes (0 if it cannot).
func status(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (c *cluster) stop() {
	for _, p := range c.procs {
		_ = p.Process.Signal(os.Interrupt)
	}
	for _, p := range c.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if c.pg != nil {
		if err := c.pg.drop(); err != nil {
			fmt.Fprintf(os.Stderr, "storagecompare: %s: drop its schemas: %v\n", c.name(), err)
		}
	}
}
