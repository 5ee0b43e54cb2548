package core

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Feature tests: batching, pipelining, flow control, proposal limits and
// forwarding, snapshots, status, bad input, configuration and restarts.

// steadyLeader returns a cluster of ids led by 1 whose followers are all in
// the replicate state, with every message delivered.
func steadyLeader(t *testing.T, ids []uint64, tweak func(*Config)) *cluster {
	t.Helper()
	c := newCluster(t, ids, tweak)
	c.campaign(1)
	for _, p := range c.nodes[1].Status().Progress {
		if p.State != ProgressReplicate {
			t.Fatalf("setup: progress %+v, want replicate", p)
		}
	}
	return c
}

// appsTo returns the appends to id in ms.
func appsTo(ms []Message, id uint64) []Message {
	var out []Message
	for _, m := range msgsOf(ms, MsgApp) {
		if m.To == id {
			out = append(out, m)
		}
	}
	return out
}

// progressOf returns the leader's progress for id.
func progressOf(t *testing.T, n *Node, id uint64) PeerProgress {
	t.Helper()
	for _, p := range n.Status().Progress {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("no progress for %d", id)
	return PeerProgress{}
}

// TestFeatureBatching: proposals made between two Readys leave in one
// append per follower.
func TestFeatureBatching(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	for i := range 10 {
		c.propose(1, fmt.Sprint(i))
	}
	rd := c.handleReady(1)
	if len(rd.Entries) != 10 {
		t.Fatalf("Ready has %d entries to persist, want 10", len(rd.Entries))
	}
	for _, id := range []uint64{2, 3} {
		apps := appsTo(rd.Messages, id)
		if len(apps) != 1 || len(apps[0].Entries) != 10 {
			t.Fatalf("appends to %d: %d messages (%+v), want one with 10 entries", id, len(apps), apps)
		}
	}
	c.deliver()
	if got := c.data(3); len(got) != 10 {
		t.Fatalf("node 3 applied %v", got)
	}
}

// TestFeaturePipelining: in the replicate state the leader sends new
// appends without waiting for the answers to earlier ones.
func TestFeaturePipelining(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	n := c.nodes[1]
	var sent []Message
	for i := range 3 {
		c.propose(1, fmt.Sprint(i))
		rd := c.handleReady(1)
		if apps := appsTo(rd.Messages, 2); len(apps) != 1 {
			t.Fatalf("round %d: %d appends to 2, want 1 without any answer", i, len(apps))
		}
		sent = append(sent, appsTo(rd.Messages, 2)...)
	}
	for _, id := range []uint64{2, 3} {
		if p := progressOf(t, n, id); p.State != ProgressReplicate || p.Inflight != 3 || p.Match+3 != p.Next-1 {
			t.Fatalf("progress %+v, want replicate with 3 appends in flight", p)
		}
	}
	for i, m := range sent[1:] {
		if m.Index != sent[i].Index+1 {
			t.Fatalf("append %d starts after %d, want after %d", i+1, m.Index, sent[i].Index+1)
		}
	}
	c.deliver()
	if p := progressOf(t, n, 2); p.Inflight != 0 || p.Match != n.BasicStatus().LastIndex {
		t.Fatalf("progress after the answers %+v", p)
	}
}

// TestFeatureMaxInflightMsgs: at most MaxInflightMsgs appends are
// outstanding to one follower; an answer lets the next go.
func TestFeatureMaxInflightMsgs(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.MaxInflightMsgs = 2 })
	n := c.nodes[1]
	var sent []Message
	for i, want := range []int{1, 1, 0, 0} {
		c.propose(1, fmt.Sprint(i))
		rd := c.handleReady(1)
		apps := appsTo(rd.Messages, 2)
		if len(apps) != want {
			t.Fatalf("round %d: %d appends to 2, want %d", i, len(apps), want)
		}
		sent = append(sent, apps...)
	}
	if p := progressOf(t, n, 2); p.Inflight != 2 {
		t.Fatalf("progress %+v, want 2 in flight", p)
	}
	// Node 2 answers the first append: one slot frees, and the two held
	// proposals leave together.
	c.queue = nil
	mustStep(t, c.nodes[2], sent[0])
	for _, m := range c.handleReady(2).Messages {
		mustStep(t, n, m)
	}
	rd := c.handleReady(1)
	apps := appsTo(rd.Messages, 2)
	if len(apps) != 1 || len(apps[0].Entries) != 2 {
		t.Fatalf("after one answer: appends %+v, want one carrying the 2 held entries", apps)
	}
	if p := progressOf(t, n, 2); p.Inflight != 2 {
		t.Fatalf("progress %+v, want 2 in flight", p)
	}
}

