package node_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// TestElectionAndProposeOnLeader: ticks elect one leader; a proposal on it
// resolves with the state machine's result only once the entry is committed
// and applied there, and every node applies the command exactly once.
func TestElectionAndProposeOnLeader(t *testing.T) {
	c := newTestCluster(t, nil)
	for i := 0; i < 200 && c.leader() == 0; i++ {
		c.tick(1)
	}
	lead := c.leader()
	if lead == 0 {
		t.Fatal("no leader after 200 ticks")
	}
	term := c.nodes[lead].Status().Term
	for _, id := range c.ids {
		st := c.nodes[id].Status()
		if id != lead && st.Role == core.Leader {
			t.Fatalf("nodes %d and %d both lead", lead, id)
		}
		if st.Lead != lead || st.Term != term {
			t.Fatalf("node %d follows %d in term %d, want %d in term %d", id, st.Lead, st.Term, lead, term)
		}
	}

	n := c.nodes[lead]
	f := n.Propose([]byte("x"))
	idx := n.Core().BasicStatus().LastIndex
	if f.Resolved() {
		t.Fatal("proposal resolved before any follower acknowledged it")
	}
	var atResolve struct {
		applied, commit uint64
		cmds            []string
	}
	f.OnResolve(func(*node.Future) {
		atResolve.applied, atResolve.commit = n.Applied(), n.Status().Commit
		atResolve.cmds = slices.Clone(c.sms[lead].cmds)
	})
	c.deliverOnce() // the appends reach the followers; no acknowledgement yet
	if f.Resolved() {
		t.Fatal("proposal resolved before it was committed")
	}
	c.deliverAll()
	mustResult(t, f, "ok:x")
	if atResolve.commit < idx || atResolve.applied < idx || !slices.Equal(atResolve.cmds, []string{"x"}) {
		t.Fatalf("resolved with commit %d, applied %d, state %v; entry %d", atResolve.commit, atResolve.applied, atResolve.cmds, idx)
	}
	for _, id := range c.ids {
		if got := c.sms[id].cmds; !slices.Equal(got, []string{"x"}) {
			t.Fatalf("node %d applied %v, want [x]", id, got)
		}
	}
}

// TestProposeOnFollowerForwarded: a follower forwards the proposal to the
// leader and resolves its own future once it applied the entry itself.
func TestProposeOnFollowerForwarded(t *testing.T) {
	c := newTestCluster(t, nil)
	c.campaign(1)
	n2 := c.nodes[2]
	mark := len(c.sent[2])
	f := n2.Propose([]byte("x"))
	if f.Resolved() {
		t.Fatalf("forwarded proposal resolved at once: %v", f.Err())
	}
	if props := c.sentSince(2, mark, core.MsgProp); len(props) != 1 || props[0].To != 1 {
		t.Fatalf("follower sent %+v, want one MsgProp to the leader", props)
	}
	var cmdsAtResolve []string
	f.OnResolve(func(*node.Future) { cmdsAtResolve = slices.Clone(c.sms[2].cmds) })
	c.deliverAll()
	mustResult(t, f, "ok:x")
	if !slices.Equal(cmdsAtResolve, []string{"x"}) {
		t.Fatalf("follower's future resolved with its state at %v, want [x] applied", cmdsAtResolve)
	}
	for _, id := range c.ids {
		if got := c.sms[id].cmds; !slices.Equal(got, []string{"x"}) {
			t.Fatalf("node %d applied %v, want [x]", id, got)
		}
	}
}

// TestProposeOnFollowerNoForwarding: with forwarding disabled a follower
// refuses at once with a NotLeaderError naming the leader and its address.
func TestProposeOnFollowerNoForwarding(t *testing.T) {
	c := newTestCluster(t, func(cfg *node.Config) {
		cfg.Core.DisableProposalForwarding = true
		cfg.PeerAddress = func(id uint64) string { return fmt.Sprintf("10.0.0.%d:7000", id) }
	})

	// No leader yet: refused, leader unknown.
	f := c.nodes[2].Propose([]byte("early"))
	var nl *node.NotLeaderError
	if !f.Resolved() || !errors.As(f.Err(), &nl) || nl.LeaderID != 0 || nl.Address != "" {
		t.Fatalf("proposal without a leader: resolved %t, err %v", f.Resolved(), f.Err())
	}

	c.campaign(1)
	mark := len(c.sent[2])
	f = c.nodes[2].Propose([]byte("x"))
	if !f.Resolved() {
		t.Fatal("refused proposal did not resolve at once")
	}
	mustErr(t, f, node.ErrNotLeader)
	if !errors.As(f.Err(), &nl) {
		t.Fatalf("error %T %v, want *NotLeaderError", f.Err(), f.Err())
	}
	if nl.LeaderID != 1 || nl.Address != "10.0.0.1:7000" {
		t.Fatalf("NotLeaderError %+v, want leader 1 at 10.0.0.1:7000", nl)
	}
	if len(c.sent[2]) != mark {
		t.Fatalf("follower sent %v after a refused proposal", c.sent[2][mark:])
	}
	c.deliverAll()
	for _, id := range c.ids {
		if len(c.sms[id].cmds) != 0 {
			t.Fatalf("node %d applied %v", id, c.sms[id].cmds)
		}
	}
	// The leader still takes proposals.
	c.propose(1, "y")
}

