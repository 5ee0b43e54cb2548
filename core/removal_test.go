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
// and wins alone.
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
	// but not its own disk.
	if err := c.nodes[2].Campaign(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10 && c.nodes[2].BasicStatus().Role != Leader; i++ {
		c.process()
		q := c.queue
		c.queue = nil
		for _, m := range q {
			_ = c.nodes[m.To].Step(m)
		}
	}
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