// TestFeatureMaxSizePerMsg: an append carries at most MaxSizePerMsg bytes of
// entries (data plus a fixed per-entry overhead), but always at least one
// entry.
func TestFeatureMaxSizePerMsg(t *testing.T) {
	const limit = 200
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.MaxSizePerMsg = limit })
	sizes := []int{40, 40, 40, 40, 40, 500, 10, 10}
	for i, sz := range sizes {
		c.propose(1, strings.Repeat(string(rune('a'+i)), sz))
	}
	rd := c.handleReady(1)
	apps := appsTo(rd.Messages, 2)
	var got []int
	total := 0
	for _, m := range apps {
		var bytes uint64
		for i := range m.Entries {
			bytes += m.Entries[i].size()
		}
		if bytes > limit && len(m.Entries) > 1 {
			t.Fatalf("append of %d entries carries %d bytes, limit %d", len(m.Entries), bytes, limit)
		}
		got = append(got, len(m.Entries))
		total += len(m.Entries)
	}
	// 40+16 bytes each: three fit in 200; the 500-byte entry goes alone.
	if want := []int{3, 2, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("entries per append %v, want %v", got, want)
	}
	c.deliver()
	if got := c.data(2); len(got) != len(sizes) {
		t.Fatalf("node 2 applied %d entries, want %d", len(got), len(sizes))
	}
}

// TestFeatureMaxInflightBytes: appends in flight are capped by their bytes
// too (the message that reaches the cap still goes).
func TestFeatureMaxInflightBytes(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) {
		cfg.MaxSizePerMsg = 60 // one 40-byte entry (56 accounted) per message
		cfg.MaxInflightBytes = 120
	})
	for i := range 5 {
		c.propose(1, strings.Repeat(fmt.Sprint(i), 40))
	}
	rd := c.handleReady(1)
	if apps := appsTo(rd.Messages, 2); len(apps) != 3 {
		t.Fatalf("%d appends to 2, want 3 (56+56 < 120 ≤ 56+56+56)", len(apps))
	}
	c.deliver()
	if got := c.data(2); len(got) != 5 {
		t.Fatalf("node 2 applied %v", got)
	}
}

// TestFeatureMaxUncommittedBytes: the leader refuses proposals once it holds
// MaxUncommittedBytes of uncommitted entry data, and accepts again once they
// commit. A proposal is always accepted when nothing is uncommitted, so one
// large entry cannot block the leader forever.
func TestFeatureMaxUncommittedBytes(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.MaxUncommittedBytes = 100 })
	n := c.nodes[1]
	c.partition(1)
	c.propose(1, strings.Repeat("a", 60))
	before := n.Status()
	for _, err := range []error{n.Propose(make([]byte, 41)), n.ProposeConfChange(ConfChange{
		Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 4}}, Context: make([]byte, 100)})} {
		if !errors.Is(err, ErrUncommittedLimit) {
			t.Fatalf("proposal over the limit: %v, want ErrUncommittedLimit", err)
		}
	}
	if after := n.Status(); !statusEqual(before, after) {
		t.Fatalf("refused proposal changed the status: %+v -> %+v", before, after)
	}
	c.propose(1, strings.Repeat("b", 40)) // exactly the limit
	if err := n.Propose([]byte("c")); !errors.Is(err, ErrUncommittedLimit) {
		t.Fatalf("proposal over the limit: %v, want ErrUncommittedLimit", err)
	}
	c.deliver()
	c.heal()
	c.tick(1)
	if got := c.data(2); len(got) != 2 {
		t.Fatalf("node 2 applied %d entries, want 2", len(got))
	}
	c.propose(1, strings.Repeat("c", 100))
	c.deliver()
	c.propose(1, strings.Repeat("d", 500)) // nothing uncommitted: accepted
	if err := n.Propose([]byte("e")); !errors.Is(err, ErrUncommittedLimit) {
		t.Fatalf("proposal after an oversized one: %v, want ErrUncommittedLimit", err)
	}
	c.deliver()
	c.propose(1, "e")
}