// TestPersistenceBeforeSend: a leader sends a new entry while its own write
// of it is outstanding (the writes run in parallel), but nothing that
// depends on the leader's copy happens before that write completes: no
// commit index covering the entry leaves the leader, no node applies it and
// its proposer does not hear back. Likewise a follower acknowledges an entry
// only once its own write completed.
func TestPersistenceBeforeSend(t *testing.T) {
	c := newTestCluster(t, nil)
	c.campaign(1)
	n1 := c.nodes[1]

	carries := func(ms []core.Message, idx uint64) bool {
		for _, m := range ms {
			for _, e := range m.Entries {
				if e.Index == idx {
					return true
				}
			}
		}
		return false
	}
	announces := func(ms []core.Message, idx uint64) bool {
		for _, m := range ms {
			if m.Commit >= idx {
				return true
			}
		}
		return false
	}

	st1 := c.stores[1]
	st1.SetAsync(true)
	mark := len(c.sent[1])
	f := n1.Propose([]byte("x"))
	idx := n1.Core().BasicStatus().LastIndex
	if !st1.Pending() || !n1.Writing() {
		t.Fatal("leader started no write for the proposal")
	}
	if !carries(c.sentSince(1, mark, core.MsgApp), idx) {
		t.Fatalf("append with entry %d not sent while the leader writes it", idx)
	}
	// Time passes, the followers store and acknowledge the entry; still
	// nothing depends on the leader's copy.
	n1.Tick()
	c.deliverAll()
	if announces(c.sent[1][mark:], idx) {
		t.Fatalf("commit index %d announced before the leader's write completed", idx)
	}
	for _, id := range c.ids {
		if c.nodes[id].Applied() >= idx {
			t.Fatalf("node %d applied entry %d before the leader's write completed", id, idx)
		}
	}
	if f.Resolved() {
		t.Fatal("proposal answered before the leader's write completed")
	}
	for _, e := range st1.Persisted().Entries {
		if e.Index == idx {
			t.Fatal("entry stored before Complete")
		}
	}
	st1.SetAsync(false)
	st1.Complete(nil)
	c.deliverAll()
	mustResult(t, f, "ok:x")
	if !announces(c.sent[1][mark:], idx) {
		t.Fatalf("commit index %d never announced", idx)
	}

	// A follower's acknowledgement waits for its write.
	st2 := c.stores[2]
	st2.SetAsync(true)
	mark2 := len(c.sent[2])
	f = n1.Propose([]byte("y"))
	idx = n1.Core().BasicStatus().LastIndex
	c.deliverAll()
	if !st2.Pending() {
		t.Fatal("follower 2 started no write for the append")
	}
	acked := func() bool {
		for _, m := range c.sentSince(2, mark2, core.MsgAppResp) {
			if !m.Reject && m.Index >= idx {
				return true
			}
		}
		return false
	}
	if acked() {
		t.Fatalf("follower acknowledged entry %d before its write completed", idx)
	}
	// Node 3 alone gives the leader its quorum.
	mustResult(t, f, "ok:y")
	st2.SetAsync(false)
	st2.Complete(nil)
	if !acked() {
		t.Fatalf("follower did not acknowledge entry %d after its write completed", idx)
	}
	c.deliverAll()
	for _, id := range c.ids {
		if got := c.sms[id].cmds; !slices.Equal(got, []string{"x", "y"}) {
			t.Fatalf("node %d applied %v, want [x y]", id, got)
		}
	}

	// A candidate asks for votes only once its new term and self-vote are
	// durable.
	st3 := c.stores[3]
	st3.SetAsync(true)
	mark3 := len(c.sent[3])
	if err := c.nodes[3].Campaign(); err != nil {
		t.Fatal(err)
	}
	if !st3.Pending() {
		t.Fatal("candidate started no write for its term and vote")
	}
	if votes := c.sentSince(3, mark3, core.MsgVote); len(votes) != 0 {
		t.Fatalf("candidate asked for votes before its vote was durable: %+v", votes)
	}
	st3.SetAsync(false)
	st3.Complete(nil)
	if votes := c.sentSince(3, mark3, core.MsgVote); len(votes) != 2 {
		t.Fatalf("candidate sent %d vote requests after its write, want 2", len(votes))
	}
	c.deliverAll()
	if c.leader() != 3 {
		t.Fatalf("node 3 did not win its election (leader %d)", c.leader())
	}
	c.propose(3, "z")
}

