//go:build linux

// Command storagebench measures every durable storage backend of a node
// (storage.type wal, pebble, bolt, badger and postgres) through
// node.Storage in one run, interleaved, so that their figures are
// comparable:
//
//   - appends: Saves of batches of 1, 64 and 1,024 entries of 128 random
//     bytes, each fsynced and waited for before the next (a node never has
//     more than one Save outstanding): entries/s, p50 and p99 of a Save;
//   - fsyncs: for the file-based backends, the fsync, fdatasync, msync and
//     sync_file_range system calls (Badger syncs its memory-mapped
//     write-ahead log with msync) of a separate pass of the same appends under strace (-c,
//     seccomp-bpf: only those calls are stopped), less those of opening
//     and closing an empty store, per Save; fsyncs/s is that count times
//     the timed pass's Saves/s. For postgres, the server's WAL flushes
//     (pg_stat_wal.wal_sync, every server process) during the timed pass,
//     less those of opening and closing an empty schema, per second of
//     it: PostgreSQL fsyncs in its own processes, and pg_stat_wal counts
//     the whole server, so other clients of the same server add to it;
//   - recovery: Open and Load of a log of 100,000 entries (-recover-entries),
//     written in 1,024-entry Saves: its time, the process's CPU time
//     meanwhile and the peak resident set size (VmHWM, reset just before
//     the Open) until Load returns;
//   - disk bytes per entry: that log's allocated blocks after Close,
//     divided by its entries (postgres: pg_total_relation_size of the
//     schema's tables, its WAL not counted).
//
// Each round runs every backend once per batch size, the backends one
// after the other within a batch size (wal, pebble, ..., then the next
// batch size), so that a slow minute of the shared disk hurts them alike;
// the table gives medians of the rounds. postgres needs
// CONSENSUS_TEST_POSTGRES_DSN (a database the run may create schemas in,
// as the tests use); without it postgres is skipped, saying so.
//
// From bench/:
//
//	go run ./cmd/storagebench                               # all five, 3 rounds
//	go run ./cmd/storagebench -rounds 1 -saves 200,100,30   # a quick look
//	go run ./cmd/storagebench -types wal,pebble -recover-bytes 1GiB
//
// To compare builds on the same files, give each run -dir DIR
// -recover-keep: the first writes the recovery log and keeps it, the later
// ones only time its Open and Load.
package main

import (
	"bufio"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// allTypes are the storage types measured by default, in table order.
const allTypes = "wal,pebble,bolt,badger,postgres"

func main() {
	var (
		types          = flag.String("types", allTypes, "storage types, in the order measured")
		batches        = flag.String("batch", "1,64,1024", "entries per Save")
		count          = flag.String("saves", "2000,1000,300", "Saves timed per batch size")
		rounds         = flag.Int("rounds", 3, "rounds (the table gives medians)")
		size           = flag.Int("size", 128, "bytes per entry")
		recoverEntries = flag.Int("recover-entries", 100_000, "entries in the log whose recovery is timed (0: skip)")
		recoverBytes   = flag.String("recover-bytes", "", "entry data in that log instead (e.g. 1GiB; overrides -recover-entries)")
		work           = flag.String("dir", "", "directory for the stores (default: a new temporary one, removed after)")
		noStrace       = flag.Bool("no-strace", false, "do not count fsyncs (needs strace)")
		profile        = flag.String("recover-profile", "", "write a CPU profile of each recovery's first Open and Load to PREFIX-TYPE.pprof")
		keep           = flag.Bool("recover-keep", false, "keep the recovery logs under -dir (postgres: schemas) and reuse those already there (to time several builds on the same files)")
		child          = flag.String("child", "", "internal: TYPE,BATCH,SAVES,DIR: appends only, for the fsync count")
	)
	flag.Parse()
	if *child != "" {
		if err := runChild(*child, *size); err != nil {
			fmt.Fprintln(os.Stderr, "storagebench:", err)
			os.Exit(1)
		}
		return
	}
	cfg := config{size: *size, rounds: *rounds, strace: !*noStrace, profile: *profile, keep: *keep,
		recoverEntries: *recoverEntries}
	var err error
	if cfg.batches, err = ints(*batches); err != nil {
		fail(fmt.Errorf("-batch: %w", err))
	}
	if cfg.saves, err = ints(*count); err != nil || len(cfg.saves) != len(cfg.batches) {
		fail(fmt.Errorf("-saves: one positive count per batch size (%v)", err))
	}
	if cfg.rounds < 1 {
		fail(errors.New("-rounds: at least 1"))
	}
	if *recoverBytes != "" {
		b, err := parseBytes(*recoverBytes)
		if err != nil {
			fail(fmt.Errorf("-recover-bytes: %w", err))
		}
		cfg.recoverEntries = int((b + int64(cfg.size) - 1) / int64(cfg.size))
	}
	cfg.dir = *work
	if cfg.keep && cfg.dir == "" {
		fail(errors.New("-recover-keep needs -dir"))
	}
	if cfg.dir == "" {
		if cfg.dir, err = os.MkdirTemp("", "storagebench-"); err != nil {
			fail(err)
		}
		defer os.RemoveAll(cfg.dir)
	}
	cfg.backends = map[string]backend{}
	for _, t := range strings.Split(*types, ",") {
		switch {
		case t == "postgres":
			dsn := os.Getenv(envDSN)
			if dsn == "" {
				fmt.Printf("postgres: skipped: %s is not set (a PostgreSQL database the run may create schemas in)\n", envDSN)
				continue
			}
			pg, err := newPGBackend(dsn)
			if err != nil {
				fail(fmt.Errorf("postgres: %w", err))
			}
			defer pg.close()
			cfg.backends[t] = pg
		case fileTypes[t] != nil:
			cfg.backends[t] = fileBackend{dir: cfg.dir, opener: fileTypes[t]}
		default:
			fail(fmt.Errorf("-types: unknown storage type %q (have %s)", t, allTypes))
		}
		cfg.types = append(cfg.types, t)
	}
	if len(cfg.types) == 0 {
		fail(errors.New("no storage type to measure"))
	}
	if err := run(cfg); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "storagebench:", err)
	os.Exit(1)
}