// TestFeatureMaxEntryBytes: an entry larger than MaxEntryBytes is refused
// with ErrEntryTooLarge; one at the limit is accepted.
func TestFeatureMaxEntryBytes(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.MaxEntryBytes = 10 })
	n := c.nodes[1]
	before := n.Status()
	if err := n.Propose(make([]byte, 11)); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("Propose(11 bytes): %v, want ErrEntryTooLarge", err)
	}
	if err := n.ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 4}},
		Context: make([]byte, 64)}); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("oversized conf change: %v, want ErrEntryTooLarge", err)
	}
	if after := n.Status(); !statusEqual(before, after) || n.HasReady() {
		t.Fatalf("refused proposal changed the node: %+v -> %+v", before, after)
	}
	c.propose(1, "0123456789")
	c.deliver()
	if got := c.data(3); !slices.Equal(got, []string{"0123456789"}) {
		t.Fatalf("node 3 applied %v", got)
	}
}

// TestFeatureProposalForwarding: a follower forwards proposals to the
// leader; with DisableProposalForwarding, or with no known leader, it
// refuses them with a *NotLeaderError naming the leader it knows.
func TestFeatureProposalForwarding(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	c.propose(2, "f")
	rd := c.handleReady(2)
	if props := msgsOf(rd.Messages, MsgProp); len(props) != 1 || props[0].To != 1 || props[0].Term != 0 {
		t.Fatalf("follower sent %+v, want one MsgProp to 1 (without a term)", rd.Messages)
	}
	c.deliver()
	for _, id := range c.ids {
		if got := c.data(id); !slices.Equal(got, []string{"f"}) {
			t.Fatalf("node %d applied %v", id, got)
		}
	}

	fresh := newCluster(t, []uint64{1, 2, 3}, nil)
	var nle *NotLeaderError
	if err := fresh.nodes[2].Propose([]byte("x")); !errors.As(err, &nle) || nle.Leader != None {
		t.Fatalf("Propose with no leader known: %v, want NotLeaderError{None}", err)
	}

	c = steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.DisableProposalForwarding = true })
	n := c.nodes[2]
	before := n.Status()
	for _, err := range []error{n.Propose([]byte("x")),
		n.ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 4}}})} {
		if !errors.As(err, &nle) || nle.Leader != 1 || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("Propose on a follower without forwarding: %v, want a NotLeaderError naming 1", err)
		}
		if !strings.Contains(err.Error(), "1") {
			t.Fatalf("error %q does not name the leader", err)
		}
	}
	if after := n.Status(); !statusEqual(before, after) || n.HasReady() {
		t.Fatal("refused proposal changed the follower")
	}
}

// lagAndCompact makes node 3 of a three-voter cluster miss entries that the
// leader then compacts away; it returns the cluster (3 crashed) and the
// snapshot.
func lagAndCompact(t *testing.T) (*cluster, *Snapshot) {
	t.Helper()
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	c.propose(1, "a")
	c.deliver()
	c.crash(3)
	for i := range 5 {
		c.propose(1, fmt.Sprint(i))
	}
	c.deliver()
	n := c.nodes[1]
	applied := n.BasicStatus().Applied
	if err := n.Compact(applied, []byte("state")); err != nil {
		t.Fatal(err)
	}
	snap := n.Snapshot()
	if snap == nil || snap.Meta.Index != applied || !confEqual(snap.Meta.Config, ConfState{Voters: []uint64{1, 2, 3}}) {
		t.Fatalf("snapshot %+v", snap)
	}
	c.stores[1].compact(snap)
	if st := n.BasicStatus(); st.FirstIndex != applied+1 {
		t.Fatalf("first index %d after compacting %d", st.FirstIndex, applied)
	}
	return c, snap
}