// TestStorageWriteFailure: a failed write stops the node (fail-stop):
// pending requests resolve with ErrStorage, later ones fail at once, and
// the failed update was not written.
func TestStorageWriteFailure(t *testing.T) {
	c := newTestCluster(t, nil)
	c.campaign(1)
	c.propose(1, "a")
	n1 := c.nodes[1]
	st1 := c.stores[1]
	before := st1.Persisted()

	r := n1.Read(node.ReadLinearizable, nil) // waits for a heartbeat round
	st1.SetAsync(true)
	f := n1.Propose([]byte("x"))
	if !st1.Pending() {
		t.Fatal("no write outstanding after the proposal")
	}
	mark := len(c.sent[1])
	disk := errors.New("disk")
	st1.Complete(disk)

	if n1.Stopped() == nil {
		t.Fatal("node runs on after a failed write")
	}
	if !errors.Is(n1.Stopped(), node.ErrStorage) || !errors.Is(n1.Stopped(), disk) {
		t.Fatalf("Stopped() = %v, want ErrStorage wrapping the write error", n1.Stopped())
	}
	mustErr(t, f, node.ErrStorage)
	mustErr(t, r, node.ErrStorage)
	if len(c.sent[1]) != mark {
		t.Fatalf("stopped node sent %v", c.sent[1][mark:])
	}
	if got := st1.Persisted(); len(got.Entries) != len(before.Entries) || got.HardState != before.HardState {
		t.Fatal("failed write changed the storage")
	}
	f2 := n1.Propose([]byte("y"))
	if !f2.Resolved() || f2.Err() == nil {
		t.Fatalf("proposal on a failed node: resolved %t err %v", f2.Resolved(), f2.Err())
	}
	mustErr(t, f2, node.ErrStorage)
	mustErr(t, n1.Read(node.ReadStale, nil), node.ErrStorage)
	if err := n1.Receive(core.Message{Type: core.MsgHeartbeat, From: 2, To: 1, Term: 99}); err == nil {
		t.Fatal("stopped node accepted a message")
	}
	n1.Tick()
	if len(c.sent[1]) != mark || st1.Pending() {
		t.Fatal("stopped node went on working")
	}
	n1.Stop()
	if !errors.Is(n1.Stopped(), node.ErrStorage) {
		t.Fatalf("Stop after a write failure replaced the reason: %v", n1.Stopped())
	}
}

// TestProposalTimeout: a proposal on a leader cut off from its followers
// times out after exactly ProposalTimeoutTicks ticks (also with the
// default of five election timeouts).
func TestProposalTimeout(t *testing.T) {
	for _, timeout := range []int{25, 0} {
		t.Run(fmt.Sprintf("ProposalTimeoutTicks=%d", timeout), func(t *testing.T) {
			c := newTestCluster(t, func(cfg *node.Config) { cfg.ProposalTimeoutTicks = timeout })
			c.campaign(1)
			c.isolate(1)
			f := c.nodes[1].Propose([]byte("x"))
			want := timeout
			if want == 0 {
				want = 5 * 10
			}
			for i := 1; i < want; i++ {
				c.tick(1)
				if f.Resolved() {
					t.Fatalf("resolved after %d ticks (timeout %d): %v", i, want, f.Err())
				}
			}
			c.tick(1)
			mustErr(t, f, node.ErrTimeout)
			for _, id := range c.ids {
				if count(c.sms[id].cmds, "x") != 0 {
					t.Fatalf("node %d applied the cut-off proposal", id)
				}
			}
		})
	}
}

// TestLinearizableRead: a linearizable read on the leader and on a follower
// sees an acknowledged write, even on a follower that had not received it
// yet; a read on an isolated old leader never answers (it times out) while
// the majority elects a new leader and writes.
func TestLinearizableRead(t *testing.T) {
	c := newTestCluster(t, nil)
	c.campaign(1)
	c.propose(1, "x")

	r := c.nodes[1].Read(node.ReadLinearizable, nil)
	c.deliverAll()
	mustResult(t, r, "x")

	// Node 3 misses the write of y.
	c.isolate(3)
	c.propose(1, "y")
	c.heal()
	mustResult(t, c.nodes[3].Read(node.ReadStale, nil), "x")
	r = c.nodes[3].Read(node.ReadLinearizable, nil)
	if r.Resolved() {
		t.Fatalf("follower read resolved before the leader answered: %v", r.Err())
	}
	c.deliverAll()
	c.tick(1) // the leader's heartbeat brings node 3 the entries it lacks
	mustResult(t, r, "x,y")

	r = c.nodes[2].Read(node.ReadLinearizable, nil)
	c.deliverAll()
	mustResult(t, r, "x,y")

	// Old leader isolated: its read must never answer.
	c.isolate(1)
	old := c.nodes[1].Read(node.ReadLinearizable, nil)
	wrote := false
	for i := 1; i <= 50; i++ { // the default read timeout
		c.tick(1)
		if old.Resolved() && !errors.Is(old.Err(), node.ErrTimeout) {
			res, err := old.Result()
			t.Fatalf("isolated old leader answered a linearizable read after %d ticks: (%v, %v)", i, res, err)
		}
		if lead := c.leader(); !wrote && lead != 0 && lead != 1 {
			f := c.nodes[lead].Propose([]byte("z"))
			c.deliverAll()
			mustResult(t, f, "ok:z")
			wrote = true
		}
		if i < 50 && old.Resolved() {
			t.Fatalf("read timed out after %d ticks, before its timeout of 50", i)
		}
	}
	if !wrote {
		t.Fatal("the majority elected no new leader")
	}
	mustErr(t, old, node.ErrTimeout)
	if st := c.nodes[1].Status(); st.Role != core.Leader {
		t.Fatalf("setup: isolated node 1 is %v, want it still believing it leads", st.Role)
	}

	// After healing, linearizable reads everywhere see z.
	c.heal()
	c.tick(1)
	for _, id := range c.ids {
		r := c.nodes[id].Read(node.ReadLinearizable, nil)
		c.deliverAll()
		c.tick(1)
		mustResult(t, r, "x,y,z")
	}
}

