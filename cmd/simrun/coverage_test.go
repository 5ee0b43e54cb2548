package main

import (
	"bytes"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// TestCoverageTable: the table lists every class with its summed count,
// the seeds that reached it and their share.
func TestCoverageTable(t *testing.T) {
	var cv coverage
	var sum sim.Counters
	for i, c := range []sim.Counters{
		{LeaderChanges: 3, Reached: sim.Reached{CrashOverwrite: 2}},
		{LeaderChanges: 1},
		{},
		{Reached: sim.Reached{LeaseReadsTransfer: 5}},
	} {
		cv.add(uint64(10-i), &c) // seeds 10, 9, 8, 7
		sum.Add(&c)
	}
	var b bytes.Buffer
	writeCoverage(&b, &cv, &sum)
	out := b.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2+len(coverageClasses) || lines[0] != "coverage (4 seeds)" {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{
		`(?m)^  leader changes +4 +2 +50\.0% +9$`,
		`(?m)^  crashes overwriting a log suffix +2 +1 +25\.0% +10$`,
		`(?m)^  lease reads across a transfer +5 +1 +25\.0% +7$`,
		`(?m)^  joint configurations entered +0 +0 +0\.0% +-$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no line %s in\n%s", want, out)
		}
	}
	// A class reached by few seeds shows two decimals.
	for i := range 196 {
		cv.add(uint64(100+i), &sim.Counters{})
	}
	b.Reset()
	writeCoverage(&b, &cv, &sum)
	if !regexp.MustCompile(`(?m)^  crashes overwriting a log suffix +2 +1 +0\.50% +10$`).MatchString(b.String()) {
		t.Errorf("1 seed in 200:\n%s", b.String())
	}
	// An empty run prints zeros, no division by zero.
	b.Reset()
	writeCoverage(&b, &coverage{}, &sim.Counters{})
	if !strings.Contains(b.String(), "coverage (0 seeds)") || strings.Contains(b.String(), "NaN") {
		t.Errorf("empty table:\n%s", b.String())
	}
}

// TestCoverageClasses: class names are unique and every class names
// profiles that exist.
func TestCoverageClasses(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range coverageClasses {
		if seen[k.name] {
			t.Errorf("class %q twice", k.name)
		}
		seen[k.name] = true
		for _, p := range k.profiles {
			if checkProfile(p) != nil || p == "calm" {
				t.Errorf("class %q: profile %q", k.name, p)
			}
		}
	}
}

// TestEveryReachedCounterHasAClass: each counter of sim.Reached is read by
// some class of the table (a new counter needs its row).
func TestEveryReachedCounterHasAClass(t *testing.T) {
	rt := reflect.TypeFor[sim.Reached]()
	for i := range rt.NumField() {
		var c sim.Counters
		reflect.ValueOf(&c.Reached).Elem().Field(i).SetUint(1)
		if !slices.ContainsFunc(coverageClasses, func(k coverageClass) bool { return k.count(&c) == 1 }) {
			t.Errorf("no class reads Reached.%s", rt.Field(i).Name)
		}
	}
}

// TestNoCounterHasTwoRows: no counter is read by two classes (merged
// branches that each add a row for the same counter show up here).
func TestNoCounterHasTwoRows(t *testing.T) {
	var zero sim.Counters
	var walk func(v reflect.Value, name string)
	walk = func(v reflect.Value, name string) {
		for i := range v.NumField() {
			f, n := v.Field(i), name+v.Type().Field(i).Name
			switch f.Kind() {
			case reflect.Uint64:
				f.SetUint(1)
				var rows []string
				for _, k := range coverageClasses {
					if k.count(&zero) == 1 {
						rows = append(rows, k.name)
					}
				}
				if len(rows) > 1 {
					t.Errorf("%s is read by %d rows: %q", n, len(rows), rows)
				}
				f.SetUint(0)
			case reflect.Struct:
				walk(f, n+".")
			}
		}
	}
	walk(reflect.ValueOf(&zero).Elem(), "")
}

// TestCoverageWarnings: a run that reaches a class 0 times warns about it
// in the profiles that must reach it, and only there; calm never warns.
func TestCoverageWarnings(t *testing.T) {
	for _, profile := range sim.Profiles() {
		w := coverageWarnings(profile, sim.Counters{})
		var want []string
		for _, k := range coverageClasses {
			if slices.Contains(k.profiles, profile) {
				want = append(want, "never reached: "+k.name)
			}
		}
		if !slices.Equal(w, want) {
			t.Errorf("%s, nothing reached: warnings %q, want %q", profile, w, want)
		}
	}
	if w := coverageWarnings("calm", sim.Counters{}); len(w) != 0 {
		t.Errorf("calm warns: %v", w)
	}
	has := func(w []string, s string) bool { return slices.Contains(w, "never reached: "+s) }
	if w := coverageWarnings("swarm", sim.Counters{}); has(w, "reads on the lease") || !has(w, "leader changes") {
		t.Errorf("swarm warnings: %v", w)
	}
	if w := coverageWarnings("lease", sim.Counters{}); !has(w, "lease reads across a transfer") || has(w, "process pauses") {
		t.Errorf("lease warnings: %v", w)
	}
	// Everything reached once: no warning anywhere.
	var all sim.Counters
	setAllCounters(&all, 1)
	for _, profile := range sim.Profiles() {
		if w := coverageWarnings(profile, all); len(w) != 0 {
			t.Errorf("%s, everything reached: %v", profile, w)
		}
	}
	// One class missing: one warning, naming it.
	all.Reached.SnapshotOverConflict = 0
	if w := coverageWarnings("swarm", all); !slices.Equal(w, []string{"never reached: snapshots installed over a conflicting tail"}) {
		t.Errorf("warnings %q", w)
	}
}

// setAllCounters sets every counter of c (nested ones included) to v.
func setAllCounters(c *sim.Counters, v uint64) {
	var walk func(r reflect.Value)
	walk = func(r reflect.Value) {
		for i := range r.NumField() {
			switch f := r.Field(i); f.Kind() {
			case reflect.Uint64:
				f.SetUint(v)
			case reflect.Struct:
				walk(f)
			}
		}
	}
	walk(reflect.ValueOf(c).Elem())
}

// TestShortRunsReachCommonClasses: a few seeds of swarm and lease reach
// the common classes, and the fuzz summary shows the table and warns
// about what the run missed.
func TestShortRunsReachCommonClasses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 24 seeds")
	}
	reach := func(profile string, seeds uint64) (*coverage, string) {
		cfg := fuzzConfig{Seeds: seeds, Workers: 1, Profile: profile, StartSeed: 1, Out: t.TempDir(),
			CheckTimeout: 10 * time.Second}
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		st := &fuzzStats{verdicts: make(map[sim.Verdict]uint64)}
		for s := range seeds {
			st.add(runSeed(1+s, cfg))
		}
		if len(st.failures)+len(st.errs) > 0 {
			t.Fatalf("%s: %d failures, errors %v", profile, len(st.failures), st.errs)
		}
		var out bytes.Buffer
		printFuzzSummary(&out, cfg, st, time.Second, "")
		return &st.cov, out.String()
	}
	check := func(profile string, cv *coverage, classes ...string) {
		t.Helper()
		for _, name := range classes {
			i := slices.IndexFunc(coverageClasses, func(k coverageClass) bool { return k.name == name })
			if i < 0 {
				t.Fatalf("no class %q", name)
			}
			if cv.seeds[i] == 0 {
				t.Errorf("%s: %d seeds never reached %q", profile, cv.runs, name)
			}
		}
	}
	cv, out := reach("swarm", 16)
	check("swarm", cv, "leader changes", "elections with competing candidates", "split votes (terms without a leader)",
		"new leader with uncommitted old-term entries", "old-term tail committed by that leader",
		"leadership transfers completed", "joint configurations entered",
		"joint configurations left", "log truncations", "snapshots installed", "crashes writing entries",
		"crashes writing only a hard state", "crashes losing unsynced writes", "reads by ReadIndex", "reads through the log")
	if !strings.Contains(out, "coverage (16 seeds)") || !strings.Contains(out, "WARNING       never reached: ") {
		t.Errorf("swarm summary (16 seeds miss some rare class):\n%s", out)
	}
	if strings.Contains(out, "never reached: reads on the lease") || strings.Contains(out, "never reached: leader changes") {
		t.Errorf("swarm summary warns about a class it reached or need not reach:\n%s", out)
	}
	cv, _ = reach("lease", 8)
	check("lease", cv, "reads on the lease", "lease reads across a leader change")
	cv, out = reach("storage", 4)
	check("storage", cv, "storage faults (disks damaged)", "damaged storage refused (fail-stop)")
	if strings.Contains(out, "never reached: storage faults") || !strings.Contains(out, "storage refusals") {
		t.Errorf("storage summary:\n%s", out)
	}
}