// TestFeatureSnapshotCatchUp: a follower that lags behind the compaction
// point receives the snapshot, installs it (Ready.Snapshot), and then
// catches up with the entries after it; after a restart it recovers from
// the snapshot and the entries it stored.
func TestFeatureSnapshotCatchUp(t *testing.T) {
	c, snap := lagAndCompact(t)
	c.restart(3)
	snaps := 0
	c.drop = func(m Message) bool {
		if m.Type == MsgSnap {
			snaps++
			if m.Snapshot.Meta.Index != snap.Meta.Index || m.Snapshot.Meta.Term != snap.Meta.Term || string(m.Snapshot.Data) != "state" {
				t.Fatalf("sent snapshot %+v", m.Snapshot)
			}
		}
		return false
	}
	c.propose(1, "b")
	c.tick(2)
	if snaps != 1 {
		t.Fatalf("%d snapshots sent, want 1", snaps)
	}
	st := c.stores[3]
	if st.snap == nil || st.snap.Meta.Index != snap.Meta.Index || string(st.snap.Data) != "state" {
		t.Fatalf("node 3 stored snapshot %+v", st.snap)
	}
	if got := c.nodes[3].Snapshot(); got == nil || got.Meta.Index != snap.Meta.Index {
		t.Fatalf("node 3 Snapshot() = %+v", got)
	}
	if got := c.data(3); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("node 3 applied %v after the snapshot, want [b]", got)
	}
	c.checkSameLogs(t, 1, 2, 3)
	if p := progressOf(t, c.nodes[1], 3); p.State != ProgressReplicate || p.Match != c.nodes[1].BasicStatus().LastIndex {
		t.Fatalf("leader's progress of 3: %+v", p)
	}
	before := c.nodes[3].Status()
	c.crash(3)
	c.restart(3)
	after := c.nodes[3].Status()
	if after.Term != before.Term || after.Commit != before.Commit || after.LastIndex != before.LastIndex ||
		after.FirstIndex != before.FirstIndex || !confEqual(after.Config, before.Config) {
		t.Fatalf("restart from snapshot: %+v, was %+v", after.BasicStatus, before.BasicStatus)
	}
	c.propose(1, "c")
	c.deliver()
	if got := c.data(3); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("restarted node 3 applied %v, want [b c] (b again: Config.Applied is the snapshot index)", got)
	}
}

// TestFeatureSnapshotRetry: a snapshot that is lost is sent again, whether
// the host reports the failure (ReportSnapshot(id, false)) or not (the
// leader gives up waiting after an election timeout).
func TestFeatureSnapshotRetry(t *testing.T) {
	for _, report := range []bool{true, false} {
		t.Run(fmt.Sprintf("reported=%t", report), func(t *testing.T) {
			c, snap := lagAndCompact(t)
			c.restart(3)
			snaps := 0
			c.drop = func(m Message) bool {
				if m.Type == MsgSnap {
					snaps++
					return snaps == 1 // the first one is lost
				}
				return false
			}
			c.tick(1)
			if snaps != 1 {
				t.Fatalf("%d snapshots sent, want 1", snaps)
			}
			p := progressOf(t, c.nodes[1], 3)
			if p.State != ProgressSnapshot || p.PendingSnapshot != snap.Meta.Index {
				t.Fatalf("progress %+v, want snapshot state pending index %d", p, snap.Meta.Index)
			}
			ticks := 0
			if report {
				c.nodes[1].ReportSnapshot(3, false)
				if p := progressOf(t, c.nodes[1], 3); p.State != ProgressProbe {
					t.Fatalf("progress after a failed snapshot %+v, want probe", p)
				}
			}
			for snaps < 2 {
				if ticks == 3*10 {
					t.Fatalf("snapshot not retried within %d ticks", ticks)
				}
				c.tick(1)
				ticks++
			}
			if report && ticks > 2 {
				t.Fatalf("reported failure: snapshot retried after %d ticks, want at the next heartbeat", ticks)
			}
			if !report && (ticks < 10 || ticks > 2*10) {
				t.Fatalf("unreported loss: snapshot retried after %d ticks, want after about an election timeout", ticks)
			}
			if st := c.stores[3].snap; st == nil || st.Meta.Index != snap.Meta.Index {
				t.Fatalf("node 3 stored snapshot %+v", st)
			}
			c.propose(1, "b")
			c.deliver()
			if got := c.data(3); !slices.Equal(got, []string{"b"}) {
				t.Fatalf("node 3 applied %v", got)
			}
			c.checkSameLogs(t, 1, 2, 3)
		})
	}
}

