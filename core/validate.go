package core

import (
	"errors"
	"fmt"
	"math"
)

// Validation of wire values. The decoder runs these on everything it
// decodes, and the Raft core runs them on messages handed to Step that never
// went through the decoder. Every error wraps ErrInvalidMessage.
//
// The *Problem helpers return a bare reason (no sentinel) so that callers
// composing several checks wrap ErrInvalidMessage exactly once.

// validateEntry checks that e has a known type.
func validateEntry(e *Entry) error {
	if err := entryProblem(e); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	return nil
}

// validateConfState checks the invariants of a configuration: every list
// strictly ascending with no zero ID; no node both a voter and a learner;
// learners disjoint from outgoing voters; LearnersNext a subset of
// VotersOutgoing, disjoint from Voters and Learners; AutoLeave only in a
// joint configuration.
func validateConfState(cs *ConfState) error {
	if err := confStateProblem(cs); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	return nil
}

// validateConfChange checks that cc uses known transition and change types
// and names no zero node ID.
func validateConfChange(cc *ConfChange) error {
	if err := confChangeProblem(cc); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	return nil
}

// validateSnapshotMeta checks that a non-empty snapshot has a term and that
// its configuration is valid.
func validateSnapshotMeta(m *SnapshotMeta) error {
	if err := snapshotMetaProblem(m); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	return nil
}

// validateSnapshot checks that s is not nil, that a non-empty snapshot has a
// term, and that its configuration is valid. An empty snapshot (index 0) is
// valid if its configuration is.
func validateSnapshot(s *Snapshot) error {
	if s == nil {
		return fmt.Errorf("%w: nil snapshot", ErrInvalidMessage)
	}
	return validateSnapshotMeta(&s.Meta)
}

// validateMessage checks that m is well formed for its type:
//   - known type, sender and recipient set and different;
//   - Reject only on MsgAppResp, MsgVoteResp and MsgPreVoteResp;
//   - entries only on MsgApp and MsgProp, each of a known type, and
//     Index+len(Entries) must not overflow;
//   - on MsgApp, entries are contiguous from Index+1, their terms do not
//     decrease and do not exceed Term, and LogTerm does not exceed the first
//     entry's term (MsgProp entries may carry any index and term: the leader
//     reassigns them);
//   - MsgSnap carries a valid non-empty snapshot, other types none.
func validateMessage(m *Message) error {
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	if err := messageProblem(m); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	return nil
}

func entryProblem(e *Entry) error {
	switch e.Type {
	case EntryNormal, EntryConfChange:
		return nil
	}
	return fmt.Errorf("unknown entry type %v", e.Type)
}

func confStateProblem(cs *ConfState) error {
	lists := [...]struct {
		name string
		ids  []uint64
	}{
		{"voters", cs.Voters},
		{"learners", cs.Learners},
		{"outgoing voters", cs.VotersOutgoing},
		{"next learners", cs.LearnersNext},
	}
	for _, l := range lists {
		if err := idListProblem(l.ids); err != nil {
			return fmt.Errorf("config %s: %w", l.name, err)
		}
	}
	if id, ok := firstCommon(cs.Voters, cs.Learners); ok {
		return fmt.Errorf("config: node %d is both a voter and a learner", id)
	}
	if id, ok := firstCommon(cs.VotersOutgoing, cs.Learners); ok {
		return fmt.Errorf("config: node %d is both an outgoing voter and a learner", id)
	}
	if id, ok := firstMissing(cs.LearnersNext, cs.VotersOutgoing); ok {
		return fmt.Errorf("config: next learner %d is not an outgoing voter", id)
	}
	if id, ok := firstCommon(cs.LearnersNext, cs.Voters); ok {
		return fmt.Errorf("config: next learner %d is already a voter", id)
	}
	if id, ok := firstCommon(cs.LearnersNext, cs.Learners); ok {
		return fmt.Errorf("config: next learner %d is already a learner", id)
	}
	if cs.AutoLeave && !cs.Joint() {
		return errors.New("config: auto-leave set outside a joint configuration")
	}
	return nil
}

