package linearizability

import (
	"fmt"
	"math"
	"strconv"

	"github.com/anishathalye/porcupine"
)

// kvState is the state of one key: absent (a nil *kvState) or present with a
// value. States are interned per check — one *kvState per distinct value —
// so that equality is pointer equality and a step never allocates.
type kvState struct {
	id    uint64 // distinct per value within one check; 0 is never used
	value string
}

// step is a compiled operation: the porcupine input (and output) of one Op.
type step struct {
	op    *Op // in the checked History
	kind  Kind
	open  bool
	found bool  // Output.Found
	ok    bool  // Output.OK
	part  int32 // partition: index of the key in order of first use
	// ret is the return time given to porcupine: Op.Return, or for an open
	// operation noReturn (replaced by the horizon) or a bound set by prune.
	ret int64
	// want is the state a Get observed (nil when not found) or the state a
	// CAS expects.
	want *kvState
	// arg is the state a Put or CAS writes.
	arg *kvState
}

// interner hands out one *kvState per distinct value.
type interner struct {
	states map[string]*kvState
}

func (in *interner) intern(v string) *kvState {
	s, ok := in.states[v]
	if !ok {
		s = &kvState{id: uint64(len(in.states)) + 1, value: v}
		in.states[v] = s
	}
	return s
}

// compiled is a history ready for porcupine.
type compiled struct {
	ops        []porcupine.Operation // grouped by partition
	partitions int
	open       int // open operations checked
	dropped    int // open operations left out of the check
	bounded    int // open operations given a return time before the horizon
	horizon    int64
	openGets   []Op // dropped open Gets, for the timeline
}

// horizon returns a time after every time in h: the return time of open
// operations.
func horizon(h History) int64 {
	maxT := int64(math.MinInt64)
	for i := range h.Ops {
		op := &h.Ops[i]
		maxT = max(maxT, op.Call)
		if !op.Open {
			maxT = max(maxT, op.Return)
		}
	}
	for _, a := range h.Annotations {
		maxT = max(maxT, a.Start, a.End)
	}
	if maxT == math.MinInt64 {
		return 0
	}
	if maxT == math.MaxInt64 {
		return maxT
	}
	return maxT + 1
}

// noReturn is the return time of an open operation until compile replaces it
// with the horizon.
const noReturn = math.MaxInt64

// compile validates h and turns it into porcupine operations grouped by
// key. With reduce, it leaves out or bounds open operations as prune
// describes.
func compile(h History, reduce bool) (compiled, error) {
	c := compiled{horizon: horizon(h)}
	keys := make(map[string]int32)
	var counts []int
	steps := make([]step, 0, len(h.Ops))
	in := interner{states: make(map[string]*kvState, len(h.Ops)/2)}
	for i := range h.Ops {
		op := &h.Ops[i]
		if err := op.validate(); err != nil {
			return compiled{}, fmt.Errorf("op %d (index %d): %w", op.ID, i, err)
		}
		if op.Open && op.Input.Kind == Get {
			c.dropped++
			c.openGets = append(c.openGets, *op)
			continue
		}
		part, ok := keys[op.Input.Key]
		if !ok {
			part = int32(len(counts))
			keys[op.Input.Key] = part
			counts = append(counts, 0)
		}
		counts[part]++
		s := step{op: op, kind: op.Input.Kind, open: op.Open, found: op.Output.Found, ok: op.Output.OK,
			part: part, ret: op.Return}
		if op.Open {
			s.ret = noReturn
		}
		switch op.Input.Kind {
		case Get:
			if op.Output.Found {
				s.want = in.intern(op.Output.Value)
			}
		case Put:
			s.arg = in.intern(op.Input.Value)
		case CAS:
			s.want = in.intern(op.Input.Expected)
			s.arg = in.intern(op.Input.Value)
		}
		steps = append(steps, s)
	}
	if reduce {
		steps, c.bounded = prune(steps, counts)
	}
	// Group by partition, keeping invocation order within each (a counting
	// sort), so that the partition function only has to cut runs.
	start := make([]int, len(counts)+1)
	for p, n := range counts {
		start[p+1] = start[p] + n
	}
	c.ops = make([]porcupine.Operation, len(steps))
	for i := range steps {
		s := &steps[i]
		if s.op.Open {
			c.open++
		}
		ret := s.ret
		if ret == noReturn {
			ret = c.horizon
		}
		c.ops[start[s.part]] = porcupine.Operation{
			ClientId: s.op.Client,
			Input:    s,
			Output:   s,
			Call:     s.op.Call,
			Return:   ret,
			Metadata: s,
		}
		start[s.part]++
	}
	for _, n := range counts {
		if n > 0 {
			c.partitions++
		}
	}
	c.dropped += len(h.Ops) - len(c.openGets) - len(steps)
	return c, nil
}