// TestFeatureStatus: Status and BasicStatus report role, term, vote,
// leader, commit, applied, log bounds, configuration and (on a leader)
// per-peer progress sorted by ID.
func TestFeatureStatus(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	c.propose(1, "a")
	c.deliver()
	c.partition(3)
	c.propose(1, "b")
	c.deliver()
	c.nodes[1].ReportUnreachable(3)

	lead := c.nodes[1].Status()
	wantBasic := BasicStatus{ID: 1, Role: Leader, Term: 2, Vote: 1, Lead: 1, Commit: 4, Applied: 4,
		FirstIndex: 1, LastIndex: 4}
	if lead.BasicStatus != wantBasic {
		t.Fatalf("leader BasicStatus %+v, want %+v", lead.BasicStatus, wantBasic)
	}
	if lead.BasicStatus != c.nodes[1].BasicStatus() {
		t.Fatal("Status and BasicStatus disagree")
	}
	if !confEqual(lead.Config, ConfState{Voters: []uint64{1, 2, 3}}) {
		t.Fatalf("config %+v", lead.Config)
	}
	wantProgress := []PeerProgress{
		{ID: 1, Match: 4, Next: 5, State: ProgressReplicate, RecentActive: true},
		{ID: 2, Match: 4, Next: 5, State: ProgressReplicate, RecentActive: true},
		{ID: 3, Match: 3, Next: 4, State: ProgressProbe, RecentActive: true},
	}
	if !slices.Equal(lead.Progress, wantProgress) {
		t.Fatalf("progress %+v, want %+v", lead.Progress, wantProgress)
	}

	fol := c.nodes[2].Status()
	wantBasic = BasicStatus{ID: 2, Role: Follower, Term: 2, Vote: 1, Lead: 1, Commit: 4, Applied: 4,
		FirstIndex: 1, LastIndex: 4}
	if fol.BasicStatus != wantBasic || fol.Progress != nil {
		t.Fatalf("follower status %+v, want %+v and no progress", fol, wantBasic)
	}
	if st := c.nodes[3].BasicStatus(); st.Commit != 3 || st.LastIndex != 3 {
		t.Fatalf("cut-off follower %+v", st)
	}

	// A learner and a transfer show up.
	c.heal()
	c.addNode(4)
	c.changeConf(1, ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 4}}})
	c.partition(3)
	if err := c.nodes[1].TransferLeadership(3); err != nil {
		t.Fatal(err)
	}
	lead = c.nodes[1].Status()
	if lead.LeadTransferee != 3 || !confEqual(lead.Config, ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}) {
		t.Fatalf("status %+v", lead)
	}
	if p := lead.Progress[3]; p.ID != 4 || !p.Learner {
		t.Fatalf("learner progress %+v", p)
	}

	n := c.nodes[2]
	if allocs := testing.AllocsPerRun(100, func() { _ = n.BasicStatus() }); allocs != 0 {
		t.Fatalf("BasicStatus allocates %v times", allocs)
	}
}

