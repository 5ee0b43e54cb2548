package server

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	"github.com/forge-consensus/consensus/adapters/wal"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// logBytesOf is the log size counted the slow way: every entry stored.
func logBytesOf(p core.Persisted) uint64 {
	var n uint64
	for i := range p.Entries {
		n += uint64(entrySize(&p.Entries[i]))
	}
	return n
}

func TestEntrySize(t *testing.T) {
	for _, c := range []struct {
		e    core.Entry
		want uint32
	}{
		{core.Entry{Term: 1, Index: 1}, 4},
		{core.Entry{Term: 1, Index: 1, Data: make([]byte, 127)}, 4 + 127},
		{core.Entry{Term: 1, Index: 1, Data: make([]byte, 128)}, 5 + 128},
		{core.Entry{Term: 300, Index: 1 << 35, Data: []byte("x")}, 2 + 6 + 1 + 1 + 1},
	} {
		if got := entrySize(&c.e); got != c.want {
			t.Errorf("entrySize(term %d, index %d, %d bytes) = %d, want %d", c.e.Term, c.e.Index, len(c.e.Data), got, c.want)
		}
	}
}

// sizeStep is one update of the sequence the tests replay.
type sizeStep struct {
	u    *node.Update
	fail bool // the storage refuses it
}

// sizeSteps returns a seeded sequence of updates of every kind: appends,
// overwritten suffixes, local snapshots (with trailing entries kept),
// leader snapshots, and updates that leave a gap and must fail.
func sizeSteps(seed uint64, n int) []sizeStep {
	rng := rand.New(rand.NewPCG(seed, 1))
	var steps []sizeStep
	var last, term, snap, commit uint64 = 0, 1, 0, 0
	entries := func(from, to uint64) []core.Entry {
		var es []core.Entry
		for i := from; i <= to; i++ {
			es = append(es, core.Entry{Index: i, Term: term, Data: make([]byte, rng.IntN(300))})
		}
		return es
	}
	snapshot := func(i uint64) *core.Snapshot {
		return &core.Snapshot{Meta: core.SnapshotMeta{Index: i, Term: term, Config: core.ConfState{Voters: []uint64{1}}},
			Data: []byte(fmt.Sprint("state at ", i))}
	}
	for range n {
		switch k := rng.IntN(20); {
		case k < 13 || last == snap: // append
			to := last + 1 + uint64(rng.IntN(40))
			steps = append(steps, sizeStep{u: &node.Update{Entries: entries(last+1, to), HardState: core.HardState{Term: term, Vote: 1, Commit: commit}}})
			last = to
		case k < 16: // overwrite a suffix, in a new term
			term++
			from := snap + 1 + uint64(rng.IntN(int(last-snap)))
			from = max(from, commit+1)
			to := from + uint64(rng.IntN(10))
			steps = append(steps, sizeStep{u: &node.Update{Entries: entries(from, to), HardState: core.HardState{Term: term, Vote: 1, Commit: commit}}})
			last = to
		case k < 18: // local snapshot, compacting all but a few entries
			at := snap + 1 + uint64(rng.IntN(int(last-snap)))
			commit = max(commit, at)
			keep := uint64(rng.IntN(5))
			compact := max(at, snap+keep) - keep
			steps = append(steps, sizeStep{u: &node.Update{LocalSnapshot: snapshot(at), CompactTo: compact,
				HardState: core.HardState{Term: term, Vote: 1, Commit: commit}}})
			snap = at
		case k < 19: // leader snapshot beyond the log
			term++
			snap = last + 1 + uint64(rng.IntN(20))
			last, commit = snap, snap
			steps = append(steps, sizeStep{u: &node.Update{Snapshot: snapshot(snap), HardState: core.HardState{Term: term, Vote: 2, Commit: commit}}})
		default: // a gap: refused
			steps = append(steps, sizeStep{u: &node.Update{Entries: entries(last+5, last+6)}, fail: true})
		}
	}
	return steps
}

