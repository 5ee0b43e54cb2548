package storagetest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// spec is one update of the crash workload, as printed by the child
// before it saves it. Entry and snapshot contents derive from index and
// term (crashData, crashSnapData), so the parent rebuilds the update.
type spec struct {
	seq       int
	snap      int // 0: none, 1: leader Snapshot, 2: LocalSnapshot
	snapIndex uint64
	snapTerm  uint64
	compactTo uint64
	from, to  uint64 // entries from..to (none if from is 0)
	term      uint64 // of the entries
	hs        core.HardState
}

func (c spec) String() string {
	return fmt.Sprintf("I %d %d %d %d %d %d %d %d %d %d %d", c.seq, c.snap, c.snapIndex, c.snapTerm,
		c.compactTo, c.from, c.to, c.term, c.hs.Term, c.hs.Vote, c.hs.Commit)
}

func parseSpec(line string) (spec, error) {
	f := strings.Fields(line)
	if len(f) != 12 || f[0] != "I" {
		return spec{}, fmt.Errorf("bad intent line %q", line)
	}
	var n [11]uint64
	for i := range n {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return spec{}, fmt.Errorf("bad intent line %q: %v", line, err)
		}
		n[i] = v
	}
	return spec{
		seq: int(n[0]), snap: int(n[1]), snapIndex: n[2], snapTerm: n[3], compactTo: n[4],
		from: n[5], to: n[6], term: n[7], hs: core.HardState{Term: n[8], Vote: n[9], Commit: n[10]},
	}, nil
}