// TestFeatureBadInput: Step refuses malformed messages, messages for
// another node, responses from nodes outside the configuration and
// impossible indexes with an error, and changes nothing.
func TestFeatureBadInput(t *testing.T) {
	snap := &Snapshot{Meta: SnapshotMeta{Index: 9, Term: 2, Config: ConfState{Voters: []uint64{1, 2, 3}}}}
	tests := []struct {
		name string
		node string // "leader" (node 1, term 2, last index 3, commit 3) or "follower" (node 2 of it)
		m    Message
		want error
	}{
		{"unknown type 0", "leader", Message{Type: 0, From: 2, To: 1, Term: 2}, ErrInvalidMessage},
		{"unknown type 99", "leader", Message{Type: 99, From: 2, To: 1, Term: 2}, ErrInvalidMessage},
		{"to another node", "leader", Message{Type: MsgHeartbeatResp, From: 2, To: 3, Term: 2}, ErrInvalidMessage},
		{"to an unknown node", "follower", Message{Type: MsgApp, From: 1, To: 9, Term: 2, Index: 3, LogTerm: 2}, ErrInvalidMessage},
		{"from nobody", "leader", Message{Type: MsgAppResp, From: 0, To: 1, Term: 2}, ErrInvalidMessage},
		{"to itself", "leader", Message{Type: MsgAppResp, From: 1, To: 1, Term: 2}, ErrInvalidMessage},
		{"no term", "follower", Message{Type: MsgApp, From: 1, To: 2, Index: 3, LogTerm: 2}, ErrInvalidMessage},
		{"forwarded with a term", "leader", Message{Type: MsgProp, From: 2, To: 1, Term: 2,
			Entries: []Entry{{Data: []byte("x")}}}, ErrInvalidMessage},
		{"reject on a heartbeat", "follower", Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 2, Reject: true}, ErrInvalidMessage},
		{"snap without snapshot", "follower", Message{Type: MsgSnap, From: 1, To: 2, Term: 2}, ErrInvalidMessage},
		{"snapshot on an append", "follower", Message{Type: MsgApp, From: 1, To: 2, Term: 2, Index: 3, LogTerm: 2,
			Snapshot: snap}, ErrInvalidMessage},
		{"entries on a heartbeat", "follower", Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 2,
			Entries: []Entry{{Index: 4, Term: 2}}}, ErrInvalidMessage},
		{"gap in appended entries", "follower", Message{Type: MsgApp, From: 1, To: 2, Term: 2, Index: 3, LogTerm: 2,
			Entries: []Entry{{Index: 4, Term: 2}, {Index: 6, Term: 2}}}, ErrInvalidMessage},
		{"entry term above message term", "follower", Message{Type: MsgApp, From: 1, To: 2, Term: 2, Index: 3, LogTerm: 2,
			Entries: []Entry{{Index: 4, Term: 3}}}, ErrInvalidMessage},
		{"unknown entry type", "follower", Message{Type: MsgApp, From: 1, To: 2, Term: 2, Index: 3, LogTerm: 2,
			Entries: []Entry{{Index: 4, Term: 2, Type: 9}}}, ErrInvalidMessage},
		{"append response from a stranger", "leader", Message{Type: MsgAppResp, From: 9, To: 1, Term: 2, Index: 3}, ErrUnknownNode},
		{"append response from a stranger, newer term", "leader", Message{Type: MsgAppResp, From: 9, To: 1, Term: 7, Index: 3}, ErrUnknownNode},
		{"heartbeat response from a stranger", "leader", Message{Type: MsgHeartbeatResp, From: 9, To: 1, Term: 2}, ErrUnknownNode},
		{"vote response from a stranger", "leader", Message{Type: MsgVoteResp, From: 9, To: 1, Term: 2}, ErrUnknownNode},
		{"read index from a stranger", "leader", Message{Type: MsgReadIndex, From: 9, To: 1, Context: []byte("r")}, ErrUnknownNode},
		{"proposal from a stranger", "leader", Message{Type: MsgProp, From: 9, To: 1, Entries: []Entry{{Data: []byte("x")}}}, ErrUnknownNode},
		{"read response from a stranger", "follower", Message{Type: MsgReadIndexResp, From: 9, To: 2, Term: 2, Index: 3}, ErrUnknownNode},
		{"append response beyond the last index", "leader", Message{Type: MsgAppResp, From: 2, To: 1, Term: 2, Index: 50}, ErrInvalidMessage},
		{"append conflicting with committed entries", "follower", Message{Type: MsgApp, From: 1, To: 2, Term: 2,
			Index: 1, LogTerm: 1, Commit: 3, Entries: []Entry{{Index: 2, Term: 1}}}, ErrInvalidMessage},
		{"append conflicting with committed entries, newer term", "follower", Message{Type: MsgApp, From: 3, To: 2, Term: 5,
			Index: 2, LogTerm: 2, Commit: 3, Entries: []Entry{{Index: 3, Term: 4}}}, ErrInvalidMessage},
		{"append whose previous entry contradicts a committed one", "follower", Message{Type: MsgApp, From: 3, To: 2, Term: 5,
			Index: 2, LogTerm: 4, Commit: 3, Entries: []Entry{{Index: 3, Term: 4}}}, ErrInvalidMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := steadyLeader(t, []uint64{1, 2, 3}, nil)
			c.propose(1, "a")
			c.deliver()
			n := c.nodes[1]
			if tc.node == "follower" {
				n = c.nodes[2]
			}
			if st := n.BasicStatus(); st.Commit != 3 || st.LastIndex != 3 {
				t.Fatalf("setup: %+v", st)
			}
			before := n.Status()
			terms := logTerms(n)
			err := n.Step(tc.m)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Step: %v, want %v", err, tc.want)
			}
			if after := n.Status(); !statusEqual(before, after) {
				t.Fatalf("status changed: %+v -> %+v", before, after)
			}
			if got := logTerms(n); !slices.Equal(got, terms) {
				t.Fatalf("log terms %v -> %v", terms, got)
			}
			if n.HasReady() {
				t.Fatalf("refused message left work: %+v", n.Ready())
			}
		})
	}
}

