package core

import (
	"fmt"
	"slices"
)

// applyConfChange returns the configuration that results from applying cc
// to cs, or an error wrapping ErrInvalidConfChange. cs is not modified.
//
// Rules:
//   - An empty cc leaves a joint configuration (and is an error otherwise).
//   - From an empty configuration (a bootstrap) the changes apply directly.
//   - A change that alters at most one voter with TransitionAuto applies
//     directly; any other change enters a joint configuration, left
//     automatically unless the transition is TransitionJointExplicit.
//   - A joint configuration must be left before another change starts.
//   - The resulting configuration must keep at least one voter.
func applyConfChange(cs ConfState, cc ConfChange) (ConfState, error) {
	bad := func(format string, args ...any) (ConfState, error) {
		return cs, fmt.Errorf("%w: %s", ErrInvalidConfChange, fmt.Sprintf(format, args...))
	}
	if cc.IsLeave() {
		if !cs.Joint() {
			return bad("cannot leave a joint configuration: none is in force")
		}
		out := ConfState{
			Voters:   slices.Clone(cs.Voters),
			Learners: mergeSorted(cs.Learners, cs.LearnersNext),
		}
		return out, nil
	}
	if cs.Joint() {
		return bad("a joint configuration is in force: leave it first")
	}
	switch cc.Transition {
	case TransitionAuto, TransitionJointImplicit, TransitionJointExplicit:
	default:
		return bad("unknown transition %d", cc.Transition)
	}
	voters := slices.Clone(cs.Voters)
	learners := slices.Clone(cs.Learners)
	for _, ch := range cc.Changes {
		if ch.NodeID == None {
			return bad("node ID zero")
		}
		switch ch.Type {
		case AddVoter:
			learners = removeID(learners, ch.NodeID)
			voters = insertID(voters, ch.NodeID)
		case AddLearner:
			voters = removeID(voters, ch.NodeID)
			learners = insertID(learners, ch.NodeID)
		case RemoveNode:
			voters = removeID(voters, ch.NodeID)
			learners = removeID(learners, ch.NodeID)
		default:
			return bad("unknown change type %d", ch.Type)
		}
	}
	if len(voters) == 0 {
		return bad("the change would leave no voter")
	}
	bootstrap := len(cs.Voters) == 0 && len(cs.Learners) == 0
	if bootstrap || (cc.Transition == TransitionAuto && symmetricDiff(cs.Voters, voters) <= 1) {
		return ConfState{Voters: voters, Learners: learners}, nil
	}
	// Joint: outgoing voters keep voting until the leave; a voter demoted to
	// learner stays a voter of the outgoing half until then.
	out := ConfState{
		Voters:         voters,
		VotersOutgoing: slices.Clone(cs.Voters),
		AutoLeave:      cc.Transition != TransitionJointExplicit,
	}
	for _, id := range learners {
		if slices.Contains(out.VotersOutgoing, id) {
			out.LearnersNext = append(out.LearnersNext, id)
		} else {
			out.Learners = append(out.Learners, id)
		}
	}
	return out, nil
}

// insertID returns s (sorted) with id added if absent.
func insertID(s []uint64, id uint64) []uint64 {
	i, found := slices.BinarySearch(s, id)
	if found {
		return s
	}
	return slices.Insert(s, i, id)
}

// removeID returns s (sorted) without id.
func removeID(s []uint64, id uint64) []uint64 {
	i, found := slices.BinarySearch(s, id)
	if !found {
		return s
	}
	return slices.Delete(s, i, i+1)
}

// mergeSorted returns the sorted union of two sorted lists as a new slice.
func mergeSorted(a, b []uint64) []uint64 {
	out := make([]uint64, 0, len(a)+len(b))
	out = append(out, a...)
	for _, id := range b {
		out = insertID(out, id)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// symmetricDiff counts the IDs in exactly one of two sorted lists.
func symmetricDiff(a, b []uint64) int {
	n := 0
	for _, id := range a {
		if _, ok := slices.BinarySearch(b, id); !ok {
			n++
		}
	}
	for _, id := range b {
		if _, ok := slices.BinarySearch(a, id); !ok {
			n++
		}
	}
	return n
}

// Clone returns a deep copy of cs, sharing no slice with it.
func (cs ConfState) Clone() ConfState { return cloneConfState(cs) }

// cloneConfState returns a deep copy of cs.
func cloneConfState(cs ConfState) ConfState {
	return ConfState{
		Voters:         slices.Clone(cs.Voters),
		Learners:       slices.Clone(cs.Learners),
		VotersOutgoing: slices.Clone(cs.VotersOutgoing),
		LearnersNext:   slices.Clone(cs.LearnersNext),
		AutoLeave:      cs.AutoLeave,
	}
}
