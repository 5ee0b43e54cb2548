package core

import (
	"slices"
	"testing"
)

// TestRemovalFromTwoVotersNoWedge: voters {1, 2}; leader 1 commits and
// applies its own removal, and 2 never hears of the commit (nor of 1's
// hand-over). 2 then wins
// term 2 with 1's vote (1 left the voters but still votes), sends its first
// entry to 1 before its own write completes (Raft thesis §10.2.1) and
// crashes, losing it. Now 1's log is ahead of 2's: 1 refuses 2's
// (pre-)votes and, having left the voters, never campaigns; 2 still counts
// {1, 2} and needs 1's vote. Simulator swarm seed 40587 ended there, with
// no leader for good. 1's refusal carries its commit index, and 2, which
// holds the entry there, learns that the removal is committed, applies it
// and wins alone. (1's vote carries it too: then 2 learns it at once, see
// TestRemovalFromTwoVotersVoteTellsCommit.)
func TestRemovalFromTwoVotersNoWedge(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2}, func(cfg *Config) { cfg.PreVote = true; cfg.CheckQuorum = true })
	if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 1}}}); err != nil {
		t.Fatal(err)
	}
	c.drop = func(m Message) bool {
		// 2 stores the removal but hears of no commit index beyond it,
		// nor the hand-over of the leaving leader.
		return m.From == 1 && m.To == 2 &&
			(m.Type == MsgHeartbeat || m.Type == MsgTimeoutNow || (m.Type == MsgApp && len(m.Entries) == 0))
	}
	c.deliver()
	removal := c.nodes[1].BasicStatus().Commit
	if st := c.nodes[1].Status(); st.Role == Leader || slices.Contains(st.Config.Voters, 1) {
		t.Fatalf("setup: node 1 is %v with voters %v, want a follower removed from the voters", st.Role, st.Config.Voters)
	}
	if st := c.nodes[2].Status(); st.Commit >= removal || st.LastIndex < removal {
		t.Fatalf("setup: node 2 has commit %d, last index %d; want the removal at %d stored, not known committed",
			st.Commit, st.LastIndex, removal)
	}
	c.drop = nil

	// 2 campaigns and wins term 2 with 1's vote; its first entry reaches 1
	// but not its own disk. (1's vote tells 2 its commit index, which
	// would end the story here: the vote reaches 2 without it, as from a
	// node that did not send it, to reach the case where only 1's refusals
	// can help.)
	if err := c.nodes[2].Campaign(); err != nil {
		t.Fatal(err)
	}
	c.deliverEdited(func(m *Message) bool {
		if m.Type == MsgVoteResp || m.Type == MsgPreVoteResp {
			m.Commit, m.LogTerm = 0, 0
		}
		return true
	}, func() bool { return c.nodes[2].BasicStatus().Role == Leader })
	if c.nodes[2].BasicStatus().Role != Leader {
		t.Fatalf("setup: node 2 did not win term 2 with node 1's vote")
	}
	rd := c.nodes[2].Ready()
	if len(rd.Entries) == 0 {
		t.Fatalf("setup: node 2's first Ready as leader writes no entry")
	}
	for _, m := range rd.Messages {
		if m.To == 1 {
			_ = c.nodes[1].Step(m)
		}
	}
	c.crash(2) // before its write: its first entry is lost
	c.process()
	c.queue = nil // 1's acknowledgement goes nowhere
	if l1, l2 := c.nodes[1].BasicStatus().LastIndex, c.stores[2].entries[len(c.stores[2].entries)-1].Index; l1 <= l2 {
		t.Fatalf("setup: node 1's log ends at %d, node 2's stored log at %d; want 1 ahead", l1, l2)
	}
	c.restart(2)

	for i := 0; i < 20*c.cfgs[2].ElectionTick && c.leader() != 2; i++ {
		c.tick(1)
	}
	st := c.nodes[2].Status()
	if st.Role != Leader || !slices.Equal(st.Config.Voters, []uint64{2}) {
		t.Fatalf("after 20 election timeouts node 2 is %v in term %d with commit %d and voters %v; want the leader of voters [2]",
			st.Role, st.Term, st.Commit, st.Config.Voters)
	}
}