// TestLeaseAndStaleReads: ReadLease needs Config.LeaseReads (and
// CheckQuorum); on the leader it answers without a heartbeat round; on a
// follower it is refused. ReadStale answers at once from local state.
func TestLeaseAndStaleReads(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		c := newTestCluster(t, nil)
		c.campaign(1)
		f := c.nodes[1].Read(node.ReadLease, nil)
		if !f.Resolved() {
			t.Fatal("lease read without LeaseReads did not resolve at once")
		}
		mustErr(t, f, node.ErrLeaseReadsDisabled)
	})

	t.Run("needs CheckQuorum", func(t *testing.T) {
		_, err := node.New(node.Config{
			Core:    core.Config{ID: 1, Voters: []uint64{1}},
			Storage: node.NewMemoryStorage(), Transport: clusterTransport{}, StateMachine: &listSM{},
			LeaseReads: true,
		})
		if !errors.Is(err, core.ErrInvalidConfig) {
			t.Fatalf("New with LeaseReads and no CheckQuorum: %v, want ErrInvalidConfig", err)
		}
	})

	t.Run("enabled", func(t *testing.T) {
		c := newTestCluster(t, func(cfg *node.Config) {
			cfg.LeaseReads = true
			cfg.Core.CheckQuorum = true
			cfg.PeerAddress = func(id uint64) string { return fmt.Sprint("n", id) }
		})
		c.campaign(1)
		c.propose(1, "x")
		mark := len(c.sent[1])
		f := c.nodes[1].Read(node.ReadLease, nil)
		if !f.Resolved() {
			t.Fatal("lease read on the leader did not resolve without a round trip")
		}
		mustResult(t, f, "x")
		if hb := c.sentSince(1, mark, core.MsgHeartbeat); len(hb) != 0 {
			t.Fatalf("lease read sent heartbeats %v", hb)
		}

		f = c.nodes[2].Read(node.ReadLease, nil)
		var nl *node.NotLeaderError
		if !f.Resolved() || !errors.As(f.Err(), &nl) || nl.LeaderID != 1 || nl.Address != "n1" {
			t.Fatalf("lease read on a follower: resolved %t, err %v", f.Resolved(), f.Err())
		}

		// Linearizable reads still work alongside.
		f = c.nodes[2].Read(node.ReadLinearizable, nil)
		c.deliverAll()
		mustResult(t, f, "x")
	})

	t.Run("stale", func(t *testing.T) {
		c := newTestCluster(t, nil)
		c.campaign(1)
		c.propose(1, "x")
		c.isolate(3)
		c.propose(1, "y")
		mark := len(c.sent[3])
		for id, want := range map[uint64]string{1: "x,y", 2: "x,y", 3: "x"} {
			f := c.nodes[id].Read(node.ReadStale, nil)
			mustResult(t, f, want)
		}
		if len(c.sent[3]) != mark {
			t.Fatalf("stale read sent %v", c.sent[3][mark:])
		}
	})
}

// TestAutoSnapshot: with SnapshotThreshold 5 and SnapshotKeep 2 the storage
// ends with a snapshot and only the entries after snapshot index - 2; a
// node restarted from it restores its state machine from the snapshot and
// applies the rest once; a follower that missed the writes catches up with
// the snapshot and converges.
//
// A streaming node (node.SnapshotStore storage, node.SnapshotWriter state
// machine) does the same while its core keeps no snapshot data: what it
// sends the follower is read back from the storage.
func TestAutoSnapshot(t *testing.T) {
	t.Run("bytes", func(t *testing.T) { testAutoSnapshot(t, false) })
	t.Run("streamed", func(t *testing.T) { testAutoSnapshot(t, true) })
}