// TestFeatureAdvanceWithoutReady: Advance with no outstanding Ready fails
// with ErrNoReady; while a Ready is outstanding no other is handed out.
func TestFeatureAdvanceWithoutReady(t *testing.T) {
	n, err := New(Config{ID: 1, Voters: []uint64{1, 2, 3}}, Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Advance(); !errors.Is(err, ErrNoReady) {
		t.Fatalf("Advance before any Ready: %v, want ErrNoReady", err)
	}
	rd := n.Ready()
	if len(rd.CommittedEntries) != 1 {
		t.Fatalf("first Ready %+v, want the bootstrap entry to apply", rd)
	}
	n.Campaign()
	if n.HasReady() {
		t.Fatal("HasReady while a Ready is outstanding")
	}
	if again := n.Ready(); !again.IsEmpty() {
		t.Fatalf("second Ready before Advance: %+v, want empty", again)
	}
	if err := n.Advance(); err != nil {
		t.Fatal(err)
	}
	if err := n.Advance(); !errors.Is(err, ErrNoReady) {
		t.Fatalf("second Advance: %v, want ErrNoReady", err)
	}
	if rd := takeReady(t, n); len(msgsOf(rd.Messages, MsgVote)) != 2 {
		t.Fatalf("Ready after Advance %+v, want the vote requests", rd)
	}
}

// TestFeatureRestoreTornWrite: entries of a newer term without the hard
// state written with them (a torn write) restore in that term with no vote.
func TestFeatureRestoreTornWrite(t *testing.T) {
	good := restoredState(3, 1, 2, 2, 3)
	n, err := New(Config{ID: 1}, Persisted{HardState: HardState{Term: 2, Vote: 2, Commit: 1}, Entries: good.Entries})
	if err != nil {
		t.Fatal(err)
	}
	if st := n.BasicStatus(); st.Term != 3 || st.Vote != None || st.Commit != 1 {
		t.Fatalf("status %+v, want term 3, no vote, commit 1", st)
	}
}

// TestFeatureInvalidConfig: New refuses an invalid configuration or
// persisted state with an error wrapping ErrInvalidConfig that names the
// culprit.
func TestFeatureInvalidConfig(t *testing.T) {
	good := restoredState(3, 1, 2, 2, 3)
	tests := []struct {
		cfg  Config
		st   Persisted
		name string // expected in the message
	}{
		{Config{}, Persisted{}, "ID"},
		{Config{ID: 1, ElectionTick: -1}, Persisted{}, "ElectionTick"},
		{Config{ID: 1, HeartbeatTick: -2}, Persisted{}, "HeartbeatTick"},
		{Config{ID: 1, ElectionTick: 5, HeartbeatTick: 5}, Persisted{}, "HeartbeatTick"},
		{Config{ID: 1, HeartbeatTick: 10}, Persisted{}, "HeartbeatTick"},
		{Config{ID: 1, MaxInflightMsgs: -1}, Persisted{}, "MaxInflightMsgs"},
		{Config{ID: 1, TransferTimeoutTicks: -1}, Persisted{}, "TransferTimeoutTicks"},
		{Config{ID: 1, ReadMode: ReadLease}, Persisted{}, "ReadLease"},
		{Config{ID: 1, ReadMode: 7}, Persisted{}, "ReadMode"},
		{Config{ID: 1, Voters: []uint64{1, 0}}, Persisted{}, "Voters"},
		{Config{ID: 1, Voters: []uint64{1, 2, 1}}, Persisted{}, "Voters"},
		{Config{ID: 1, Applied: 3}, good, "Applied"},
		{Config{ID: 1}, Persisted{HardState: HardState{Term: 3, Commit: 9}, Entries: good.Entries}, "commit"},
		{Config{ID: 1}, Persisted{HardState: good.HardState, Entries: []Entry{good.Entries[0], good.Entries[2]}}, "entry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := New(tc.cfg, tc.st)
			if !errors.Is(err, ErrInvalidConfig) || n != nil {
				t.Fatalf("New(%+v): %v, %v; want ErrInvalidConfig", tc.cfg, n, err)
			}
			if !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("error %q does not name %s", err, tc.name)
			}
		})
	}
	if _, err := New(Config{ID: 1, Applied: 2}, good); err != nil {
		t.Fatalf("valid restart: %v", err)
	}
	if _, err := New(Config{ID: 1, CheckQuorum: true, ReadMode: ReadLease}, Persisted{}); err != nil {
		t.Fatalf("ReadLease with CheckQuorum: %v", err)
	}
}

