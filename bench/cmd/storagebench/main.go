//go:build linux

// Command storagebench measures the storage adapters of a node (package
// adapters/pebble and adapters/wal) through node.Storage, in one run so
// that their figures are comparable:
//
//   - appends: Saves of batches of 1, 64 and 1,024 entries of 128 bytes,
//     each fsynced and waited for before the next (a node never has more
//     than one Save outstanding): entries/s, Saves/s, p50 and p99 of a
//     Save;
//   - fsyncs per Save: the fsync and fdatasync system calls of a separate
//     pass of the same appends under strace (-c, seccomp-bpf: only those
//     calls are stopped), less those of opening and closing an empty store;
//   - read back: Open and Load of the store the 1,024-entry appends wrote;
//   - recovery: Open and Load of a log holding -recover-bytes of entry data
//     (1 GiB by default), written in 1,024-entry Saves: its time, the
//     process's CPU time meanwhile (a figure less disturbed by other work
//     on the machine), and the peak resident set size (VmHWM, reset just
//     before the Open) until Load returns;
//   - disk bytes per entry: the blocks the store's directory holds after
//     Close, divided by the entries in it.
//
// From bench/:
//
//	go run ./cmd/storagebench                         # both, 1 GiB recovery
//	go run ./cmd/storagebench -recover-bytes 64MiB    # a quick look
//
// To compare builds on the same files, give each run -dir DIR
// -recover-keep: the first writes the recovery log and keeps it, the later
// ones only time its Open and Load.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	walstore "github.com/forge-consensus/consensus/adapters/wal"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// store is a node.Storage that can be closed.
type store interface {
	node.Storage
	io.Closer
}

// opener opens the store of one type in dir.
type opener func(dir string) (store, error)