func testAutoSnapshot(t *testing.T, stream bool) {
	const threshold, keep = 5, 2
	c := newClusterStreaming(t, stream, func(cfg *node.Config) {
		cfg.SnapshotThreshold = threshold
		cfg.SnapshotKeep = keep
	})
	c.campaign(1)
	c.isolate(3)
	want := cmdList("c", 12)
	for _, cmd := range want {
		c.propose(1, cmd)
	}

	for _, id := range []uint64{1, 2} {
		p := c.stores[id].Persisted()
		applied := c.nodes[id].Applied()
		if p.Snapshot == nil {
			t.Fatalf("node %d: no snapshot stored after %d entries", id, applied)
		}
		si := p.Snapshot.Meta.Index
		if si+threshold <= applied {
			t.Fatalf("node %d: snapshot at %d, applied %d: a snapshot is overdue", id, si, applied)
		}
		if len(p.Entries) == 0 || p.Entries[0].Index != si-keep+1 {
			t.Fatalf("node %d: snapshot at %d, stored entries start at %v, want %d", id, si, p.Entries, si-keep+1)
		}
		for i, e := range p.Entries {
			if e.Index != p.Entries[0].Index+uint64(i) {
				t.Fatalf("node %d: stored entries not contiguous: %d at position %d", id, e.Index, i)
			}
		}
		if last := p.Entries[len(p.Entries)-1].Index; last != applied {
			t.Fatalf("node %d: stored log ends at %d, applied %d", id, last, applied)
		}
		if cs := c.nodes[id].Core().Snapshot(); cs == nil || cs.Meta.Index != si || (stream && cs.Data != nil) {
			t.Fatalf("node %d: core's snapshot %+v, want one at %d (without data if streamed: %v)", id, cs, si, stream)
		}
		if st := c.nodes[id].Status(); st.FirstIndex != si-keep+1 {
			t.Fatalf("node %d: core log starts at %d, want %d", id, st.FirstIndex, si-keep+1)
		}
		var snapSM listSM
		if err := snapSM.Restore(p.Snapshot.Data); err != nil {
			t.Fatal(err)
		}
		if k := len(snapSM.cmds); k == 0 || !slices.Equal(snapSM.cmds, want[:k]) {
			t.Fatalf("node %d: snapshot holds %v", id, snapSM.cmds)
		}
	}

	// Restart node 2 from its storage with a fresh state machine.
	c.restart(2, 0)
	if sm := c.sms[2]; sm.restores != 1 || !slices.Equal(sm.cmds, want) {
		t.Fatalf("restarted node 2: %d restores, state %v, want %v", sm.restores, sm.cmds, want)
	}
	if cs := c.nodes[2].Core().Snapshot(); cs == nil || (stream && cs.Data != nil) || (!stream && cs.Data == nil) {
		t.Fatalf("restarted node 2: core's snapshot %+v (streamed: %v)", cs, stream)
	}

	// Node 3 missed everything after the leader's first entry.
	if got := c.sms[3].cmds; len(got) != 0 {
		t.Fatalf("isolated node 3 applied %v", got)
	}
	mark := len(c.sent[1])
	c.heal()
	for i := 0; i < 20 && !slices.Equal(c.sms[3].cmds, want); i++ {
		c.tick(1)
	}
	snaps := c.sentSince(1, mark, core.MsgSnap)
	if len(snaps) == 0 {
		t.Fatal("lagging follower caught up without a snapshot")
	}
	for _, m := range snaps {
		if len(m.Snapshot.Data) == 0 {
			t.Fatalf("MsgSnap at %d sent without data", m.Snapshot.Meta.Index)
		}
	}
	if sm := c.sms[3]; sm.restores == 0 || !slices.Equal(sm.cmds, want) {
		t.Fatalf("node 3: %d restores, state %v, want %v", sm.restores, sm.cmds, want)
	}
	c.propose(1, "last")
	want = append(want, "last")
	for _, id := range c.ids {
		if got := c.sms[id].cmds; !slices.Equal(got, want) {
			t.Fatalf("node %d state %v, want %v", id, got, want)
		}
		if st, lst := c.nodes[id].Status(), c.nodes[1].Status(); st.Commit != lst.Commit || st.LastIndex != lst.LastIndex {
			t.Fatalf("node %d: commit %d last %d; leader: commit %d last %d", id, st.Commit, st.LastIndex, lst.Commit, lst.LastIndex)
		}
	}
}

// TestRestartIncarnation: a restarted node with a new incarnation does not
// take what its earlier run proposed or asked for as answers to its own
// requests, even when the sequence numbers coincide.
func TestRestartIncarnation(t *testing.T) {
	t.Run("proposal", func(t *testing.T) {
		c := newTestCluster(t, func(cfg *node.Config) { cfg.Incarnation = 1 })
		c.campaign(1)
		// The first run's first proposal: stored on node 1 only, then it
		// crashes (its appends are lost).
		old := c.nodes[1].Propose([]byte("a"))
		c.queue = nil
		if old.Resolved() {
			t.Fatal("setup: proposal resolved")
		}
		c.restart(1, 2)
		if err := c.nodes[1].Campaign(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10 && c.nodes[1].Status().Role != core.Leader; i++ {
			c.deliverOnce()
		}
		if c.nodes[1].Status().Role != core.Leader {
			t.Fatal("setup: restarted node 1 did not win")
		}
		if len(c.sms[1].cmds) != 0 {
			t.Fatalf("setup: a committed before the new proposal: %v", c.sms[1].cmds)
		}
		// The new run's first proposal has the same sequence number as a.
		f := c.nodes[1].Propose([]byte("b"))
		var atResolve []string
		f.OnResolve(func(*node.Future) { atResolve = slices.Clone(c.sms[1].cmds) })
		c.deliverAll()
		mustResult(t, f, "ok:b")
		if !slices.Equal(atResolve, []string{"a", "b"}) {
			t.Fatalf("new future resolved with state %v, want [a b] (resolved by the old run's entry?)", atResolve)
		}
		if old.Resolved() {
			t.Fatal("the old run's future resolved")
		}
		for _, id := range c.ids {
			if got := c.sms[id].cmds; !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("node %d applied %v, want [a b]", id, got)
			}
		}
	})

	t.Run("read", func(t *testing.T) {
		c := newTestCluster(t, func(cfg *node.Config) { cfg.Incarnation = 1 })
		c.campaign(1)
		c.propose(1, "x")
		// The first run of node 2 asks for a read point; the answer is
		// held back, and node 2 crashes.
		var held []core.Message
		c.drop = func(m core.Message) bool {
			if m.Type == core.MsgReadIndexResp && m.To == 2 {
				held = append(held, m)
				return true
			}
			return false
		}
		c.nodes[2].Read(node.ReadLinearizable, nil)
		c.deliverAll()
		if len(held) != 1 {
			t.Fatalf("setup: held %d read answers", len(held))
		}
		c.restart(2, 2)
		c.tick(1) // node 2 learns the leader
		// The new run's first read, forwarded but lost.
		c.drop = func(m core.Message) bool { return m.Type == core.MsgReadIndex }
		f := c.nodes[2].Read(node.ReadLinearizable, nil)
		if err := c.nodes[2].Receive(held[0]); err != nil {
			t.Fatal(err)
		}
		if f.Resolved() {
			res, err := f.Result()
			t.Fatalf("new run's read answered with the old run's read point: (%v, %v)", res, err)
		}
		c.tick(50)
		mustErr(t, f, node.ErrTimeout)
	})
}

