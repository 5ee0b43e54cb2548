package core

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Scripted scenarios: partitions with PreVote and CheckQuorum, leader
// removal, joint consensus with crashes, leadership transfer, and ReadIndex
// across leader changes.

// ---- PreVote and CheckQuorum ----

// TestScenarioPreVotePartitionedFollower: a follower cut off from the
// cluster keeps timing out; with PreVote it never raises its term (no
// pre-vote round succeeds), so when it rejoins the leader keeps leading in
// the same term. Without PreVote the rejoining node disrupts the leader.
func TestScenarioPreVotePartitionedFollower(t *testing.T) {
	for _, preVote := range []bool{true, false} {
		t.Run(fmt.Sprintf("prevote=%t", preVote), func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.PreVote = preVote })
			c.campaign(1)
			term := c.nodes[1].BasicStatus().Term
			c.partition(3)
			c.propose(1, "a")
			c.deliver()
			c.tick(10 * 10)
			st3 := c.nodes[3].BasicStatus()
			if preVote && st3.Term != term {
				t.Fatalf("partitioned pre-voting node raised its term to %d (leader's term %d)", st3.Term, term)
			}
			if !preVote && st3.Term <= term {
				t.Fatalf("partitioned node in term %d: it should have campaigned past %d", st3.Term, term)
			}
			c.heal()
			c.tick(5 * 10)
			st1 := c.nodes[1].BasicStatus()
			if preVote {
				if st1.Role != Leader || st1.Term != term {
					t.Fatalf("leader disrupted: node 1 is %v in term %d, was leader in term %d", st1.Role, st1.Term, term)
				}
				for _, id := range c.ids {
					if st := c.nodes[id].BasicStatus(); st.Term != term || st.Lead != 1 {
						t.Fatalf("node %d in term %d led by %d", id, st.Term, st.Lead)
					}
				}
			} else if st1.Term == term {
				t.Fatalf("without PreVote the rejoining node should have forced a new term; node 1 still in term %d", term)
			}
			lead := c.leader()
			if lead == None {
				t.Fatal("no leader after the partition healed")
			}
			c.propose(lead, "b")
			c.deliver()
			for _, id := range c.ids {
				if got := c.data(id); !slices.Equal(got, []string{"a", "b"}) {
					t.Fatalf("node %d applied %v, want [a b]", id, got)
				}
			}
		})
	}
}

// TestScenarioCheckQuorumLeaderStepsDown: a leader cut off from a quorum
// steps down once the quorum check fails — within two election timeouts of
// the last answer it had (the check runs every ElectionTick ticks, over the
// answers of the past ElectionTick ticks); the majority elects a new leader
// and the old one follows it once the partition heals. A leader that can
// reach a quorum stays.
func TestScenarioCheckQuorumLeaderStepsDown(t *testing.T) {
	for _, offset := range []int{0, 1, 4, 9} {
		t.Run(fmt.Sprintf("partition %d ticks in", offset), func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = true })
			c.campaign(1)
			c.tick(offset)
			c.partition(1)
			ticks := 0
			for c.nodes[1].BasicStatus().Role == Leader {
				if ticks == 2*10 {
					t.Fatalf("isolated leader still leads after %d ticks", ticks)
				}
				c.tick(1)
				ticks++
			}
			if st := c.nodes[1].BasicStatus(); st.Role != Follower || st.Lead != None {
				t.Fatalf("isolated leader became %v led by %d", st.Role, st.Lead)
			}
			lead := c.tickUntilLeader(3 * 10)
			if lead != 2 && lead != 3 {
				t.Fatalf("leader %d on the majority side", lead)
			}
			c.heal()
			c.tick(3)
			if st := c.nodes[1].BasicStatus(); st.Lead != lead || st.Role != Follower {
				t.Fatalf("after healing node 1 is %v led by %d, want follower of %d", st.Role, st.Lead, lead)
			}
		})
	}
	t.Run("healthy and minority partitions", func(t *testing.T) {
		c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = true })
		c.campaign(1)
		term := c.nodes[1].BasicStatus().Term
		c.tick(10 * 10)
		c.partition(3) // one follower lost: 1 and 2 are a quorum
		c.tick(10 * 10)
		if st := c.nodes[1].BasicStatus(); st.Role != Leader || st.Term != term {
			t.Fatalf("leader with a quorum stepped down: %v in term %d", st.Role, st.Term)
		}
	})
}

