package core

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Tests of the rules of the Raft paper (Ongaro and Ousterhout, "In Search of
// an Understandable Consensus Algorithm", §5 and §6), one test per rule,
// named after the section they check.

// ---- helpers shared by raft_paper_test.go, scenario_test.go and
// features_test.go ----

// bootEntry is the entry a founding member of a cluster of ids writes at
// index 1 (term 1).
func bootEntry(ids ...uint64) Entry {
	var cc ConfChange
	for _, id := range slices.Sorted(slices.Values(ids)) {
		cc.Changes = append(cc.Changes, ConfChangeSingle{Type: AddVoter, NodeID: id})
	}
	return Entry{Term: 1, Index: 1, Type: EntryConfChange, Data: EncodeConfChange(cc)}
}

// buildLog returns a log of a cluster of ids: the bootstrap entry at index
// 1, then one normal entry per element of terms (with that term) from index
// 2 on.
func buildLog(ids []uint64, terms ...uint64) []Entry {
	out := []Entry{bootEntry(ids...)}
	for i, tm := range terms {
		idx := uint64(i + 2)
		out = append(out, Entry{Term: tm, Index: idx, Data: fmt.Appendf(nil, "i%d.t%d", idx, tm)})
	}
	return out
}

// termRun returns n copies of term t, to build logs with buildLog.
func termRun(t uint64, n int) []uint64 { return slices.Repeat([]uint64{t}, n) }

// newTestNode returns a node of a cluster of voters 1, 2 and 3 (unless
// tweak changes it) restored from st, with its first Ready already handled.
func newTestNode(t *testing.T, id uint64, st Persisted, tweak func(*Config)) *Node {
	t.Helper()
	cfg := Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Seed: 42}
	if st.IsEmpty() {
		cfg.Voters = []uint64{1, 2, 3}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := New(cfg, st)
	if err != nil {
		t.Fatalf("New(%d): %v", id, err)
	}
	takeReady(t, n)
	return n
}

// restoredState is what a member of {1, 2, 3} persisted with the given
// term, vote and commit index, and a log built by buildLog from terms.
func restoredState(term, vote, commit uint64, terms ...uint64) Persisted {
	return Persisted{
		HardState: HardState{Term: term, Vote: vote, Commit: commit},
		Entries:   buildLog([]uint64{1, 2, 3}, terms...),
	}
}

// takeReady returns n's Ready (possibly empty) and advances it.
func takeReady(t testing.TB, n *Node) Ready {
	t.Helper()
	rd := n.Ready()
	if err := n.Advance(); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	return rd
}

// msgsOf returns the messages of type typ in ms.
func msgsOf(ms []Message, typ MessageType) []Message {
	var out []Message
	for _, m := range ms {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// logTerms returns the terms of the entries of n's log, from its first
// index to its last.
func logTerms(n *Node) []uint64 {
	var out []uint64
	for _, e := range n.r.log.entries {
		out = append(out, e.Term)
	}
	return out
}

// mustStep steps m into n, failing the test on error.
func mustStep(t testing.TB, n *Node, m Message) {
	t.Helper()
	if err := n.Step(m); err != nil {
		t.Fatalf("Step(%v from %d): %v", m.Type, m.From, err)
	}
}

// makeLeader makes node 1 of a fresh three-voter cluster leader in term 2
// by hand (votes stepped in), with its Readys handled; it returns the node.
func makeLeader(t *testing.T, tweak func(*Config)) *Node {
	t.Helper()
	n := newTestNode(t, 1, Persisted{}, tweak)
	if err := n.Campaign(); err != nil {
		t.Fatal(err)
	}
	takeReady(t, n)
	if n.BasicStatus().Role == PreCandidate {
		mustStep(t, n, Message{Type: MsgPreVoteResp, From: 2, To: 1, Term: 2})
		takeReady(t, n)
	}
	mustStep(t, n, Message{Type: MsgVoteResp, From: 2, To: 1, Term: 2})
	if st := n.BasicStatus(); st.Role != Leader || st.Term != 2 {
		t.Fatalf("setup: node 1 is %v in term %d, want leader in term 2", st.Role, st.Term)
	}
	takeReady(t, n)
	return n
}

// handleReady handles one Ready of node id as process does, and returns it.
func (c *cluster) handleReady(id uint64) Ready {
	n := c.nodes[id]
	rd := n.Ready()
	c.stores[id].save(&rd)
	c.queue = append(c.queue, rd.Messages...)
	if rd.Snapshot != nil {
		c.applied[id] = nil
	}
	c.applied[id] = append(c.applied[id], rd.CommittedEntries...)
	c.reads[id] = append(c.reads[id], rd.ReadStates...)
	if err := n.Advance(); err != nil {
		c.t.Fatalf("Advance(%d): %v", id, err)
	}
	return rd
}

// load replaces what node id persisted by st and restarts it from there.
func (c *cluster) load(id uint64, st Persisted) {
	c.stores[id] = &memStore{hs: st.HardState, snap: st.Snapshot, entries: slices.Clone(st.Entries)}
	c.restart(id)
}

// partition cuts the network between the nodes in group and the others.
func (c *cluster) partition(group ...uint64) {
	in := map[uint64]bool{}
	for _, id := range group {
		in[id] = true
	}
	c.drop = func(m Message) bool { return in[m.From] != in[m.To] }
}

// heal restores a perfect network.
func (c *cluster) heal() { c.drop = nil }

// addNode starts a new, empty node id (configured like the founders but
// with no voters) that waits to be contacted by the leader.
func (c *cluster) addNode(id uint64) {
	cfg := c.cfgs[c.ids[0]]
	cfg.ID = id
	cfg.Voters = nil
	n, err := New(cfg, Persisted{})
	if err != nil {
		c.t.Fatalf("New(%d): %v", id, err)
	}
	c.ids = append(slices.Clone(c.ids), id)
	c.cfgs[id] = cfg
	c.stores[id] = &memStore{}
	c.nodes[id] = n
}

// propose proposes data on node id, failing the test on error.
func (c *cluster) propose(id uint64, data string) {
	c.t.Helper()
	if err := c.nodes[id].Propose([]byte(data)); err != nil {
		c.t.Fatalf("Propose(%q) on %d: %v", data, id, err)
	}
}

// changeConf proposes cc on node id and delivers, failing on error.
func (c *cluster) changeConf(id uint64, cc ConfChange) {
	c.t.Helper()
	if err := c.nodes[id].ProposeConfChange(cc); err != nil {
		c.t.Fatalf("ProposeConfChange(%+v) on %d: %v", cc, id, err)
	}
	c.deliver()
}

// conf returns the configuration node id has in force.
func (c *cluster) conf(id uint64) ConfState { return c.nodes[id].Status().Config }

// tickUntilLeader ticks at most max times until some node leads, and
// returns it (None if none did).
func (c *cluster) tickUntilLeader(max int) uint64 {
	for range max {
		if l := c.leader(); l != None {
			return l
		}
		c.tick(1)
	}
	return c.leader()
}

// checkSameLogs checks that the live nodes in ids have identical logs
// (same last index, same entry terms) and commit indexes.
func (c *cluster) checkSameLogs(t *testing.T, ids ...uint64) {
	t.Helper()
	first := c.nodes[ids[0]]
	for _, id := range ids[1:] {
		n := c.nodes[id]
		a, b := first.BasicStatus(), n.BasicStatus()
		if a.LastIndex != b.LastIndex || a.Commit != b.Commit {
			t.Fatalf("node %d: last %d commit %d; node %d: last %d commit %d",
				ids[0], a.LastIndex, a.Commit, id, b.LastIndex, b.Commit)
		}
		for i := max(a.FirstIndex, b.FirstIndex); i <= a.LastIndex; i++ {
			ta, _ := first.r.log.term(i)
			tb, _ := n.r.log.term(i)
			if ta != tb {
				t.Fatalf("index %d: term %d on node %d, %d on node %d", i, ta, ids[0], tb, id)
			}
		}
	}
}

// ---- §5.1: terms ----

// TestPaper51HigherTermMakesFollower: "If a server's current term is smaller
// than the other's, it updates its current term to the larger value. If a
// candidate or leader discovers that its term is out of date, it
// immediately reverts to follower state."
func TestPaper51HigherTermMakesFollower(t *testing.T) {
	setups := []struct {
		role  Role
		tweak func(*Config)
		make  func(t *testing.T, tweak func(*Config)) *Node
	}{
		{Follower, nil, func(t *testing.T, tw func(*Config)) *Node { return newTestNode(t, 1, Persisted{}, tw) }},
		{PreCandidate, func(c *Config) { c.PreVote = true }, func(t *testing.T, tw func(*Config)) *Node {
			n := newTestNode(t, 1, Persisted{}, tw)
			n.Campaign()
			takeReady(t, n)
			return n
		}},
		{Candidate, nil, func(t *testing.T, tw func(*Config)) *Node {
			n := newTestNode(t, 1, Persisted{}, tw)
			n.Campaign()
			takeReady(t, n)
			return n
		}},
		{Leader, nil, makeLeader},
	}
	msgs := []struct {
		typ      MessageType
		wantLead uint64
	}{
		{MsgApp, 2},
		{MsgHeartbeat, 2},
		{MsgSnap, 2},
		{MsgVote, None},
		{MsgAppResp, None},
		{MsgVoteResp, None},
		{MsgHeartbeatResp, None},
	}
	for _, s := range setups {
		for _, tc := range msgs {
			t.Run(fmt.Sprintf("%v/%v", s.role, tc.typ), func(t *testing.T) {
				n := s.make(t, s.tweak)
				if got := n.BasicStatus().Role; got != s.role {
					t.Fatalf("setup: role %v, want %v", got, s.role)
				}
				term := n.BasicStatus().Term + 5
				m := Message{Type: tc.typ, From: 2, To: 1, Term: term, Index: 1, LogTerm: 1, Commit: 1}
				if tc.typ == MsgSnap {
					m = Message{Type: MsgSnap, From: 2, To: 1, Term: term, Snapshot: &Snapshot{
						Meta: SnapshotMeta{Index: 1, Term: 1, Config: ConfState{Voters: []uint64{1, 2, 3}}}}}
				}
				mustStep(t, n, m)
				st := n.BasicStatus()
				if st.Term != term || st.Role != Follower || st.Lead != tc.wantLead {
					t.Fatalf("after %v of term %d: %v in term %d led by %d; want follower in term %d led by %d",
						tc.typ, term, st.Role, st.Term, st.Lead, term, tc.wantLead)
				}
				rd := takeReady(t, n)
				if rd.HardState.Term != term || !rd.MustSync {
					t.Fatalf("Ready HardState %+v MustSync %t, want the new term %d synced", rd.HardState, rd.MustSync, term)
				}
			})
		}
	}
}

// TestPaper51StaleTermIgnored: "If a server receives a request with a stale
// term number, it rejects the request." Nothing a stale message carries is
// taken; with CheckQuorum or PreVote the stale leader is told the newer
// term so that it steps down.
func TestPaper51StaleTermIgnored(t *testing.T) {
	snap := &Snapshot{Meta: SnapshotMeta{Index: 6, Term: 3, Config: ConfState{Voters: []uint64{1, 2, 3}}}}
	msgs := []Message{
		{Type: MsgApp, Index: 2, LogTerm: 3, Commit: 3, Entries: []Entry{{Index: 3, Term: 3}}},
		{Type: MsgHeartbeat, Commit: 2},
		{Type: MsgSnap, Snapshot: snap},
		{Type: MsgVote, Index: 10, LogTerm: 3},
		{Type: MsgPreVote, Index: 10, LogTerm: 3},
		{Type: MsgTimeoutNow},
		{Type: MsgAppResp, Index: 2},
		{Type: MsgVoteResp},
		{Type: MsgReadIndexResp, Index: 2},
	}
	for _, opt := range []string{"plain", "checkquorum", "prevote"} {
		for _, m := range msgs {
			t.Run(opt+"/"+m.Type.String(), func(t *testing.T) {
				tweak := func(c *Config) {
					c.CheckQuorum = opt == "checkquorum"
					c.PreVote = opt == "prevote"
				}
				n := newTestNode(t, 1, restoredState(5, 0, 1, 3), tweak)
				before := n.Status()
				m.From, m.To, m.Term = 2, 1, 3
				if err := n.Step(m); err != nil {
					t.Fatalf("Step: %v", err)
				}
				if after := n.Status(); !statusEqual(before, after) {
					t.Fatalf("status changed by a stale %v: %+v -> %+v", m.Type, before, after)
				}
				if !slices.Equal(logTerms(n), []uint64{1, 3}) {
					t.Fatalf("log terms %v, want [1 3]", logTerms(n))
				}
				rd := takeReady(t, n)
				if !rd.HardState.IsEmpty() || len(rd.Entries) > 0 || rd.Snapshot != nil || len(rd.ReadStates) > 0 {
					t.Fatalf("stale %v produced %+v", m.Type, rd)
				}
				var want []Message
				switch {
				case opt != "plain" && (m.Type == MsgApp || m.Type == MsgHeartbeat):
					want = []Message{{Type: MsgAppResp, From: 1, To: 2, Term: 5}}
				case m.Type == MsgPreVote:
					// A refusal tells the commit index and its term.
					want = []Message{{Type: MsgPreVoteResp, From: 1, To: 2, Term: 5, Reject: true, Commit: 1, LogTerm: 1}}
				}
				if !slices.EqualFunc(rd.Messages, want, msgEqual) {
					t.Fatalf("messages %+v, want %+v", rd.Messages, want)
				}
			})
		}
	}
}

// statusEqual compares two Status values field by field.
func statusEqual(a, b Status) bool {
	return a.BasicStatus == b.BasicStatus && confEqual(a.Config, b.Config) &&
		slices.Equal(a.Progress, b.Progress)
}

func confEqual(a, b ConfState) bool {
	return slices.Equal(a.Voters, b.Voters) && slices.Equal(a.Learners, b.Learners) &&
		slices.Equal(a.VotersOutgoing, b.VotersOutgoing) &&
		slices.Equal(a.LearnersNext, b.LearnersNext) && a.AutoLeave == b.AutoLeave
}

func msgEqual(a, b Message) bool {
	return a.Type == b.Type && a.From == b.From && a.To == b.To && a.Term == b.Term &&
		a.LogTerm == b.LogTerm && a.Index == b.Index && a.Commit == b.Commit &&
		a.Reject == b.Reject && a.Force == b.Force && a.RejectHint == b.RejectHint &&
		len(a.Entries) == len(b.Entries) && string(a.Context) == string(b.Context)
}

// ---- §5.2: leader election ----

// TestPaper52FollowerStartsElection: "If a follower receives no
// communication over a period of time called the election timeout, then it
// assumes there is no viable leader and begins an election." "To begin an
// election, a follower increments its current term and transitions to
// candidate state. It then votes for itself and issues RequestVote RPCs in
// parallel to each of the other servers."
func TestPaper52FollowerStartsElection(t *testing.T) {
	n := newTestNode(t, 1, Persisted{}, nil)
	ticks := 0
	for n.BasicStatus().Role == Follower {
		if ticks == 2*10 {
			t.Fatalf("no election after %d ticks", ticks)
		}
		n.Tick()
		ticks++
	}
	if ticks < 10 {
		t.Fatalf("election after %d ticks, before the election timeout of 10", ticks)
	}
	st := n.BasicStatus()
	if st.Role != Candidate || st.Term != 2 || st.Vote != 1 {
		t.Fatalf("after timeout: %v term %d vote %d; want candidate term 2 vote 1", st.Role, st.Term, st.Vote)
	}
	rd := takeReady(t, n)
	if rd.HardState.Term != 2 || rd.HardState.Vote != 1 || !rd.MustSync {
		t.Fatalf("Ready HardState %+v MustSync %t; want term 2, vote 1, synced", rd.HardState, rd.MustSync)
	}
	want := []Message{
		{Type: MsgVote, From: 1, To: 2, Term: 2, Index: 1, LogTerm: 1},
		{Type: MsgVote, From: 1, To: 3, Term: 2, Index: 1, LogTerm: 1},
	}
	if !slices.EqualFunc(rd.Messages, want, msgEqual) {
		t.Fatalf("messages %+v, want %+v", rd.Messages, want)
	}
}

// TestPaper52CandidateRestartsElection: "If many followers become candidates
// at the same time, votes could be split so that no candidate obtains a
// majority. When this happens, each candidate will time out and start a new
// election by incrementing its term and initiating another round of
// RequestVote RPCs."
func TestPaper52CandidateRestartsElection(t *testing.T) {
	n := newTestNode(t, 1, Persisted{}, nil)
	if err := n.Campaign(); err != nil {
		t.Fatal(err)
	}
	takeReady(t, n)
	for term := uint64(3); term <= 5; term++ {
		ticks := 0
		for n.BasicStatus().Term < term {
			if ticks == 20 {
				t.Fatalf("candidate did not start the election of term %d within 20 ticks", term)
			}
			n.Tick()
			ticks++
		}
		if ticks < 10 {
			t.Fatalf("new election after %d ticks, before the election timeout", ticks)
		}
		rd := takeReady(t, n)
		if votes := msgsOf(rd.Messages, MsgVote); len(votes) != 2 || votes[0].Term != term {
			t.Fatalf("term %d: vote requests %+v", term, votes)
		}
		if st := n.BasicStatus(); st.Role != Candidate || st.Vote != 1 {
			t.Fatalf("term %d: %v with vote %d", term, st.Role, st.Vote)
		}
	}
}

// TestPaper52ElectionOutcome: "A candidate wins an election if it receives
// votes from a majority of the servers in the full cluster for the same
// term." A candidate that a majority refused gives up (a defensible
// variation on the paper, where it would wait for its timeout); otherwise it
// remains a candidate.
func TestPaper52ElectionOutcome(t *testing.T) {
	tests := []struct {
		size     int
		granted  []uint64
		rejected []uint64
		want     Role
	}{
		{1, nil, nil, Leader},
		{3, nil, nil, Candidate},
		{3, []uint64{2}, nil, Leader},
		{3, nil, []uint64{2}, Candidate},
		{3, nil, []uint64{2, 3}, Follower},
		{3, []uint64{3}, []uint64{2}, Leader},
		{5, []uint64{2}, nil, Candidate},
		{5, []uint64{2, 3}, nil, Leader},
		{5, []uint64{2}, []uint64{3, 4}, Candidate},
		{5, nil, []uint64{3, 4, 5}, Follower},
		{5, []uint64{2, 3}, []uint64{4, 5}, Leader},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var ids []uint64
			for id := 1; id <= tc.size; id++ {
				ids = append(ids, uint64(id))
			}
			n := newTestNode(t, 1, Persisted{}, func(c *Config) { c.Voters = ids })
			if err := n.Campaign(); err != nil {
				t.Fatal(err)
			}
			for _, id := range tc.granted {
				mustStep(t, n, Message{Type: MsgVoteResp, From: id, To: 1, Term: 2})
			}
			for _, id := range tc.rejected {
				mustStep(t, n, Message{Type: MsgVoteResp, From: id, To: 1, Term: 2, Reject: true})
			}
			st := n.BasicStatus()
			if st.Role != tc.want || st.Term != 2 {
				t.Fatalf("%v in term %d, want %v in term 2", st.Role, st.Term, tc.want)
			}
		})
	}
}

// TestPaper52LeaderAnnouncesItself: "Once a candidate wins an election, it
// becomes leader. It then sends heartbeat messages to all of the other
// servers to establish its authority and prevent new elections." Here the
// announcement is an append of an empty entry of the new term; heartbeats
// follow every HeartbeatTick.
func TestPaper52LeaderAnnouncesItself(t *testing.T) {
	n := newTestNode(t, 1, Persisted{}, nil)
	n.Campaign()
	takeReady(t, n)
	mustStep(t, n, Message{Type: MsgVoteResp, From: 3, To: 1, Term: 2})
	rd := takeReady(t, n)
	if rd.SoftState == nil || rd.SoftState.Role != Leader || rd.SoftState.Lead != 1 {
		t.Fatalf("SoftState %+v, want leader 1", rd.SoftState)
	}
	if len(rd.Entries) != 1 || rd.Entries[0].Term != 2 || rd.Entries[0].Index != 2 || len(rd.Entries[0].Data) != 0 {
		t.Fatalf("entries %+v, want one empty entry at index 2 in term 2", rd.Entries)
	}
	apps := msgsOf(rd.Messages, MsgApp)
	if len(apps) != 2 || apps[0].To != 2 || apps[1].To != 3 {
		t.Fatalf("appends %+v, want one to each of 2 and 3", apps)
	}
	n.Tick()
	rd = takeReady(t, n)
	if hb := msgsOf(rd.Messages, MsgHeartbeat); len(hb) != 2 {
		t.Fatalf("after a heartbeat tick: %+v, want heartbeats to 2 and 3", rd.Messages)
	}
}

// TestPaper52CandidateStepsDown: "While waiting for votes, a candidate may
// receive an AppendEntries RPC from another server claiming to be leader. If
// the leader's term is at least as large as the candidate's current term,
// then the candidate recognizes the leader as legitimate and returns to
// follower state. If the term in the RPC is smaller than the candidate's
// current term, then the candidate rejects the RPC and continues in
// candidate state."
func TestPaper52CandidateStepsDown(t *testing.T) {
	for _, pre := range []bool{false, true} {
		for _, typ := range []MessageType{MsgApp, MsgHeartbeat} {
			for _, delta := range []int{-1, 0, 1} {
				t.Run(fmt.Sprintf("prevote=%t/%v/term%+d", pre, typ, delta), func(t *testing.T) {
					// A candidate in term 3, or a pre-candidate in term 3.
					ps := restoredState(2, 0, 1)
					if pre {
						ps = restoredState(3, 0, 1)
					}
					n := newTestNode(t, 1, ps, func(c *Config) { c.PreVote = pre })
					n.Campaign()
					takeReady(t, n)
					role := n.BasicStatus().Role
					if want := map[bool]Role{false: Candidate, true: PreCandidate}[pre]; role != want || n.BasicStatus().Term != 3 {
						t.Fatalf("setup: %v in term %d, want %v in term 3", role, n.BasicStatus().Term, want)
					}
					term := uint64(3 + delta)
					mustStep(t, n, Message{Type: typ, From: 2, To: 1, Term: term, Index: 1, LogTerm: 1, Commit: 1})
					st := n.BasicStatus()
					if delta < 0 {
						if st.Role != role || st.Term != 3 {
							t.Fatalf("stale %v: %v in term %d, want %v in term 3", typ, st.Role, st.Term, role)
						}
						return
					}
					if st.Role != Follower || st.Term != term || st.Lead != 2 {
						t.Fatalf("%v of term %d: %v in term %d led by %d; want follower led by 2", typ, term, st.Role, st.Term, st.Lead)
					}
				})
			}
		}
	}
}

// TestPaper52SplitVoteResolves: "Raft uses randomized election timeouts to
// ensure that split votes are rare and that they are resolved quickly."
// Four voters; 1 and 2 campaign at once and each gets one other vote; the
// randomized timeouts let one of them start the next election first and win.
func TestPaper52SplitVoteResolves(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3, 4}, nil)
	c.deliver()
	c.drop = func(m Message) bool {
		return (m.From == 1 && m.To == 4) || (m.From == 2 && m.To == 3)
	}
	c.nodes[1].Campaign()
	c.nodes[2].Campaign()
	c.deliver()
	for _, id := range []uint64{1, 2} {
		if st := c.nodes[id].BasicStatus(); st.Role != Candidate || st.Term != 2 {
			t.Fatalf("split vote: node %d is %v in term %d, want candidate in term 2", id, st.Role, st.Term)
		}
	}
	if l := c.leader(); l != None {
		t.Fatalf("leader %d despite a split vote", l)
	}
	if c.nodes[1].r.randomizedElectionTimeout == c.nodes[2].r.randomizedElectionTimeout {
		t.Fatalf("both candidates drew timeout %d", c.nodes[1].r.randomizedElectionTimeout)
	}
	c.heal()
	lead := c.tickUntilLeader(2 * 10)
	if lead == None {
		t.Fatal("no leader after the split vote")
	}
	st := c.nodes[lead].BasicStatus()
	if st.Term < 3 {
		t.Fatalf("leader %d in term %d, want a later term than the split", lead, st.Term)
	}
	leaders := 0
	for _, id := range c.ids {
		if s := c.nodes[id].BasicStatus(); s.Role == Leader {
			leaders++
		} else if s.Lead != lead || s.Term != st.Term {
			t.Fatalf("node %d follows %d in term %d, want %d in term %d", id, s.Lead, s.Term, lead, st.Term)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders", leaders)
	}
}