func (c spec) update() *node.Update {
	u := &node.Update{HardState: c.hs, Sync: true}
	if c.snap != 0 {
		s := &core.Snapshot{
			Meta: core.SnapshotMeta{Index: c.snapIndex, Term: c.snapTerm, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
			Data: SnapshotData(c.snapIndex, c.snapTerm),
		}
		if c.snap == 1 {
			u.Snapshot = s
		} else {
			u.LocalSnapshot, u.CompactTo = s, c.compactTo
		}
	}
	if c.from != 0 {
		for i := c.from; i <= c.to; i++ {
			u.Entries = append(u.Entries, core.Entry{Index: i, Term: c.term, Data: EntryData(i, c.term)})
		}
	}
	return u
}

// workload is the child's view of the log, from which it makes the
// next update: appends, now and then a conflicting suffix of a new term
// (never below the commit index), a local snapshot of committed entries
// with compaction, or a leader snapshot past the log.
type workload struct {
	last, commit, term, snapIndex uint64
	terms                         map[uint64]uint64 // of the entries after the compaction point
}

func newWorkload(p core.Persisted) *workload {
	w := &workload{commit: p.HardState.Commit, term: p.HardState.Term, terms: map[uint64]uint64{}}
	if p.Snapshot != nil {
		w.snapIndex, w.last = p.Snapshot.Meta.Index, p.Snapshot.Meta.Index
		w.term = max(w.term, p.Snapshot.Meta.Term)
	}
	for _, e := range p.Entries {
		w.terms[e.Index], w.last = e.Term, e.Index
		w.term = max(w.term, e.Term)
	}
	w.term = max(w.term, 1)
	return w
}

func (w *workload) next(rng *rand.Rand, seq int) spec {
	c := spec{seq: seq}
	prevLast := w.last
	k := rng.IntN(100)
	switch {
	case k < 10 && w.commit > w.snapIndex: // local snapshot
		si := w.snapIndex + 1 + rng.Uint64N(w.commit-w.snapIndex)
		c.snap, c.snapIndex, c.snapTerm = 2, si, w.terms[si]
		c.compactTo = si - min(si, rng.Uint64N(4))
		for i := range w.terms {
			if i <= c.compactTo {
				delete(w.terms, i)
			}
		}
		w.snapIndex = si
	case k < 14: // leader snapshot past the log
		w.term += rng.Uint64N(2)
		si := w.last + 1 + rng.Uint64N(5)
		c.snap, c.snapIndex, c.snapTerm = 1, si, w.term
		clear(w.terms)
		w.last, w.commit, w.snapIndex = si, si, si
	case k < 24: // conflicting suffix of a new term
		w.term++
		lo := max(w.commit, w.snapIndex) + 1
		c.from = lo + rng.Uint64N(w.last+2-lo)
		c.to, c.term = c.from+rng.Uint64N(4), w.term
		for i := range w.terms {
			if i >= c.from {
				delete(w.terms, i)
			}
		}
	}
	if k < 14 && rng.IntN(2) == 0 || k >= 24 && k < 95 { // append
		c.from = w.last + 1
		c.to, c.term = c.from+rng.Uint64N(8), w.term
		if k >= 24 {
			w.commit = max(w.commit, prevLast)
		}
	}
	if c.from != 0 {
		for i := c.from; i <= c.to; i++ {
			w.terms[i] = c.term
		}
		w.last = c.to
	}
	c.hs = core.HardState{Term: w.term, Vote: 1, Commit: w.commit}
	return c
}

// Environment of the crash child process.
const (
	envCrashDir  = "STORAGETEST_CRASH_DIR"
	envCrashSeed = "STORAGETEST_CRASH_SEED"
)

// crashChild is the child process of Crash: it appends to the store in its
// directory, with up to 4 Saves outstanding, printing each update ("I ...")
// before saving it and its sequence number ("A n") once done(nil) is
// called, until it is killed.
func crashChild(t *testing.T, b Backend, dir string) {
	seed, err := strconv.ParseUint(os.Getenv(envCrashSeed), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad seed:", err)
		os.Exit(2)
	}
	s, err := b.Open(t, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p, err := s.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := newWorkload(p)
	rng := rand.New(rand.NewPCG(seed, 7))
	var outMu sync.Mutex
	println := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		if _, err := io.WriteString(os.Stdout, line+"\n"); err != nil {
			os.Exit(3) // the parent is gone
		}
	}
	sem := make(chan struct{}, 4)
	deadline := time.Now().Add(time.Minute) // in case the parent never kills
	for seq := 0; time.Now().Before(deadline); seq++ {
		sem <- struct{}{}
		c := w.next(rng, seq)
		println(c.String())
		s.Save(c.update(), func(err error) {
			if err != nil {
				fmt.Fprintln(os.Stderr, "save:", err)
				os.Exit(4)
			}
			println("A " + strconv.Itoa(seq))
			<-sem
		})
	}
	fmt.Fprintln(os.Stderr, "not killed")
	os.Exit(5)
}

// runPattern returns the -test.run pattern that selects exactly the test
// named name (a path of subtests).
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// crashRoundTimeout bounds a crash round: the child stops by itself
// after a minute if never killed.
const crashRoundTimeout = 2 * time.Minute

// crashRound runs the child until it has acknowledged killAfter updates,
// kills it with SIGKILL (and then calls onKill, if set, to kill the rest
// of what a power cut stops) and returns the updates it printed and how
// many were acknowledged.
func crashRound(t *testing.T, dir string, seed uint64, killAfter int, onKill func()) (specs []spec, acked int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashSeed+"="+strconv.FormatUint(seed, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			if err := cmd.Process.Kill(); err != nil {
				t.Errorf("kill: %v", err)
			}
			if onKill != nil {
				onKill()
			}
		}
	}
	defer kill()
	// The child stops by itself after a minute; one still running well
	// after that has hung (on a file system, most likely).
	var hung atomic.Bool
	watchdog := time.AfterFunc(crashRoundTimeout, func() {
		hung.Store(true)
		_ = cmd.Process.Kill()
	})
	defer watchdog.Stop()
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // EOF; a last line without a newline was never complete
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "I "):
			c, err := parseSpec(line)
			if err != nil {
				t.Fatal(err)
			}
			if c.seq != len(specs) {
				t.Fatalf("intent %d after %d intents", c.seq, len(specs))
			}
			specs = append(specs, c)
			if killAfter == 0 {
				kill()
			}
		case strings.HasPrefix(line, "A "):
			n, err := strconv.Atoi(line[2:])
			if err != nil || n != acked || n >= len(specs) {
				t.Fatalf("ack line %q after %d acks and %d intents: acks must come in order", line, acked, len(specs))
			}
			acked++
			if acked >= killAfter {
				kill()
			}
		}
	}
	err = cmd.Wait()
	if hung.Load() {
		t.Fatalf("the crash child did not finish within %v (killed; hung?), %d updates saved, %d acknowledged: %s",
			crashRoundTimeout, len(specs), acked, stderr.String())
	}
	if !killed {
		t.Fatalf("child exited by itself (%v): %s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("child stderr: %s", stderr.String())
	}
	return specs, acked
}

