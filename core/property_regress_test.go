package core

import "testing"

// TestRegressionElectionTimeoutsNotLockstep: with the default seed, nodes
// with neighbouring IDs drew the same sequence of election timeouts, one
// draw apart (the ID was mixed in as ID*φ, and SplitMix steps its state by
// φ). Two voters whose draw counts differed by one then timed out in the
// same tick forever and split every vote: no leader, ever. Found by
// TestPropertyRaft.
func TestRegressionElectionTimeoutsNotLockstep(t *testing.T) {
	c := newCluster(t, []uint64{1, 2}, func(cfg *Config) { cfg.ElectionTick = 3; cfg.Seed = 0 })
	c.deliver()
	// Both campaign in term 2 and split the vote; only node 1 learns it
	// lost, so it draws one timeout more than node 2.
	for _, id := range c.ids {
		if err := c.nodes[id].Campaign(); err != nil {
			t.Fatal(err)
		}
	}
	c.drop = func(m Message) bool { return m.Type == MsgVote && m.From == 2 }
	c.deliver()
	c.drop = nil
	// Both campaign in term 3 at once.
	for _, id := range c.ids {
		if err := c.nodes[id].Campaign(); err != nil {
			t.Fatal(err)
		}
	}
	c.deliver()
	for i := 0; c.leader() == None; i++ {
		if i == 100 {
			t.Fatalf("no leader after %d ticks: the two voters time out together", i)
		}
		c.tick(1)
	}
}

// TestRegressionLeaderLeavingKeepsLiveness: a leader demoted itself to
// learner (voters {1,2} → {2}) and went on appending proposals after the
// change. When the change committed, node 2 had not yet received them, so
// the leader stepped down without a MsgTimeoutNow; the appends telling node
// 2 of the commit were lost. Node 2, still in the old configuration,
// needed node 1's vote, and node 1 refused it forever because its log was
// longer, while node 1, a learner, could not campaign: no leader ever
// again, however well the network behaved afterwards. Found by
// TestPropertyRaft. A leader now refuses proposals while a change that
// takes it out of the voters is pending.
func TestRegressionLeaderLeavingKeepsLiveness(t *testing.T) {
	for _, restart := range []bool{false, true} {
		c := newCluster(t, []uint64{1, 2}, nil)
		c.deliver()
		c.campaign(1)
		if c.leader() != 1 {
			t.Fatalf("leader = %d, want 1", c.leader())
		}
		demote := ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 1}}}
		if err := c.nodes[1].ProposeConfChange(demote); err != nil {
			t.Fatal(err)
		}
		c.process()
		c.drop = func(m Message) bool { return m.Type == MsgAppResp } // node 2 gets the change, node 1 does not hear back yet
		c.deliver()
		c.drop = nil
		_ = c.nodes[1].Propose([]byte("late")) // may be refused
		c.process()
		// Node 2 acknowledges the change; node 1 commits it and steps
		// down, and everything node 1 sends from then on is lost.
		c.drop = func(m Message) bool { return m.From == 1 }
		if err := c.nodes[1].Step(Message{Type: MsgAppResp, From: 2, To: 1, Term: c.nodes[2].r.term, Index: 3}); err != nil {
			t.Fatal(err)
		}
		c.deliver()
		c.drop = nil
		if st := c.nodes[1].BasicStatus(); st.Role == Leader || st.Commit < 3 {
			t.Fatalf("setup: node 1 is %v with commit %d, want a follower with the change committed", st.Role, st.Commit)
		}
		if restart {
			c.crash(1)
			c.restart(1)
		}
		for i := 0; c.leader() != 2; i++ {
			if i == 200 {
				t.Fatalf("restart=%t: no leader after %d ticks of a perfect network; node 1: %+v, node 2: %+v",
					restart, i, c.nodes[1].BasicStatus(), c.nodes[2].BasicStatus())
			}
			c.tick(1)
		}
		if err := c.nodes[2].Propose([]byte("after")); err != nil {
			t.Fatal(err)
		}
		c.deliver()
		if got := c.data(2); len(got) == 0 || got[len(got)-1] != "after" {
			t.Fatalf("restart=%t: node 2 applied %v, want it to end with after", restart, got)
		}
	}
}