// electionTimeouts returns the first k election timeouts (in ticks) a lone
// voter of {1, 2, 3} with the given ID and seed draws, by counting ticks
// between the elections it starts.
func electionTimeouts(t *testing.T, id, seed uint64, k int) []int {
	t.Helper()
	n, err := New(Config{ID: id, Voters: []uint64{1, 2, 3}, ElectionTick: 10, Seed: seed}, Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	term, ticks := n.BasicStatus().Term, 0
	for len(out) < k {
		n.Tick()
		ticks++
		if tm := n.BasicStatus().Term; tm != term {
			out = append(out, ticks)
			term, ticks = tm, 0
		}
		if ticks > 100 {
			t.Fatal("no election in 100 ticks")
		}
	}
	return out
}

// TestPaper52ElectionTimeoutRandomized: "election timeouts are chosen
// randomly from a fixed interval" — here [ElectionTick, 2*ElectionTick),
// from a generator seeded by Config.Seed and mixed with the node ID, so the
// draws are reproducible but differ between nodes and seeds.
func TestPaper52ElectionTimeoutRandomized(t *testing.T) {
	const k = 30
	seen := map[int]bool{}
	seqs := map[string][]int{}
	for _, seed := range []uint64{0, 1, 42} {
		for _, id := range []uint64{1, 2, 3} {
			got := electionTimeouts(t, id, seed, k)
			for _, d := range got {
				if d < 10 || d >= 20 {
					t.Fatalf("seed %d node %d: timeout %d outside [10, 20)", seed, id, d)
				}
				seen[d] = true
			}
			if again := electionTimeouts(t, id, seed, k); !slices.Equal(got, again) {
				t.Fatalf("seed %d node %d: timeouts %v then %v with the same seed", seed, id, got, again)
			}
			key := fmt.Sprintf("seed %d node %d", seed, id)
			for other, s := range seqs {
				if slices.Equal(s, got) {
					t.Fatalf("%s and %s drew the same timeouts %v", key, other, got)
				}
			}
			seqs[key] = got
		}
	}
	if len(seen) < 8 {
		t.Fatalf("only %d distinct timeouts drawn out of 10 possible: %v", len(seen), seen)
	}
}

// TestPaper52OneVotePerTerm: "Each server will vote for at most one
// candidate in a given term, on a first-come-first-served basis." The vote
// is durable before it is granted: the Ready carrying the grant carries the
// vote in its HardState, to be synced before the message leaves.
func TestPaper52OneVotePerTerm(t *testing.T) {
	var store memStore
	n, err := New(Config{ID: 1, Voters: []uint64{1, 2, 3}}, Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	rd := takeReady(t, n)
	store.save(&rd)

	mustStep(t, n, Message{Type: MsgVote, From: 2, To: 1, Term: 2, Index: 1, LogTerm: 1})
	rd = takeReady(t, n)
	store.save(&rd)
	if rd.HardState.Term != 2 || rd.HardState.Vote != 2 || !rd.MustSync {
		t.Fatalf("Ready HardState %+v MustSync %t, want the vote for 2 in term 2, synced", rd.HardState, rd.MustSync)
	}
	// A vote answer tells the commit index and its term.
	want := []Message{{Type: MsgVoteResp, From: 1, To: 2, Term: 2, Commit: 1, LogTerm: 1}}
	if !slices.EqualFunc(rd.Messages, want, msgEqual) {
		t.Fatalf("messages %+v, want %+v in the same Ready", rd.Messages, want)
	}

	// A second candidate of the same term is refused; the first one asking
	// again is granted again.
	mustStep(t, n, Message{Type: MsgVote, From: 3, To: 1, Term: 2, Index: 5, LogTerm: 2})
	rd = takeReady(t, n)
	want = []Message{{Type: MsgVoteResp, From: 1, To: 3, Term: 2, Reject: true, Commit: 1, LogTerm: 1}}
	if !slices.EqualFunc(rd.Messages, want, msgEqual) || !rd.HardState.IsEmpty() {
		t.Fatalf("second candidate: %+v, want only %+v", rd, want)
	}
	mustStep(t, n, Message{Type: MsgVote, From: 2, To: 1, Term: 2, Index: 1, LogTerm: 1})
	rd = takeReady(t, n)
	want = []Message{{Type: MsgVoteResp, From: 1, To: 2, Term: 2, Commit: 1, LogTerm: 1}}
	if !slices.EqualFunc(rd.Messages, want, msgEqual) {
		t.Fatalf("repeated request: %+v, want %+v", rd.Messages, want)
	}

	// The vote survives a restart.
	n, err = New(Config{ID: 1}, store.persisted())
	if err != nil {
		t.Fatal(err)
	}
	takeReady(t, n)
	if st := n.BasicStatus(); st.Term != 2 || st.Vote != 2 {
		t.Fatalf("after restart: term %d vote %d, want 2 and 2", st.Term, st.Vote)
	}
	mustStep(t, n, Message{Type: MsgVote, From: 3, To: 1, Term: 2, Index: 5, LogTerm: 2})
	rd = takeReady(t, n)
	want = []Message{{Type: MsgVoteResp, From: 1, To: 3, Term: 2, Reject: true, Commit: 1, LogTerm: 1}}
	if !slices.EqualFunc(rd.Messages, want, msgEqual) {
		t.Fatalf("after restart, second candidate: %+v, want %+v", rd.Messages, want)
	}
	if st := n.BasicStatus(); st.Vote != 2 {
		t.Fatalf("vote %d after refusing 3, want 2", st.Vote)
	}
}

// ---- §5.3: log replication ----

// TestPaper53LeaderAppendsAndReplicates: "The leader appends the command to
// its log as a new entry, then issues AppendEntries RPCs in parallel to each
// of the other servers to replicate the entry." Each append names the entry
// preceding the new ones and carries the leader's commit index.
func TestPaper53LeaderAppendsAndReplicates(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.propose(1, "a")
	rd := c.handleReady(1)
	if len(rd.Entries) != 1 || rd.Entries[0].Index != 3 || rd.Entries[0].Term != 2 || string(rd.Entries[0].Data) != "a" {
		t.Fatalf("leader Ready entries %+v, want a at index 3 in term 2", rd.Entries)
	}
	apps := msgsOf(rd.Messages, MsgApp)
	if len(apps) != 2 {
		t.Fatalf("appends %+v, want one per follower", apps)
	}
	for _, m := range apps {
		if m.Index != 2 || m.LogTerm != 2 || m.Commit != 2 || len(m.Entries) != 1 || string(m.Entries[0].Data) != "a" {
			t.Fatalf("append %+v, want entry a after (2, 2) with commit 2", m)
		}
	}
	c.deliver()
	for _, id := range c.ids {
		if got := c.data(id); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("node %d applied %v", id, got)
		}
	}
	c.checkSameLogs(t, 1, 2, 3)
}

// TestPaper53CommitOnDurableMajority: "A log entry is committed once the
// leader that created the entry has replicated it on a majority of the
// servers." The leader's own copy counts only once it is durable (after
// Advance), and a minority of acknowledgements does not commit.
func TestPaper53CommitOnDurableMajority(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3, 4, 5}, nil)
	c.campaign(1)
	n1 := c.nodes[1]
	c.propose(1, "a")
	rd := n1.Ready() // not yet advanced: the leader's copy is not durable
	c.stores[1].save(&rd)
	idx := n1.BasicStatus().LastIndex
	ack := func(id uint64) {
		for _, m := range rd.Messages {
			if m.To == id {
				mustStep(t, c.nodes[id], m)
			}
		}
		for _, m := range c.handleReady(id).Messages {
			mustStep(t, n1, m)
		}
	}
	ack(2)
	ack(3)
	if got := n1.BasicStatus().Commit; got >= idx {
		t.Fatalf("commit %d with 2 of 5 durable copies, want < %d", got, idx)
	}
	if err := n1.Advance(); err != nil {
		t.Fatal(err)
	}
	if got := n1.BasicStatus().Commit; got != idx {
		t.Fatalf("commit %d once the leader's copy is durable (3 of 5), want %d", got, idx)
	}

	// A minority (the leader and one follower) is not enough.
	c.queue = nil
	c.propose(1, "b")
	rd = c.handleReady(1)
	ack(2)
	if got := n1.BasicStatus().Commit; got != idx {
		t.Fatalf("commit %d with 2 of 5 copies, want %d", got, idx)
	}
	ack(3)
	if got := n1.BasicStatus().Commit; got != idx+1 {
		t.Fatalf("commit %d with 3 of 5 copies, want %d", got, idx+1)
	}
}

