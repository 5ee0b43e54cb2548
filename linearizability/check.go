package linearizability

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is the outcome of a check.
type Verdict uint8

// Verdicts.
const (
	// Ok means the history is linearizable.
	Ok Verdict = 0
	// Illegal means the history is not linearizable.
	Illegal Verdict = 1
	// Inconclusive means the check ran out of time (or the history was
	// malformed, see Result.Err): the history may be either.
	Inconclusive Verdict = 2
)

// String returns "ok", "illegal" or "inconclusive".
func (v Verdict) String() string {
	switch v {
	case Ok:
		return "ok"
	case Illegal:
		return "illegal"
	case Inconclusive:
		return "inconclusive"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Result is the outcome of Check.
type Result struct {
	Verdict Verdict
	// Partitions is the number of keys checked, each on its own.
	Partitions int
	// Ops is the number of operations checked, open ones included.
	Ops int
	// Open is the number of open operations checked.
	Open int
	// Dropped is the number of open operations left out of the check
	// because nothing can depend on them: every open Get, and the open
	// writes described at Check.
	Dropped int
	// Bounded is the number of open writes given a return time before the
	// end of the history, as described at Check.
	Bounded int
	// Err is set when the history is malformed (see History.Validate); the
	// verdict is then Inconclusive.
	Err error

	// Relaxed says the verdict, Illegal, comes from the relaxed check:
	// even letting every open write take effect any number of times (or
	// never), just before any operation that returned after the write was
	// invoked, no linearization exists. The HTML then shows that check,
	// with states as sets of possible values and the open writes as
	// annotations.
	Relaxed bool

	model       porcupine.Model
	info        porcupine.LinearizationInfo
	notes       []Annotation
	openGets    []Op
	looseWrites []Op // the open writes, when Relaxed
	horizon     int64
}

// Check checks whether h is linearizable with respect to the key-value
// model, key by key. timeout bounds the wall-clock time of the search; 0 (or
// less) means no limit. A check that runs out of time is Inconclusive, never
// Ok. A malformed history (see History.Validate; duplicate ids are not
// looked for) is Inconclusive with Err set.
//
// The model, per key, is a state (present, value), initially absent:
//
//   - Get is legal iff it returned the state: Found == present and, when
//     present, Value == value.
//   - Put is always legal and sets the value.
//   - Delete is legal iff Found == present, and removes the key.
//   - CAS with OK is legal iff present with value Expected, and sets Value;
//     CAS without OK is legal iff not, and changes nothing.
//
// An open operation (see Op.Open) returns, for the checker, after every
// recorded time, so it may be linearized anywhere after its call — last of
// all is the same as never. Open Puts, Deletes and CASes are always legal;
// an open CAS swaps only if the value matches. Open Gets are left out.
//
// Before the search, open writes that no operation could depend on are
// left out, and others are given an earlier return time when it provably
// does not change the verdict (the rules and their proofs are in prune.go;
// Result.Dropped and Result.Bounded count them). Without this, k open
// writes pending on a key can cost 2^k steps at every later operation on
// it.
//
// When open writes remain, the exact search first gets a tenth of the
// time-out, which is plenty for a typical linearizable history. If it runs
// out, a relaxed check (relaxed.go) gets a quarter: it lets each open write
// take effect any number of times, which keeps its search small, so if it
// finds no linearization the history is certainly illegal (Result.Relaxed).
// Otherwise the exact search runs again with the time left. With no
// time-out, the relaxed check runs first.
//
// The Result refers to h's operations (for WriteHTML): do not modify them
// while the Result is in use.
func Check(h History, timeout time.Duration) Result {
	return check(h, timeout, true)
}

// check is Check, with prune's reductions optional for testing.
//
// Without open writes it is one exact search. With open writes, an illegal
// history can make the exact search explode, so: first the exact search
// with a tenth of the time (enough for almost every linearizable history);
// if that runs out, the relaxed check (see relaxed.go) with a quarter,
// which may prove the history illegal; if not, the exact search again with
// the time left. With no time limit, the relaxed check runs first.
func check(h History, timeout time.Duration, reduce bool) Result {
	c, err := compile(h, reduce)
	if err != nil {
		return Result{Verdict: Inconclusive, Err: fmt.Errorf("linearizability: check: %w", err)}
	}
	r := Result{
		Verdict:    Inconclusive,
		Partitions: c.partitions,
		Ops:        len(c.ops),
		Open:       c.open,
		Dropped:    c.dropped,
		Bounded:    c.bounded,
		model:      kvModel(),
		notes:      h.Annotations,
		openGets:   c.openGets,
		horizon:    c.horizon,
	}
	exact := func(budget time.Duration) bool {
		res, info := porcupine.CheckOperationsVerbose(r.model, c.ops, budget)
		r.info = info
		switch res {
		case porcupine.Ok:
			r.Verdict = Ok
		case porcupine.Illegal:
			r.Verdict = Illegal
		default:
			return false
		}
		return true
	}
	relaxed := func(budget time.Duration) bool {
		loose, writes := loosen(c.ops)
		model := looseModel()
		res, info := porcupine.CheckOperationsVerbose(model, loose, budget)
		if res != porcupine.Illegal {
			return false
		}
		r.Verdict, r.Relaxed = Illegal, true
		r.model, r.info, r.looseWrites = model, info, writes
		return true
	}
	switch {
	case timeout <= 0 && c.open == 0:
		exact(0)
	case timeout <= 0:
		_ = relaxed(0) || exact(0)
	case c.open == 0:
		exact(timeout)
	default:
		start := time.Now()
		// A zero budget would mean no limit: never less than 1ns.
		if exact(max(timeout/10, 1)) || relaxed(max(timeout/4, 1)) {
			return r
		}
		if rest := timeout - time.Since(start); rest > 0 {
			exact(rest)
		}
	}
	return r
}

// timeline converts the annotations, and the open Gets left out of the
// check, to porcupine annotations.
func (r Result) timeline() []porcupine.Annotation {
	out := make([]porcupine.Annotation, 0, len(r.notes)+len(r.openGets)+len(r.looseWrites))
	for _, a := range r.notes {
		tag := a.Tag
		if tag == "" {
			tag = "note"
		}
		text, background := colours(tag)
		out = append(out, porcupine.Annotation{
			Tag:             tag,
			Start:           a.Start,
			End:             a.End,
			Description:     a.Text,
			Details:         a.Details,
			TextColor:       text,
			BackgroundColor: background,
		})
	}
	for _, op := range r.openGets {
		out = append(out, r.openNote(op, "not checked"))
	}
	for _, op := range r.looseWrites {
		out = append(out, r.openNote(op, "may take effect any number of times in the relaxed check"))
	}
	return out
}

// openNote is the timeline entry of an open operation that is not an
// operation of the search.
func (r Result) openNote(op Op, why string) porcupine.Annotation {
	return porcupine.Annotation{
		ClientId:        op.Client,
		Start:           op.Call,
		End:             r.horizon,
		Description:     describeOp(op),
		Details:         fmt.Sprintf("op %d, client %d, outcome unknown: %s", op.ID, op.Client, why),
		TextColor:       "#555555",
		BackgroundColor: "#eeeeee",
	}
}

// colours picks the text and background colours of an annotation row.
func colours(tag string) (text, background string) {
	t := strings.ToLower(tag)
	switch {
	case strings.Contains(t, "crash"):
		return "#ffffff", "#c0392b"
	case strings.Contains(t, "partition"):
		return "#000000", "#f5b041"
	case strings.Contains(t, "leader"):
		return "#000000", "#aed6f1"
	}
	return "", ""
}

// WriteHTML writes porcupine's visualisation of the checked history to w: an
// HTML page with the operations of each key, the longest linearizations
// found (for an illegal history, where they break down) and the history's
// annotations. It works for any verdict; for a malformed history it returns
// Err.
func (r Result) WriteHTML(w io.Writer) error {
	if r.Err != nil {
		return r.Err
	}
	if r.model.Step == nil {
		return errors.New("linearizability: write HTML: not a result of Check")
	}
	info := r.info // AddAnnotations appends to a fresh slice: r is not changed
	info.AddAnnotations(r.timeline())
	if err := porcupine.Visualize(r.model, info, w); err != nil {
		return fmt.Errorf("linearizability: write HTML: %w", err)
	}
	return nil
}
