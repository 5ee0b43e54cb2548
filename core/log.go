package core

import "fmt"

// raftLog is the in-memory log: every entry after the last compaction point.
// Entries are immutable once appended; a truncation copies into a fresh
// array, so slices handed to the host earlier never change under it.
type raftLog struct {
	// offset is the index of the last compacted entry (the snapshot index);
	// entries[0].Index == offset+1.
	offset     uint64
	offsetTerm uint64
	entries    []Entry
	committed  uint64
}

func (l *raftLog) firstIndex() uint64 { return l.offset + 1 }
func (l *raftLog) lastIndex() uint64  { return l.offset + uint64(len(l.entries)) }

func (l *raftLog) lastTerm() uint64 {
	if n := len(l.entries); n > 0 {
		return l.entries[n-1].Term
	}
	return l.offsetTerm
}

// term returns the term of the entry at index i.
func (l *raftLog) term(i uint64) (uint64, error) {
	switch {
	case i == l.offset:
		return l.offsetTerm, nil
	case i < l.offset:
		return 0, ErrCompacted
	case i > l.lastIndex():
		return 0, ErrUnavailable
	}
	return l.entries[i-l.offset-1].Term, nil
}

func (l *raftLog) matchTerm(i, t uint64) bool {
	lt, err := l.term(i)
	return err == nil && lt == t
}

// at returns the entry at index i, which must be in the log.
func (l *raftLog) at(i uint64) *Entry { return &l.entries[i-l.offset-1] }

// isUpToDate reports whether a log ending at (lasti, term) is at least as
// up to date as ours (Raft §5.4.1).
func (l *raftLog) isUpToDate(lasti, term uint64) bool {
	lt := l.lastTerm()
	return term > lt || (term == lt && lasti >= l.lastIndex())
}

// slice returns entries [lo, hi) limited to maxBytes (at least one entry
// when lo < hi). The result's capacity is clipped so appends by the caller
// cannot write into the log.
func (l *raftLog) slice(lo, hi, maxBytes uint64) []Entry {
	if lo >= hi {
		return nil
	}
	ents := l.entries[lo-l.offset-1 : hi-l.offset-1]
	if maxBytes > 0 {
		var size uint64
		for i := range ents {
			size += ents[i].size()
			if size > maxBytes && i > 0 {
				ents = ents[:i]
				break
			}
		}
	}
	return ents[:len(ents):len(ents)]
}

// findConflict returns the index of the first entry of ents that is not in
// the log (absent or with another term), or 0 if all are present.
func (l *raftLog) findConflict(ents []Entry) uint64 {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index at or below index whose term
// is at most term, with that term. It stops at the compaction point.
func (l *raftLog) findConflictByTerm(index, term uint64) (uint64, uint64) {
	if li := l.lastIndex(); index > li {
		index = li
	}
	for index > l.offset {
		t := l.at(index).Term
		if t <= term {
			return index, t
		}
		index--
	}
	if index < l.offset {
		return index, 0
	}
	return index, l.offsetTerm
}

// truncateAndAppend writes ents (contiguous) into the log, replacing any
// entries at or after ents[0].Index. It returns the truncation point, or 0
// when the entries were simply appended.
func (l *raftLog) truncateAndAppend(ents []Entry) uint64 {
	after := ents[0].Index
	if after == l.lastIndex()+1 {
		l.reserve(len(ents))
		l.entries = append(l.entries, ents...)
		return 0
	}
	keep := after - l.offset - 1
	// A fresh array: entries handed out before must not be overwritten.
	fresh := make([]Entry, keep, int(keep)+len(ents))
	copy(fresh, l.entries[:keep])
	l.entries = append(fresh, ents...)
	return after
}

// reserve makes room for n more entries, doubling the capacity when it
// grows: a long log is copied about once in all rather than the several
// times that append's gentler growth of large slices costs.
func (l *raftLog) reserve(n int) {
	if cap(l.entries)-len(l.entries) >= n {
		return
	}
	grown := make([]Entry, len(l.entries), max(2*cap(l.entries), len(l.entries)+n, 64))
	copy(grown, l.entries)
	l.entries = grown
}

// commitTo raises the commit index to i (never lowers it).
func (l *raftLog) commitTo(i uint64) {
	if i > l.committed {
		if i > l.lastIndex() {
			panic(fmt.Sprintf("core: commit %d beyond last index %d", i, l.lastIndex()))
		}
		l.committed = i
	}
}

// restore replaces the log by the state of a snapshot.
func (l *raftLog) restore(index, term uint64) {
	l.offset, l.offsetTerm = index, term
	l.entries = nil
	l.committed = index
}

// compact discards entries up to and including i, which must be in the log.
func (l *raftLog) compact(i uint64) {
	t := l.at(i).Term
	rest := l.entries[i-l.offset:]
	if len(rest) < cap(l.entries)/4 {
		// Let the old array go once most of it is dead.
		rest = append([]Entry(nil), rest...)
	}
	l.entries = rest
	l.offset, l.offsetTerm = i, t
}
