package wal

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// modelWorkload tracks the log a Raft node would have, to draw updates it
// could persist: appends in the current term, conflicting suffixes of a new
// term above the commit index, local snapshots of committed entries,
// leader snapshots past the log, hard-state-only updates.
type modelWorkload struct {
	last, commit, term, snapIndex uint64
	terms                         map[uint64]uint64
}

func (w *modelWorkload) draw(rt *rapid.T) *node.Update {
	u := &node.Update{Sync: true}
	switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
	case op <= 3: // append
		n := rapid.Uint64Range(1, 30).Draw(rt, "n")
		u.Entries = w.entries(w.last+1, w.last+n, w.term)
		w.commit = max(w.commit, min(w.last, w.commit+rapid.Uint64Range(0, 20).Draw(rt, "commit")))
	case op == 4: // conflicting suffix of a new term
		w.term++
		lo := max(w.commit, w.snapIndex) + 1
		from := rapid.Uint64Range(lo, w.last+1).Draw(rt, "from")
		u.Entries = w.entries(from, from+rapid.Uint64Range(0, 10).Draw(rt, "n"), w.term)
	case op == 5 && w.commit > w.snapIndex: // local snapshot
		si := rapid.Uint64Range(w.snapIndex+1, w.commit).Draw(rt, "snap")
		c := si - min(si, rapid.Uint64Range(0, 5).Draw(rt, "keep"))
		u.LocalSnapshot, u.CompactTo = storagetest.SnapshotWith(si, w.terms[si], "local"), c
		for i := range w.terms {
			if i <= c {
				delete(w.terms, i)
			}
		}
		w.snapIndex = max(w.snapIndex, si)
	case op == 6: // leader snapshot past the log
		w.term += rapid.Uint64Range(0, 1).Draw(rt, "newterm")
		si := w.last + rapid.Uint64Range(1, 10).Draw(rt, "past")
		u.Snapshot = storagetest.SnapshotWith(si, w.term, "leader")
		clear(w.terms)
		w.last, w.commit, w.snapIndex = si, si, si
	case op == 7: // a vote in a new term
		w.term++
	}
	u.HardState = core.HardState{Term: w.term, Vote: 1, Commit: w.commit}
	return u
}

func (w *modelWorkload) entries(from, to, term uint64) []core.Entry {
	out := storagetest.NamedEntries(from, to, term)
	for i := range out {
		out[i].Type = core.EntryType(out[i].Index % 2)
	}
	for i := range w.terms {
		if i >= from {
			delete(w.terms, i)
		}
	}
	for i := from; i <= to; i++ {
		w.terms[i] = term
	}
	w.last = to
	w.commit = min(w.commit, w.last)
	return out
}

// TestModel checks that the store holds what node.MemoryStorage holds
// after random sequences of updates, reopens and refused updates, across
// many small segments.
func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		o := testOpts(dir)
		o.SegmentSize = minSegmentSize
		s := openT(t, o)
		defer func() { s.Close() }()
		m := node.NewMemoryStorage()
		w := &modelWorkload{term: 1, terms: map[uint64]uint64{}}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 9).Draw(rt, "kind") {
			case 0:
				storagetest.MustClose(t, s)
				s = openT(t, o)
			case 1: // a gap: refused, changes nothing
				err := storagetest.SaveWait(t, s, &node.Update{Entries: storagetest.NamedEntries(w.last+2, w.last+3, w.term)})
				if err == nil {
					rt.Fatalf("step %d: a gap was accepted", i)
				}
			default:
				u := w.draw(rt)
				if err := storagetest.SaveWait(t, s, u); err != nil {
					rt.Fatalf("step %d: Save: %v", i, err)
				}
				m.Save(u, func(err error) {
					if err != nil {
						rt.Fatalf("step %d: model: %v", i, err)
					}
				})
			}
			if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
				rt.Fatalf("step %d: %s", i, d)
			}
		}
		storagetest.MustClose(t, s)
		s = openT(t, o)
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
			rt.Fatalf("after reopen: %s", d)
		}
		if n := len(listDir(t, dir, ".snap")); n > 1 {
			rt.Fatalf("%d snapshot files", n)
		}
	})
}
