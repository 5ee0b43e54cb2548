package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// simrun runs a command line as the binary would and returns its exit
// code and output.
func simrun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dispatch(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestFuzzCalm: a fuzz run of calm seeds passes and prints the summary.
func TestFuzzCalm(t *testing.T) {
	var out, errOut bytes.Buffer
	cfg := fuzzConfig{Seeds: 12, Workers: 2, Profile: "calm", StartSeed: 1, Out: t.TempDir(),
		CheckTimeout: 10 * time.Second, MaxFailures: 10}
	code := runFuzz(context.Background(), cfg, &out, &errOut)
	s := out.String()
	if code != exitPass {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, s, errOut.String())
	}
	for _, want := range []string{
		"simrun fuzz: 12 seeds (1..12), profile calm, 2 workers",
		"seeds/s", "seeds/min", "sim/wall", "porcupine", "inconclusive  0", "peak memory",
		"verdicts      pass 12", "leader changes", "client ok", "torn", "failures      0",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "FAIL") {
		t.Errorf("calm seeds failed:\n%s", s)
	}
	if m := regexp.MustCompile(`porcupine     ([0-9.]+)% of run time`).FindStringSubmatch(s); m == nil {
		t.Errorf("no porcupine share in:\n%s", s)
	}
}

// TestFuzzStopsAtDuration: -duration bounds a run without -seeds.
func TestFuzzStopsAtDuration(t *testing.T) {
	var out, errOut bytes.Buffer
	cfg := fuzzConfig{Duration: time.Nanosecond, Workers: 1, Profile: "calm", StartSeed: 7, Out: t.TempDir()}
	if code := runFuzz(context.Background(), cfg, &out, &errOut); code != exitPass {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "stopped after -duration") {
		t.Errorf("no stop reason:\n%s", out.String())
	}
}

// TestRunOne: run prints the verdict and the event hash, the same hash
// every time.
func TestRunOne(t *testing.T) {
	code, out, errOut := simrun(t, "run", "-seed", "3")
	if code != exitPass {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	re := regexp.MustCompile(`(?m)^event hash   ([0-9a-f]{16}) \(\d+ events\)$`)
	m := re.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "verdict      pass") {
		t.Fatalf("no verdict or event hash in:\n%s", out)
	}
	o, err := sim.Draw(3, "swarm")
	if err != nil {
		t.Fatal(err)
	}
	if want := hexHash(sim.Run(o, sim.Config{SkipLinearizability: true}).EventHash); m[1] != want {
		t.Errorf("printed hash %s, a run of the same options gives %s", m[1], want)
	}
}