// TestStaleLeaderOutsideVotersLearnsTerm: without PreVote and CheckQuorum a
// node answers a stale leader's heartbeat with nothing, trusting that its
// own campaign will tell that leader the newer term. A leader that joined
// by a change this node has not learnt of never hears that campaign (it is
// not among this node's voters), and would lead a term the node ignores for
// good (simulator swarm seed 42882: a new voter led term 41 while the other
// voter, still in the configuration before it joined, campaigned up to term
// 107 against a removed node). The node tells such a leader its term.
func TestStaleLeaderOutsideVotersLearnsTerm(t *testing.T) {
	n, err := New(Config{ID: 1, Voters: []uint64{1, 2}, ElectionTick: 10, HeartbeatTick: 1, Seed: 7}, Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := n.Campaign(); err != nil {
			t.Fatal(err)
		}
	}
	term := n.BasicStatus().Term
	if n.HasReady() {
		_ = n.Ready()
		if err := n.Advance(); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []uint64{2, 3} {
		if err := n.Step(Message{Type: MsgHeartbeat, From: from, To: 1, Term: term - 1}); err != nil {
			t.Fatal(err)
		}
	}
	var got []Message
	if n.HasReady() {
		got = n.Ready().Messages
	}
	if len(got) != 1 || got[0].To != 3 || got[0].Type != MsgAppResp || got[0].Term != term {
		t.Fatalf("answers to stale heartbeats from voter 2 and outsider 3: %+v; want one MsgAppResp to 3 in term %d", got, term)
	}
}

// TestRemovalFromTwoVotersVoteTellsCommit: as above, but 2 campaigns with
// the vote answers intact. 1's vote tells 2 that the removal committed; 2
// applies it and leads voters {2}, and never writes an entry in {1, 2}
// that 1 could hold alone.
func TestRemovalFromTwoVotersVoteTellsCommit(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2}, func(cfg *Config) { cfg.PreVote = true; cfg.CheckQuorum = true })
	if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 1}}}); err != nil {
		t.Fatal(err)
	}
	c.drop = func(m Message) bool {
		return m.From == 1 && m.To == 2 &&
			(m.Type == MsgHeartbeat || m.Type == MsgTimeoutNow || (m.Type == MsgApp && len(m.Entries) == 0))
	}
	c.deliver()
	removal := c.nodes[1].BasicStatus().Commit
	if st := c.nodes[2].BasicStatus(); st.Commit >= removal {
		t.Fatalf("setup: node 2 has commit %d, want below the removal at %d", st.Commit, removal)
	}
	c.drop = nil
	c.campaign(2)
	st := c.nodes[2].Status()
	if st.Role != Leader || st.Commit < removal || !slices.Equal(st.Config.Voters, []uint64{2}) {
		t.Fatalf("after one campaign node 2 is %v with commit %d and voters %v; want the leader of voters [2], commit ≥ %d",
			st.Role, st.Commit, st.Config.Voters, removal)
	}
	// 2 knew itself alone before it led: it sent 1 nothing of its term.
	if last := c.nodes[1].BasicStatus().LastIndex; last != removal {
		t.Fatalf("node 1's log ends at %d, want %d: node 2 led in {1, 2} and replicated to it", last, removal)
	}
}

