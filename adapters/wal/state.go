package wal

import (
	"fmt"
	"slices"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
)

// run is a stretch of consecutive stored entries of one term written in one
// segment: the in-memory index of the log.
type run struct {
	seq         uint64 // segment holding the entries
	first, last uint64
	term        uint64
}

// logState is what is stored, as node.MemoryStorage would hold it but
// without the entry data. Save applies updates to it to plan and check
// records; recovery applies the records to it to check them. Both run the
// same code, so an update Save accepts is one recovery accepts.
type logState struct {
	hs   core.HardState
	snap *snapfile.Ref
	runs []run
	// Entries holeFirst..holeLast are in segments removed before the
	// first one read (recovery only): replay must show them gone.
	holeFirst, holeLast uint64
	holeTerm            uint64 // term of entry holeLast, if holeTermOK
	holeTermOK          bool
}

func (s *logState) clone() logState {
	c := *s
	c.runs = slices.Clone(s.runs)
	return c
}

func (s *logState) hasHole() bool { return s.holeFirst != 0 && s.holeFirst <= s.holeLast }

// lastIndex returns the last stored entry's index, 0 if none.
func (s *logState) lastIndex() uint64 {
	if n := len(s.runs); n > 0 {
		return s.runs[n-1].last
	}
	if s.hasHole() {
		return s.holeLast
	}
	return 0
}

// next returns the index an append continues from, as node.MemoryStorage
// computes it.
func (s *logState) next() uint64 {
	if l := s.lastIndex(); l > 0 {
		return l + 1
	}
	if s.snap != nil {
		return s.snap.Meta.Index + 1
	}
	return 1
}

// firstIndex returns the first stored entry's index, 0 if none.
func (s *logState) firstIndex() uint64 {
	if s.hasHole() {
		return s.holeFirst
	}
	if len(s.runs) > 0 {
		return s.runs[0].first
	}
	return 0
}

// termAt returns the term of entry i if known.
func (s *logState) termAt(i uint64) (uint64, bool) {
	if i == 0 {
		return 0, true
	}
	for k := len(s.runs) - 1; k >= 0; k-- {
		r := &s.runs[k]
		if i >= r.first && i <= r.last {
			return r.term, true
		}
	}
	if s.hasHole() && i == s.holeLast && s.holeTermOK {
		return s.holeTerm, true
	}
	if s.snap != nil && i == s.snap.Meta.Index {
		return s.snap.Meta.Term, true
	}
	return 0, false
}

// lastTerm returns the term of entry next-1, if known.
func (s *logState) lastTerm() (uint64, bool) { return s.termAt(s.next() - 1) }

func (s *logState) applySnapshot(r *snapfile.Ref) {
	s.snap, s.runs = r, nil
	s.holeFirst, s.holeLast = 0, 0
}

func (s *logState) applyLocal(r *snapfile.Ref, compactTo uint64) {
	s.snap = r
	k := 0
	for k < len(s.runs) && s.runs[k].last <= compactTo {
		k++
	}
	s.runs = s.runs[k:]
	if len(s.runs) > 0 && s.runs[0].first <= compactTo {
		s.runs[0].first = compactTo + 1
	}
	if s.hasHole() {
		if compactTo >= s.holeLast {
			s.holeFirst, s.holeLast = 0, 0
		} else if compactTo >= s.holeFirst {
			s.holeFirst = compactTo + 1
		}
	}
}

// truncate drops the entries at and above i; i must lie below next.
func (s *logState) truncate(i uint64) error {
	if i == 0 || i >= s.next() {
		return fmt.Errorf("truncation at %d, next index %d", i, s.next())
	}
	for len(s.runs) > 0 && s.runs[len(s.runs)-1].first >= i {
		s.runs = s.runs[:len(s.runs)-1]
	}
	if n := len(s.runs); n > 0 && s.runs[n-1].last >= i {
		s.runs[n-1].last = i - 1
	}
	if s.hasHole() && i <= s.holeLast {
		s.holeLast, s.holeTermOK = i-1, false
		if s.holeLast < s.holeFirst {
			s.holeFirst, s.holeLast = 0, 0
		}
	}
	return nil
}

