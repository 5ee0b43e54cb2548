package core

import "testing"

// TestTakeCommitted: while the leader's write of entry b is outstanding,
// the followers' acknowledgements commit a (durable at the leader) and b
// (durable at the followers only). TakeCommitted hands out a at once, not
// b; it refuses while the host has not applied what it was given; and the
// next Ready hands out only b.
func TestTakeCommitted(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	l := c.nodes[1]
	step := func(msgs []Message, to uint64) {
		for _, m := range msgs {
			if m.To == to {
				if err := c.nodes[to].Step(m); err != nil {
					t.Fatalf("step %v to %d: %v", m.Type, to, err)
				}
			}
		}
	}

	if err := l.Propose([]byte("a")); err != nil {
		t.Fatal(err)
	}
	rd1 := c.handleReady(1) // a is durable at the leader
	ia := rd1.Entries[len(rd1.Entries)-1].Index
	if err := l.Propose([]byte("b")); err != nil {
		t.Fatal(err)
	}
	rd2 := l.Ready() // b's write stays outstanding
	c.stores[1].save(&rd2)
	ib := rd2.Entries[len(rd2.Entries)-1].Index
	applied := l.BasicStatus().Applied

	if got := l.TakeCommitted(applied); len(got) != 0 {
		t.Fatalf("nothing newly committed, TakeCommitted gave %d entries", len(got))
	}
	c.queue = nil
	for _, f := range []uint64{2, 3} {
		step(rd1.Messages, f)
		step(rd2.Messages, f)
		rd := c.handleReady(f)
		step(rd.Messages, 1)
	}
	c.queue = nil
	if st := l.BasicStatus(); st.Commit != ib {
		t.Fatalf("commit %d, want %d (a and b acknowledged by both followers)", st.Commit, ib)
	}
	if got := l.TakeCommitted(applied - 1); len(got) != 0 {
		t.Fatalf("host behind what it was given, TakeCommitted gave %d entries", len(got))
	}
	got := l.TakeCommitted(applied)
	if len(got) != 1 || got[0].Index != ia || string(got[0].Data) != "a" {
		t.Fatalf("TakeCommitted gave %v, want entry %d (a) only: b is not durable at the leader", got, ia)
	}
	if st := l.BasicStatus(); st.Applied != ia {
		t.Fatalf("applied %d after TakeCommitted, want %d", st.Applied, ia)
	}
	if again := l.TakeCommitted(ia); len(again) != 0 {
		t.Fatalf("TakeCommitted handed out %v twice", again)
	}
	if err := l.Advance(); err != nil {
		t.Fatal(err)
	}
	rd3 := l.Ready()
	if len(rd3.CommittedEntries) != 1 || rd3.CommittedEntries[0].Index != ib {
		t.Fatalf("next Ready committed entries %v, want only %d (b)", rd3.CommittedEntries, ib)
	}
}

// TestTakeCommittedStopsAtConfChange: TakeCommitted hands out committed
// entries up to a membership change but not the change itself, which waits
// for a Ready (whose commit index the host persists before applying it).
func TestTakeCommittedStopsAtConfChange(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	l := c.nodes[1]
	step := func(msgs []Message, to uint64) {
		for _, m := range msgs {
			if m.To == to {
				_ = c.nodes[to].Step(m)
			}
		}
	}
	if err := l.Propose([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := l.ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 4}}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Propose([]byte("b")); err != nil {
		t.Fatal(err)
	}
	rd1 := c.handleReady(1) // a, the change and b are durable at the leader
	if len(rd1.Entries) != 3 {
		t.Fatalf("setup: %d entries in the Ready, want 3", len(rd1.Entries))
	}
	ia := rd1.Entries[0].Index
	if err := l.Propose([]byte("z")); err != nil {
		t.Fatal(err)
	}
	rd2 := l.Ready() // z's write stays outstanding
	c.stores[1].save(&rd2)
	applied := l.BasicStatus().Applied
	c.queue = nil
	for _, f := range []uint64{2, 3} {
		step(rd1.Messages, f)
		rd := c.handleReady(f)
		step(rd.Messages, 1)
	}
	c.queue = nil
	if st := l.BasicStatus(); st.Commit < ia+2 {
		t.Fatalf("commit %d, want at least %d", st.Commit, ia+2)
	}
	got := l.TakeCommitted(applied)
	if len(got) != 1 || got[0].Index != ia {
		t.Fatalf("TakeCommitted gave %v, want a (%d) only: the change waits for a Ready", got, ia)
	}
	if more := l.TakeCommitted(ia); len(more) != 0 {
		t.Fatalf("TakeCommitted went past the change: %v", more)
	}
	if err := l.Advance(); err != nil {
		t.Fatal(err)
	}
	rd3 := l.Ready()
	if len(rd3.CommittedEntries) < 2 || rd3.CommittedEntries[0].Type != EntryConfChange {
		t.Fatalf("next Ready's committed entries %v, want the change first, then b", rd3.CommittedEntries)
	}
}