// TestRegressionSnapshotAckStopsAtSnapshot: a follower that already held
// the entry a snapshot ends at acknowledged its whole log, although the
// entries past the snapshot may come from a deposed leader and differ from
// the current leader's. The leader then took them as replicated (and could
// commit an entry the follower does not have), and ignored the follower's
// later rejections as stale. The acknowledgement must stop at the
// snapshot's index.
func TestRegressionSnapshotAckStopsAtSnapshot(t *testing.T) {
	bootstrap := EncodeConfChange(ConfChange{Changes: []ConfChangeSingle{
		{Type: AddVoter, NodeID: 1}, {Type: AddVoter, NodeID: 2}, {Type: AddVoter, NodeID: 3}}})
	// Node 3 holds 2/1 like everyone, then 3/2 from a leader of term 2
	// that never got it committed.
	n, err := New(Config{ID: 3}, Persisted{
		HardState: HardState{Term: 2, Commit: 1},
		Entries: []Entry{
			{Index: 1, Term: 1, Type: EntryConfChange, Data: bootstrap},
			{Index: 2, Term: 1, Data: []byte("a")},
			{Index: 3, Term: 2, Data: []byte("stale")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The leader of term 3 compacted its log through 2/1 and sends the
	// snapshot; its own entry 3 is of term 3.
	snap := &Snapshot{Meta: SnapshotMeta{Index: 2, Term: 1, Config: ConfState{Voters: []uint64{1, 2, 3}}}}
	if err := n.Step(Message{Type: MsgSnap, From: 1, To: 3, Term: 3, Snapshot: snap}); err != nil {
		t.Fatal(err)
	}
	rd := n.Ready()
	var acks []Message
	for _, m := range rd.Messages {
		if m.Type == MsgAppResp {
			acks = append(acks, m)
		}
	}
	if len(acks) != 1 || acks[0].Reject || acks[0].Index != 2 {
		t.Fatalf("answers to the snapshot: %+v; want one acknowledgement of index 2", acks)
	}
	if got := n.BasicStatus().Commit; got != 2 {
		t.Fatalf("commit = %d, want 2", got)
	}
}

// TestRegressionCommitAfterQuorumShrinks: voters {1,2}; leader 2 removed
// node 1, and an entry proposed after the removal was already durable on
// the leader when the removal committed. Node 2 alone was then a quorum
// for it, but the leader only looked for a new commit index on an
// acknowledgement or on its own log growing, and node 1's acknowledgement
// was refused (no longer a member): the entry stayed uncommitted until some
// later proposal. Found by TestPropertyRaft. The leader now recomputes its
// commit index when a committed change alters the voters.
func TestRegressionCommitAfterQuorumShrinks(t *testing.T) {
	c := newCluster(t, []uint64{1, 2}, nil)
	c.deliver()
	c.campaign(2)
	if c.leader() != 2 {
		t.Fatalf("leader = %d, want 2", c.leader())
	}
	remove := ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 1}}}
	if err := c.nodes[2].ProposeConfChange(remove); err != nil {
		t.Fatal(err)
	}
	c.process()
	if err := c.nodes[2].Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// Node 1 acknowledges the removal, not the entry after it.
	last := c.nodes[2].BasicStatus().LastIndex
	c.drop = func(m Message) bool { return m.From == 1 && m.Type == MsgAppResp && m.Index >= last }
	c.deliver()
	if st := c.nodes[2].Status(); len(st.Config.Voters) != 1 || st.Role != Leader {
		t.Fatalf("setup: node 2 is %v with voters %v, want the only voter and leader", st.Role, st.Config.Voters)
	}
	if got := c.nodes[2].BasicStatus().Commit; got != last {
		t.Fatalf("leader commit = %d, want %d: it is the only voter and holds the entry", got, last)
	}
	if got := c.data(2); len(got) != 1 || got[0] != "x" {
		t.Fatalf("leader applied %v, want [x]", got)
	}
}

// TestRegressionLearnerWithHigherTermCatchesUp: a node removed while cut
// off (so still running an old configuration) campaigned at ever higher
// terms, and its vote requests raised the term of the nodes that were now
// learners. Without CheckQuorum and PreVote a node ignored appends from a
// leader of a lower term without answering, relying on its own next
// campaign to raise the leader's term, but a learner never campaigns: the
// leader never heard of the new term and the learners never caught up
// again, on a network that had long healed. Found by TestPropertyRaft. A
// node that cannot campaign now tells a stale leader its term.
func TestRegressionLearnerWithHigherTermCatchesUp(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.deliver()
	c.campaign(1)
	demote := ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 3}}}
	if err := c.nodes[1].ProposeConfChange(demote); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	if st := c.nodes[3].Status(); len(st.Config.Learners) != 1 || st.Config.Learners[0] != 3 {
		t.Fatalf("setup: node 3's configuration is %+v, want it a learner", st.Config)
	}
	// A node removed long ago asks the learner for its vote in term 100.
	if err := c.nodes[3].Step(Message{Type: MsgVote, From: 9, To: 3, Term: 100, Index: 1, LogTerm: 1}); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	if err := c.nodes[1].Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.deliver() // committed by the voters 1 and 2
	for i := 0; ; i++ {
		if got := c.data(3); len(got) > 0 && got[len(got)-1] == "x" {
			break
		}
		if i == 200 {
			t.Fatalf("after %d ticks the learner has applied %v, want x; learner %+v, node 1 %+v",
				i, c.data(3), c.nodes[3].BasicStatus(), c.nodes[1].BasicStatus())
		}
		c.tick(1)
	}
}