// partition cuts a history grouped by compile into runs of one key.
func partition(ops []porcupine.Operation) [][]porcupine.Operation {
	var parts [][]porcupine.Operation
	begin := 0
	for i := 1; i <= len(ops); i++ {
		if i == len(ops) || partOf(ops[i]) != partOf(ops[begin]) {
			parts = append(parts, ops[begin:i])
			begin = i
		}
	}
	return parts
}

// partOf returns the partition of an operation of the exact or the relaxed
// check.
func partOf(op porcupine.Operation) int32 {
	if ls, ok := op.Input.(*looseStep); ok {
		return ls.part
	}
	return op.Input.(*step).part
}

// kvStep is the sequential specification of one key.
func kvStep(state, input, _ any) (bool, any) {
	cur := state.(*kvState)
	s := input.(*step)
	switch s.kind {
	case Get:
		return cur == s.want, cur
	case Put:
		return true, s.arg
	case Delete:
		return s.open || (cur != nil) == s.found, (*kvState)(nil)
	case CAS:
		match := cur == s.want
		switch {
		case s.open && match:
			return true, s.arg
		case s.open:
			return true, cur
		case s.ok:
			return match, s.arg
		default:
			return !match, cur
		}
	}
	return false, cur
}

// kvModel returns the porcupine model of the store, partitioned by key.
func kvModel() porcupine.Model {
	return porcupine.Model{
		Partition: partition,
		Init:      func() any { return (*kvState)(nil) },
		Step:      kvStep,
		Equal:     func(a, b any) bool { return a.(*kvState) == b.(*kvState) },
		Hash: func(state any) uint64 {
			if s := state.(*kvState); s != nil {
				return s.id * 0x9e3779b97f4a7c15
			}
			return 0
		},
		DescribeOperation:         func(input, _ any) string { return describeOp(*input.(*step).op) },
		DescribeState:             describeState,
		DescribeOperationMetadata: describeMetadata,
	}
}

// describeOp renders an operation and its outcome, e.g. "put(k, v)",
// "cas(k, a→b) → ok" or "get(k) → v".
func describeOp(op Op) string {
	in, out := op.Input, op.Output
	var call, res string
	switch in.Kind {
	case Get:
		call = "get(" + show(in.Key) + ")"
		res = "not found"
		if out.Found {
			res = show(out.Value)
		}
	case Put:
		call = "put(" + show(in.Key) + ", " + show(in.Value) + ")"
	case Delete:
		call = "delete(" + show(in.Key) + ")"
		res = "not found"
		if out.Found {
			res = "found"
		}
	case CAS:
		call = "cas(" + show(in.Key) + ", " + show(in.Expected) + "→" + show(in.Value) + ")"
		res = "fail"
		if out.OK {
			res = "ok"
		}
	default:
		return in.Kind.String()
	}
	switch {
	case op.Open:
		return call + " → ?"
	case res == "":
		return call
	}
	return call + " → " + res
}

// describeState renders a key's state.
func describeState(state any) string {
	if s := state.(*kvState); s != nil {
		return show(s.value)
	}
	return "(absent)"
}

// describeMetadata renders the tool-tip of an operation.
func describeMetadata(meta any) string {
	s, ok := meta.(*step)
	if !ok {
		return ""
	}
	text := "op " + strconv.Itoa(s.op.ID) + ", client " + strconv.Itoa(s.op.Client)
	if s.op.Open {
		text += ", outcome unknown"
	}
	return text
}

// show renders a key or value: as is when it is a plain word, quoted
// otherwise (so that "" and values with spaces or commas stay readable).
func show(v string) string {
	if v == "" {
		return `""`
	}
	for _, r := range v {
		plain := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '_' || r == '-' || r == '.' || r == ':' || r == '/'
		if !plain {
			return strconv.Quote(v)
		}
	}
	return v
}