// TestPaper53ConsistencyCheck: "When sending an AppendEntries RPC, the
// leader includes the index and term of the entry in its log that
// immediately precedes the new entries. If the follower does not find an
// entry in its log with the same index and term, then it refuses the new
// entries." A refusal carries a hint: the largest index (and its term) at
// which the follower's log may match.
func TestPaper53ConsistencyCheck(t *testing.T) {
	tests := []struct {
		index, logTerm uint64
		ents           []Entry
		wantReject     bool
		wantIndex      uint64
		wantHint       uint64
		wantHintTerm   uint64
		wantTerms      []uint64
	}{
		// Matches: appended.
		{3, 2, []Entry{{Index: 4, Term: 3}}, false, 4, 0, 0, []uint64{1, 2, 2, 3}},
		// Matches, entries already present: nothing truncated.
		{1, 1, []Entry{{Index: 2, Term: 2}}, false, 2, 0, 0, []uint64{1, 2, 2}},
		{0, 0, nil, false, 0, 0, 0, []uint64{1, 2, 2}},
		// Beyond the follower's log.
		{4, 2, []Entry{{Index: 5, Term: 3}}, true, 4, 3, 2, []uint64{1, 2, 2}},
		{9, 3, nil, true, 9, 3, 2, []uint64{1, 2, 2}},
		// Term mismatch at the preceding index.
		{3, 3, []Entry{{Index: 4, Term: 3}}, true, 3, 3, 2, []uint64{1, 2, 2}},
		{2, 1, []Entry{{Index: 3, Term: 1}}, true, 2, 1, 1, []uint64{1, 2, 2}},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			n := newTestNode(t, 1, restoredState(2, 0, 1, 2, 2), nil)
			mustStep(t, n, Message{Type: MsgApp, From: 2, To: 1, Term: 3, Index: tc.index, LogTerm: tc.logTerm,
				Entries: tc.ents, Commit: 1})
			rd := takeReady(t, n)
			want := []Message{{Type: MsgAppResp, From: 1, To: 2, Term: 3, Index: tc.wantIndex,
				Reject: tc.wantReject, RejectHint: tc.wantHint, LogTerm: tc.wantHintTerm}}
			if tc.index == 0 {
				want[0].Index = 1 // below the commit index: answered with it
			}
			if !slices.EqualFunc(rd.Messages, want, msgEqual) {
				t.Fatalf("messages %+v, want %+v", rd.Messages, want)
			}
			if got := logTerms(n); !slices.Equal(got, tc.wantTerms) {
				t.Fatalf("log terms %v, want %v", got, tc.wantTerms)
			}
			if tc.wantReject && len(rd.Entries) > 0 {
				t.Fatalf("refused append persisted %+v", rd.Entries)
			}
		})
	}
}