// TestScenarioCheckQuorumIgnoresVotes: with CheckQuorum, a follower (or
// leader) that heard from the leader within the election timeout ignores a
// vote request: a node campaigning on its own cannot depose a live leader.
// Once the leader is gone for an election timeout, votes count again.
func TestScenarioCheckQuorumIgnoresVotes(t *testing.T) {
	for _, preVote := range []bool{false, true} {
		t.Run(fmt.Sprintf("prevote=%t", preVote), func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) {
				cfg.CheckQuorum = true
				cfg.PreVote = preVote
			})
			c.campaign(1)
			c.tick(2)
			term := c.nodes[1].BasicStatus().Term
			votes := 0
			c.drop = func(m Message) bool {
				if m.Type == MsgVoteResp || m.Type == MsgPreVoteResp {
					votes++
				}
				return false
			}
			c.campaign(3)
			if votes != 0 {
				t.Fatalf("%d answers to vote requests within the leader's lease", votes)
			}
			for _, id := range []uint64{1, 2} {
				st := c.nodes[id].BasicStatus()
				if st.Term != term || st.Lead != 1 || (id == 2 && st.Vote != 1) {
					t.Fatalf("node %d disturbed: term %d lead %d vote %d", id, st.Term, st.Lead, st.Vote)
				}
			}
			if c.nodes[1].BasicStatus().Role != Leader {
				t.Fatal("leader deposed by a vote request within its lease")
			}
			if preVote {
				// The pre-candidate never raised its term: the leader's next
				// heartbeat brings it back and nothing changes.
				c.tick(3 * 10)
				if st := c.nodes[1].BasicStatus(); st.Role != Leader || st.Term != term {
					t.Fatalf("leader disturbed: %v in term %d", st.Role, st.Term)
				}
			}

			// The leader goes away: after an election timeout the others
			// grant votes again.
			c.heal()
			c.crash(1)
			lead := c.tickUntilLeader(4 * 10)
			if lead != 2 && lead != 3 {
				t.Fatalf("no new leader once the old one is gone (leader %d)", lead)
			}
		})
	}
}

// ---- membership ----

// TestScenarioReplaceLeaderJoint: the leader replaces itself through a
// joint configuration; it leads through the joint phase (it is an outgoing
// voter), steps down once the leave commits, and the new configuration
// elects a leader and goes on committing. With PreVote and CheckQuorum the
// removed node, still running, never disturbs the rest.
func TestScenarioReplaceLeaderJoint(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) {
		cfg.PreVote = true
		cfg.CheckQuorum = true
	})
	c.campaign(1)
	c.addNode(4)
	if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{
		{Type: AddVoter, NodeID: 4}, {Type: RemoveNode, NodeID: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	sawJointLeader := false
	c.drop = func(m Message) bool {
		if n := c.nodes[1]; n != nil && n.BasicStatus().Role == Leader && n.Status().Config.Joint() {
			sawJointLeader = true
		}
		return false
	}
	c.deliver()
	if !sawJointLeader {
		t.Fatal("node 1 did not lead through the joint configuration")
	}
	if st := c.nodes[1].BasicStatus(); st.Role == Leader {
		t.Fatal("removed leader still leads")
	}
	lead := c.leader()
	if lead == None {
		lead = c.tickUntilLeader(3 * 10)
	}
	if lead < 2 {
		t.Fatalf("leader %d, want one of 2, 3, 4", lead)
	}
	want := ConfState{Voters: []uint64{2, 3, 4}}
	for _, id := range []uint64{2, 3, 4} {
		if got := c.conf(id); !confEqual(got, want) {
			t.Fatalf("node %d config %+v, want %+v", id, got, want)
		}
	}
	term := c.nodes[lead].BasicStatus().Term
	c.tick(10 * 10)
	if st := c.nodes[lead].BasicStatus(); st.Role != Leader || st.Term != term {
		t.Fatalf("leader %d disturbed: %v in term %d (was term %d)", lead, st.Role, st.Term, term)
	}
	c.propose(lead, "a")
	c.deliver()
	for _, id := range []uint64{2, 3, 4} {
		if got := c.data(id); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("node %d applied %v", id, got)
		}
	}
	if slices.Contains(c.data(1), "a") {
		t.Fatal("removed node applied an entry of the new configuration")
	}
}

// isLeave reports whether e is the entry leaving a joint configuration.
func isLeave(e Entry) bool {
	if e.Type != EntryConfChange {
		return false
	}
	cc, err := DecodeConfChange(e.Data)
	return err == nil && cc.IsLeave()
}

