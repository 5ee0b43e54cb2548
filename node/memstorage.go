package node

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/forge-consensus/consensus/core"
)

// errOverlappingSave is the completion error of a Save made while another
// write of the same MemoryStorage is outstanding, which the Storage
// contract rules out.
var errOverlappingSave = errors.New("node: MemoryStorage.Save called while a write is outstanding")

// MemoryStorage is a Storage kept in memory, for tests and examples. It
// loses everything with the process.
//
// By default Save applies the update and calls done before it returns.
// With SetAsync(true) Save only records the update and its done callback;
// Complete then finishes (or fails) that write, which lets a test hold a
// write in flight and observe what the node does meanwhile.
//
// Its methods may be called from any goroutine; done callbacks run on the
// goroutine that calls Save (synchronous mode) or Complete (asynchronous
// mode), never while the storage's lock is held.
type MemoryStorage struct {
	mu      sync.Mutex
	hs      core.HardState
	snap    *core.Snapshot
	entries []core.Entry

	async   bool
	pending *Update
	done    func(error)
}

// NewMemoryStorage returns an empty MemoryStorage in synchronous mode.
func NewMemoryStorage() *MemoryStorage { return &MemoryStorage{} }

// SetAsync selects whether Save completes at once (false, the default) or
// waits for Complete (true). A write already outstanding stays outstanding
// until Complete, whatever the mode.
func (s *MemoryStorage) SetAsync(async bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.async = async
}

// Pending reports whether a write is outstanding (asynchronous mode only).
func (s *MemoryStorage) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending != nil
}

// Complete finishes the outstanding write: with a nil err the update is
// applied and then done(nil) is called; otherwise nothing is written and
// done(err) is called. Without an outstanding write it does nothing.
func (s *MemoryStorage) Complete(err error) {
	s.mu.Lock()
	u, done := s.pending, s.done
	s.pending, s.done = nil, nil
	if u != nil && err == nil {
		err = s.apply(u)
	}
	s.mu.Unlock()
	if done != nil {
		done(err)
	}
}

// Load returns a copy of what is stored.
func (s *MemoryStorage) Load() (core.Persisted, error) {
	return s.Persisted(), nil
}

// Persisted returns a copy of what is stored, for assertions.
func (s *MemoryStorage) Persisted() core.Persisted {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := core.Persisted{HardState: s.hs, Snapshot: cloneSnapshot(s.snap)}
	if len(s.entries) > 0 {
		p.Entries = make([]core.Entry, len(s.entries))
		for i, e := range s.entries {
			e.Data = slices.Clone(e.Data)
			p.Entries[i] = e
		}
	}
	return p
}

// Save writes u: at once in synchronous mode, or when Complete is called in
// asynchronous mode. An update that does not fit the stored log (entries
// leaving a gap) and a Save overlapping an outstanding write complete with
// an error and write nothing.
func (s *MemoryStorage) Save(u *Update, done func(error)) {
	s.mu.Lock()
	if s.pending != nil {
		s.mu.Unlock()
		done(errOverlappingSave)
		return
	}
	if s.async {
		// Copy what the caller may reuse; entry data is immutable.
		c := *u
		c.Entries = slices.Clone(u.Entries)
		s.pending, s.done = &c, done
		s.mu.Unlock()
		return
	}
	err := s.apply(u)
	s.mu.Unlock()
	done(err)
}

// apply writes u in field order, or nothing if it does not fit. s.mu is
// held.
func (s *MemoryStorage) apply(u *Update) error {
	snap, entries := s.snap, s.entries
	if u.Snapshot != nil {
		snap, entries = cloneSnapshot(u.Snapshot), nil
	}
	if u.LocalSnapshot != nil {
		snap = cloneSnapshot(u.LocalSnapshot)
		k := 0
		for k < len(entries) && entries[k].Index <= u.CompactTo {
			k++
		}
		entries = entries[k:]
	}
	if len(u.Entries) > 0 {
		first := u.Entries[0].Index
		next := uint64(1)
		switch {
		case len(entries) > 0:
			next = entries[len(entries)-1].Index + 1
		case snap != nil:
			next = snap.Meta.Index + 1
		}
		if first == 0 || first > next {
			return fmt.Errorf("node: MemoryStorage: entries from index %d leave a gap (next index is %d)", first, next)
		}
		k := 0
		for k < len(entries) && entries[k].Index < first {
			k++
		}
		if k == len(entries) {
			// A plain append writes only beyond every slice handed out
			// earlier, so those never change.
			entries = append(entries, u.Entries...)
		} else {
			// Overwriting a suffix needs a fresh array, for the same
			// reason.
			fresh := make([]core.Entry, 0, k+len(u.Entries))
			fresh = append(fresh, entries[:k]...)
			entries = append(fresh, u.Entries...)
		}
	} else if u.Snapshot != nil || u.LocalSnapshot != nil {
		entries = slices.Clone(entries)
	}
	s.snap, s.entries = snap, entries
	if !u.HardState.IsEmpty() {
		s.hs = u.HardState
	}
	return nil
}

// cloneSnapshot returns a deep copy of snap (nil for nil).
func cloneSnapshot(snap *core.Snapshot) *core.Snapshot {
	if snap == nil {
		return nil
	}
	c := *snap
	c.Data = slices.Clone(snap.Data)
	c.Meta.Config = snap.Meta.Config.Clone()
	return &c
}
