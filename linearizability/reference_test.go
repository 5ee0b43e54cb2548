package linearizability

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/anishathalye/porcupine"
)

// refState is the reference model's state of one key.
type refState struct {
	present bool
	value   string
}

// refStep is the model written out again, independently of kvStep.
func refStep(s refState, op Op) (bool, refState) {
	in, out := op.Input, op.Output
	matches := s.present && s.value == in.Expected
	switch in.Kind {
	case Get:
		return out.Found == s.present && (!s.present || out.Value == s.value), s
	case Put:
		return true, refState{true, in.Value}
	case Delete:
		return op.Open || out.Found == s.present, refState{}
	case CAS:
		switch {
		case op.Open && matches:
			return true, refState{true, in.Value}
		case op.Open:
			return true, s
		case out.OK:
			return matches, refState{true, in.Value}
		default:
			return !matches, s
		}
	}
	panic("bad kind")
}

// refLinearizable decides linearizability of a small history by exhaustive
// search over orders of all its operations (open Gets excluded, open
// operations returning never), memoised on (set done, state per key).
func refLinearizable(h History) bool {
	var ops []Op
	for _, op := range h.Ops {
		if !(op.Open && op.Input.Kind == Get) {
			ops = append(ops, op)
		}
	}
	if len(ops) > 20 {
		panic("history too large for the reference")
	}
	// before[i]: mask of operations that must precede i.
	before := make([]uint32, len(ops))
	for i, a := range ops {
		for j, b := range ops {
			if !b.Open && b.Return < a.Call {
				before[i] |= 1 << j
			}
		}
	}
	type memoKey struct {
		done  uint32
		state string
	}
	seen := make(map[memoKey]bool)
	var search func(done uint32, states map[string]refState) bool
	search = func(done uint32, states map[string]refState) bool {
		if done == 1<<len(ops)-1 {
			return true
		}
		key := memoKey{done, fmt.Sprint(states)}
		if seen[key] {
			return false
		}
		seen[key] = true
		for i, op := range ops {
			if done&(1<<i) != 0 || before[i]&^done != 0 {
				continue
			}
			ok, next := refStep(states[op.Input.Key], op)
			if !ok {
				continue
			}
			prev, had := states[op.Input.Key]
			states[op.Input.Key] = next
			if search(done|1<<i, states) {
				return true
			}
			if had {
				states[op.Input.Key] = prev
			} else {
				delete(states, op.Input.Key)
			}
		}
		return false
	}
	return search(0, make(map[string]refState))
}