// TestScenarioJointWithCrashes: nodes crash at several points of a joint
// change replacing 2 and 3 by 4 and 5; on restart each recovers the
// configuration from its log (changes up to its commit index take effect),
// and the cluster ends up out of the joint configuration with {1, 4, 5}.
func TestScenarioJointWithCrashes(t *testing.T) {
	replace := ConfChange{Changes: []ConfChangeSingle{
		{Type: AddVoter, NodeID: 4}, {Type: AddVoter, NodeID: 5},
		{Type: RemoveNode, NodeID: 2}, {Type: RemoveNode, NodeID: 3},
	}}
	joint := ConfState{Voters: []uint64{1, 4, 5}, VotersOutgoing: []uint64{1, 2, 3}, AutoLeave: true}
	final := ConfState{Voters: []uint64{1, 4, 5}}
	tests := []struct {
		name string
		// run brings the cluster to the crash point, crashes and restarts
		// nodes, and checks what they recovered.
		run func(t *testing.T, c *cluster)
	}{
		{"joint entry stored by a majority, uncommitted, leader crashes", func(t *testing.T, c *cluster) {
			// Nobody's answer reaches the leader: the entry is stored by
			// everyone but committed nowhere.
			c.drop = func(m Message) bool { return m.To == 1 && m.Type == MsgAppResp }
			if err := c.nodes[1].ProposeConfChange(replace); err != nil {
				t.Fatal(err)
			}
			c.deliver()
			c.crash(1)
			c.restart(1)
			c.heal()
			for _, id := range []uint64{1, 2, 3} {
				if got := c.conf(id); !confEqual(got, ConfState{Voters: []uint64{1, 2, 3}}) {
					t.Fatalf("node %d config %+v: the uncommitted joint entry must not be in force", id, got)
				}
			}
		}},
		{"joint committed, leave pending, leader and a new voter crash", func(t *testing.T, c *cluster) {
			// The leave entry is stored everywhere but its acknowledgements
			// are lost.
			c.drop = func(m Message) bool {
				return m.To == 1 && m.Type == MsgAppResp && m.Index >= c.nodes[1].BasicStatus().LastIndex &&
					isLeave(*c.nodes[1].r.log.at(c.nodes[1].BasicStatus().LastIndex))
			}
			if err := c.nodes[1].ProposeConfChange(replace); err != nil {
				t.Fatal(err)
			}
			c.deliver()
			for _, id := range c.ids {
				if got := c.conf(id); !confEqual(got, joint) {
					t.Fatalf("node %d config %+v before the crash, want %+v", id, got, joint)
				}
			}
			c.crash(1)
			c.crash(4)
			c.restart(1)
			c.restart(4)
			c.heal()
			for _, id := range []uint64{1, 4} {
				if got := c.conf(id); !confEqual(got, joint) {
					t.Fatalf("restarted node %d config %+v, want %+v", id, got, joint)
				}
			}
		}},
		{"joint committed, everyone crashes", func(t *testing.T, c *cluster) {
			c.drop = func(m Message) bool {
				for _, e := range m.Entries {
					if isLeave(e) {
						return true
					}
				}
				return false
			}
			if err := c.nodes[1].ProposeConfChange(replace); err != nil {
				t.Fatal(err)
			}
			c.deliver()
			if got := c.conf(1); !confEqual(got, joint) {
				t.Fatalf("leader config %+v, want %+v", got, joint)
			}
			for _, id := range c.ids {
				c.crash(id)
			}
			for _, id := range c.ids {
				c.restart(id)
			}
			c.heal()
			if got := c.conf(1); !confEqual(got, joint) {
				t.Fatalf("restarted leader config %+v, want %+v", got, joint)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, nil)
			c.campaign(1)
			c.propose(1, "a")
			c.deliver()
			c.addNode(4)
			c.addNode(5)
			tc.run(t, c)
			// The cluster recovers: a leader of the new configuration takes
			// it out of the joint configuration.
			for range 20 {
				if l := c.leader(); l != None && confEqual(c.conf(l), final) {
					break
				}
				c.tick(10)
			}
			lead := c.leader()
			if lead == None || !confEqual(c.conf(lead), final) {
				t.Fatalf("leader %d with config %+v, want %+v", lead, c.conf(lead), final)
			}
			// The removed nodes are shut down, as a host would.
			c.crash(2)
			c.crash(3)
			c.propose(lead, "b")
			c.tick(3)
			for _, id := range []uint64{1, 4, 5} {
				if got := c.conf(id); !confEqual(got, final) {
					t.Fatalf("node %d config %+v, want %+v", id, got, final)
				}
				if got := c.data(id); len(got) == 0 || got[len(got)-1] != "b" {
					t.Fatalf("node %d applied %v, want ... b", id, got)
				}
			}
			c.checkSameLogs(t, 1, 4, 5)
		})
	}
}