// TestPaper53FollowerTruncatesConflicts: "If an existing entry conflicts with
// a new one (same index but different terms), delete the existing entry and
// all that follow it." The Ready asks the host to overwrite from the first
// conflicting index.
func TestPaper53FollowerTruncatesConflicts(t *testing.T) {
	st := restoredState(2, 0, 1, 2, 2, 2)
	store := &memStore{hs: st.HardState, entries: slices.Clone(st.Entries)}
	n := newTestNode(t, 1, st, nil)
	mustStep(t, n, Message{Type: MsgApp, From: 2, To: 1, Term: 3, Index: 2, LogTerm: 2,
		Entries: []Entry{{Index: 3, Term: 3, Data: []byte("x")}}, Commit: 1})
	rd := takeReady(t, n)
	store.save(&rd)
	if len(rd.Entries) != 1 || rd.Entries[0].Index != 3 || rd.Entries[0].Term != 3 || !rd.MustSync {
		t.Fatalf("Ready entries %+v (MustSync %t), want index 3 term 3, synced", rd.Entries, rd.MustSync)
	}
	if got := logTerms(n); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("log terms %v, want [1 2 3]", got)
	}
	var stored []uint64
	for _, e := range store.entries {
		stored = append(stored, e.Term)
	}
	if !slices.Equal(stored, []uint64{1, 2, 3}) {
		t.Fatalf("stored log terms %v, want [1 2 3]", stored)
	}
	if got := msgsOf(rd.Messages, MsgAppResp); len(got) != 1 || got[0].Reject || got[0].Index != 3 {
		t.Fatalf("response %+v, want acceptance of index 3", got)
	}
}