// TestFeatureRestartRecovers: a node restarted from what it persisted has
// the same term, vote, commit index, log and configuration; committed
// entries are handed out again from Config.Applied on.
func TestFeatureRestartRecovers(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	c.propose(1, "a")
	c.addNode(4)
	c.changeConf(1, ConfChange{Changes: []ConfChangeSingle{{Type: AddLearner, NodeID: 4}}})
	c.campaign(2)
	c.propose(2, "b")
	c.deliver()
	c.partition(3)
	c.propose(2, "c") // not on 3
	c.deliver()
	c.heal()
	before := map[uint64]Status{}
	terms := map[uint64][]uint64{}
	for _, id := range c.ids {
		before[id] = c.nodes[id].Status()
		terms[id] = logTerms(c.nodes[id])
	}
	for _, id := range c.ids {
		c.crash(id)
		c.restart(id)
	}
	for _, id := range c.ids {
		b, a := before[id], c.nodes[id].Status()
		if a.Term != b.Term || a.Vote != b.Vote || a.Commit != b.Commit || a.LastIndex != b.LastIndex ||
			a.FirstIndex != b.FirstIndex || !confEqual(a.Config, b.Config) {
			t.Fatalf("node %d restarted as %+v, was %+v", id, a, b)
		}
		if a.Role != Follower || a.Lead != None || a.Applied != 0 {
			t.Fatalf("node %d restarted as %v led by %d applied %d", id, a.Role, a.Lead, a.Applied)
		}
		if got := logTerms(c.nodes[id]); !slices.Equal(got, terms[id]) {
			t.Fatalf("node %d log terms %v, were %v", id, got, terms[id])
		}
	}
	c.process()
	for _, id := range []uint64{1, 2, 4} {
		if got := c.data(id); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("node %d re-applied %v, want [a b c]", id, got)
		}
	}
	if got := c.data(3); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("node 3 re-applied %v, want [a b]", got)
	}

	// With Config.Applied, applied entries are not handed out again.
	st := c.stores[2]
	cfg := c.cfgs[2]
	cfg.Voters = nil
	cfg.Applied = st.hs.Commit - 1
	n, err := New(cfg, st.persisted())
	if err != nil {
		t.Fatal(err)
	}
	rd := takeReady(t, n)
	if len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Index != st.hs.Commit ||
		!bytes.Equal(rd.CommittedEntries[0].Data, []byte("c")) {
		t.Fatalf("committed entries %+v, want only index %d", rd.CommittedEntries, st.hs.Commit)
	}

	// The cluster goes on.
	lead := c.tickUntilLeader(3 * 10)
	if lead == None {
		t.Fatal("no leader after the restart")
	}
	c.propose(lead, "d")
	c.deliver()
	c.checkSameLogs(t, 1, 2, 3, 4)
}