// ---- leadership transfer ----

// TestScenarioTransferCatchUp: the leader brings a lagging transferee up to
// date before it sends MsgTimeoutNow; the transferee campaigns at once (no
// election timeout), overriding leader leases, and wins the next term.
// Proposals are refused while the transfer is under way.
func TestScenarioTransferCatchUp(t *testing.T) {
	for _, opts := range []string{"plain", "checkquorum", "prevote+checkquorum"} {
		t.Run(opts, func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) {
				cfg.CheckQuorum = opts != "plain"
				cfg.PreVote = opts == "prevote+checkquorum"
			})
			c.campaign(1)
			term := c.nodes[1].BasicStatus().Term
			c.partition(3)
			for _, d := range []string{"a", "b", "c"} {
				c.propose(1, d)
			}
			c.deliver()
			c.heal()
			if err := c.nodes[1].TransferLeadership(3); err != nil {
				t.Fatal(err)
			}
			if st := c.nodes[1].BasicStatus(); st.LeadTransferee != 3 || st.Role != Leader {
				t.Fatalf("leader status %+v, want transferring to 3", st)
			}
			if err := c.nodes[1].Propose([]byte("x")); !errors.Is(err, ErrTransferInProgress) {
				t.Fatalf("Propose during the transfer: %v, want ErrTransferInProgress", err)
			}
			timeoutNows := 0
			c.drop = func(m Message) bool {
				if m.Type == MsgTimeoutNow {
					timeoutNows++
					if got, want := c.nodes[3].BasicStatus().LastIndex, c.nodes[1].BasicStatus().LastIndex; got != want {
						t.Fatalf("MsgTimeoutNow sent to a transferee at index %d, leader at %d", got, want)
					}
				}
				return false
			}
			c.deliver()
			if timeoutNows != 0 {
				t.Fatal("MsgTimeoutNow sent before the transferee caught up")
			}
			c.tick(1) // a heartbeat answer shows 3 lags: it is caught up
			if timeoutNows != 1 {
				t.Fatalf("%d MsgTimeoutNow sent, want 1", timeoutNows)
			}
			if c.leader() != 3 {
				t.Fatalf("leader %d after the transfer, want 3", c.leader())
			}
			if st := c.nodes[3].BasicStatus(); st.Term != term+1 {
				t.Fatalf("new leader in term %d, want %d", st.Term, term+1)
			}
			if st := c.nodes[1].BasicStatus(); st.Role != Follower || st.Lead != 3 || st.LeadTransferee != None {
				t.Fatalf("old leader status %+v", st)
			}
			c.propose(3, "d")
			c.deliver()
			for _, id := range c.ids {
				if got := c.data(id); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
					t.Fatalf("node %d applied %v", id, got)
				}
			}
		})
	}
}

// TestScenarioTransferTimeout: a transfer to an unreachable node is
// abandoned after TransferTimeoutTicks; until then proposals are refused,
// afterwards accepted, and the leader never changed.
func TestScenarioTransferTimeout(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.TransferTimeoutTicks = 7 })
	c.campaign(1)
	term := c.nodes[1].BasicStatus().Term
	c.partition(3)
	c.propose(1, "a")
	c.deliver()
	if err := c.nodes[1].TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	c.tick(6)
	if st := c.nodes[1].BasicStatus(); st.LeadTransferee != 3 {
		t.Fatalf("transfer abandoned after 6 of 7 ticks: %+v", st)
	}
	if err := c.nodes[1].Propose([]byte("x")); !errors.Is(err, ErrTransferInProgress) {
		t.Fatalf("Propose: %v, want ErrTransferInProgress", err)
	}
	c.tick(1)
	st := c.nodes[1].BasicStatus()
	if st.LeadTransferee != None || st.Role != Leader || st.Term != term {
		t.Fatalf("after the transfer timeout: %+v, want leader in term %d with no transfer", st, term)
	}
	c.propose(1, "b")
	c.deliver()
	if got := c.data(2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("node 2 applied %v", got)
	}
	// A transfer abandoned on the leader's side cannot fire later: 3 comes
	// back and stays a follower.
	c.heal()
	c.tick(3)
	if c.leader() != 1 || c.nodes[1].BasicStatus().Term != term {
		t.Fatalf("leader %d in term %d, want 1 in term %d", c.leader(), c.nodes[1].BasicStatus().Term, term)
	}
}