type config struct {
	types          []string
	backends       map[string]backend
	batches        []int
	saves          []int
	rounds         int
	size           int
	recoverEntries int
	dir            string
	strace         bool
	profile        string
	keep           bool
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

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return v * mult, nil
}

// appendResult is one timed pass of Saves of one batch size.
type appendResult struct {
	entries  int
	elapsed  time.Duration
	lat      []time.Duration // sorted
	diskUsed int64
}

func (a appendResult) q(p float64) time.Duration {
	return a.lat[min(len(a.lat)-1, int(p*float64(len(a.lat))))]
}

func (a appendResult) rate() float64 { return float64(a.entries) / a.elapsed.Seconds() }

func (a appendResult) saveRate() float64 { return float64(len(a.lat)) / a.elapsed.Seconds() }

// appendN opens the store at loc and Saves n batches of batch entries.
func appendN(b backend, loc string, batch, n, size int) (appendResult, error) {
	s, err := b.open(loc)
	if err != nil {
		return appendResult{}, fmt.Errorf("open: %w", err)
	}
	res, err := appendTo(s, 0, batch, n, size)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return res, err
	}
	if res.diskUsed, err = b.used(loc); err != nil {
		return res, fmt.Errorf("size: %w", err)
	}
	return res, nil
}

// appendTo saves n batches of batch entries after index last, one at a
// time, and times each Save.
func appendTo(s store, last uint64, batch, n, size int) (appendResult, error) {
	data := make([]byte, size*batch)
	rng := rand.New(rand.NewPCG(uint64(batch), last)) // incompressible, like most real values
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	entries := make([]core.Entry, batch)
	done := make(chan error, 1)
	res := appendResult{entries: batch * n, lat: make([]time.Duration, 0, n)}
	start := time.Now()
	for range n {
		for k := range entries {
			last++
			entries[k] = core.Entry{Term: 1, Index: last, Data: data[k*size : (k+1)*size]}
		}
		u := &node.Update{Entries: entries, HardState: core.HardState{Term: 1, Vote: 1, Commit: last - uint64(batch)},
			Sync: true}
		t := time.Now()
		s.Save(u, func(err error) { done <- err })
		if err := <-done; err != nil {
			return res, fmt.Errorf("save at index %d: %w", last, err)
		}
		res.lat = append(res.lat, time.Since(t))
	}
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res, nil
}