// TestStop: Stop resolves pending requests with ErrStopped and is
// idempotent; OnResolve and Done report the resolution; a write completing
// after Stop is ignored.
func TestStop(t *testing.T) {
	c := newTestCluster(t, nil)
	c.campaign(1)
	n1 := c.nodes[1]
	c.isolate(1)
	r := n1.Read(node.ReadLinearizable, nil)
	c.stores[1].SetAsync(true)
	f := n1.Propose([]byte("x"))
	if !c.stores[1].Pending() {
		t.Fatal("setup: no write outstanding")
	}
	calls := 0
	f.OnResolve(func(g *node.Future) {
		calls++
		if g != f || !g.Resolved() {
			t.Error("OnResolve called with the wrong or unresolved future")
		}
	})
	done := f.Done()
	select {
	case <-done:
		t.Fatal("Done closed before the future resolved")
	default:
	}

	n1.Stop()
	mustErr(t, f, node.ErrStopped)
	mustErr(t, r, node.ErrStopped)
	if calls != 1 {
		t.Fatalf("OnResolve ran %d times, want 1", calls)
	}
	select {
	case <-done:
	default:
		t.Fatal("Done not closed after the future resolved")
	}
	select {
	case <-f.Done():
	default:
		t.Fatal("Done of a resolved future not closed")
	}
	later := 0
	f.OnResolve(func(*node.Future) { later++ })
	if later != 1 {
		t.Fatal("OnResolve on a resolved future did not run at once")
	}

	n1.Stop()
	if !errors.Is(n1.Stopped(), node.ErrStopped) {
		t.Fatalf("Stopped() = %v after a second Stop", n1.Stopped())
	}
	if calls != 1 {
		t.Fatal("second Stop resolved the future again")
	}
	mustErr(t, n1.Propose([]byte("y")), node.ErrStopped)

	mark := len(c.sent[1])
	c.stores[1].SetAsync(false)
	c.stores[1].Complete(nil) // the write in flight lands, and is ignored
	n1.Tick()
	if len(c.sent[1]) != mark {
		t.Fatalf("stopped node sent %v", c.sent[1][mark:])
	}
	if c.sms[1].cmds != nil {
		t.Fatalf("stopped node applied %v", c.sms[1].cmds)
	}
}

// TestConfChange: adding node 4 as a learner resolves the proposer's future
// with the entry's index, and every node's ConfChangeApplied sees the
// proposer's context without the node's header — also when a follower
// proposes.
func TestConfChange(t *testing.T) {
	c := newTestCluster(t, nil)
	c.campaign(1)
	for _, id := range c.ids {
		c.confs[id] = nil // forget the founding configuration
	}
	f := c.nodes[1].ProposeConfChange(core.ConfChange{
		Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: 4}},
		Context: []byte("addr-4"),
	})
	c.deliverAll()
	if !f.Resolved() || f.Err() != nil {
		t.Fatalf("conf change: resolved %t, err %v", f.Resolved(), f.Err())
	}
	res, _ := f.Result()
	i, ok := res.(uint64)
	if !ok || i == 0 {
		t.Fatalf("conf change resolved with %T %v, want the uint64 index", res, res)
	}
	check := func(idx uint64, ctx string, learners []uint64) {
		t.Helper()
		for _, id := range c.ids {
			ev := c.confs[id]
			if len(ev) != 1 {
				t.Fatalf("node %d: %d ConfChangeApplied calls, want 1", id, len(ev))
			}
			if ev[0].index != idx || string(ev[0].cc.Context) != ctx {
				t.Fatalf("node %d: ConfChangeApplied(%d, context %q), want (%d, %q)", id, ev[0].index, ev[0].cc.Context, idx, ctx)
			}
			if got := c.nodes[id].Core().Status().Config.Learners; !slices.Equal(got, learners) {
				t.Fatalf("node %d: learners %v, want %v", id, got, learners)
			}
			c.confs[id] = nil
		}
	}
	check(i, "addr-4", []uint64{4})

	// From a follower: forwarded, resolved there with the index.
	f = c.nodes[2].ProposeConfChange(core.ConfChange{
		Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: 5}},
		Context: []byte("addr-5"),
	})
	c.deliverAll()
	if !f.Resolved() || f.Err() != nil {
		t.Fatalf("forwarded conf change: resolved %t, err %v", f.Resolved(), f.Err())
	}
	res, _ = f.Result()
	j, ok := res.(uint64)
	if !ok || j <= i {
		t.Fatalf("forwarded conf change resolved with %T %v, want an index after %d", res, res, i)
	}
	check(j, "addr-5", []uint64{4, 5})

	// Commands still flow.
	c.propose(1, "after")
}