// TestPaper53FastBackOff: "the follower can include the term of the
// conflicting entry and the first index it stores for that term. With this
// information, the leader can decrement nextIndex to bypass all of the
// conflicting entries in that term; one AppendEntries RPC will be required
// for each term with conflicting entries, rather than one RPC per entry."
func TestPaper53FastBackOff(t *testing.T) {
	tests := []struct {
		name           string
		leader, lagger []uint64 // terms from index 2
		term           uint64   // the leader's term before it campaigns
		maxRejects     int
	}{
		{"long stale suffix", termRun(3, 50), termRun(2, 100), 3, 1},
		{"short log", termRun(3, 50), nil, 3, 1},
		{"several terms", slices.Concat(termRun(2, 19), termRun(4, 20), termRun(6, 20)),
			slices.Concat(termRun(2, 19), termRun(3, 30), termRun(5, 30)), 6, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, nil)
			c.load(1, restoredState(tc.term, 0, 1, tc.leader...))
			c.load(3, restoredState(tc.term, 0, 1, tc.leader...))
			c.load(2, restoredState(tc.term, 0, 1, tc.lagger...))
			rejects := 0
			c.drop = func(m Message) bool {
				if m.Type == MsgAppResp && m.From == 2 && m.Reject {
					rejects++
				}
				return false
			}
			c.campaign(1)
			if c.leader() != 1 {
				t.Fatalf("leader %d, want 1", c.leader())
			}
			c.checkSameLogs(t, 1, 2, 3)
			if rejects > tc.maxRejects {
				t.Fatalf("%d refused appends to find the match, want at most %d (one per conflicting term)", rejects, tc.maxRejects)
			}
		})
	}
}

// TestPaper53CommitPropagates: "The leader keeps track of the highest index
// it knows to be committed, and it includes that index in future
// AppendEntries RPCs (including heartbeats) so that the other servers
// eventually find out. Once a follower learns that a log entry is
// committed, it applies the entry to its local state machine."
func TestPaper53CommitPropagates(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.propose(1, "a")
	c.process()
	// Only node 2 answers; 3 receives the entry but its answer is lost.
	c.drop = func(m Message) bool { return m.From == 3 }
	c.deliver()
	c.heal()
	lead := c.nodes[1].BasicStatus()
	for _, id := range []uint64{2, 3} {
		st := c.nodes[id].BasicStatus()
		if st.Commit != lead.Commit || st.Commit != lead.LastIndex {
			t.Fatalf("node %d commit %d, leader commit %d last %d", id, st.Commit, lead.Commit, lead.LastIndex)
		}
		if got := c.data(id); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("node %d applied %v, want [a]", id, got)
		}
	}
	// Heartbeats carry the commit index too, capped by what the follower
	// is known to hold (node 3's answers were lost: its match is older).
	c.nodes[1].Tick()
	rd := c.handleReady(1)
	want := map[uint64]uint64{2: lead.Commit, 3: lead.Commit - 1}
	for _, m := range msgsOf(rd.Messages, MsgHeartbeat) {
		if m.Commit != want[m.To] {
			t.Fatalf("heartbeat %+v, want commit %d", m, want[m.To])
		}
	}
}

// ---- §5.4: safety ----

// TestPaper541VoteRequiresUpToDateLog: "the voter denies its vote if its own
// log is more up-to-date than that of the candidate." "If the logs have last
// entries with different terms, then the log with the later term is more
// up-to-date. If the logs end with the same term, then whichever log is
// longer is more up-to-date." The same check answers pre-votes.
func TestPaper541VoteRequiresUpToDateLog(t *testing.T) {
	// The voter's log ends at index 3 in term 2.
	tests := []struct {
		index, logTerm uint64
		grant          bool
	}{
		{5, 1, false}, // older last term, longer log
		{1, 1, false},
		{2, 2, false}, // same term, shorter
		{3, 2, true},  // same
		{4, 2, true},  // same term, longer
		{1, 3, true},  // later term, shorter
		{9, 3, true},
	}
	for _, typ := range []MessageType{MsgVote, MsgPreVote} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%v/%d-%d", typ, tc.index, tc.logTerm), func(t *testing.T) {
				n := newTestNode(t, 1, restoredState(2, 0, 1, 2, 2), func(c *Config) { c.PreVote = true })
				mustStep(t, n, Message{Type: typ, From: 2, To: 1, Term: 4, Index: tc.index, LogTerm: tc.logTerm})
				rd := takeReady(t, n)
				resp := MsgVoteResp
				wantTerm := uint64(4)
				if typ == MsgPreVote {
					resp = MsgPreVoteResp
					if !tc.grant {
						wantTerm = 2 // a pre-vote never changes the voter's term
					}
				}
				// An answer tells the commit index and its term.
				want := []Message{{Type: resp, From: 1, To: 2, Term: wantTerm, Reject: !tc.grant, Commit: 1, LogTerm: 1}}
				if !slices.EqualFunc(rd.Messages, want, msgEqual) {
					t.Fatalf("messages %+v, want %+v", rd.Messages, want)
				}
				st := n.BasicStatus()
				switch {
				case typ == MsgPreVote && (st.Term != 2 || st.Vote != None):
					t.Fatalf("pre-vote changed term/vote to %d/%d", st.Term, st.Vote)
				case typ == MsgVote && tc.grant && st.Vote != 2:
					t.Fatalf("vote %d, want 2", st.Vote)
				case typ == MsgVote && !tc.grant && st.Vote != None:
					t.Fatalf("vote %d after refusing", st.Vote)
				}
			})
		}
	}
}