// openers are the storage types measured, by storage.type name.
var openers = map[string]opener{
	"wal": func(dir string) (store, error) {
		return walstore.Open(walstore.Options{Dir: dir, ClusterID: 1, NodeID: 1, Logger: slog.New(slog.DiscardHandler)})
	},
	"pebble": func(dir string) (store, error) {
		return pebblestore.Open(pebblestore.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	},
}

func main() {
	var (
		types        = flag.String("types", "wal,pebble", "storage types, in the order measured")
		batches      = flag.String("batch", "1,64,1024", "entries per Save")
		count        = flag.String("saves", "2000,1000,300", "Saves timed per batch size")
		size         = flag.Int("size", 128, "bytes per entry")
		recoverBytes = flag.String("recover-bytes", "1GiB", "entry data in the log whose recovery is timed (0: skip)")
		work         = flag.String("dir", "", "directory for the stores (default: a new temporary one, removed after)")
		noStrace     = flag.Bool("no-strace", false, "do not count fsyncs (needs strace)")
		profile      = flag.String("recover-profile", "", "write a CPU profile of each recovery's Open and Load to PREFIX-TYPE.pprof")
		keep         = flag.Bool("recover-keep", false, "keep the recovery logs under -dir and reuse those already there (to time several builds on the same files)")
		child        = flag.String("child", "", "internal: TYPE,BATCH,SAVES,DIR: appends only, for the fsync count")
	)
	flag.Parse()
	if *child != "" {
		if err := runChild(*child, *size); err != nil {
			fmt.Fprintln(os.Stderr, "storagebench:", err)
			os.Exit(1)
		}
		return
	}
	cfg := config{size: *size, strace: !*noStrace, profile: *profile, keep: *keep}
	var err error
	if cfg.batches, err = ints(*batches); err != nil {
		fail(fmt.Errorf("-batch: %w", err))
	}
	if cfg.saves, err = ints(*count); err != nil || len(cfg.saves) != len(cfg.batches) {
		fail(fmt.Errorf("-saves: one positive count per batch size (%v)", err))
	}
	if cfg.recoverBytes, err = parseBytes(*recoverBytes); err != nil {
		fail(fmt.Errorf("-recover-bytes: %w", err))
	}
	for _, t := range strings.Split(*types, ",") {
		if openers[t] == nil {
			fail(fmt.Errorf("-types: unknown storage type %q (have %v)", t, names()))
		}
		cfg.types = append(cfg.types, t)
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
	if err := run(cfg); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "storagebench:", err)
	os.Exit(1)
}

func names() []string {
	var n []string
	for k := range openers {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

type config struct {
	types        []string
	batches      []int
	saves        []int
	size         int
	recoverBytes int64
	dir          string
	strace       bool
	profile      string
	keep         bool
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

// appendResult is one batch size's appends.
type appendResult struct {
	entries  int
	elapsed  time.Duration
	lat      []time.Duration // sorted
	fsyncs   float64         // per Save, -1 if not counted
	diskUsed int64
}

func (a appendResult) q(p float64) time.Duration {
	return a.lat[min(len(a.lat)-1, int(p*float64(len(a.lat))))]
}

// appendN opens a store in dir and Saves n batches of batch entries.
func appendN(open opener, dir string, batch, n, size int) (appendResult, error) {
	s, err := open(dir)
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
	res.diskUsed = diskUsed(dir)
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
	res := appendResult{entries: batch * n, lat: make([]time.Duration, 0, n), fsyncs: -1}
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

// diskUsed is the space the files under dir take on disk.
func diskUsed(dir string) int64 {
	var used int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				used += st.Blocks * 512
			}
		}
		return nil
	})
	return used
}

// loadResult is the time to open and load a store.
type loadResult struct {
	entries    int
	open, load time.Duration
	diskUsed   int64
	peakRSS    int64         // bytes; -1 if unknown
	cpu        time.Duration // user + system CPU time of the process during Open and Load
}

func openLoad(open opener, dir string, want int) (loadResult, error) {
	runtime.GC()
	rssErr := resetPeakRSS()
	cpu0 := cpuTime()
	t := time.Now()
	s, err := open(dir)
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
	r.diskUsed = diskUsed(dir)
	return r, nil
}

func run(cfg config) error {
	fmt.Printf("storagebench: %d-byte entries, every Save fsynced and waited for; stores under %s\n\n", cfg.size, cfg.dir)
	appends := map[string][]appendResult{}
	loads := map[string]loadResult{}
	recovers := map[string]loadResult{}
	for _, t := range cfg.types {
		for i, b := range cfg.batches {
			dir := filepath.Join(cfg.dir, fmt.Sprintf("%s-b%d", t, b))
			res, err := appendN(openers[t], dir, b, cfg.saves[i], cfg.size)
			if err != nil {
				return fmt.Errorf("%s, %d-entry Saves: %w", t, b, err)
			}
			if cfg.strace {
				if res.fsyncs, err = countFsyncs(cfg, t, b, min(cfg.saves[i], 500)); err != nil {
					return fmt.Errorf("%s, %d-entry Saves: count fsyncs: %w", t, b, err)
				}
			}
			appends[t] = append(appends[t], res)
			fmt.Printf("%-7s %5d entries/Save: %9.0f entries/s  %6.0f Saves/s  p50 %v  p99 %v  fsyncs/Save %.2f\n", t, b,
				float64(res.entries)/res.elapsed.Seconds(), float64(len(res.lat))/res.elapsed.Seconds(),
				res.q(0.5).Round(time.Microsecond), res.q(0.99).Round(time.Microsecond), res.fsyncs)
		}
		last := len(cfg.batches) - 1
		dir := filepath.Join(cfg.dir, fmt.Sprintf("%s-b%d", t, cfg.batches[last]))
		lr, err := openLoad(openers[t], dir, appends[t][last].entries)
		if err != nil {
			return fmt.Errorf("%s: read back: %w", t, err)
		}
		loads[t] = lr
		fmt.Printf("%-7s read back %d entries: open %v, load %v\n", t, lr.entries, lr.open.Round(time.Millisecond),
			lr.load.Round(time.Millisecond))
		if cfg.recoverBytes > 0 {
			rr, err := recoverLog(cfg, t)
			if err != nil {
				return fmt.Errorf("%s: recovery: %w", t, err)
			}
			recovers[t] = rr
			fmt.Printf("%-7s recovery of %d entries (%s of entry data): open %v, load %v, CPU %v, peak RSS %s, %.0f disk bytes/entry\n", t,
				rr.entries, size(int64(rr.entries)*int64(cfg.size)), rr.open.Round(time.Millisecond),
				rr.load.Round(time.Millisecond), rr.cpu.Round(time.Millisecond), rss(rr.peakRSS), float64(rr.diskUsed)/float64(rr.entries))
		}
	}
	fmt.Println()
	hdr := "| | " + strings.Join(cfg.types, " | ") + " |"
	fmt.Println(hdr)
	fmt.Println("|---|" + strings.Repeat("---:|", len(cfg.types)))
	row := func(name string, f func(t string) string) {
		r := "| " + name + " |"
		for _, t := range cfg.types {
			r += " " + f(t) + " |"
		}
		fmt.Println(r)
	}
	for i, b := range cfg.batches {
		row(fmt.Sprintf("appends/s, %d-entry Saves", b), func(t string) string {
			a := appends[t][i]
			return fmt.Sprintf("%.0f", float64(a.entries)/a.elapsed.Seconds())
		})
		row(fmt.Sprintf("p50 / p99 Save, %d entries", b), func(t string) string {
			a := appends[t][i]
			return fmt.Sprintf("%s / %s", ms(a.q(0.5)), ms(a.q(0.99)))
		})
		row(fmt.Sprintf("fsyncs per Save, %d entries", b), func(t string) string {
			if appends[t][i].fsyncs < 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f", appends[t][i].fsyncs)
		})
	}
	row("disk bytes/entry, 1,024-entry Saves", func(t string) string {
		a := appends[t][len(cfg.batches)-1]
		return fmt.Sprintf("%.0f", float64(a.diskUsed)/float64(a.entries))
	})
	row(fmt.Sprintf("read back %d entries: open + load", loads[cfg.types[0]].entries), func(t string) string {
		return fmt.Sprintf("%s + %s", ms(loads[t].open), ms(loads[t].load))
	})
	if cfg.recoverBytes > 0 {
		row(fmt.Sprintf("recovery of %s of entries: open + load", size(cfg.recoverBytes)), func(t string) string {
			return fmt.Sprintf("%s + %s", ms(recovers[t].open), ms(recovers[t].load))
		})
		row("CPU time of that Open + Load (user + system)", func(t string) string { return ms(recovers[t].cpu) })
		row("peak RSS during that Open + Load", func(t string) string { return rss(recovers[t].peakRSS) })
		row("disk bytes/entry, that log", func(t string) string {
			return fmt.Sprintf("%.0f", float64(recovers[t].diskUsed)/float64(recovers[t].entries))
		})
	}
	return nil
}

func ms(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}

func size(b int64) string {
	if b >= 1<<30 && b%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", b>>30)
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// recoverLog writes cfg.recoverBytes of entries in 1,024-entry Saves,
// closes the store and times its Open and Load. With cfg.keep the log is
// kept, and one already written (by an earlier run) is reused.
func recoverLog(cfg config, t string) (loadResult, error) {
	const batch = 1024
	n := int((cfg.recoverBytes + int64(batch*cfg.size) - 1) / int64(batch*cfg.size))
	dir := filepath.Join(cfg.dir, t+"-recover")
	if cfg.keep {
		dir = filepath.Join(cfg.dir, fmt.Sprintf("%s-recover-%d-%d", t, n*batch, cfg.size))
	}
	if _, err := os.Stat(dir); !cfg.keep || err != nil {
		if err := os.RemoveAll(dir); err != nil {
			return loadResult{}, err
		}
		if _, err := appendN(openers[t], dir, batch, n, cfg.size); err != nil {
			return loadResult{}, fmt.Errorf("write: %w", err)
		}
	}
	if cfg.profile != "" {
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
	r, err := openLoad(openers[t], dir, n*batch)
	if err != nil || cfg.keep {
		return r, err
	}
	return r, os.RemoveAll(dir)
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

// countFsyncs runs saves Saves of batch entries in a child process under
// strace, and an empty open and close, and returns the difference in
// fsync and fdatasync calls per Save.
func countFsyncs(cfg config, t string, batch, saves int) (float64, error) {
	count := func(n int) (int, error) {
		dir, err := os.MkdirTemp(cfg.dir, "fsyncs-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(dir)
		self, err := os.Executable()
		if err != nil {
			return 0, err
		}
		out := filepath.Join(dir, "strace.out")
		cmd := exec.Command("strace", "-f", "--seccomp-bpf", "-c", "-e", "trace=fsync,fdatasync", "-o", out,
			self, "-size", fmt.Sprint(cfg.size), "-child", fmt.Sprintf("%s,%d,%d,%s", t, batch, n, filepath.Join(dir, "store")))
		if b, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%w: %s", err, b)
		}
		return syscallCount(out)
	}
	base, err := count(0)
	if err != nil {
		return 0, err
	}
	total, err := count(saves)
	if err != nil {
		return 0, err
	}
	return float64(total-base) / float64(saves), nil
}

// syscallCount sums the calls column of strace -c's summary.
func syscallCount(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 5 || (fl[len(fl)-1] != "fsync" && fl[len(fl)-1] != "fdatasync") {
			continue
		}
		n, err := strconv.Atoi(fl[3])
		if err != nil {
			return 0, fmt.Errorf("strace summary line %q", sc.Text())
		}
		total += n
	}
	return total, sc.Err()
}

func runChild(spec string, size int) error {
	f := strings.Split(spec, ",")
	if len(f) != 4 || openers[f[0]] == nil {
		return errors.New("-child: TYPE,BATCH,SAVES,DIR")
	}
	batch, err1 := strconv.Atoi(f[1])
	n, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("-child: %w", err)
	}
	_, err := appendN(openers[f[0]], f[3], batch, n, size)
	return err
}