// tinyHistory returns a small random history over few keys and values, so
// that values and outcomes collide often. Half of the time the outputs come
// from a real sequential execution (mostly linearizable histories), else
// they are random (mostly not).
func tinyHistory(rng *rand.Rand) History {
	keys := []string{"x", "y"}[:1+rng.IntN(2)]
	values := []string{"a", "b", "c"}
	n := 2 + rng.IntN(7)
	faithful := rng.IntN(2) == 0
	type timed struct {
		op Op
		at int64 // effect time when faithful
	}
	ops := make([]timed, n)
	for i := range ops {
		call := rng.Int64N(30)
		ret := call + rng.Int64N(12)
		op := Op{ID: i, Client: i % 3, Call: call, Return: ret}
		op.Input = Input{Kind: Kind(1 + rng.IntN(4)), Key: keys[rng.IntN(len(keys))]}
		if op.Input.Kind == Put || op.Input.Kind == CAS {
			op.Input.Value = values[rng.IntN(len(values))]
		}
		if op.Input.Kind == CAS {
			op.Input.Expected = values[rng.IntN(len(values))]
		}
		at := call + rng.Int64N(ret-call+1)
		if rng.IntN(4) == 0 {
			op.Open, op.Return = true, 0
			at = call + rng.Int64N(40)
			if rng.IntN(3) == 0 {
				at = -1 // never takes effect
			}
		}
		if !faithful && !op.Open {
			op.Output = Output{Value: values[rng.IntN(len(values))], Found: rng.IntN(2) == 0, OK: rng.IntN(2) == 0}
		}
		ops[i] = timed{op, at}
	}
	if faithful {
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		// Apply in effect order (ties broken by index).
		for i := 1; i < n; i++ {
			for j := i; j > 0 && ops[order[j]].at < ops[order[j-1]].at; j-- {
				order[j], order[j-1] = order[j-1], order[j]
			}
		}
		states := make(map[string]refState)
		for _, i := range order {
			t := &ops[i]
			if t.at < 0 {
				continue
			}
			s := states[t.op.Input.Key]
			in := t.op.Input
			var out Output
			switch in.Kind {
			case Get:
				out = Output{Value: s.value, Found: s.present}
				if !s.present {
					out.Value = ""
				}
			case Put:
				s = refState{true, in.Value}
			case Delete:
				out.Found = s.present
				s = refState{}
			case CAS:
				if s.present && s.value == in.Expected {
					out.OK = true
					s = refState{true, in.Value}
				}
			}
			states[in.Key] = s
			if !t.op.Open {
				t.op.Output = out
			}
		}
		// Occasionally corrupt one output.
		if rng.IntN(4) == 0 {
			t := &ops[rng.IntN(n)]
			if !t.op.Open {
				t.op.Output.Found = !t.op.Output.Found
				t.op.Output.OK = !t.op.Output.OK
			}
		}
	}
	h := History{}
	for _, t := range ops {
		h.Ops = append(h.Ops, t.op)
	}
	return h
}

// TestAgainstReference compares Check, with and without prune's
// reductions, with the exhaustive reference on many small histories.
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var verdicts [3]int
	dropped, bounded, relaxedIllegal := 0, 0, 0
	for i := 0; i < n; i++ {
		h := tinyHistory(rng)
		want := Illegal
		if refLinearizable(h) {
			want = Ok
		}
		full := check(h, 0, false)
		reduced := Check(h, 0)
		if full.Verdict != want || reduced.Verdict != want {
			t.Fatalf("history %d: reference %v, unreduced %v, reduced %v (dropped %d, bounded %d)\n%s",
				i, want, full.Verdict, reduced.Verdict, reduced.Dropped, reduced.Bounded, dump(h))
		}
		verdicts[want]++
		// The relaxed check alone must never call a linearizable history
		// illegal.
		c, err := compile(h, true)
		if err != nil {
			t.Fatal(err)
		}
		if c.open > 0 {
			loose, _ := loosen(c.ops)
			if !porcupine.CheckOperations(looseModel(), loose) {
				if want == Ok {
					t.Fatalf("history %d: relaxed check illegal, reference ok\n%s", i, dump(h))
				}
				relaxedIllegal++
			}
		}
		if reduced.Dropped > full.Dropped {
			dropped++
		}
		if reduced.Bounded > 0 {
			bounded++
		}
	}
	t.Logf("ok %d, illegal %d; prune dropped writes in %d, bounded writes in %d; relaxed check illegal in %d",
		verdicts[Ok], verdicts[Illegal], dropped, bounded, relaxedIllegal)
	// The comparison means something only if both verdicts and both
	// reductions occur often.
	if verdicts[Ok] < n/5 || verdicts[Illegal] < n/5 || dropped < n/50 || bounded < n/50 || relaxedIllegal < n/50 {
		t.Fatalf("unbalanced sample: ok %d, illegal %d, dropped in %d, bounded in %d, relaxed illegal in %d",
			verdicts[Ok], verdicts[Illegal], dropped, bounded, relaxedIllegal)
	}
}

// dump renders a history for failure messages.
func dump(h History) string {
	s := ""
	for _, op := range h.Ops {
		ret := fmt.Sprint(op.Return)
		if op.Open {
			ret = "open"
		}
		s += fmt.Sprintf("  %d c%d [%d, %s] %s\n", op.ID, op.Client, op.Call, ret, describeOp(op))
	}
	return s
}