// TestLeaseReadDuringTransfer: once the leader has told a transferee to
// campaign, its lease no longer holds (the forced campaign overrides the
// followers' leases). A lease read on it must not return state that misses
// a write the new leader already acknowledged.
func TestLeaseReadDuringTransfer(t *testing.T) {
	c := newTestCluster(t, func(cfg *node.Config) {
		cfg.LeaseReads = true
		cfg.Core.CheckQuorum = true
	})
	c.campaign(1)
	c.propose(1, "a")
	if err := c.nodes[1].TransferLeadership(2); err != nil {
		t.Fatal(err)
	}
	c.drop = func(m core.Message) bool { return m.To == 1 } // node 1 hears nothing more
	c.deliverAll()
	if c.nodes[2].Status().Role != core.Leader {
		t.Fatalf("setup: node 2 is %v", c.nodes[2].Status().Role)
	}
	c.propose(2, "w") // acknowledged to its client
	f := c.nodes[1].Read(node.ReadLease, nil)
	c.deliverAll()
	if f.Resolved() && f.Err() == nil {
		if res, _ := f.Result(); res != "a,w" {
			t.Fatalf("lease read on the old leader returned %q after w was acknowledged: a stale read", res)
		}
	}
}

// TestApplyDuringWrite: an entry that becomes committed while the leader
// writes a later one is applied, and its proposer answered, at once, not
// after that unrelated write; the later entry waits for the leader's own
// write even though both followers stored it.
func TestApplyDuringWrite(t *testing.T) {
	c := newTestCluster(t, nil)
	c.campaign(1)
	n1, st1 := c.nodes[1], c.stores[1]

	fx := n1.Propose([]byte("x")) // written at once; its appends are queued
	ix := n1.Core().BasicStatus().LastIndex
	st1.SetAsync(true)
	fy := n1.Propose([]byte("y")) // its write stays outstanding
	iy := n1.Core().BasicStatus().LastIndex
	if !st1.Pending() || iy != ix+1 {
		t.Fatalf("setup: pending %v, x at %d, y at %d", st1.Pending(), ix, iy)
	}
	c.deliverAll() // the followers store and acknowledge x and y
	for _, id := range []uint64{2, 3} {
		if last := c.stores[id].Persisted().Entries; len(last) == 0 || last[len(last)-1].Index != iy {
			t.Fatalf("follower %d did not store y (%d)", id, iy)
		}
	}
	if !st1.Pending() {
		t.Fatal("the leader's write of y completed by itself")
	}
	mustResult(t, fx, "ok:x")
	if n1.Applied() != ix {
		t.Fatalf("leader applied %d during its write, want %d (x, not y)", n1.Applied(), ix)
	}
	if fy.Resolved() {
		t.Fatal("y answered before the leader's write of it completed")
	}
	st1.SetAsync(false)
	st1.Complete(nil)
	c.deliverAll()
	mustResult(t, fy, "ok:y")
}

// TestConfChangeAppliedOnlyOnceCommitDurable: however writes and
// acknowledgements interleave, a node reports a membership change applied
// only once its storage holds a commit index covering it: a node that
// restarted below a removal it had applied could need the removed node to
// commit it again.
func TestConfChangeAppliedOnlyOnceCommitDurable(t *testing.T) {
	var c *testCluster
	c = newTestCluster(t, func(cfg *node.Config) {
		id := cfg.Core.ID
		cfg.ConfChangeApplied = func(index uint64, _ core.ConfChange) {
			if c == nil {
				return // the founding configuration, while starting
			}
			if commit := c.stores[id].Persisted().HardState.Commit; commit < index {
				t.Errorf("node %d applied the membership change at %d with commit %d in storage", id, index, commit)
			}
		}
	})
	c.campaign(1)
	n1, st1 := c.nodes[1], c.stores[1]
	fa := n1.Propose([]byte("a"))
	fc := n1.ProposeConfChange(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: 4}}})
	st1.SetAsync(true)
	fb := n1.Propose([]byte("b")) // the leader's write stays outstanding
	c.deliverAll()                // the followers store and acknowledge a, the change and b
	mustResult(t, fa, "ok:a")     // a is answered during the write
	if fc.Resolved() {
		t.Fatal("the membership change was answered before the leader stored a commit index covering it")
	}
	st1.SetAsync(false)
	st1.Complete(nil)
	c.deliverAll()
	if !fc.Resolved() || fc.Err() != nil {
		t.Fatalf("membership change: resolved %t, err %v", fc.Resolved(), fc.Err())
	}
	mustResult(t, fb, "ok:b")
	for _, id := range c.ids {
		if len(c.confs[id]) == 0 {
			t.Fatalf("node %d never applied the change", id)
		}
	}
}