// TestPaper541StaleNodeCannotWin: "Raft uses the voting process to prevent a
// candidate from winning an election unless its log contains all committed
// entries."
func TestPaper541StaleNodeCannotWin(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.partition(3)
	c.propose(1, "a")
	c.deliver()
	if got := c.data(2); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("node 2 applied %v", got)
	}
	c.crash(1)
	c.heal()
	c.campaign(3)
	if st := c.nodes[3].BasicStatus(); st.Role == Leader {
		t.Fatal("node 3, which lacks a committed entry, won an election")
	}
	c.campaign(2)
	if c.leader() != 2 {
		t.Fatalf("leader %d, want 2", c.leader())
	}
	c.propose(2, "b")
	c.deliver()
	for _, id := range []uint64{2, 3} {
		if got := c.data(id); !slices.Equal(got[len(got)-2:], []string{"a", "b"}) {
			t.Fatalf("node %d applied %v, want ... a b", id, got)
		}
	}
}

// figure8 builds states (a) to (c) of Figure 8 of the paper, shifted by
// one index (index 1 holds the bootstrap entry, and every new leader writes
// an empty entry first):
//
//	(a) S1 leads term 2 and replicates its entries (index 2, and x at 3)
//	    to S2 only; then it crashes.
//	(b) S5 leads term 3 with votes from S3 and S4 and writes its own
//	    entries (index 2, and y at 3) that reach nobody; then it crashes.
//	(c) S1 restarts and leads term 4; it replicates its term-2 entries to S3
//	    (a majority now holds them) but not its term-4 entry.
func figure8(t *testing.T) *cluster {
	c := newCluster(t, []uint64{1, 2, 3, 4, 5}, nil)
	c.deliver()
	// (a)
	c.drop = func(m Message) bool { return m.From == 1 && m.Type == MsgApp && m.To != 2 }
	c.campaign(1)
	c.propose(1, "x")
	c.deliver()
	if got := logTerms(c.nodes[2]); !slices.Equal(got, []uint64{1, 2, 2}) {
		t.Fatalf("(a): S2 log terms %v, want [1 2 2]", got)
	}
	c.crash(1)
	// (b)
	c.drop = func(m Message) bool { return m.From == 5 && m.Type == MsgApp }
	c.campaign(5)
	if c.leader() != 5 || c.nodes[5].BasicStatus().Term != 3 {
		t.Fatalf("(b): leader %d, want S5 in term 3", c.leader())
	}
	c.propose(5, "y")
	c.deliver()
	c.crash(5)
	// (c) S1's appends are cut after index 3: the term-2 entries reach
	// S2 and S3, the term-4 entry nobody.
	c.restart(1)
	c.drop = func(m Message) bool {
		if m.From == 1 && m.Type == MsgApp && len(m.Entries) > 0 && m.Entries[len(m.Entries)-1].Index > 3 {
			cut := slices.Clone(m.Entries)
			for len(cut) > 0 && cut[len(cut)-1].Index > 3 {
				cut = cut[:len(cut)-1]
			}
			m.Entries = cut
			if n := c.nodes[m.To]; n != nil {
				_ = n.Step(m)
			}
			return true
		}
		return false
	}
	c.campaign(1) // term 3: S3 and S4 already voted for S5
	if c.leader() == 1 {
		t.Fatal("(c): S1 won term 3")
	}
	c.campaign(1)
	if c.leader() != 1 || c.nodes[1].BasicStatus().Term != 4 {
		t.Fatalf("(c): leader %d, want S1 in term 4", c.leader())
	}
	for _, id := range []uint64{1, 2, 3} {
		if got := logTerms(c.nodes[id]); !slices.Equal(got[:3], []uint64{1, 2, 2}) {
			t.Fatalf("(c): S%d log terms %v, want [1 2 2 ...]", id, got)
		}
	}
	return c
}

// TestPaper542Figure8: "Raft never commits log entries from previous terms
// by counting replicas. Only log entries from the leader's current term are
// committed by counting replicas; once an entry from the current term has
// been committed in this way, then all prior entries are committed
// indirectly."
func TestPaper542Figure8(t *testing.T) {
	t.Run("term 2 entry on a majority is not committed", func(t *testing.T) {
		c := figure8(t)
		if got := c.nodes[1].BasicStatus().Commit; got != 1 {
			t.Fatalf("S1 commit %d with only term-2 entries on a majority, want 1", got)
		}
		// (d) S1 crashes; S5 can be elected (by S2, S3, S4) and overwrite
		// the term-2 entries, which therefore were not safe to commit.
		c.crash(1)
		c.heal()
		c.restart(5)
		c.campaign(5) // term 4: everyone voted for S1
		c.campaign(5)
		if c.leader() != 5 {
			t.Fatalf("(d): leader %d, want S5", c.leader())
		}
		c.propose(5, "z")
		c.deliver()
		for _, id := range []uint64{2, 3, 4, 5} {
			if got := logTerms(c.nodes[id])[1]; got != 3 {
				t.Fatalf("(d): S%d has term %d at index 2, want S5's term 3", id, got)
			}
			if got := c.data(id); !slices.Equal(got, []string{"y", "z"}) {
				t.Fatalf("(d): S%d applied %v, want [y z] (never x)", id, got)
			}
		}
	})
	t.Run("entry of the current term commits the earlier ones", func(t *testing.T) {
		c := figure8(t)
		// (e) S1 replicates its term-4 entry to a majority: everything up
		// to it is committed, and S5 can no longer win.
		c.heal()
		c.propose(1, "w")
		c.drop = func(m Message) bool { return m.To == 4 || m.To == 5 }
		c.deliver()
		st := c.nodes[1].BasicStatus()
		if st.Commit != st.LastIndex {
			t.Fatalf("(e): S1 commit %d, want %d", st.Commit, st.LastIndex)
		}
		for _, id := range []uint64{1, 2, 3} {
			if got := c.data(id); !slices.Equal(got, []string{"x", "w"}) {
				t.Fatalf("(e): S%d applied %v, want [x w]", id, got)
			}
		}
		c.crash(1)
		c.heal()
		c.restart(5)
		for range 3 {
			c.campaign(5)
			if c.leader() == 5 {
				t.Fatal("(e): S5 won an election without the committed entries")
			}
		}
	})
}

// ---- §5.5: follower and candidate crashes ----

// TestPaper55FollowerCrashRetried: "If a follower or candidate crashes, then
// future RequestVote and AppendEntries RPCs sent to it will fail. Raft
// handles these failures by retrying indefinitely; if the crashed server
// restarts, then the RPC will complete successfully." No new proposal is
// needed for the restarted follower to catch up.
func TestPaper55FollowerCrashRetried(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.propose(1, "a")
	c.deliver()
	c.crash(3)
	c.propose(1, "b")
	c.propose(1, "c")
	c.deliver()
	c.tick(3)
	c.restart(3)
	c.tick(5)
	if got := c.data(3); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("restarted follower applied %v, want [a b c]", got)
	}
	c.checkSameLogs(t, 1, 2, 3)
}

// TestPaper55CandidateRetries: a candidate whose vote requests are lost
// retries with a new election; one that crashes restarts with its term and
// self-vote intact and campaigns again.
func TestPaper55CandidateRetries(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.deliver()
	c.drop = func(m Message) bool { return m.Type == MsgVote }
	c.campaign(1)
	c.crash(1)
	c.restart(1)
	if st := c.nodes[1].BasicStatus(); st.Term != 2 || st.Vote != 1 || st.Role != Follower {
		t.Fatalf("restarted candidate: %v term %d vote %d; want follower, term 2, vote 1", st.Role, st.Term, st.Vote)
	}
	// Its next election requests are lost too; it keeps retrying.
	for i := 0; c.nodes[1].BasicStatus().Term < 4; i++ {
		if i == 2*2*10 {
			t.Fatalf("no new election in %d ticks: term %d", i, c.nodes[1].BasicStatus().Term)
		}
		c.nodes[1].Tick()
		c.deliver()
	}
	c.heal()
	if lead := c.tickUntilLeader(3 * 10); lead == None {
		t.Fatal("no leader once the network works")
	}
}