// TestScenarioStepDown: StepDown hands leadership to the most up-to-date
// other voter.
func TestScenarioStepDown(t *testing.T) {
	tests := []struct {
		size   int
		behind map[uint64]int // entries each node misses
		want   uint64
	}{
		{3, map[uint64]int{2: 1}, 3},
		{3, map[uint64]int{3: 1}, 2},
		{5, map[uint64]int{2: 3, 3: 2, 5: 1}, 4},
		{5, map[uint64]int{2: 2, 3: 1, 4: 2}, 5},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var ids []uint64
			for id := 1; id <= tc.size; id++ {
				ids = append(ids, uint64(id))
			}
			c := newCluster(t, ids, nil)
			c.campaign(1)
			for k := 3; k >= 1; k-- {
				// Nodes missing k or more entries miss this one.
				c.drop = func(m Message) bool { return m.From == 1 && tc.behind[m.To] >= k }
				c.propose(1, fmt.Sprint(k))
				c.deliver()
			}
			if err := c.nodes[1].StepDown(); err != nil {
				t.Fatal(err)
			}
			if st := c.nodes[1].BasicStatus(); st.LeadTransferee != tc.want {
				t.Fatalf("StepDown chose %d, want %d", st.LeadTransferee, tc.want)
			}
			c.deliver()
			if c.leader() != tc.want {
				t.Fatalf("leader %d, want %d", c.leader(), tc.want)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		c := newCluster(t, []uint64{1, 2, 3}, nil)
		c.campaign(1)
		var nle *NotLeaderError
		if err := c.nodes[2].StepDown(); !errors.As(err, &nle) || nle.Leader != 1 {
			t.Fatalf("StepDown on a follower: %v, want a NotLeaderError naming 1", err)
		}
		c.addNode(4)
		c.changeConf(1, ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 4}}})
		for _, to := range []uint64{1, 4, 9} {
			if err := c.nodes[1].TransferLeadership(to); !errors.Is(err, ErrInvalidTransferTarget) {
				t.Fatalf("TransferLeadership(%d): %v, want ErrInvalidTransferTarget", to, err)
			}
		}
		c.partition(2, 3)
		if err := c.nodes[1].TransferLeadership(2); err != nil {
			t.Fatal(err)
		}
		if err := c.nodes[1].TransferLeadership(2); err != nil {
			t.Fatalf("repeating the transfer: %v", err)
		}
		if err := c.nodes[1].TransferLeadership(3); !errors.Is(err, ErrTransferInProgress) {
			t.Fatalf("second transfer: %v, want ErrTransferInProgress", err)
		}
		single := newCluster(t, []uint64{1}, nil)
		single.campaign(1)
		if err := single.nodes[1].StepDown(); !errors.Is(err, ErrInvalidTransferTarget) {
			t.Fatalf("StepDown of a lone voter: %v, want ErrInvalidTransferTarget", err)
		}
	})
}

// TestScenarioTransferForwarded: a transfer requested on a follower is
// forwarded to the leader (or refused with a NotLeaderError when
// forwarding is disabled).
func TestScenarioTransferForwarded(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	if err := c.nodes[2].TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	if c.leader() != 3 {
		t.Fatalf("leader %d, want 3", c.leader())
	}

	c = newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.DisableProposalForwarding = true })
	c.campaign(1)
	var nle *NotLeaderError
	if err := c.nodes[2].TransferLeadership(3); !errors.As(err, &nle) || nle.Leader != 1 {
		t.Fatalf("TransferLeadership on a follower: %v, want a NotLeaderError naming 1", err)
	}
}

// checkOneLeaderPerTerm returns a drop filter that fails the test if two
// nodes ever lead in the same term (it drops nothing).
func checkOneLeaderPerTerm(t *testing.T, c *cluster, leaders map[uint64]uint64) func(Message) bool {
	return func(Message) bool {
		for _, id := range c.ids {
			n := c.nodes[id]
			if n == nil {
				continue
			}
			st := n.BasicStatus()
			if st.Role != Leader {
				continue
			}
			if l, ok := leaders[st.Term]; ok && l != id {
				t.Fatalf("nodes %d and %d both lead term %d", l, id, st.Term)
			}
			leaders[st.Term] = id
		}
		return false
	}
}