// TestRunVerbose: -v prints one line per event and -trace writes one JSON
// object per event.
func TestRunVerbose(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "t.jsonl")
	code, out, errOut := simrun(t, "run", "-seed", "2", "-profile", "calm", "-v", "-trace", trace)
	if code != exitPass {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	m := regexp.MustCompile(`\((\d+) events\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no event count in output")
	}
	events := regexp.MustCompile(`(?m)^ +\d+\.\d{3} [a-z-]+ `).FindAllStringIndex(out, -1)
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(data), "\n")
	if got := len(events); got == 0 || m[1] != strconv.Itoa(got) || m[1] != strconv.Itoa(lines) {
		t.Errorf("%s events, %d log lines, %d trace lines", m[1], got, lines)
	}
	var first map[string]any
	if err := json.Unmarshal(data[:bytes.IndexByte(data, '\n')], &first); err != nil || first["kind"] == nil {
		t.Errorf("trace line is not a JSON event: %v %v", first, err)
	}
}

// TestBundleReplay: a bundle written by run -bundle holds every file and
// replays with the identical hash; a bundle whose hash was altered replays
// as non-deterministic; shrink refuses a passing bundle.
func TestBundleReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "seed-3")
	code, out, errOut := simrun(t, "run", "-seed", "3", "-bundle", dir)
	if code != exitPass {
		t.Fatalf("run exit %d\n%s%s", code, out, errOut)
	}
	for _, f := range []string{reproFile, traceFile, historyFile, historyHTMLFile, faultsFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Size() == 0 {
			t.Errorf("bundle file %s: %v", f, err)
		}
	}
	if !strings.Contains(out, "reproduce: go run ./cmd/simrun replay "+dir) || !strings.Contains(out, "run -seed 3 -profile swarm") {
		t.Errorf("no reproduction line:\n%s", out)
	}
	b, err := loadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Repro.FormatVersion != 1 || b.Repro.Seed != 3 || b.Repro.GoVersion == "" || b.Repro.Commit == "" || !b.Repro.Drawn {
		t.Errorf("repro.json: %+v", b.Repro)
	}
	if b.Options.Faults == nil || len(b.Options.Faults) != b.Repro.Faults {
		t.Errorf("options hold %d faults, repro says %d", len(b.Options.Faults), b.Repro.Faults)
	}
	var faults []sim.Fault
	data, _ := os.ReadFile(filepath.Join(dir, faultsFile))
	if err := json.Unmarshal(data, &faults); err != nil || len(faults) != b.Repro.Faults {
		t.Errorf("faults.json: %d faults, %v", len(faults), err)
	}
	if n := strings.Count(readFile(t, filepath.Join(dir, traceFile)), "\n"); uint64(n) != b.Repro.Events {
		t.Errorf("trace.jsonl has %d events, repro.json %d", n, b.Repro.Events)
	}

	code, out, errOut = simrun(t, "replay", dir)
	if code != exitPass {
		t.Fatalf("replay exit %d\n%s%s", code, out, errOut)
	}
	hash := b.Repro.EventHash
	if !regexp.MustCompile(`event hash  recorded ` + hash + ` +replayed ` + hash + ` +identical`).MatchString(out) {
		t.Errorf("replay does not report the identical hash %s:\n%s", hash, out)
	}

	// An altered hash is what non-determinism looks like.
	var raw map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, reproFile))), &raw); err != nil {
		t.Fatal(err)
	}
	raw["event_hash"] = "0123456789abcdef"
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeJSONFile(filepath.Join(bad, reproFile), raw); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := simrun(t, "replay", filepath.Join(bad, reproFile)); code != exitNonDeterminism || !strings.Contains(out, "NON-DETERMINISM") {
		t.Errorf("replay of an altered hash: exit %d\n%s", code, out)
	}

	if code, _, errOut := simrun(t, "shrink", dir); code != exitError || !strings.Contains(errOut, "nothing to shrink") {
		t.Errorf("shrink of a passing bundle: exit %d, %s", code, errOut)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCheckDeterminism: five seeds run twice give the same hashes.
func TestCheckDeterminism(t *testing.T) {
	code, out, errOut := simrun(t, "check-determinism", "-seeds", "5", "-start-seed", "10")
	if code != exitPass || !strings.Contains(out, "5 seeds deterministic") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

// TestFirstDivergence finds where two hash sequences part.
func TestFirstDivergence(t *testing.T) {
	for _, c := range []struct {
		a, b []uint64
		i    int
		ok   bool
	}{
		{[]uint64{1, 2, 3}, []uint64{1, 2, 3}, 3, false},
		{[]uint64{1, 2, 3}, []uint64{1, 5, 3}, 1, true},
		{[]uint64{1, 2}, []uint64{1, 2, 3}, 2, true},
		{nil, nil, 0, false},
	} {
		if i, ok := firstDivergence(c.a, c.b); i != c.i || ok != c.ok {
			t.Errorf("firstDivergence(%v, %v) = %d, %v; want %d, %v", c.a, c.b, i, ok, c.i, c.ok)
		}
	}
}

// TestExitCodes: each verdict has its code (a safety failure of the checks
// applied-durable and restart-below-applied its own), and the most severe of several wins:
// non-determinism > panic > applied-durable > safety > linearizability >
// liveness.
func TestExitCodes(t *testing.T) {
	want := map[sim.Verdict]int{
		sim.VerdictPass: 0, sim.VerdictInconclusive: 0, sim.VerdictSafety: 2, sim.VerdictLinearizability: 3,
		sim.VerdictLiveness: 4, sim.VerdictPanic: 5, sim.VerdictNonDeterminism: 6,
	}
	for _, v := range allVerdicts() {
		if got := verdictExit(v); got != want[v] {
			t.Errorf("verdictExit(%s) = %d, want %d", v, got, want[v])
		}
	}
	for _, v := range allVerdicts() {
		for _, check := range []string{sim.CheckAppliedDurable, sim.CheckRestartBelowApplied} {
			if got := resultExit(v, check); v == sim.VerdictSafety && got != 7 || v != sim.VerdictSafety && got != want[v] {
				t.Errorf("resultExit(%s, %s) = %d", v, check, got)
			}
		}
		if got := resultExit(v, sim.CheckDurability); got != want[v] {
			t.Errorf("resultExit(%s, %s) = %d, want %d", v, sim.CheckDurability, got, want[v])
		}
	}
	order := []int{exitPass, exitError, exitLiveness, exitLinearizability, exitSafety, exitAppliedDurable, exitPanic, exitNonDeterminism}
	for i, a := range order {
		for j, b := range order {
			w := order[max(i, j)]
			if got := worstExit(a, b); got != w {
				t.Errorf("worstExit(%d, %d) = %d, want %d", a, b, got, w)
			}
		}
	}
	worst := exitPass
	for _, v := range []sim.Verdict{sim.VerdictLiveness, sim.VerdictPanic, sim.VerdictSafety, sim.VerdictLinearizability} {
		worst = worstExit(worst, verdictExit(v))
	}
	if worst != exitPanic {
		t.Errorf("liveness, panic, safety, linearizability: exit %d, want %d", worst, exitPanic)
	}
}

// TestUsage: help and no arguments print the usage with the exit codes;
// bad command lines exit 1.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}} {
		code, out, _ := simrun(t, args...)
		if code != exitPass || !strings.Contains(out, "Exit codes") || !strings.Contains(out, "6  non-determinism") ||
			!strings.Contains(out, "7  a membership change applied above the durable commit index") ||
			!strings.Contains(out, "commit-old-term") {
			t.Errorf("%q: exit %d\n%s", args, code, out)
		}
	}
	for _, args := range [][]string{
		{"nope"}, {"run"}, {"run", "-seed", "x"}, {"run", "-seed", "1", "-profile", "stormy"},
		{"fuzz", "-workers", "0"}, {"fuzz", "extra"}, {"replay"}, {"replay", "/nonexistent/bundle"},
		{"shrink"}, {"shrink", "a", "b"}, {"check-determinism", "-profile", "x"},
	} {
		if code, _, _ := simrun(t, args...); code != exitError {
			t.Errorf("%q: exit %d, want %d", args, code, exitError)
		}
	}
	if code, _, errOut := simrun(t, "fuzz", "-h"); code != exitPass || !strings.Contains(errOut, "-max-failures") {
		t.Errorf("fuzz -h: exit %d\n%s", code, errOut)
	}
}

// TestParseArgs: flags may come before or after the positional argument.
func TestParseArgs(t *testing.T) {
	for _, args := range [][]string{
		{"B", "-budget", "3s", "-out", "O"},
		{"-budget", "3s", "B", "-out", "O"},
		{"-out", "O", "-budget", "3s", "B"},
	} {
		cfg, code, ok := parseShrink(args, &bytes.Buffer{})
		if !ok || code != 0 || cfg.Bundle != "B" || cfg.Out != "O" || cfg.Budget != 3*time.Second {
			t.Errorf("%q: %+v %d %v", args, cfg, code, ok)
		}
	}
}

// TestDdmin: delta debugging finds exactly the decisions a failure needs.
func TestDdmin(t *testing.T) {
	faults := make([]sim.Fault, 40)
	for i := range faults {
		faults[i] = sim.Fault{At: sim.Time(i) * sim.Second, Kind: sim.FaultCrash, R: uint64(i)}
	}
	has := func(fs []sim.Fault, r uint64) bool {
		return slices.ContainsFunc(fs, func(f sim.Fault) bool { return f.R == r })
	}
	never := func() bool { return false }
	rs := func(fs []sim.Fault) []uint64 {
		out := []uint64{}
		for _, f := range fs {
			out = append(out, f.R)
		}
		return out
	}

	// Fails iff both decision 7 and decision 31 are there.
	calls := 0
	got := ddmin(faults, func(fs []sim.Fault) bool {
		calls++
		if fs == nil {
			t.Fatal("predicate got a nil subset")
		}
		return has(fs, 7) && has(fs, 31)
	}, never)
	if !reflect.DeepEqual(rs(got), []uint64{7, 31}) {
		t.Errorf("two needed decisions: got %v", rs(got))
	}
	if calls > 100 {
		t.Errorf("%d predicate calls for 40 decisions", calls)
	}

	// Fails iff decision 12 is there.
	if got := ddmin(faults, func(fs []sim.Fault) bool { return has(fs, 12) }, never); !reflect.DeepEqual(rs(got), []uint64{12}) {
		t.Errorf("one needed decision: got %v", rs(got))
	}
	// Fails whatever the faults: nothing is needed.
	if got := ddmin(faults, func([]sim.Fault) bool { return true }, never); got == nil || len(got) != 0 {
		t.Errorf("no needed decision: got %v", rs(got))
	}
	// Three scattered decisions.
	need := []uint64{0, 20, 39}
	got = ddmin(faults, func(fs []sim.Fault) bool {
		return has(fs, 0) && has(fs, 20) && has(fs, 39)
	}, never)
	if !reflect.DeepEqual(rs(got), need) {
		t.Errorf("three needed decisions: got %v", rs(got))
	}
	// Out of budget after a few calls: a failing superset comes back.
	calls = 0
	got = ddmin(faults, func(fs []sim.Fault) bool {
		calls++
		return has(fs, 7) && has(fs, 31)
	}, func() bool { return calls >= 3 })
	if !has(got, 7) || !has(got, 31) || calls > 3 {
		t.Errorf("stopped after %d calls: got %v", calls, rs(got))
	}
	// Nothing to shrink.
	if got := ddmin([]sim.Fault{}, func([]sim.Fault) bool { return true }, never); len(got) != 0 {
		t.Errorf("empty input: got %v", got)
	}
}

// TestSplit: chunks cover the input in order.
func TestSplit(t *testing.T) {
	idx := []int{0, 1, 2, 3, 4, 5, 6}
	for n := 1; n <= 9; n++ {
		chunks := split(idx, n)
		var all []int
		for _, c := range chunks {
			if len(c) == 0 {
				t.Errorf("n=%d: empty chunk", n)
			}
			all = append(all, c...)
		}
		if len(chunks) != min(n, len(idx)) || !reflect.DeepEqual(all, idx) {
			t.Errorf("n=%d: %v", n, chunks)
		}
	}
}

// TestLoadBundleEmptyFaults: a bundle whose schedule is empty (omitted in
// JSON) replays with no faults, not a redrawn schedule.
func TestLoadBundleEmptyFaults(t *testing.T) {
	o, err := sim.Draw(5, "swarm")
	if err != nil {
		t.Fatal(err)
	}
	res := &sim.Result{Options: o, Verdict: sim.VerdictSafety, Check: "x", EventHash: 42}
	dir := t.TempDir()
	if err := writeJSONFile(filepath.Join(dir, reproFile), newRepro(res, false)); err != nil {
		t.Fatal(err)
	}
	b, err := loadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Options.Faults == nil || len(b.Options.Faults) != 0 || b.Verdict != sim.VerdictSafety || b.Hash != 42 {
		t.Errorf("loaded %+v", b)
	}
	// A bare options file without faults draws them.
	path := filepath.Join(dir, "options.json")
	if err := writeJSONFile(path, o); err != nil {
		t.Fatal(err)
	}
	got, err := loadOptions(path)
	if err != nil || got.Faults != nil || got.Seed != 5 {
		t.Errorf("loadOptions: %v, faults %v", err, got.Faults)
	}
}

// TestCounterList names every counter.
func TestCounterList(t *testing.T) {
	list := counterList(sim.Counters{LeaderChanges: 3, DiskTorn: 4, StorageRepairs: 5})
	n := 0
	for f := range reflect.TypeFor[sim.Counters]().Fields() {
		if f.Type.Kind() == reflect.Uint64 {
			n++
		}
	}
	if len(list) != n || n < 30 {
		t.Errorf("%d counters listed, %d uint64 fields", len(list), n)
	}
	if list[0] != (counter{"leader changes", 3}) || !slices.Contains(list, counter{"disk torn", 4}) ||
		!slices.Contains(list, counter{"storage repairs", 5}) {
		t.Errorf("list: %v", list)
	}
}

// TestDescribeDivergence: re-runs that agree say so and show the event
// where the first pair diverged.
func TestDescribeDivergence(t *testing.T) {
	o, err := sim.Draw(1, "calm")
	if err != nil {
		t.Fatal(err)
	}
	o.Duration, o.HealAt = 2*sim.Second, sim.Second
	s := describeDivergence(o, 5)
	if !strings.Contains(s, "first runs diverged at event 5") || !strings.Contains(s, "did not diverge") ||
		!regexp.MustCompile(`\n +\d+\.\d{3} [a-z-]+ `).MatchString(s) {
		t.Errorf("report:\n%s", s)
	}
}