// TestPaper55AppendIdempotent: "Raft RPCs are idempotent, so this causes no
// harm. For example, if a follower receives an AppendEntries request that
// includes log entries already present in its log, it ignores those entries
// in the new request."
func TestPaper55AppendIdempotent(t *testing.T) {
	n := newTestNode(t, 1, restoredState(2, 0, 1), nil)
	long := Message{Type: MsgApp, From: 2, To: 1, Term: 2, Index: 1, LogTerm: 1, Commit: 1,
		Entries: []Entry{{Index: 2, Term: 2, Data: []byte("a")}, {Index: 3, Term: 2, Data: []byte("b")}}}
	short := long
	short.Entries = long.Entries[:1]
	mustStep(t, n, long)
	rd := takeReady(t, n)
	if len(rd.Entries) != 2 {
		t.Fatalf("first append: Ready %+v", rd)
	}
	before := n.Status()
	for _, m := range []Message{long, short, long} {
		mustStep(t, n, m)
		rd := takeReady(t, n)
		if len(rd.Entries) > 0 || !rd.HardState.IsEmpty() || len(rd.CommittedEntries) > 0 || rd.MustSync {
			t.Fatalf("duplicate append produced %+v", rd)
		}
		want := []Message{{Type: MsgAppResp, From: 1, To: 2, Term: 2, Index: m.Index + uint64(len(m.Entries))}}
		if !slices.EqualFunc(rd.Messages, want, msgEqual) {
			t.Fatalf("messages %+v, want %+v", rd.Messages, want)
		}
		if after := n.Status(); !statusEqual(before, after) {
			t.Fatalf("status changed: %+v -> %+v", before, after)
		}
		if got := logTerms(n); !slices.Equal(got, []uint64{1, 2, 2}) {
			t.Fatalf("log terms %v, want [1 2 2]", got)
		}
	}
}

// ---- §6: cluster membership changes ----

func addVoters(ids ...uint64) ConfChange {
	var cc ConfChange
	for _, id := range ids {
		cc.Changes = append(cc.Changes, ConfChangeSingle{Type: AddVoter, NodeID: id})
	}
	return cc
}

// TestPaper6JointConsensusAutoLeave: "the cluster first switches to a
// transitional configuration we call joint consensus; once the joint
// consensus has been committed, the system then transitions to the new
// configuration."
func TestPaper6JointConsensusAutoLeave(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.addNode(4)
	c.addNode(5)
	if err := c.nodes[1].ProposeConfChange(addVoters(4, 5)); err != nil {
		t.Fatal(err)
	}
	c.process()
	// Let the joint entry commit, but hold the leave back.
	var joint ConfState
	c.drop = func(m Message) bool {
		for _, e := range m.Entries {
			if e.Type == EntryConfChange {
				if cc, _ := DecodeConfChange(e.Data); cc.IsLeave() {
					return true
				}
			}
		}
		return false
	}
	c.deliver()
	joint = c.conf(1)
	want := ConfState{Voters: []uint64{1, 2, 3, 4, 5}, VotersOutgoing: []uint64{1, 2, 3}, AutoLeave: true}
	if !confEqual(joint, want) {
		t.Fatalf("leader config %+v, want joint %+v", joint, want)
	}
	if err := c.nodes[1].ProposeConfChange(addVoters(6)); err == nil {
		t.Fatal("a change was accepted while the automatic leave is pending")
	}
	c.heal()
	c.tick(3) // the leave reaches everyone
	want = ConfState{Voters: []uint64{1, 2, 3, 4, 5}}
	for _, id := range c.ids {
		if got := c.conf(id); !confEqual(got, want) {
			t.Fatalf("node %d config %+v, want %+v", id, got, want)
		}
	}
	// The applied log shows the joint entry, then the leave.
	var ccs []ConfChange
	for _, e := range c.applied[5] {
		if e.Type == EntryConfChange {
			cc, err := DecodeConfChange(e.Data)
			if err != nil {
				t.Fatal(err)
			}
			ccs = append(ccs, cc)
		}
	}
	if len(ccs) != 3 || len(ccs[1].Changes) != 2 || !ccs[2].IsLeave() {
		t.Fatalf("node 5 applied conf changes %+v, want bootstrap, joint, leave", ccs)
	}
	c.propose(1, "a")
	c.deliver()
	for _, id := range c.ids {
		if got := c.data(id); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("node %d applied %v", id, got)
		}
	}
}

// TestPaper6JointNeedsBothMajorities: "Agreement (for elections and entry
// commitment) requires separate majorities from both the old and new
// configurations." Explicit transition: the joint configuration stays until
// an empty ConfChange leaves it.
func TestPaper6JointNeedsBothMajorities(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.addNode(4)
	c.addNode(5)
	c.changeConf(1, ConfChange{Transition: TransitionJointExplicit, Changes: []ConfChangeSingle{
		{Type: AddVoter, NodeID: 4}, {Type: AddVoter, NodeID: 5},
		{Type: RemoveNode, NodeID: 2}, {Type: RemoveNode, NodeID: 3},
	}})
	c.tick(2)
	want := ConfState{Voters: []uint64{1, 4, 5}, VotersOutgoing: []uint64{1, 2, 3}}
	for _, id := range c.ids {
		if got := c.conf(id); !confEqual(got, want) {
			t.Fatalf("node %d config %+v, want %+v (explicit: no automatic leave)", id, got, want)
		}
	}

	// Commitment: a majority of the new voters alone is not enough...
	c.partition(2, 3)
	c.propose(1, "a")
	c.deliver()
	if got := c.data(1); slices.Contains(got, "a") {
		t.Fatal("entry committed by the new configuration alone")
	}
	// ...nor of the old voters alone (a commits once 2 and 3 have it: 4
	// and 5 already do).
	c.heal()
	c.partition(4, 5)
	c.propose(1, "b")
	c.tick(2)
	if got := c.data(1); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("applied %v, want [a]: b is held by the old configuration alone", got)
	}
	c.heal()
	c.tick(2)
	if got := c.data(1); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("applied %v with both majorities, want [a b]", got)
	}

	// Election: the new voters alone cannot elect a leader.
	c.crash(1)
	c.partition(2, 3)
	c.campaign(4)
	if c.nodes[4].BasicStatus().Role == Leader {
		t.Fatal("node 4 won with votes of the new configuration only")
	}
	c.heal()
	c.campaign(4)
	if c.leader() != 4 {
		t.Fatalf("leader %d, want 4", c.leader())
	}

	// Leave explicitly.
	c.changeConf(4, ConfChange{})
	c.tick(2)
	want = ConfState{Voters: []uint64{1, 4, 5}}
	for _, id := range []uint64{4, 5} {
		if got := c.conf(id); !confEqual(got, want) {
			t.Fatalf("node %d config %+v, want %+v", id, got, want)
		}
	}
	// 2 and 3 are out: 4 and 5 commit with node 1 down.
	c.partition(2, 3)
	c.propose(4, "c")
	c.deliver()
	if got := c.data(5); !slices.Equal(got[len(got)-1:], []string{"c"}) {
		t.Fatalf("node 5 applied %v, want ... c", got)
	}
}

// TestPaper6SingleMemberChanges: a change of one voter applies directly,
// without a joint configuration (the single-server approach of Ongaro's
// thesis, §4.1).
func TestPaper6SingleMemberChanges(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	c.addNode(4)
	c.changeConf(1, addVoters(4))
	if got := c.conf(1); !confEqual(got, ConfState{Voters: []uint64{1, 2, 3, 4}}) {
		t.Fatalf("config %+v after adding 4", got)
	}
	c.tick(2)
	c.checkSameLogs(t, 1, 2, 3, 4)
	c.changeConf(1, ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 2}}})
	c.tick(2)
	for _, id := range []uint64{1, 3, 4} {
		if got := c.conf(id); !confEqual(got, ConfState{Voters: []uint64{1, 3, 4}}) {
			t.Fatalf("node %d config %+v after removing 2", id, got)
		}
	}
	// Without 2, {1, 3, 4} still commits with 1 and 4.
	c.partition(2, 3)
	c.propose(1, "a")
	c.deliver()
	if got := c.data(4); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("node 4 applied %v", got)
	}
}