// TestScenarioTransferRacesElection: a leadership transfer meets an
// election started at the same time; at most one node leads any term, the
// cluster settles on one leader, the old leader's transfer is gone, and a
// stale MsgTimeoutNow is ignored.
func TestScenarioTransferRacesElection(t *testing.T) {
	t.Run("simultaneous", func(t *testing.T) {
		for _, order := range []string{"transfer first", "election first"} {
			t.Run(order, func(t *testing.T) {
				c := newCluster(t, []uint64{1, 2, 3}, nil)
				c.campaign(1)
				c.propose(1, "a")
				c.deliver()
				term := c.nodes[1].BasicStatus().Term
				leaders := map[uint64]uint64{}
				c.drop = checkOneLeaderPerTerm(t, c, leaders)
				if order == "election first" {
					c.nodes[2].Campaign()
				}
				if err := c.nodes[1].TransferLeadership(3); err != nil {
					t.Fatal(err)
				}
				if order == "transfer first" {
					c.nodes[2].Campaign()
				}
				c.deliver()
				lead := c.tickUntilLeader(4 * 10)
				if lead == None {
					t.Fatal("no leader")
				}
				c.tick(2)
				st := c.nodes[lead].BasicStatus()
				if st.Term <= term {
					t.Fatalf("leader %d in term %d, want a term after %d", lead, st.Term, term)
				}
				for _, id := range c.ids {
					s := c.nodes[id].BasicStatus()
					if s.Term != st.Term || s.Lead != lead || s.LeadTransferee != None {
						t.Fatalf("node %d: %+v; want term %d led by %d with no transfer", id, s, st.Term, lead)
					}
				}
				c.propose(lead, "b")
				c.deliver()
				for _, id := range c.ids {
					if got := c.data(id); !slices.Equal(got, []string{"a", "b"}) {
						t.Fatalf("node %d applied %v", id, got)
					}
				}
			})
		}
	})
	t.Run("stale MsgTimeoutNow", func(t *testing.T) {
		c := newCluster(t, []uint64{1, 2, 3}, nil)
		c.campaign(1)
		var held []Message
		c.drop = func(m Message) bool {
			if m.Type == MsgTimeoutNow {
				held = append(held, m)
				return true
			}
			return false
		}
		if err := c.nodes[1].TransferLeadership(3); err != nil {
			t.Fatal(err)
		}
		c.deliver()
		if len(held) != 1 {
			t.Fatalf("held %d MsgTimeoutNow, want 1", len(held))
		}
		c.campaign(2)
		if c.leader() != 2 {
			t.Fatalf("leader %d, want 2", c.leader())
		}
		term := c.nodes[2].BasicStatus().Term
		mustStep(t, c.nodes[3], held[0])
		c.deliver()
		if c.leader() != 2 || c.nodes[3].BasicStatus().Term != term || c.nodes[3].BasicStatus().Role != Follower {
			t.Fatalf("a stale MsgTimeoutNow changed the cluster: leader %d, node 3 %+v", c.leader(), c.nodes[3].BasicStatus())
		}
	})
}

// ---- ReadIndex ----

// readsFor returns the read states node id received for ctx.
func (c *cluster) readsFor(id uint64, ctx string) []ReadState {
	var out []ReadState
	for _, rs := range c.reads[id] {
		if string(rs.Context) == ctx {
			out = append(out, rs)
		}
	}
	return out
}

// TestScenarioReadIndexOldLeader: a read requested on a leader that is cut
// off and replaced is never answered with an index that misses what the new
// leader committed (here: never answered at all; clients time out).
func TestScenarioReadIndexOldLeader(t *testing.T) {
	for _, cq := range []bool{false, true} {
		t.Run(fmt.Sprintf("checkquorum=%t", cq), func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = cq })
			c.campaign(1)
			c.propose(1, "a")
			c.deliver()
			c.partition(1)
			if err := c.nodes[1].ReadIndex([]byte("old")); err != nil {
				t.Fatal(err)
			}
			c.deliver()
			if got := c.readsFor(1, "old"); len(got) != 0 {
				t.Fatalf("read answered without a quorum: %+v", got)
			}
			lead := None
			for i := 0; lead == 1 || lead == None; i++ {
				if i == 5*10 {
					t.Fatal("majority side never elected a leader")
				}
				c.tick(1)
				lead = c.leader()
			}
			c.propose(lead, "w")
			c.deliver()
			written := c.nodes[lead].BasicStatus().Commit
			c.heal()
			c.tick(5)
			for _, rs := range c.readsFor(1, "old") {
				if rs.Index < written {
					t.Fatalf("stale read: index %d misses the write committed at %d", rs.Index, written)
				}
			}
			if st := c.nodes[1].BasicStatus(); st.Role != Follower || st.Lead != lead {
				t.Fatalf("old leader %+v, want a follower of %d", st, lead)
			}
		})
	}
}