// loadResult is the time to open and load a store.
type loadResult struct {
	entries    int
	open, load time.Duration
	peakRSS    int64         // bytes; -1 if unknown
	cpu        time.Duration // user + system CPU time of the process during Open and Load
}

func openLoad(b backend, loc string, want int) (loadResult, error) {
	// Return the heap's free pages first: VmHWM restarts from the current
	// RSS, which would otherwise hold every earlier pass's garbage.
	debug.FreeOSMemory()
	rssErr := resetPeakRSS()
	cpu0 := cpuTime()
	t := time.Now()
	s, err := b.open(loc)
	if err != nil {
		return loadResult{}, fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	r := loadResult{open: time.Since(t)}
	t = time.Now()
	p, err := s.Load()
	if err != nil {
		return r, fmt.Errorf("load: %w", err)
	}
	r.load = time.Since(t)
	r.cpu = cpuTime() - cpu0
	r.entries = len(p.Entries)
	r.peakRSS = -1
	if rssErr == nil {
		r.peakRSS, _ = peakRSS()
	}
	runtime.KeepAlive(p)
	if r.entries != want {
		return r, fmt.Errorf("load: %d entries, want %d", r.entries, want)
	}
	return r, nil
}

// cell is one storage type at one batch size: its timed passes, one a
// round, and its fsyncs.
type cell struct {
	runs []appendResult
	// fsyncsPerSave is the strace count per Save (file types), -1 if not
	// counted.
	fsyncsPerSave float64
	// walSyncs is, for postgres, the server's WAL flushes in each timed
	// pass (less those of an empty open and close).
	walSyncs []int64
}

// fsyncRate returns the cell's fsyncs per second and per Save (medians of
// the rounds), ok false if they were not counted.
func (c *cell) fsyncRate() (perSec, perSave float64, ok bool) {
	if len(c.walSyncs) > 0 {
		var ps, pv []float64
		for i, r := range c.runs {
			ps = append(ps, float64(c.walSyncs[i])/r.elapsed.Seconds())
			pv = append(pv, float64(c.walSyncs[i])/float64(len(r.lat)))
		}
		return median(ps), median(pv), true
	}
	if c.fsyncsPerSave < 0 {
		return 0, 0, false
	}
	return c.fsyncsPerSave * c.med(appendResult.saveRate), c.fsyncsPerSave, true
}

func (c *cell) med(f func(appendResult) float64) float64 {
	var v []float64
	for _, r := range c.runs {
		v = append(v, f(r))
	}
	return median(v)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// recovery is one storage type's recovery log and its timed reopenings.
type recovery struct {
	loc      string
	diskUsed int64
	runs     []loadResult
}

// newID returns a random name for this run's stores.
func newID() string {
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	return "r" + hex.EncodeToString(b)
}

func run(cfg config) error {
	id := newID()
	fmt.Printf("storagebench: %s, %d-byte entries, every Save fsynced and waited for; %d rounds, stores under %s\n",
		strings.Join(cfg.types, ", "), cfg.size, cfg.rounds, cfg.dir)
	start := time.Now()
	load0 := loadAvg()
	cells := map[string][]*cell{}
	for _, t := range cfg.types {
		for range cfg.batches {
			cells[t] = append(cells[t], &cell{fsyncsPerSave: -1})
		}
	}
	// The WAL flushes of opening and closing an empty postgres store.
	var pgBase int64
	if pg, ok := cfg.backends["postgres"].(*pgBackend); ok {
		// Whatever a failed run leaves of this run's schemas.
		defer func() {
			if err := pg.removeAll(pg.loc(id + "_")); err != nil {
				fmt.Fprintf(os.Stderr, "storagebench: postgres: %v\n", err)
			}
		}()
		var err error
		loc := pg.loc(id + "_empty")
		if pgBase, err = pgSyncs(pg, loc, func(loc string) error {
			_, err := appendN(pg, loc, 1, 0, cfg.size)
			return err
		}); err != nil {
			return fmt.Errorf("postgres: empty open and close: %w", err)
		}
		if err := pg.remove(loc); err != nil {
			return fmt.Errorf("postgres: remove %s: %w", loc, err)
		}
	}
	for r := 1; r <= cfg.rounds; r++ {
		for i, b := range cfg.batches {
			for _, t := range cfg.types {
				be := cfg.backends[t]
				loc := be.loc(fmt.Sprintf("%s_%s_b%d_%d", id, t, b, r))
				var res appendResult
				do := func(loc string) error {
					var err error
					res, err = appendN(be, loc, b, cfg.saves[i], cfg.size)
					return err
				}
				c := cells[t][i]
				if pg, ok := be.(*pgBackend); ok {
					n, err := pgSyncs(pg, loc, do)
					if err != nil {
						return fmt.Errorf("round %d, %s, %d-entry Saves: %w", r, t, b, err)
					}
					c.walSyncs = append(c.walSyncs, max(0, n-pgBase))
				} else if err := do(loc); err != nil {
					return fmt.Errorf("round %d, %s, %d-entry Saves: %w", r, t, b, err)
				}
				if err := be.remove(loc); err != nil {
					return fmt.Errorf("%s: remove %s: %w", t, loc, err)
				}
				c.runs = append(c.runs, res)
				fmt.Printf("round %d  %-8s %5d entries/Save: %9.0f entries/s  %6.0f Saves/s  p50 %v  p99 %v  [%s]\n", r, t, b,
					res.rate(), res.saveRate(), res.q(0.5).Round(time.Microsecond), res.q(0.99).Round(time.Microsecond),
					time.Now().UTC().Format("15:04:05"))
			}
		}
	}
	if cfg.strace {
		for i, b := range cfg.batches {
			for _, t := range cfg.types {
				if fileTypes[t] == nil {
					continue
				}
				n, by, err := countFsyncs(cfg, t, b, min(cfg.saves[i], 500))
				if err != nil {
					return fmt.Errorf("%s, %d-entry Saves: count fsyncs: %w", t, b, err)
				}
				cells[t][i].fsyncsPerSave = n
				fmt.Printf("%-8s %5d entries/Save: %.2f fsyncs/Save (strace: %s)\n", t, b, n, by)
			}
		}
	}
	recovers := map[string]*recovery{}
	if cfg.recoverEntries > 0 {
		for _, t := range cfg.types {
			rec, err := writeRecoveryLog(cfg, id, t)
			if err != nil {
				return fmt.Errorf("%s: recovery log: %w", t, err)
			}
			recovers[t] = rec
		}
		for r := 1; r <= cfg.rounds; r++ {
			for _, t := range cfg.types {
				rec := recovers[t]
				lr, err := timeRecovery(cfg, t, rec, r == 1)
				if err != nil {
					return fmt.Errorf("round %d, %s: recovery: %w", r, t, err)
				}
				rec.runs = append(rec.runs, lr)
				fmt.Printf("round %d  %-8s recovery of %d entries: open %v, load %v, CPU %v, peak RSS %s\n", r, t,
					lr.entries, lr.open.Round(time.Millisecond), lr.load.Round(time.Millisecond),
					lr.cpu.Round(time.Millisecond), rss(lr.peakRSS))
			}
		}
		if !cfg.keep {
			for _, t := range cfg.types {
				if err := cfg.backends[t].remove(recovers[t].loc); err != nil {
					return fmt.Errorf("%s: remove %s: %w", t, recovers[t].loc, err)
				}
			}
		}
	}
	fmt.Printf("\nmeasured %s to %s UTC, load average %s before and %s after\n\n", start.UTC().Format("2006-01-02 15:04"),
		time.Now().UTC().Format("15:04"), load0, loadAvg())
	printTable(os.Stdout, cfg, cells, recovers)
	return nil
}

// pgSyncs returns the WAL flushes of the server while do runs on the
// schema loc, counted once the store's connections are gone.
func pgSyncs(pg *pgBackend, loc string, do func(loc string) error) (int64, error) {
	before, err := pg.walSyncs()
	if err != nil {
		return 0, err
	}
	if err := do(loc); err != nil {
		return 0, err
	}
	if err := pg.settle(loc); err != nil {
		return 0, err
	}
	after, err := pg.walSyncs()
	if err != nil {
		return 0, err
	}
	return after - before, nil
}

// writeRecoveryLog writes cfg.recoverEntries entries in 1,024-entry Saves
// and closes the store. With cfg.keep the log is kept, and one already
// written (by an earlier run) is reused.
func writeRecoveryLog(cfg config, id, t string) (*recovery, error) {
	const batch = 1024
	be := cfg.backends[t]
	name := fmt.Sprintf("%s_%s_recover", id, t)
	if cfg.keep {
		name = fmt.Sprintf("%s_recover_%d_%d", t, cfg.recoverEntries, cfg.size)
	}
	rec := &recovery{loc: be.loc(name)}
	if !cfg.keep || !be.exists(rec.loc) {
		if err := be.remove(rec.loc); err != nil {
			return nil, err
		}
		s, err := be.open(rec.loc)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
		var last uint64
		for left := cfg.recoverEntries; left > 0; left -= batch {
			n := min(batch, left)
			if _, err = appendTo(s, last, n, 1, cfg.size); err != nil {
				break
			}
			last += uint64(n)
		}
		if cerr := s.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
		if err != nil {
			return nil, fmt.Errorf("write: %w", err)
		}
	}
	var err error
	if rec.diskUsed, err = be.used(rec.loc); err != nil {
		return nil, fmt.Errorf("size: %w", err)
	}
	return rec, nil
}

// timeRecovery times one Open and Load of the recovery log, with a CPU
// profile if asked (first round only).
func timeRecovery(cfg config, t string, rec *recovery, first bool) (loadResult, error) {
	if cfg.profile != "" && first {
		f, err := os.Create(fmt.Sprintf("%s-%s.pprof", cfg.profile, t))
		if err != nil {
			return loadResult{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return loadResult{}, err
		}
		defer pprof.StopCPUProfile()
	}
	return openLoad(cfg.backends[t], rec.loc, cfg.recoverEntries)
}

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

// countFsyncs runs saves Saves of batch entries in a child process under
// strace, and an empty open and close, and returns the difference in
// sync calls (syncCalls) per Save, and the same per call in words.
func countFsyncs(cfg config, t string, batch, saves int) (float64, string, error) {
	count := func(n int) (map[string]int, error) {
		dir, err := os.MkdirTemp(cfg.dir, "fsyncs-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		out := filepath.Join(dir, "strace.out")
		cmd := exec.Command("strace", "-f", "--seccomp-bpf", "-c", "-e", "trace="+strings.Join(syncCalls, ","), "-o", out,
			self, "-size", fmt.Sprint(cfg.size), "-child", fmt.Sprintf("%s,%d,%d,%s", t, batch, n, filepath.Join(dir, "store")))
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%w: %s", err, b)
		}
		return syscallCount(out)
	}
	base, err := count(0)
	if err != nil {
		return 0, "", err
	}
	total, err := count(saves)
	if err != nil {
		return 0, "", err
	}
	var sum int
	var by []string
	for _, c := range syncCalls {
		d := total[c] - base[c]
		sum += d
		if d != 0 {
			by = append(by, fmt.Sprintf("%.2f %s", float64(d)/float64(saves), c))
		}
	}
	return float64(sum) / float64(saves), strings.Join(by, ", "), nil
}

// syncCalls are the system calls counted as fsyncs.
var syncCalls = []string{"fsync", "fdatasync", "msync", "sync_file_range"}

func runChild(spec string, size int) error {
	f := strings.Split(spec, ",")
	if len(f) != 4 || fileTypes[f[0]] == nil {
		return errors.New("-child: TYPE,BATCH,SAVES,DIR (TYPE a file-based storage type)")
	}
	batch, err1 := strconv.Atoi(f[1])
	n, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("-child: %w", err)
	}
	_, err := appendN(fileBackend{opener: fileTypes[f[0]]}, f[3], batch, n, size)
	return err
}

// cpuTime returns the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets the process's peak resident set size (VmHWM).
func resetPeakRSS() error { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns the process's peak resident set size (VmHWM) in bytes.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return -1, errors.New("no VmHWM in /proc/self/status")
}

func rss(b int64) string {
	if b < 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// syscallCount reads the calls column of strace -c's summary, by system
// call (those of syncCalls).
func syscallCount(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	calls := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 5 || !slices.Contains(syncCalls, fl[len(fl)-1]) {
			continue
		}
		n, err := strconv.Atoi(fl[3])
		if err != nil {
			return nil, fmt.Errorf("strace summary line %q", sc.Text())
		}
		calls[fl[len(fl)-1]] += n
	}
	return calls, sc.Err()
}