// TestTakeSnapshot: an operator's snapshot is taken at the applied index
// and reported only once durable; with nothing new applied it reports the
// last snapshot; a call during a write waits for that write.
func TestTakeSnapshot(t *testing.T) {
	c := newTestCluster(t, func(cfg *node.Config) { cfg.SnapshotKeep = 1 })
	c.campaign(1)
	for _, cmd := range cmdList("c", 4) {
		c.propose(1, cmd)
	}
	n1, st1 := c.nodes[1], c.stores[1]
	applied := n1.Applied()

	st1.SetAsync(true) // hold the compaction write
	f := n1.TakeSnapshot()
	if f.Resolved() {
		t.Fatal("snapshot reported before its write completed")
	}
	if !st1.Pending() {
		t.Fatal("no compaction write started")
	}
	st1.SetAsync(false)
	st1.Complete(nil)
	mustResult(t, f, applied)
	p := st1.Persisted()
	if p.Snapshot == nil || p.Snapshot.Meta.Index != applied {
		t.Fatalf("stored snapshot %v, want one at %d", p.Snapshot, applied)
	}
	if len(p.Entries) == 0 || p.Entries[0].Index != applied {
		t.Fatalf("stored log starts at %v, want %d (keep 1)", p.Entries, applied)
	}
	var sm listSM
	if err := sm.Restore(p.Snapshot.Data); err != nil || !slices.Equal(sm.cmds, cmdList("c", 4)) {
		t.Fatalf("snapshot holds %v (%v)", sm.cmds, err)
	}

	// Nothing new: the same snapshot, at once, and no write.
	f = n1.TakeSnapshot()
	mustResult(t, f, applied)

	// During an outstanding write: taken once the write completes, and
	// covering what was applied when it was asked for.
	c.propose(1, "d")
	st1.SetAsync(true)
	fp := n1.Propose([]byte("e"))
	f = n1.TakeSnapshot()
	c.deliverAll()
	if f.Resolved() {
		t.Fatal("snapshot reported while the leader's write was outstanding")
	}
	st1.SetAsync(false)
	st1.Complete(nil)
	c.deliverAll()
	mustResult(t, fp, "ok:e")
	mustResult(t, f, applied+1) // d, applied when it was asked for
	if got := st1.Persisted().Snapshot.Meta.Index; got != applied+1 {
		t.Fatalf("stored snapshot at %d, want %d", got, applied+1)
	}

	// Stopping fails a waiting snapshot.
	st1.SetAsync(true)
	fp = n1.Propose([]byte("e"))
	f = n1.TakeSnapshot()
	n1.Stop()
	mustErr(t, f, node.ErrStopped)
	mustErr(t, fp, node.ErrStopped)
}

// TestAdmitWrite: while AdmitWrite refuses, a proposal fails at once with
// its error, a proposal a follower forwards is dropped by the leader, and
// reads go on; once it admits again, writes go through.
func TestAdmitWrite(t *testing.T) {
	var full bool
	noSpace := fmt.Errorf("disk: %w", node.ErrNoSpace)
	c := newTestCluster(t, func(cfg *node.Config) {
		if cfg.Core.ID == 1 {
			cfg.AdmitWrite = func() error {
				if full {
					return noSpace
				}
				return nil
			}
		}
	})
	c.campaign(1)
	c.propose(1, "a")
	full = true
	f := c.nodes[1].Propose([]byte("b"))
	mustErr(t, f, node.ErrNoSpace)
	fwd := c.nodes[2].Propose([]byte("c")) // forwarded to the leader, which drops it
	c.deliverAll()
	if fwd.Resolved() {
		t.Fatalf("forwarded proposal resolved on a leader out of space: %v", fwd)
	}
	r := c.nodes[1].Read(node.ReadLinearizable, nil)
	c.deliverAll()
	if _, err := r.Result(); !r.Resolved() || err != nil {
		t.Fatalf("read on a leader out of space: resolved %v, err %v", r.Resolved(), err)
	}
	full = false
	c.propose(1, "d")
	c.propose(2, "e")
}

// TestStreamedSnapshotWriteFails: a streaming node whose snapshot file
// cannot be written (a full disk, say) keeps running: the operator's
// snapshot fails with ErrDropped, the file is aborted, the stored snapshot
// and log stay, and snapshots resume once the file can be written and
// SnapshotThreshold more entries were applied.
func TestStreamedSnapshotWriteFails(t *testing.T) {
	const threshold = 4
	c := newClusterStreaming(t, true, func(cfg *node.Config) { cfg.SnapshotThreshold = threshold })
	c.campaign(1)
	n1, ss := c.nodes[1], c.streams[1]
	for _, cmd := range cmdList("a", threshold) {
		c.propose(1, cmd)
	}
	before := c.stores[1].Persisted().Snapshot
	if before == nil {
		t.Fatal("no snapshot after the threshold")
	}

	ss.failWrite = errors.New("no space left on device")
	created, aborted := ss.created, ss.aborted
	f := n1.TakeSnapshot()
	mustErr(t, f, node.ErrDropped)
	if ss.created != created+1 || ss.aborted != aborted+1 {
		t.Fatalf("files created %d aborted %d, want one more of each", ss.created-created, ss.aborted-aborted)
	}
	if err := n1.Stopped(); err != nil {
		t.Fatalf("node stopped: %v", err)
	}
	// Below the threshold past the failure nothing is tried.
	for _, cmd := range cmdList("b", threshold-1) {
		c.propose(1, cmd)
	}
	if ss.created != created+1 {
		t.Fatalf("%d snapshot files created before the retry point", ss.created-created-1)
	}
	if got := c.stores[1].Persisted().Snapshot; got.Meta.Index != before.Meta.Index {
		t.Fatalf("stored snapshot moved to %d after failed writes", got.Meta.Index)
	}

	ss.failWrite = nil
	c.propose(1, "c")
	after := c.stores[1].Persisted().Snapshot
	if after.Meta.Index != n1.Applied() {
		t.Fatalf("stored snapshot at %d, want a new one at %d", after.Meta.Index, n1.Applied())
	}
	var sm listSM
	if err := sm.Restore(after.Data); err != nil || !slices.Equal(sm.cmds, c.sms[1].cmds) {
		t.Fatalf("new snapshot holds %v (%v), state %v", sm.cmds, err, c.sms[1].cmds)
	}
}