// replay applies specs to a node.MemoryStorage holding base, a state of
// the workload.
func replay(t *testing.T, base core.Persisted, specs []spec) core.Persisted {
	t.Helper()
	m := node.NewMemoryStorage()
	save := func(u *node.Update) {
		t.Helper()
		var err error
		m.Save(u, func(e error) { err = e })
		if err != nil {
			t.Fatalf("model rejects %+v: %v", u, err)
		}
	}
	save(&node.Update{Snapshot: base.Snapshot, Entries: base.Entries, HardState: base.HardState})
	for _, c := range specs {
		save(c.update())
	}
	return m.Persisted()
}

// checkCrashState checks what the workload guarantees of any stored state:
// entry and snapshot contents match their index and term, the log follows
// the snapshot without a gap, and the hard state covers the log.
func checkCrashState(t *testing.T, p core.Persisted) {
	t.Helper()
	lastIndex, maxTerm := uint64(0), uint64(0)
	if s := p.Snapshot; s != nil {
		if !bytes.Equal(s.Data, SnapshotData(s.Meta.Index, s.Meta.Term)) {
			t.Fatalf("snapshot %d/%d has wrong data", s.Meta.Index, s.Meta.Term)
		}
		lastIndex, maxTerm = s.Meta.Index, s.Meta.Term
		if len(p.Entries) > 0 && p.Entries[0].Index > s.Meta.Index+1 {
			t.Fatalf("log starts at %d after a snapshot at %d", p.Entries[0].Index, s.Meta.Index)
		}
	}
	for i, e := range p.Entries {
		if i > 0 && e.Index != p.Entries[i-1].Index+1 {
			t.Fatalf("log not contiguous: %d after %d", e.Index, p.Entries[i-1].Index)
		}
		if !bytes.Equal(e.Data, EntryData(e.Index, e.Term)) {
			t.Fatalf("entry %d/%d has wrong data %q", e.Index, e.Term, e.Data)
		}
		lastIndex, maxTerm = max(lastIndex, e.Index), max(maxTerm, e.Term)
	}
	if hs := p.HardState; !hs.IsEmpty() && (hs.Vote != 1 || hs.Commit > lastIndex || hs.Term < maxTerm) {
		t.Fatalf("hard state %+v inconsistent with a log up to %d of term %d", hs, lastIndex, maxTerm)
	}
}

// Crash kills a child process writing to the store with SIGKILL at random
// moments, many times over the same directory, and checks after each kill
// that the store holds every acknowledged update, and exactly the updates
// of a prefix of what the child saved. The child is the test binary run
// again on the same test: Crash, called there, runs the child's workload.
func Crash(t *testing.T, b Backend) {
	if dir := os.Getenv(envCrashDir); dir != "" {
		crashChild(t, b, dir)
		return
	}
	rounds, budget := 30, 15*time.Second
	if testing.Short() {
		rounds, budget = 6, 4*time.Second
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var model core.Persisted // what the store held after the last round
	start := time.Now()
	totalAcked, totalExtra, totalLost := 0, 0, 0
	round := 0
	for ; round < rounds && time.Since(start) < budget; round++ {
		seed := rng.Uint64()
		killAfter := rng.IntN(200)
		specs, acked := crashRound(t, dir, seed, killAfter, nil)

		s, err := b.Open(t, dir)
		if err != nil {
			t.Fatalf("round %d (seed %d, %d acked of %d): reopen: %v", round, seed, acked, len(specs), err)
		}
		p, err := s.Load()
		if err == nil {
			err = s.Close()
		}
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		checkCrashState(t, p)
		// The store must hold the acknowledged updates and possibly some
		// of the unacknowledged ones that followed, in order.
		var diffs []string
		matched := -1
		for k := acked; k <= len(specs); k++ {
			d := DiffPersisted(p, replay(t, model, specs[:k]))
			if d == "" {
				matched = k
				break
			}
			diffs = append(diffs, fmt.Sprintf("with %d updates: %s", k, d))
		}
		if matched < 0 {
			t.Fatalf("round %d (seed %d, kill after %d acks): %d updates saved, %d acknowledged; the store holds none of the allowed states:\n%s",
				round, seed, killAfter, len(specs), acked, strings.Join(diffs, "\n"))
		}
		model = p
		totalAcked += acked
		totalExtra += matched - acked
		totalLost += len(specs) - matched
	}
	t.Logf("%s: %d rounds in %v: %d updates acknowledged; of the unacknowledged ones %d were stored, %d lost; log %s",
		b.Name, round, time.Since(start).Round(time.Millisecond), totalAcked, totalExtra, totalLost, Span(model.Entries))
	if round < 3 {
		t.Fatalf("only %d rounds", round)
	}
}
