package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/linearizability"
	"github.com/forge-consensus/consensus/sim"
)

// bundleFormat is the format version of repro.json.
const bundleFormat = 1

// Files of a bundle.
const (
	reproFile       = "repro.json"
	traceFile       = "trace.jsonl"
	historyFile     = "history.json"
	historyHTMLFile = "history.html"
	faultsFile      = "faults.json"
)

// repro is the content of repro.json: everything needed to reproduce a run
// and what it found.
type repro struct {
	FormatVersion int    `json:"format_version"`
	Commit        string `json:"commit"`
	VCSModified   bool   `json:"vcs_modified,omitempty"`
	GoVersion     string `json:"go_version"`
	Seed          uint64 `json:"seed"`
	Profile       string `json:"profile"`
	Bugs          string `json:"bugs,omitempty"`
	// Drawn says the options are what sim.Draw gives for Seed and Profile
	// (with Bugs), so "simrun run -seed S -profile P" reproduces the run;
	// false after shrink or for options read from a file.
	Drawn bool `json:"drawn"`
	// Options are the fully resolved options as run; Options.Faults is the
	// fault schedule (absent means empty).
	Options   sim.Options  `json:"options"`
	Verdict   string       `json:"verdict"`
	Check     string       `json:"check,omitempty"`
	Detail    string       `json:"detail,omitempty"`
	FailNode  uint64       `json:"fail_node,omitempty"`
	FailAt    sim.Time     `json:"fail_at,omitempty"`
	EventHash string       `json:"event_hash"`
	Events    uint64       `json:"events"`
	SimTime   sim.Time     `json:"sim_time"`
	Faults    int          `json:"fault_decisions"`
	Counters  sim.Counters `json:"counters"`
}

// buildCommit returns the VCS revision the binary was built from and
// whether the tree was modified. A binary not stamped (go run, go test,
// -buildvcs=false) asks git in the working directory; failing that the
// commit is "unknown".
func buildCommit() (commit string, modified bool) {
	commit = "unknown"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return gitCommit()
	}
	stamped := false
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			stamped = true
		}
	}
	if !stamped {
		return gitCommit()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				commit = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return commit, modified
}

// resolvedOptions returns the options of res with the fault schedule as run,
// so the options alone reproduce the run (a nil schedule would be redrawn).
func resolvedOptions(res *sim.Result) sim.Options {
	o := res.Options
	o.Faults = append([]sim.Fault{}, res.Faults...)
	return o
}

// newRepro describes res for repro.json.
func newRepro(res *sim.Result, drawn bool) repro {
	commit, modified := buildCommit()
	o := resolvedOptions(res)
	return repro{
		FormatVersion: bundleFormat,
		Commit:        commit,
		VCSModified:   modified,
		GoVersion:     runtime.Version(),
		Seed:          o.Seed,
		Profile:       o.Profile,
		Bugs:          bugNames(o.Bugs),
		Drawn:         drawn,
		Options:       o,
		Verdict:       res.Verdict.String(),
		Check:         res.Check,
		Detail:        res.Detail,
		FailNode:      res.FailNode,
		FailAt:        res.FailAt,
		EventHash:     hexHash(res.EventHash),
		Events:        res.Events,
		SimTime:       res.SimTime,
		Faults:        len(o.Faults),
		Counters:      res.Counters,
	}
}

// bundleWrite is what writing a bundle found besides errors.
type bundleWrite struct {
	// RerunHash is the event hash of the re-run that wrote the trace; it
	// differs from the first run's only if the simulator is not
	// deterministic.
	RerunHash uint64
	// Deterministic says the re-run's hash equals the first run's.
	Deterministic bool
}

// writeBundle writes the failure bundle of res to dir: repro.json,
// trace.jsonl (by re-running the same options, which must give the same
// event hash), history.json, history.html and faults.json. drawn says the
// options are what sim.Draw gives for their seed and profile. checkTimeout
// bounds the linearizability check that draws history.html when res has
// none. It writes every file it can and returns the joined errors.
func writeBundle(dir string, res *sim.Result, drawn bool, checkTimeout time.Duration) (bundleWrite, error) {
	var bw bundleWrite
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return bw, fmt.Errorf("write bundle: %w", err)
	}
	var errs []error
	rp := newRepro(res, drawn)

	// The trace: re-run the resolved options, writing every event.
	rerun, err := writeTrace(filepath.Join(dir, traceFile), rp.Options)
	if err != nil {
		errs = append(errs, err)
	}
	if rerun != nil {
		bw.RerunHash = rerun.EventHash
		bw.Deterministic = rerun.EventHash == res.EventHash
	}

	if err := writeJSONFile(filepath.Join(dir, reproFile), rp); err != nil {
		errs = append(errs, err)
	}
	if err := writeJSONFile(filepath.Join(dir, historyFile), res.History); err != nil {
		errs = append(errs, err)
	}
	if err := writeHistoryHTML(filepath.Join(dir, historyHTMLFile), res, checkTimeout); err != nil {
		errs = append(errs, err)
	}
	if err := writeFaults(filepath.Join(dir, faultsFile), rp.Options.Faults); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return bw, fmt.Errorf("write bundle %s: %w", dir, err)
	}
	return bw, nil
}

