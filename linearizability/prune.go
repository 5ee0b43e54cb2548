package linearizability

import (
	"math"
	"sort"
)

// prune shrinks the search before porcupine runs. Left alone, an open write
// stays pending until the end of the history, and at every later step the
// checker may linearize it or not: with k open writes pending on a key, it
// can try all 2^k subsets of them before each operation on that key. Most
// open writes cannot matter, and prune removes them or bounds when they
// take effect, without changing the verdict.
//
// Let P be an open write (Put, Delete or CAS) on a key, and t the state it
// leaves when it takes effect: present with P's value, or absent for a
// Delete. Call an operation Q ≠ P that can be linearized after P (Q is open,
// or Q returned at or after P's call) a dependant of P when:
//
//   - Q is a Get that returned t;
//   - t is present with value v and Q is a CAS expecting v that succeeded, or
//     any open CAS expecting v;
//   - Q is a Delete whose Found says t's presence;
//   - Q is a CAS that failed expecting a value some Put or CAS on the key
//     writes.
//
// Drop: if P has no dependant, P is left out. Proof: take a linearization
// L with P and let s ≠ t be the state before P (if P did nothing, removing
// it changes nothing). The operations after P see t in L and s without P,
// up to the first Put, Delete or successful CAS, after which the states
// agree again. None of these operations can be a dependant, so each is a
// Put or an open Delete (legal in both, and the states agree after it), a
// failed CAS expecting a value nobody writes (so neither s nor t), or an
// open CAS that did not match t — which we move to the end, where it changes
// nothing. Every other kind of operation is illegal on t. Removing P
// therefore leaves a valid linearization; conversely, P can always be put
// last.
//
// Bound: if every dependant of an open Put or Delete P has returned by time
// d, and some Put W with a known outcome was invoked no earlier than P and
// returned by time w, P's return time becomes max(d, w, P's call). Proof:
// in a linearization L, either a dependant comes after P before the states
// agree again — then P precedes it, and it precedes every operation invoked
// after d — or none does, and then, as above, P can be removed, and
// inserted again just before W, where it is legal and changes nothing; W
// precedes every operation invoked after w.
//
// Both rules are checked on the original history and stay valid after
// other open operations are dropped or bounded, since that only removes
// dependants and written values. (CASes are only dropped, never bounded, so
// that the open CASes moved to the end have no bound to break.) prune
// returns the remaining steps, updating counts, and the number of bounded
// ones.
func prune(steps []step, counts []int) ([]step, int) {
	// Only keys with open writes need work; usually there are none.
	work := make([][]int, len(counts))
	pending := false
	for i := range steps {
		if steps[i].open {
			pending = true
			work[steps[i].part] = append(work[steps[i].part], i)
		}
	}
	if !pending {
		return steps, 0
	}
	byPart := make([][]int, len(counts))
	for i := range steps {
		if p := steps[i].part; work[p] != nil {
			byPart[p] = append(byPart[p], i)
		}
	}
	drop := make([]bool, len(steps))
	bounded := 0
	for p, idx := range byPart {
		if idx != nil {
			bounded += prunePart(steps, idx, work[p], drop)
		}
	}
	kept := steps[:0]
	for i := range steps {
		if drop[i] {
			counts[steps[i].part]--
			continue
		}
		kept = append(kept, steps[i])
	}
	return kept, bounded
}

// prunePart applies prune's rules to the steps idx of one key, whose open
// writes are open.
func prunePart(steps []step, idx, open []int, drop []bool) int {
	const none = math.MinInt64
	// Latest return of each kind of dependant; noReturn when one is open.
	var (
		getAbsent    int64  = none // Gets that found nothing
		deleteFound  int64  = none // closed Deletes by Found
		deleteAbsent int64  = none
		casFailed    int64  = none // failed CASes expecting a written value
		present             = make(map[*kvState]int64)
		written             = make(map[*kvState]bool)
		puts         []step // Puts with a known outcome
	)
	later := func(m map[*kvState]int64, v *kvState, t int64) {
		if old, ok := m[v]; !ok || t > old {
			m[v] = t
		}
	}
	for _, i := range idx {
		s := &steps[i]
		switch s.kind {
		case Put:
			written[s.arg] = true
			if !s.open {
				puts = append(puts, *s)
			}
		case CAS:
			written[s.arg] = true
		}
	}
	for _, i := range idx {
		s := &steps[i]
		switch {
		case s.kind == Get && s.want == nil:
			getAbsent = max(getAbsent, s.ret)
		case s.kind == Get:
			later(present, s.want, s.ret)
		case s.kind == Delete && !s.open && s.found:
			deleteFound = max(deleteFound, s.ret)
		case s.kind == Delete && !s.open:
			deleteAbsent = max(deleteAbsent, s.ret)
		case s.kind == CAS && (s.open || s.ok):
			later(present, s.want, s.ret) // ret is noReturn when open
		case s.kind == CAS && written[s.want]:
			casFailed = max(casFailed, s.ret)
		}
	}
	// Earliest return of a known Put invoked at or after a time: sort the
	// Puts by call and take suffix minima of their returns.
	sort.Slice(puts, func(a, b int) bool { return puts[a].op.Call < puts[b].op.Call })
	minRet := make([]int64, len(puts)+1)
	minRet[len(puts)] = noReturn
	for j := len(puts) - 1; j >= 0; j-- {
		minRet[j] = min(minRet[j+1], puts[j].ret)
	}
	bounded := 0
	for _, i := range open {
		s := &steps[i]
		var dep int64
		switch s.kind {
		case Delete:
			dep = max(getAbsent, deleteAbsent, casFailed)
		default: // Put, CAS
			dep = max(deleteFound, casFailed)
			if t, ok := present[s.arg]; ok {
				dep = max(dep, t)
			}
		}
		call := s.op.Call
		switch {
		case dep < call:
			drop[i] = true
		case s.kind != CAS && dep != noReturn:
			j := sort.Search(len(puts), func(j int) bool { return puts[j].op.Call >= call })
			if w := minRet[j]; w != noReturn {
				s.ret = max(dep, w, call)
				bounded++
			}
		}
	}
	return bounded
}