// TestScenarioReadIndexNewLeaderWaits: a new leader answers no read before
// an entry of its own term is committed (it cannot know the commit index of
// the previous term until then).
func TestScenarioReadIndexNewLeaderWaits(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.propose(1, "a")
	c.deliver()
	// 2 wins term 3, but its appends are lost.
	c.drop = func(m Message) bool { return m.From == 2 && m.Type == MsgApp }
	c.campaign(2)
	if c.leader() != 2 {
		t.Fatalf("leader %d, want 2", c.leader())
	}
	if err := c.nodes[2].ReadIndex([]byte("r")); err != nil {
		t.Fatal(err)
	}
	c.tick(1) // node 3 learns of the leader from its heartbeat
	if err := c.nodes[3].ReadIndex([]byte("f")); err != nil {
		t.Fatal(err)
	}
	c.tick(3) // heartbeats do flow: leadership is confirmed, the term's entry is not committed
	if got := append(c.readsFor(2, "r"), c.readsFor(3, "f")...); len(got) != 0 {
		t.Fatalf("reads answered before the new term committed an entry: %+v", got)
	}
	c.heal()
	c.tick(1)
	st := c.nodes[2].BasicStatus()
	if t2, _ := c.nodes[2].r.log.term(st.Commit); t2 != st.Term {
		t.Fatalf("commit %d in term %d, want an entry of term %d committed", st.Commit, t2, st.Term)
	}
	for _, got := range [][]ReadState{c.readsFor(2, "r"), c.readsFor(3, "f")} {
		if len(got) != 1 || got[0].Index != st.Commit {
			t.Fatalf("read states %+v, want one at index %d", got, st.Commit)
		}
	}
}

// TestScenarioReadIndexForwarded: a read on a follower goes to the leader,
// which confirms its leadership and answers with its commit index.
func TestScenarioReadIndexForwarded(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.propose(1, "a")
	c.deliver()
	var seen []MessageType
	c.drop = func(m Message) bool {
		switch m.Type {
		case MsgReadIndex, MsgReadIndexResp:
			seen = append(seen, m.Type)
		}
		return false
	}
	if err := c.nodes[2].ReadIndex([]byte("f")); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	commit := c.nodes[1].BasicStatus().Commit
	if got := c.readsFor(2, "f"); len(got) != 1 || got[0].Index != commit {
		t.Fatalf("follower read states %+v, want one at index %d", got, commit)
	}
	if !slices.Equal(seen, []MessageType{MsgReadIndex, MsgReadIndexResp}) {
		t.Fatalf("read messages %v", seen)
	}
	if got := c.readsFor(1, "f"); len(got) != 0 {
		t.Fatalf("leader kept the forwarded read: %+v", got)
	}

	t.Run("not forwarded", func(t *testing.T) {
		c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.DisableProposalForwarding = true })
		var nle *NotLeaderError
		if err := c.nodes[2].ReadIndex([]byte("x")); !errors.As(err, &nle) || nle.Leader != None {
			t.Fatalf("ReadIndex with no leader: %v, want NotLeaderError{None}", err)
		}
		c.campaign(1)
		if err := c.nodes[2].ReadIndex([]byte("x")); !errors.As(err, &nle) || nle.Leader != 1 || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("ReadIndex with forwarding disabled: %v, want NotLeaderError{1}", err)
		}
		c.nodes[3].Campaign()
		if err := c.nodes[3].ReadIndex([]byte("x")); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("ReadIndex on a candidate: %v, want ErrNotLeader", err)
		}
	})
}

