package core

import "testing"

// commitOnLeader proposes with propose on the steady leader 1 of c, has the
// leader persist the new entries, lets both followers persist and
// acknowledge them, and returns the leader's next Ready (not yet
// advanced): the one that hands out what the acknowledgements committed.
func commitOnLeader(t *testing.T, c *cluster, propose func(*Node) error) Ready {
	t.Helper()
	l := c.nodes[1]
	if err := propose(l); err != nil {
		t.Fatal(err)
	}
	rd := c.handleReady(1)
	if len(rd.Entries) == 0 || !rd.MustSync {
		t.Fatalf("setup: the leader's Ready persists %d entries, MustSync %v", len(rd.Entries), rd.MustSync)
	}
	c.queue = nil
	for _, f := range []uint64{2, 3} {
		for _, m := range rd.Messages {
			if m.To == f {
				if err := c.nodes[f].Step(m); err != nil {
					t.Fatalf("step %v to %d: %v", m.Type, f, err)
				}
			}
		}
		frd := c.handleReady(f)
		for _, m := range frd.Messages {
			if m.To == 1 {
				_ = l.Step(m) // n3's answer after its removal committed: from an unknown node
			}
		}
	}
	c.queue = nil
	last := rd.Entries[len(rd.Entries)-1].Index
	if st := l.BasicStatus(); st.Commit != last {
		t.Fatalf("setup: leader commit %d, want %d", st.Commit, last)
	}
	return l.Ready()
}

func removeNode(id uint64) func(*Node) error {
	return func(n *Node) error {
		return n.ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: id}}})
	}
}

// TestMustSyncCommitOnlyHardState: a Ready whose only write is a new
// commit index is not synced (a commit index can be learnt again), unless
// it hands out a membership change: the host applies that once the write
// completes, and a crash must not take back the commit index it applied it
// from (the node would restart in the configuration before the change).
func TestMustSyncCommitOnlyHardState(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	rd := commitOnLeader(t, c, func(n *Node) error { return n.Propose([]byte("a")) })
	if len(rd.Entries) != 0 || rd.HardState.IsEmpty() || len(rd.CommittedEntries) != 1 {
		t.Fatalf("setup: want a commit-only Ready with one committed entry, got %d entries, hard state %+v, %d committed",
			len(rd.Entries), rd.HardState, len(rd.CommittedEntries))
	}
	if rd.MustSync {
		t.Fatal("a commit-only hard state handing out a normal entry is synced: one fsync too many per write")
	}
	c.stores[1].save(&rd)
	if err := c.nodes[1].Advance(); err != nil {
		t.Fatal(err)
	}

	rd = commitOnLeader(t, c, removeNode(3))
	if len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Type != EntryConfChange {
		t.Fatalf("setup: committed entries %v, want the removal", rd.CommittedEntries)
	}
	idx := rd.CommittedEntries[0].Index
	if rd.HardState.Commit < idx || !rd.MustSync {
		t.Fatalf("the Ready handing out the removal at %d writes hard state %+v with MustSync %v, want commit ≥ %d synced",
			idx, rd.HardState, rd.MustSync, idx)
	}
}

// TestMustSyncConfChangeInLaterReady: when the commit index covering a
// membership change was written (unsynced) by an earlier Ready that handed
// out only the entries before it, the Ready that hands out the change
// writes the hard state again, synced.
func TestMustSyncConfChangeInLaterReady(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.MaxCommittedBytesPerReady = 1 })
	rd := commitOnLeader(t, c, func(n *Node) error {
		if err := n.Propose([]byte("a")); err != nil {
			return err
		}
		return removeNode(3)(n)
	})
	if len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Type != EntryNormal {
		t.Fatalf("setup: committed entries %v, want a alone (one entry per Ready)", rd.CommittedEntries)
	}
	idx := rd.CommittedEntries[0].Index + 1
	if rd.HardState.Commit != idx || rd.MustSync {
		t.Fatalf("setup: hard state %+v MustSync %v, want commit %d unsynced", rd.HardState, rd.MustSync, idx)
	}
	c.stores[1].save(&rd)
	if err := c.nodes[1].Advance(); err != nil {
		t.Fatal(err)
	}
	rd = c.nodes[1].Ready()
	if len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Index != idx || rd.CommittedEntries[0].Type != EntryConfChange {
		t.Fatalf("setup: committed entries %v, want the removal at %d", rd.CommittedEntries, idx)
	}
	if rd.HardState.Commit < idx || !rd.MustSync {
		t.Fatalf("the Ready handing out the removal at %d writes hard state %+v with MustSync %v, want commit ≥ %d synced",
			idx, rd.HardState, rd.MustSync, idx)
	}
	c.stores[1].save(&rd)
	if err := c.nodes[1].Advance(); err != nil {
		t.Fatal(err)
	}
	// Once synced, a later commit-only Ready is not synced again.
	rd = commitOnLeader(t, c, func(n *Node) error { return n.Propose([]byte("b")) })
	if rd.MustSync {
		t.Fatal("a commit-only Ready after the synced change is synced")
	}
}

// TestMustSyncConfChangeAfterRestart: a restarted node hands out again the
// committed entries after what the application had applied; a membership
// change among them is applied from the loaded commit index, which the
// node cannot know to be durable (a process restart keeps unsynced writes
// visible): that Ready writes the hard state, synced.
func TestMustSyncConfChangeAfterRestart(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	rd := commitOnLeader(t, c, removeNode(3))
	c.stores[1].save(&rd)
	if err := c.nodes[1].Advance(); err != nil {
		t.Fatal(err)
	}
	idx := rd.CommittedEntries[0].Index
	c.restart(1)
	rd = c.nodes[1].Ready()
	var change bool
	for _, e := range rd.CommittedEntries {
		change = change || e.Index == idx && e.Type == EntryConfChange
	}
	if !change {
		t.Fatalf("setup: the restarted node hands out %v, want the removal at %d among them", rd.CommittedEntries, idx)
	}
	if rd.HardState != c.stores[1].hs || !rd.MustSync {
		t.Fatalf("the restarted node's first Ready writes hard state %+v with MustSync %v, want %+v synced",
			rd.HardState, rd.MustSync, c.stores[1].hs)
	}
}
