package linearizability

import (
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The relaxed check proves illegality quickly when open writes make the
// exact search explode.
//
// The exact search keeps, for each open write, whether it has taken effect
// yet: with k open writes pending on a key it may visit 2^k combinations
// before each later operation, and an illegal history must be searched
// exhaustively. The relaxed check drops open writes from the search and
// lets each of them take effect any number of times (or never) just before
// any operation that returned no earlier than the write was invoked; the
// state is then the set of values the key may have. Every linearization of
// the history gives one of the relaxed history — an open write linearized
// just before an operation D satisfies write.Call ≤ D.Return — so a history
// the relaxed check finds illegal is illegal. (One it finds linearizable
// may not be: the exact search decides.)

// looseStep is an operation with a known outcome in the relaxed check.
type looseStep struct {
	*step
	// avail are the open writes on its key invoked no later than it
	// returned: those that may take effect just before it.
	avail []*step
}

// stateSet is a set of key states, sorted by stateID, never modified once
// built.
type stateSet []*kvState

func stateID(s *kvState) uint64 {
	if s == nil {
		return 0
	}
	return s.id
}

// index returns where s is or would be in set.
func (set stateSet) index(s *kvState) (int, bool) {
	id := stateID(s)
	i := sort.Search(len(set), func(i int) bool { return stateID(set[i]) >= id })
	return i, i < len(set) && set[i] == s
}

// insert adds s to set in place, which must be owned by the caller.
func (set stateSet) insert(s *kvState) (stateSet, bool) {
	i, found := set.index(s)
	if found {
		return set, false
	}
	set = append(set, nil)
	copy(set[i+1:], set[i:])
	set[i] = s
	return set, true
}

// closure returns the states reachable from set by applying the writes in
// avail any number of times, in any order.
func closure(set stateSet, avail []*step) stateSet {
	if len(avail) == 0 {
		return set
	}
	out := append(make(stateSet, 0, len(set)+len(avail)), set...)
	for changed := true; changed; {
		changed = false
		for _, w := range avail {
			var next *kvState // Delete
			switch w.kind {
			case Put:
				next = w.arg
			case CAS:
				if _, match := out.index(w.want); !match {
					continue
				}
				next = w.arg
			}
			var added bool
			out, added = out.insert(next)
			changed = changed || added
		}
	}
	return out
}

// looseStepFunc is the relaxed model's step: the operation must be legal in
// one of the states reachable before it.
func looseStepFunc(state, input, _ any) (bool, any) {
	ls := input.(*looseStep)
	var out stateSet
	for _, cur := range closure(state.(stateSet), ls.avail) {
		if ok, next := kvStep(cur, ls.step, nil); ok {
			out, _ = out.insert(next.(*kvState))
		}
	}
	return len(out) > 0, out
}

// looseModel returns the relaxed model.
func looseModel() porcupine.Model {
	return porcupine.Model{
		Partition: partition,
		Init:      func() any { return stateSet{nil} },
		Step:      looseStepFunc,
		Equal: func(a, b any) bool {
			x, y := a.(stateSet), b.(stateSet)
			if len(x) != len(y) {
				return false
			}
			for i := range x {
				if x[i] != y[i] {
					return false
				}
			}
			return true
		},
		Hash: func(state any) uint64 {
			var h uint64
			for _, s := range state.(stateSet) {
				h = (h ^ stateID(s)) * 0x9e3779b97f4a7c15
			}
			return h
		},
		DescribeOperation: func(input, _ any) string { return describeOp(*input.(*looseStep).op) },
		DescribeState: func(state any) string {
			var b strings.Builder
			b.WriteString("{")
			for i, s := range state.(stateSet) {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(describeState(s))
			}
			b.WriteString("}")
			return b.String()
		},
		DescribeOperationMetadata: describeMetadata,
	}
}

// loosen builds the relaxed history from the exact one: the operations with
// a known outcome, each with the open writes that may precede it, and the
// open writes themselves.
func loosen(ops []porcupine.Operation) (loose []porcupine.Operation, writes []Op) {
	loose = make([]porcupine.Operation, 0, len(ops))
	for _, part := range partition(ops) {
		var open []*step
		for i := range part {
			if s := part[i].Input.(*step); s.open {
				open = append(open, s)
				writes = append(writes, *s.op)
			}
		}
		sort.SliceStable(open, func(a, b int) bool { return open[a].op.Call < open[b].op.Call })
		for _, op := range part {
			s := op.Input.(*step)
			if s.open {
				continue
			}
			n := sort.Search(len(open), func(i int) bool { return open[i].op.Call > s.ret })
			ls := &looseStep{step: s, avail: open[:n:n]}
			op.Input, op.Output = ls, ls
			loose = append(loose, op)
		}
	}
	return loose, writes
}