// TestPaper6Learners: new servers join as non-voting members that receive
// the log but count neither in elections nor for commitment, then are
// promoted (§6: "the new servers join the cluster as non-voting members").
func TestPaper6Learners(t *testing.T) {
	c := newCluster(t, []uint64{1, 2}, nil)
	c.campaign(1)
	c.addNode(3)
	c.changeConf(1, ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 3}}})
	c.propose(1, "a")
	c.deliver()
	if got := c.data(3); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("learner applied %v, want [a]", got)
	}
	if got := c.conf(3); !confEqual(got, ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}}) {
		t.Fatalf("learner's config %+v", got)
	}
	// It does not count for commitment.
	c.partition(2)
	c.propose(1, "b")
	c.deliver()
	if got := c.data(1); slices.Contains(got, "b") {
		t.Fatal("committed with the leader and a learner")
	}
	if got := c.nodes[3].BasicStatus().LastIndex; got != c.nodes[1].BasicStatus().LastIndex {
		t.Fatalf("learner's last index %d, leader's %d", got, c.nodes[1].BasicStatus().LastIndex)
	}
	c.heal()
	c.tick(2)
	if got := c.data(1); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("applied %v", got)
	}
	// It does not campaign, and is not asked for votes.
	if err := c.nodes[3].Campaign(); !errors.Is(err, ErrNotVoter) {
		t.Fatalf("learner Campaign: %v, want ErrNotVoter", err)
	}
	c.partition(3)
	for range 50 {
		c.nodes[3].Tick()
	}
	c.deliver()
	if st := c.nodes[3].BasicStatus(); st.Role != Follower || st.Term != 2 {
		t.Fatalf("learner is %v in term %d after a long silence", st.Role, st.Term)
	}
	c.heal()
	c.drop = func(m Message) bool {
		if m.To == 3 && (m.Type == MsgVote || m.Type == MsgPreVote) {
			t.Fatalf("vote request sent to the learner: %+v", m)
		}
		return false
	}
	c.campaign(2)
	if c.leader() != 2 {
		t.Fatalf("leader %d, want 2", c.leader())
	}
	c.heal()

	// Promotion: 3 becomes a voter and counts.
	c.changeConf(2, addVoters(3))
	c.tick(2)
	if got := c.conf(3); !confEqual(got, ConfState{Voters: []uint64{1, 2, 3}}) {
		t.Fatalf("config %+v after promotion", got)
	}
	c.crash(1)
	c.propose(2, "c") // node 1 is down: 2 and 3 make the majority
	c.deliver()
	if got := c.data(3); !slices.Equal(got[len(got)-1:], []string{"c"}) {
		t.Fatalf("promoted node applied %v", got)
	}
	if err := c.nodes[3].Campaign(); err != nil {
		t.Fatalf("promoted node cannot campaign: %v", err)
	}
}

// TestPaper6RemoveLeader: "the leader steps down (returns to follower state)
// once it has committed the C_new log entry." It hands over to the most
// up-to-date voter with MsgTimeoutNow; if that message is lost the others
// elect a leader on their own.
func TestPaper6RemoveLeader(t *testing.T) {
	for _, lose := range []bool{false, true} {
		t.Run(fmt.Sprintf("timeoutnow lost=%t", lose), func(t *testing.T) {
			c := newCluster(t, []uint64{1, 2, 3}, nil)
			c.campaign(1)
			if err := c.nodes[1].ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 1}}}); err != nil {
				t.Fatal(err)
			}
			// Uncommitted, the change leaves the leader in place.
			c.partition(1)
			c.deliver()
			if c.nodes[1].BasicStatus().Role != Leader {
				t.Fatal("leader stepped down before its removal committed")
			}
			c.heal()
			if lose {
				c.drop = func(m Message) bool { return m.Type == MsgTimeoutNow }
			}
			c.tick(1)
			if st := c.nodes[1].BasicStatus(); st.Role != Follower {
				t.Fatalf("removed leader is %v", st.Role)
			}
			lead := c.leader()
			if lose {
				if lead != None {
					t.Fatalf("leader %d without an election", lead)
				}
				lead = c.tickUntilLeader(3 * 10)
			}
			if lead != 2 && lead != 3 {
				t.Fatalf("leader %d after removing 1, want 2 or 3", lead)
			}
			want := ConfState{Voters: []uint64{2, 3}}
			for _, id := range c.ids {
				if got := c.conf(id); !confEqual(got, want) {
					t.Fatalf("node %d config %+v, want %+v", id, got, want)
				}
			}
			if err := c.nodes[1].Campaign(); !errors.Is(err, ErrNotVoter) {
				t.Fatalf("removed node Campaign: %v, want ErrNotVoter", err)
			}
			c.crash(1)
			c.propose(lead, "a")
			c.deliver()
			for _, id := range []uint64{2, 3} {
				if got := c.data(id); !slices.Equal(got, []string{"a"}) {
					t.Fatalf("node %d applied %v", id, got)
				}
			}
		})
	}
}

// TestPaper6OneChangeAtATime: a change is refused while another is not yet
// committed (ErrConfChangePending), and accepted once it is.
func TestPaper6OneChangeAtATime(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.campaign(1)
	n := c.nodes[1]
	learner := func(id uint64) ConfChange {
		return ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: id}}}
	}
	if err := n.ProposeConfChange(learner(4)); err != nil {
		t.Fatal(err)
	}
	last := n.BasicStatus().LastIndex
	if err := n.ProposeConfChange(learner(5)); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second change: %v, want ErrConfChangePending", err)
	}
	if got := n.BasicStatus().LastIndex; got != last {
		t.Fatalf("refused change appended: last index %d -> %d", last, got)
	}
	// Normal proposals are not held back.
	c.propose(1, "a")
	c.deliver()
	if err := n.ProposeConfChange(learner(5)); err != nil {
		t.Fatalf("change after the first committed: %v", err)
	}
	c.deliver()
	if got := c.conf(2); !confEqual(got, ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4, 5}}) {
		t.Fatalf("config %+v", got)
	}

	// A new leader accepts no change before the changes in its log are
	// known committed: 2 and 3 store a change that 1 never learns is
	// committed, then 2 leads.
	c.drop = func(m Message) bool { return m.To == 1 }
	if err := n.ProposeConfChange(learner(6)); err != nil {
		t.Fatal(err)
	}
	c.deliver()
	c.crash(1)
	c.drop = func(m Message) bool { return m.From == 2 && m.Type == MsgApp }
	c.campaign(2)
	if c.leader() != 2 {
		t.Fatalf("leader %d, want 2", c.leader())
	}
	if err := c.nodes[2].ProposeConfChange(learner(7)); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("change on a new leader with an uncommitted change in its log: %v, want ErrConfChangePending", err)
	}
	c.heal()
	c.tick(1)
	if err := c.nodes[2].ProposeConfChange(learner(7)); err != nil {
		t.Fatalf("change once the log is committed: %v", err)
	}
	c.deliver()
	if got := c.conf(3); !confEqual(got, ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4, 5, 6, 7}}) {
		t.Fatalf("config %+v", got)
	}
}

// TestPaper6InvalidConfChange: impossible changes are refused with
// ErrInvalidConfChange and leave the node unchanged.
func TestPaper6InvalidConfChange(t *testing.T) {
	tests := []struct {
		name  string
		setup func(c *cluster)
		cc    ConfChange
	}{
		{"remove the last voter", nil, ConfChange{Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 1}}}},
		{"demote the last voter", nil, ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 1}}}},
		{"leave when not joint", nil, ConfChange{}},
		{"node ID zero", nil, ConfChange{Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 0}}}},
		{"unknown change type", nil, ConfChange{Changes: []ConfChangeSingle{{Type: 7, NodeID: 2}}}},
		{"unknown transition", nil, ConfChange{Transition: 9, Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 2}}}},
		{"change while joint", func(c *cluster) {
			c.changeConf(1, ConfChange{Transition: TransitionJointExplicit, Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 2}}})
		}, ConfChange{Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 3}}}},
		{"joint change leaving no voter", nil, ConfChange{Transition: TransitionJointExplicit,
			Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []uint64{1}, nil)
			c.campaign(1)
			if tc.setup != nil {
				tc.setup(c)
			}
			n := c.nodes[1]
			before := n.Status()
			err := n.ProposeConfChange(tc.cc)
			if !errors.Is(err, ErrInvalidConfChange) {
				t.Fatalf("ProposeConfChange: %v, want ErrInvalidConfChange", err)
			}
			if after := n.Status(); !statusEqual(before, after) {
				t.Fatalf("status changed: %+v -> %+v", before, after)
			}
			if n.HasReady() {
				t.Fatalf("refused change left work: %+v", n.Ready())
			}
		})
	}
}