// TestScenarioReadIndexSafeRound: in ReadSafe mode a read waits for a
// heartbeat round acknowledged by a quorum.
func TestScenarioReadIndexSafeRound(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3, 4, 5}, nil)
	c.campaign(1)
	n := c.nodes[1]
	if err := n.ReadIndex([]byte("r")); err != nil {
		t.Fatal(err)
	}
	rd := c.handleReady(1)
	if len(rd.ReadStates) != 0 {
		t.Fatalf("read answered without a round: %+v", rd.ReadStates)
	}
	hbs := msgsOf(rd.Messages, MsgHeartbeat)
	if len(hbs) != 4 {
		t.Fatalf("heartbeats %+v, want one per follower", hbs)
	}
	c.queue = nil
	answer := func(id uint64) {
		for _, m := range hbs {
			if m.To == id {
				mustStep(t, c.nodes[id], m)
			}
		}
		for _, m := range c.handleReady(id).Messages {
			mustStep(t, n, m)
		}
	}
	answer(2)
	if n.HasReady() {
		if rd := c.handleReady(1); len(rd.ReadStates) != 0 {
			t.Fatalf("read answered with 2 of 5: %+v", rd.ReadStates)
		}
	}
	answer(3)
	rd = c.handleReady(1)
	if len(rd.ReadStates) != 1 || rd.ReadStates[0].Index != n.BasicStatus().Commit || string(rd.ReadStates[0].Context) != "r" {
		t.Fatalf("read states %+v, want r at %d", rd.ReadStates, n.BasicStatus().Commit)
	}
}

// TestScenarioReadLease: in ReadLease mode the leader answers at once, with
// no heartbeat round; the mode requires CheckQuorum.
func TestScenarioReadLease(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) {
		cfg.CheckQuorum = true
		cfg.ReadMode = ReadLease
	})
	c.campaign(1)
	c.propose(1, "a")
	c.deliver()
	if err := c.nodes[1].ReadIndex([]byte("l")); err != nil {
		t.Fatal(err)
	}
	rd := c.handleReady(1)
	commit := c.nodes[1].BasicStatus().Commit
	if len(rd.ReadStates) != 1 || rd.ReadStates[0].Index != commit || string(rd.ReadStates[0].Context) != "l" {
		t.Fatalf("read states %+v, want l at %d in the first Ready", rd.ReadStates, commit)
	}
	if len(rd.Messages) != 0 {
		t.Fatalf("lease read sent %+v", rd.Messages)
	}
	// A forwarded read is answered without a round too.
	if err := c.nodes[2].ReadIndex([]byte("f")); err != nil {
		t.Fatal(err)
	}
	hb := 0
	c.drop = func(m Message) bool {
		if m.Type == MsgHeartbeat {
			hb++
		}
		return false
	}
	c.deliver()
	if got := c.readsFor(2, "f"); len(got) != 1 || got[0].Index != commit || hb != 0 {
		t.Fatalf("forwarded lease read: %+v after %d heartbeats", got, hb)
	}

	_, err := New(Config{ID: 1, Voters: []uint64{1, 2, 3}, ReadMode: ReadLease}, Persisted{})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("ReadLease without CheckQuorum: %v, want ErrInvalidConfig", err)
	}
}

// TestScenarioReadLeaseOldLeader: a leader cut off from the others must not
// answer lease reads once the others may have elected a new leader and
// committed writes. Ticks advance in lockstep here (no clock drift at all),
// so every lease read the old leader answers must see every write the new
// leader committed before it.
func TestScenarioReadLeaseOldLeader(t *testing.T) {
	for offset := range 10 {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("offset %d seed %d", offset, seed), func(t *testing.T) {
				c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) {
					cfg.CheckQuorum = true
					cfg.ReadMode = ReadLease
					cfg.Seed = seed
				})
				c.campaign(1)
				c.tick(offset)
				c.partition(1)
				var written uint64 // commit index of the new leader's write
				for i := 0; i < 3*10; i++ {
					c.tick(1)
					if lead := c.leader(); lead != 1 && lead != None && written == 0 {
						c.propose(lead, "w")
						c.deliver()
						written = c.nodes[lead].BasicStatus().Commit
					}
					if c.nodes[1].BasicStatus().Role != Leader {
						continue
					}
					ctx := fmt.Sprint("r", i)
					if err := c.nodes[1].ReadIndex([]byte(ctx)); err != nil {
						t.Fatal(err)
					}
					c.deliver()
					for _, rs := range c.readsFor(1, ctx) {
						if written > 0 && rs.Index < written {
							t.Fatalf("tick %d: stale lease read at index %d; the new leader committed a write at %d",
								i, rs.Index, written)
						}
					}
				}
				if written == 0 {
					t.Fatal("the majority side never wrote")
				}
			})
		}
	}
}