// writeTrace runs o once more, writing its events to path as JSON lines,
// and returns the run's result.
func writeTrace(path string, o sim.Options) (*sim.Result, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	res := sim.Run(o, sim.Config{Trace: sim.TraceOptions{Writer: w}, SkipLinearizability: true})
	err = res.Trace.Err()
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("trace %s: %w", path, err)
	}
	return res, nil
}

// writeHistoryHTML writes porcupine's timeline of the run's history,
// checking the history first if the run did not (it stopped at an earlier
// failure or skipped the check).
func writeHistoryHTML(path string, res *sim.Result, checkTimeout time.Duration) error {
	lin := res.Lin
	if lin == nil {
		r := linearizability.Check(res.History, checkTimeout)
		lin = &r
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("history timeline: %w", err)
	}
	w := bufio.NewWriter(f)
	err = lin.WriteHTML(w)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("history timeline %s: %w", path, err)
	}
	return nil
}

// writeFaults writes the fault decisions as a JSON array, one per line.
func writeFaults(path string, faults []sim.Fault) error {
	var b bytes.Buffer
	b.WriteString("[")
	for i, f := range faults {
		line, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("faults: %w", err)
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  ")
		b.Write(line)
	}
	b.WriteString("\n]\n")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	return nil
}

// writeJSONFile writes v to path as indented JSON.
func writeJSONFile(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	err = enc.Encode(v)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// loadedBundle is a bundle read back: its repro.json and the options to
// re-run.
type loadedBundle struct {
	Dir     string
	Repro   repro
	Options sim.Options
	Verdict sim.Verdict
	Hash    uint64
}

// loadBundle reads the repro.json of a bundle; path is the bundle
// directory or its repro.json.
func loadBundle(path string) (*loadedBundle, error) {
	dir, file := path, filepath.Join(path, reproFile)
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		dir, file = filepath.Dir(path), path
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	var rp repro
	if err := json.Unmarshal(data, &rp); err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", file, err)
	}
	if rp.FormatVersion != bundleFormat {
		return nil, fmt.Errorf("load bundle %s: format version %d, want %d", file, rp.FormatVersion, bundleFormat)
	}
	v, err := parseVerdict(rp.Verdict)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", file, err)
	}
	h, err := parseHexHash(rp.EventHash)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", file, err)
	}
	o := rp.Options
	if o.Faults == nil {
		// A bundle always holds the schedule as run; an empty one is
		// omitted from the JSON, and nil would make the run draw one.
		o.Faults = []sim.Fault{}
	}
	return &loadedBundle{Dir: dir, Repro: rp, Options: o, Verdict: v, Hash: h}, nil
}

// loadOptions reads options for run -options: a bundle directory or its
// repro.json (the resolved options) or a bare sim.Options JSON (whose fault schedule is drawn when
// absent).
func loadOptions(path string) (sim.Options, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		b, err := loadBundle(path)
		if err != nil {
			return sim.Options{}, fmt.Errorf("load options: %w", err)
		}
		return b.Options, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return sim.Options{}, fmt.Errorf("load options: %w", err)
	}
	var probe struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return sim.Options{}, fmt.Errorf("load options %s: %w", path, err)
	}
	if probe.FormatVersion != nil {
		b, err := loadBundle(path)
		if err != nil {
			return sim.Options{}, fmt.Errorf("load options: %w", err)
		}
		return b.Options, nil
	}
	var o sim.Options
	if err := json.Unmarshal(data, &o); err != nil {
		return sim.Options{}, fmt.Errorf("load options %s: %w", path, err)
	}
	return o, nil
}

// gitCommit asks git for the checked-out revision and whether the tree has
// changes ("unknown" when git or the repository is not there).
func gitCommit() (commit string, modified bool) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	commit = strings.TrimSpace(string(out))
	st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return commit, err == nil && len(bytes.TrimSpace(st)) > 0
}