// appendEntries appends ents, which must start at next, be consecutive, of
// known types, and have terms that never decrease along the log.
func (s *logState) appendEntries(seq uint64, ents []core.Entry) error {
	next := s.next()
	if ents[0].Index != next {
		return fmt.Errorf("entries from index %d, next index is %d", ents[0].Index, next)
	}
	prev, ok := s.termAt(next - 1)
	for i := range ents {
		e := &ents[i]
		if e.Index != next+uint64(i) {
			return fmt.Errorf("entries not consecutive: index %d at position %d after index %d", e.Index, i, next)
		}
		if e.Type != core.EntryNormal && e.Type != core.EntryConfChange {
			return fmt.Errorf("entry %d has unknown type %v", e.Index, e.Type)
		}
		if ok && e.Term < prev {
			return fmt.Errorf("entry %d has term %d below the term %d of the entry before it", e.Index, e.Term, prev)
		}
		prev, ok = e.Term, true
		if n := len(s.runs); n > 0 && s.runs[n-1].seq == seq && s.runs[n-1].term == e.Term && s.runs[n-1].last+1 == e.Index {
			s.runs[n-1].last = e.Index
		} else {
			s.runs = append(s.runs, run{seq: seq, first: e.Index, last: e.Index, term: e.Term})
		}
	}
	return nil
}

// check checks what must hold of any stored state: the hard state's commit
// index is backed by the log or the snapshot, its term is at least the
// last entry's and the snapshot's, and no entry is missing.
func (s *logState) check() error {
	if s.hasHole() {
		return fmt.Errorf("entries %d..%d are missing: they were in a segment that is gone", s.holeFirst, s.holeLast)
	}
	if s.hs.IsEmpty() {
		return nil
	}
	top := s.lastIndex()
	if s.snap != nil {
		top = max(top, s.snap.Meta.Index)
		if s.hs.Term < s.snap.Meta.Term {
			return fmt.Errorf("hard state term %d is below the snapshot's term %d", s.hs.Term, s.snap.Meta.Term)
		}
	}
	if s.hs.Commit > top {
		return fmt.Errorf("hard state commit index %d is beyond the last stored index %d", s.hs.Commit, top)
	}
	if t, ok := s.termAt(s.lastIndex()); ok && s.lastIndex() > 0 && s.hs.Term < t {
		return fmt.Errorf("hard state term %d is below the last entry's term %d", s.hs.Term, t)
	}
	return nil
}

// opening returns the state record that starts a new segment.
func (s *logState) opening() openState {
	t, ok := s.lastTerm()
	return openState{hs: s.hs, snap: s.snap, holeFirst: s.firstIndex(), next: s.next(), lastTerm: t, termKnown: ok}
}

// fromOpening returns the state a segment's state record describes: its
// entries are unknown (a hole) until replay removes them.
func fromOpening(o *openState) (logState, error) {
	s := logState{hs: o.hs, snap: o.snap}
	if o.next == 0 {
		return s, fmt.Errorf("state record with next index 0")
	}
	if o.holeFirst != 0 {
		if o.holeFirst >= o.next {
			return s, fmt.Errorf("state record: first entry %d at or beyond next index %d", o.holeFirst, o.next)
		}
		s.holeFirst, s.holeLast = o.holeFirst, o.next-1
		s.holeTerm, s.holeTermOK = o.lastTerm, o.termKnown
	} else if want := s.next(); want != o.next {
		return s, fmt.Errorf("state record: next index %d without entries, want %d", o.next, want)
	}
	return s, nil
}

// sameOpening reports whether o describes s (a segment's state record
// against the replay so far).
func (s *logState) sameOpening(o *openState) error {
	w := s.opening()
	switch {
	case w.hs != o.hs:
		return fmt.Errorf("state record has hard state %+v, the log before it %+v", o.hs, w.hs)
	case (w.snap == nil) != (o.snap == nil) || w.snap != nil && !w.snap.Equal(o.snap):
		return fmt.Errorf("state record's snapshot differs from the log before it")
	case w.next != o.next || w.holeFirst != o.holeFirst:
		return fmt.Errorf("state record says entries %d..%d, the log before it %d..%d", o.holeFirst, o.next-1, w.holeFirst, w.next-1)
	case w.termKnown && o.termKnown && w.lastTerm != o.lastTerm:
		return fmt.Errorf("state record says last term %d, the log before it %d", o.lastTerm, w.lastTerm)
	}
	return nil
}