// idListProblem checks that ids is strictly ascending and free of zeros.
func idListProblem(ids []uint64) error {
	for i, id := range ids {
		if id == None {
			return errors.New("node ID 0")
		}
		if i > 0 && id <= ids[i-1] {
			return fmt.Errorf("not strictly ascending (%d after %d)", id, ids[i-1])
		}
	}
	return nil
}

// firstCommon returns the smallest ID present in both sorted lists.
func firstCommon(a, b []uint64) (uint64, bool) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			return a[i], true
		}
	}
	return 0, false
}

// firstMissing returns the smallest ID of sorted list sub that is absent
// from sorted list super.
func firstMissing(sub, super []uint64) (uint64, bool) {
	j := 0
	for _, id := range sub {
		for j < len(super) && super[j] < id {
			j++
		}
		if j == len(super) || super[j] != id {
			return id, true
		}
	}
	return 0, false
}

func confChangeProblem(cc *ConfChange) error {
	switch cc.Transition {
	case TransitionAuto, TransitionJointImplicit, TransitionJointExplicit:
	default:
		return fmt.Errorf("conf change: unknown transition %d", uint8(cc.Transition))
	}
	for i, c := range cc.Changes {
		switch c.Type {
		case AddVoter, AddLearner, RemoveNode:
		default:
			return fmt.Errorf("conf change %d: unknown type %v", i, c.Type)
		}
		if c.NodeID == None {
			return fmt.Errorf("conf change %d: %v of node ID 0", i, c.Type)
		}
	}
	return nil
}

func snapshotMetaProblem(m *SnapshotMeta) error {
	if m.Index > 0 && m.Term == 0 {
		return fmt.Errorf("snapshot at index %d has term 0", m.Index)
	}
	if err := confStateProblem(&m.Config); err != nil {
		return fmt.Errorf("snapshot %w", err)
	}
	return nil
}

func messageProblem(m *Message) error {
	if !m.Type.Valid() {
		return fmt.Errorf("unknown message type %d", uint8(m.Type))
	}
	if m.From == None {
		return fmt.Errorf("%v with no sender", m.Type)
	}
	if m.To == None {
		return fmt.Errorf("%v with no recipient", m.Type)
	}
	if m.From == m.To {
		return fmt.Errorf("%v from node %d to itself", m.Type, m.From)
	}
	if m.Reject {
		switch m.Type {
		case MsgAppResp, MsgVoteResp, MsgPreVoteResp:
		default:
			return fmt.Errorf("%v with Reject set", m.Type)
		}
	}
	if m.Type == MsgSnap {
		if m.Snapshot.IsEmpty() {
			return fmt.Errorf("%v without a snapshot", m.Type)
		}
		if err := snapshotMetaProblem(&m.Snapshot.Meta); err != nil {
			return fmt.Errorf("%v: %w", m.Type, err)
		}
	} else if m.Snapshot != nil {
		return fmt.Errorf("%v carries a snapshot", m.Type)
	}
	if len(m.Entries) == 0 {
		return nil
	}
	if m.Type != MsgApp && m.Type != MsgProp {
		return fmt.Errorf("%v carries entries", m.Type)
	}
	if n := uint64(len(m.Entries)); m.Index > math.MaxUint64-n {
		return fmt.Errorf("%v: index %d plus %d entries overflows", m.Type, m.Index, n)
	}
	for i := range m.Entries {
		if err := entryProblem(&m.Entries[i]); err != nil {
			return fmt.Errorf("%v entry %d: %w", m.Type, i, err)
		}
	}
	if m.Type != MsgApp {
		return nil
	}
	if first := m.Entries[0].Term; m.LogTerm > first {
		return fmt.Errorf("%v: log term %d above first entry term %d", m.Type, m.LogTerm, first)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if want := m.Index + 1 + uint64(i); e.Index != want {
			return fmt.Errorf("%v entry %d: index %d, want %d", m.Type, i, e.Index, want)
		}
		if e.Term > m.Term {
			return fmt.Errorf("%v entry %d: term %d above message term %d", m.Type, i, e.Term, m.Term)
		}
		if i > 0 && e.Term < m.Entries[i-1].Term {
			return fmt.Errorf("%v entry %d: term %d below previous entry term %d",
				m.Type, i, e.Term, m.Entries[i-1].Term)
		}
	}
	return nil
}