// TestRegressionCandidateLearnsTermFromLearner: voters {1,2}; leader 1
// demoted itself and stepped down, and node 2 missed both the commit and
// the MsgTimeoutNow, so it still needed node 1's vote. Node 1, now a
// learner, had been pushed to a far higher term by vote requests from a
// node removed while cut off. Without CheckQuorum and PreVote a vote
// request from a lower term went unanswered, on the grounds that the node
// with the higher term would campaign and spread it; a learner never does,
// so node 2 could only count its term up one election at a time (in the
// run that found it, removed nodes kept raising node 1's term faster than
// that: no leader, ever). Found by TestPropertyRaft. A node that cannot
// campaign now answers a vote request from a lower term with its term when
// it would vote for the candidate's log.
func TestRegressionCandidateLearnsTermFromLearner(t *testing.T) {
	c := newCluster(t, []uint64{1, 2}, nil)
	c.deliver()
	c.campaign(1)
	demote := ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 1}}}
	if err := c.nodes[1].ProposeConfChange(demote); err != nil {
		t.Fatal(err)
	}
	// Node 2 gets the change; node 1 commits it; node 2 hears nothing more.
	c.drop = func(m Message) bool { return m.From == 1 && (m.Commit >= 3 || m.Type == MsgTimeoutNow) }
	c.deliver()
	c.drop = nil
	if st := c.nodes[1].Status(); st.Role == Leader || len(st.Config.Learners) != 1 {
		t.Fatalf("setup: node 1 is %v with configuration %+v, want a learner follower", st.Role, st.Config)
	}
	if st := c.nodes[2].Status(); len(st.Config.Voters) != 2 {
		t.Fatalf("setup: node 2's configuration is %+v, want the old one", st.Config)
	}
	// A node removed long ago asks node 1 for its vote in term 100.
	if err := c.nodes[1].Step(Message{Type: MsgVote, From: 9, To: 1, Term: 100, Index: 1, LogTerm: 1}); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	// Counting up to term 100 would take node 2 some 100 elections.
	for i := 0; c.leader() != 2; i++ {
		if i == 100 {
			t.Fatalf("no leader after %d ticks; node 1: %+v, node 2: %+v", i, c.nodes[1].BasicStatus(), c.nodes[2].BasicStatus())
		}
		c.tick(1)
	}
}

// TestRegressionCandidateLearnsTermFromStaleVoter: node 3 was added as a
// voter and node 1 demoted itself, but node 2 missed both commits: it still
// ran the configuration {1,2}, where it could not win (node 1's log was
// longer) and where it never asked node 3 for anything. Node 3, with the
// longest log, needed node 2's vote, but its term was lower, and a vote
// request from a lower term went unanswered: node 3 could only count its
// term up one election at a time while node 2 kept raising its own, so the
// two raced without end. Found by TestPropertyRaft. A node now answers a
// vote request from a lower term with its term when it would vote for the
// candidate's log and would not itself bring the candidate its term (it
// cannot campaign, or the candidate is not among its voters).
func TestRegressionCandidateLearnsTermFromStaleVoter(t *testing.T) {
	c := newCluster(t, []uint64{1, 2}, nil)
	c.ids = append(c.ids, 3)
	c.cfgs[3] = Config{ID: 3, ElectionTick: 10, HeartbeatTick: 1, Seed: 42}
	c.stores[3] = &memStore{}
	n3, err := New(c.cfgs[3], Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[3] = n3
	c.deliver()
	c.campaign(1)
	// Node 1 adds node 3, then demotes itself; node 2 learns neither
	// commit, nor does node 3 get a MsgTimeoutNow.
	c.drop = func(m Message) bool { return m.To == 2 && m.Commit >= 3 || m.Type == MsgTimeoutNow }
	if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 3}}}); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	c.drop = func(m Message) bool { return m.To == 2 || m.Type == MsgTimeoutNow }
	if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 1}}}); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	c.drop = nil
	if st := c.nodes[2].Status(); len(st.Config.Voters) != 2 || st.Config.Voters[1] != 2 || st.Commit >= 3 {
		t.Fatalf("setup: node 2 has configuration %+v and commit %d, want {1,2} and no commit of the changes", st.Config, st.Commit)
	}
	if st := c.nodes[3].Status(); len(st.Config.Voters) != 2 || st.Config.Voters[1] != 3 || st.Role == Leader {
		t.Fatalf("setup: node 3 is %v with configuration %+v, want a follower with voters {2,3}", st.Role, st.Config)
	}
	// Node 2 has been far ahead in terms: a node with a shorter log asked
	// it for a vote in term 50.
	if err := c.nodes[2].Step(Message{Type: MsgVote, From: 9, To: 2, Term: 50}); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	// Node 3 must now win a race against node 2's own campaigns, which it
	// learns the term of from each refusal; counting up to term 50 alone
	// would take it some 45 elections (450 ticks), while node 2 goes on
	// raising its term.
	for i := 0; c.leader() != 3; i++ {
		if i == 300 {
			t.Fatalf("no leader after %d ticks; node 2: %+v, node 3: %+v", i, c.nodes[2].BasicStatus(), c.nodes[3].BasicStatus())
		}
		c.tick(1)
	}
}