// TestLearnerAsksForCommit: voters {1} and learner 2; leader 1 replaces
// itself by 2 through a joint configuration, and 2 stores every entry but
// hears of no commit index (nor of 1's hand-over). 1 applies the change
// and steps down: it left the voters and never campaigns. 2 still sees
// itself a learner, so it never campaigns either, and without more no one
// ever leads (simulator swarm seed 15893). A node that cannot campaign
// asks the voters it knows for their commit index once no leader spoke for
// an election timeout; 2 learns from 1 that it is the only voter and wins.
func TestLearnerAsksForCommit(t *testing.T) {
	c := steadyLeader(t, []uint64{1}, func(cfg *Config) { cfg.PreVote = true; cfg.CheckQuorum = true })
	c.ids = append(c.ids, 2)
	cfg2 := c.cfgs[1]
	cfg2.ID, cfg2.Voters = 2, nil
	c.cfgs[2], c.stores[2] = cfg2, &memStore{}
	n2, err := New(cfg2, Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[2] = n2
	if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 2}}}); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	if st := c.nodes[2].Status(); !slices.Equal(st.Config.Learners, []uint64{2}) || st.Commit != c.nodes[1].BasicStatus().Commit {
		t.Fatalf("setup: node 2 has learners %v, commit %d; want learner 2 caught up", st.Config.Learners, st.Commit)
	}
	if err := c.nodes[1].ProposeConfChange(ConfChange{Transition: TransitionJointImplicit,
		Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 2}, {Type: RemoveNode, NodeID: 1}}}); err != nil {
		t.Fatal(err)
	}
	// Deliver, with no commit index (nor hand-over) from 1 reaching 2.
	c.deliverEdited(func(m *Message) bool {
		if m.From == 1 && m.To == 2 {
			if m.Type == MsgHeartbeat || m.Type == MsgTimeoutNow || (m.Type == MsgApp && len(m.Entries) == 0) {
				return false
			}
			m.Commit = 0
		}
		return true
	}, nil)
	st1, st2 := c.nodes[1].Status(), c.nodes[2].Status()
	if st1.Role == Leader || !slices.Equal(st1.Config.Voters, []uint64{2}) || st1.Config.Joint() {
		t.Fatalf("setup: node 1 is %v with voters %v (joint %v); want a follower that applied voters [2]",
			st1.Role, st1.Config.Voters, st1.Config.Joint())
	}
	if !slices.Equal(st2.Config.Learners, []uint64{2}) || st2.LastIndex != st1.LastIndex {
		t.Fatalf("setup: node 2 has learners %v and last index %d; want itself a learner holding 1's log up to %d",
			st2.Config.Learners, st2.LastIndex, st1.LastIndex)
	}
	for i := 0; i < 5*c.cfgs[2].ElectionTick && c.leader() != 2; i++ {
		c.tick(1)
	}
	st := c.nodes[2].Status()
	if st.Role != Leader || !slices.Equal(st.Config.Voters, []uint64{2}) {
		t.Fatalf("after 5 election timeouts node 2 is %v with commit %d and voters %v; want the leader of voters [2]",
			st.Role, st.Commit, st.Config.Voters)
	}
}

// TestCampaignEndsWhenCommitRemovesCandidate: voters {1, 2, 3}; leader 1
// commits the removal of 3, which stores it but hears of no commit. 3
// campaigns (PreVote on, CheckQuorum off, so the others answer); the first
// pre-vote answer tells it that the removal committed. It must end its
// campaign there: before this, the grants it still collected made a
// leader of a node outside the voters (simulator swarm seed 45898).
func TestCampaignEndsWhenCommitRemovesCandidate(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.PreVote = true })
	if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 3}}}); err != nil {
		t.Fatal(err)
	}
	c.deliverEdited(func(m *Message) bool {
		if m.To == 3 {
			if m.Type == MsgHeartbeat || (m.Type == MsgApp && len(m.Entries) == 0) {
				return false
			}
			m.Commit = 0
		}
		return true
	}, nil)
	removal := c.nodes[1].BasicStatus().Commit
	if st := c.nodes[3].Status(); st.Commit >= removal || st.LastIndex < removal || !slices.Contains(st.Config.Voters, 3) {
		t.Fatalf("setup: node 3 has commit %d, last index %d, voters %v; want the removal at %d stored, not known committed",
			st.Commit, st.LastIndex, st.Config.Voters, removal)
	}
	c.campaign(3)
	for _, id := range c.ids {
		if st := c.nodes[id].Status(); st.Role == Leader && !slices.Contains(st.Config.Voters, id) {
			t.Fatalf("node %d leads term %d with voters %v: a leader outside the voters", id, st.Term, st.Config.Voters)
		}
	}
	if st := c.nodes[3].Status(); st.Role != Follower || st.Commit < removal {
		t.Fatalf("node 3 is %v with commit %d; want a follower that learnt the removal at %d", st.Role, st.Commit, removal)
	}
}

// deliverEdited is deliver with every message in flight passed through
// edit, which may change it or drop it (false). It stops early, before
// handling any node's next Ready, once done (if set) reports true.
func (c *cluster) deliverEdited(edit func(m *Message) bool, done func() bool) {
	c.t.Helper()
	for i := 0; i < 10000; i++ {
		if done != nil && done() {
			return
		}
		c.process()
		if len(c.queue) == 0 {
			return
		}
		q := c.queue
		c.queue = nil
		for _, m := range q {
			if n := c.nodes[m.To]; n != nil && edit(&m) {
				_ = n.Step(m)
			}
		}
	}
	c.t.Fatalf("network never went quiet")
}