// closingStore is a storage of one type that can be closed and reopened.
type closingStore struct {
	name string
	open func(t *testing.T, dir string) (node.Storage, io.Closer)
}

var sizeStores = []closingStore{
	{"memory", nil},
	{"wal", func(t *testing.T, dir string) (node.Storage, io.Closer) {
		s, err := wal.Open(wal.Options{Dir: dir, ClusterID: 1, NodeID: 1, NoSync: true, SegmentSize: 64 << 10,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s, s
	}},
	{"pebble", func(t *testing.T, dir string) (node.Storage, io.Closer) {
		s, err := pebblestore.Open(pebblestore.Options{Dir: dir, NoSync: true, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s, s
	}},
}

// TestLogSizeEveryStorage replays the same updates on every storage type,
// through sizedStorage, and checks after each that the log size is the
// sum of the entry sizes of what the storage holds (node.MemoryStorage,
// fed the same updates, as the reference), that a refused update changes
// nothing, and that a reopened store loads the same figure.
func TestLogSizeEveryStorage(t *testing.T) {
	steps := sizeSteps(7, 300)
	for _, st := range sizeStores {
		t.Run(st.name, func(t *testing.T) {
			dir := t.TempDir()
			var inner node.Storage = node.NewMemoryStorage()
			var closer io.Closer
			if st.open != nil {
				inner, closer = st.open(t, dir)
			}
			s := newSizedStorage(inner)
			if _, err := s.Load(); err != nil {
				t.Fatal(err)
			}
			model := node.NewMemoryStorage()
			for i, step := range steps {
				errc := make(chan error, 1)
				s.Save(step.u, func(err error) { errc <- err })
				var err error
				select {
				case err = <-errc:
				case <-time.After(30 * time.Second):
					t.Fatalf("step %d: Save not done within 30 s", i)
				}
				if (err != nil) != step.fail {
					t.Fatalf("step %d: Save: %v, want failure %v", i, err, step.fail)
				}
				if err == nil {
					model.Save(step.u, func(err error) {
						if err != nil {
							t.Fatalf("step %d: model: %v", i, err)
						}
					})
				}
				if got, want := s.LogBytes(), logBytesOf(model.Persisted()); got != want {
					t.Fatalf("step %d: log size %d, want %d (%d entries stored)", i, got, want, len(model.Persisted().Entries))
				}
			}
			want := logBytesOf(model.Persisted())
			if want == 0 {
				t.Fatal("the sequence ends with an empty log: nothing to check on reopen")
			}
			if closer == nil {
				return
			}
			if err := closer.Close(); err != nil {
				t.Fatal(err)
			}
			inner, closer = st.open(t, dir)
			defer closer.Close()
			s = newSizedStorage(inner)
			if _, err := s.Load(); err != nil {
				t.Fatal(err)
			}
			if got := s.LogBytes(); got != want {
				t.Fatalf("after reopen: log size %d, want %d", got, want)
			}
		})
	}
}

// TestLogSizeFailedSave checks that an update the storage fails is not
// counted.
func TestLogSizeFailedSave(t *testing.T) {
	m := node.NewMemoryStorage()
	s := newSizedStorage(m)
	s.Save(&node.Update{Entries: []core.Entry{{Index: 1, Term: 1, Data: []byte("abc")}}}, func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	})
	if got := s.LogBytes(); got != 7 {
		t.Fatalf("log size %d after one 3-byte entry, want 7", got)
	}
	m.SetAsync(true)
	called := false
	s.Save(&node.Update{Entries: []core.Entry{{Index: 2, Term: 1, Data: []byte("defg")}}}, func(err error) {
		called = err != nil
	})
	m.Complete(io.ErrShortWrite)
	if !called {
		t.Fatal("done not called with the storage's error")
	}
	if got := s.LogBytes(); got != 7 {
		t.Fatalf("log size %d after a failed write, want 7", got)
	}
}
