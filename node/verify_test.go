package node_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// verifyCluster is a three-node cluster verifying every interval entries,
// recording each node's alarms as OnAlarm reports them.
func verifyCluster(t *testing.T, interval uint64) (*testCluster, map[uint64][]node.Alarm) {
	t.Helper()
	seen := map[uint64][]node.Alarm{}
	c := newTestCluster(t, func(cfg *node.Config) {
		cfg.VerifyInterval = interval
		id := cfg.Core.ID
		cfg.OnAlarm = func(a node.Alarm) { seen[id] = append(seen[id], a) }
	})
	c.campaign(1)
	return c, seen
}

// fillPast proposes commands on the leader until every node applied past
// index, ticking so that reports and verdicts go through.
func (c *testCluster) fillPast(index uint64, prefix string) {
	c.t.Helper()
	for i := 0; ; i++ {
		done := true
		for _, id := range c.ids {
			if n := c.live(id); n != nil && n.Applied() <= index {
				done = false
			}
		}
		if done {
			break
		}
		if i > 1000 {
			c.t.Fatalf("nodes never applied past %d", index)
		}
		if lead := c.leader(); lead != 0 {
			c.nodes[lead].Propose([]byte(fmt.Sprintf("%s%d", prefix, i)))
		}
		c.tick(1)
	}
	c.tick(25) // reports, then verdicts, retried after an election timeout
}

func TestVerifyNoAlarmWhenReplicasAgree(t *testing.T) {
	c, seen := verifyCluster(t, 5)
	c.fillPast(40, "x")
	for _, id := range c.ids {
		if a := c.nodes[id].Alarms(); len(a) != 0 || len(seen[id]) != 0 {
			t.Fatalf("node %d: alarms %v (seen %v) with replicas that agree", id, a, seen[id])
		}
		for _, cmd := range c.sms[id].cmds {
			if strings.Contains(cmd, "FCV") {
				t.Fatalf("node %d: a verification record reached the state machine: %q", id, cmd)
			}
		}
	}
	// The state machines are the same: records changed none of them.
	for _, id := range c.ids[1:] {
		if c.sms[id].Hash() != c.sms[1].Hash() || !slices.Equal(c.sms[id].cmds, c.sms[1].cmds) {
			t.Fatalf("node %d's state differs from node 1's", id)
		}
	}
	if f := c.nodes[2].Read(node.ReadStale, nil); f.Err() != nil {
		t.Fatalf("stale read: %v", f.Err())
	}
}

// checkAlarm checks that every node holds an alarm naming bad at a
// checkpoint at or after from, and returns the alarm node 1 holds.
func checkAlarm(t *testing.T, c *testCluster, seen map[uint64][]node.Alarm, bad, from uint64) node.Alarm {
	t.Helper()
	var first node.Alarm
	for _, id := range c.ids {
		as := c.nodes[id].Alarms()
		if len(as) != 1 || as[0].Node != bad || as[0].Index < from || !as[0].Decided || as[0].Hash == as[0].Want {
			t.Fatalf("node %d holds alarms %+v, want one naming node %d at index >= %d", id, as, bad, from)
		}
		if len(seen[id]) == 0 || seen[id][0].Node != bad || seen[id][0].Cleared {
			t.Fatalf("node %d: OnAlarm saw %+v", id, seen[id])
		}
		if id == 1 {
			first = as[0]
		} else if as[0] != first {
			t.Fatalf("node %d's alarm %+v differs from node 1's %+v", id, as[0], first)
		}
	}
	return first
}

func TestVerifyFollowerDiverged(t *testing.T) {
	c, seen := verifyCluster(t, 5)
	c.fillPast(12, "a")
	from := c.nodes[3].Applied()
	c.sms[3].tamper = "silently different"
	c.fillPast(from+12, "b")
	checkAlarm(t, c, seen, 3, from)
	// Node 3 refuses reads at every level, and proposals, with a typed
	// error; the others serve.
	for _, level := range []node.ReadLevel{node.ReadLinearizable, node.ReadLease, node.ReadStale} {
		f := c.nodes[3].Read(level, nil)
		var de *node.DivergedError
		if !errors.As(f.Err(), &de) || !errors.Is(f.Err(), node.ErrDiverged) || de.Alarm.Node != 3 {
			t.Fatalf("%v read on the diverged node: %v", level, f.Err())
		}
	}
	mustErr(t, c.nodes[3].Propose([]byte("w")), node.ErrDiverged)
	mustErr(t, c.nodes[3].TakeSnapshot(), node.ErrDiverged)
	if _, ok := c.nodes[3].Diverged(); !ok {
		t.Fatal("node 3 does not know it diverged")
	}
	f := c.nodes[2].Read(node.ReadLinearizable, nil)
	c.tick(2)
	if !f.Resolved() || f.Err() != nil {
		t.Fatalf("read on a healthy follower: resolved %v, %v", f.Resolved(), f.Err())
	}

	// A restart does not clear it: the log still holds the records.
	c.restart(3, 99)
	c.sms[3].tamper = "silently different"
	c.tick(30)
	if _, ok := c.nodes[3].Diverged(); !ok {
		t.Fatalf("after a restart node 3 forgot it diverged (alarms %v)", c.nodes[3].Alarms())
	}

	// Repaired (its state matches again at a later checkpoint): every
	// node clears the alarm and node 3 serves reads again.
	c.sms[3].tamper = ""
	c.fillPast(c.nodes[1].Applied()+12, "c")
	for _, id := range c.ids {
		if as := c.nodes[id].Alarms(); len(as) != 0 {
			t.Fatalf("node %d still holds %+v after node 3 matched again", id, as)
		}
		if last := seen[id][len(seen[id])-1]; !last.Cleared || last.Node != 3 {
			t.Fatalf("node %d: last OnAlarm %+v, want node 3 cleared", id, last)
		}
	}
	if f := c.nodes[3].Read(node.ReadStale, nil); f.Err() != nil {
		t.Fatalf("read on the repaired node: %v", f.Err())
	}
}

func TestVerifyLeaderDiverged(t *testing.T) {
	c, seen := verifyCluster(t, 5)
	c.fillPast(12, "a")
	from := c.nodes[1].Applied()
	c.sms[1].tamper = "leader went wrong"
	c.fillPast(from+12, "b")
	// The verdict names the leader, not the followers that outvote it.
	checkAlarm(t, c, seen, 1, from)
	mustErr(t, c.nodes[1].Read(node.ReadStale, nil), node.ErrDiverged)
	c.tick(30)
	if lead := c.leader(); lead == 1 || lead == 0 {
		t.Fatalf("leader %d: the diverged leader should have handed over", lead)
	}
}

// A node that missed the reports (restored from the leader's snapshot past
// the checkpoint) cannot vote on it; the others still reach a verdict, and
// the snapshot it restored repairs it.
func TestVerifySnapshotRestoreInBetween(t *testing.T) {
	c, seen := newVerifySnapCluster(t)
	c.fillPast(12, "a")
	// Node 3 is cut off and diverges; the others go on past a checkpoint
	// and compact their logs, so node 3 must take a snapshot.
	c.sms[3].tamper = "diverged while away"
	c.isolate(3)
	target := c.nodes[1].Applied() + 40
	for i := 0; c.nodes[1].Applied() < target; i++ {
		c.nodes[1].Propose([]byte(fmt.Sprintf("s%d", i)))
		c.tick(1)
	}
	c.tick(25)
	if as := c.nodes[1].Alarms(); len(as) != 0 {
		t.Fatalf("alarms %v while node 3 was away and reported nothing", as)
	}
	restoresBefore := c.sms[3].restores
	c.heal()
	for i := 0; i < 200 && (c.leader() == 0 || c.nodes[3].Applied() < target); i++ {
		c.tick(1) // node 3's higher term forces an election first
	}
	if c.sms[3].restores == restoresBefore {
		t.Fatalf("node 3 caught up without a snapshot (restores %d, applied %d, leader %d)", c.sms[3].restores, c.nodes[3].Applied(), c.leader())
	}
	c.fillPast(c.nodes[1].Applied()+12, "b")
	for _, id := range c.ids {
		if as := c.nodes[id].Alarms(); len(as) != 0 || len(seen[id]) != 0 {
			t.Fatalf("node %d: alarms %v (seen %v) after node 3 restored the leader's snapshot", id, as, seen[id])
		}
	}
}

// A diverged node repaired by the leader's snapshot: it clears its own
// alarm at once, the others at its next matching report.
func TestVerifyRepairedBySnapshot(t *testing.T) {
	c, seen := newVerifySnapCluster(t)
	c.fillPast(12, "a")
	c.sms[3].tamper = "x"
	c.fillPast(c.nodes[1].Applied()+12, "b")
	checkAlarm(t, c, seen, 3, 1)
	c.isolate(3)
	target := c.nodes[1].Applied() + 40
	for i := 0; c.nodes[1].Applied() < target; i++ {
		c.nodes[1].Propose([]byte(fmt.Sprintf("s%d", i)))
		c.tick(1)
	}
	restores := c.sms[3].restores
	c.heal()
	for i := 0; i < 200 && (c.leader() == 0 || c.nodes[3].Applied() < target); i++ {
		c.tick(1)
	}
	if c.sms[3].restores == restores {
		t.Fatal("node 3 caught up without a snapshot")
	}
	if _, ok := c.nodes[3].Diverged(); ok {
		t.Fatal("node 3 still refuses reads after restoring the leader's snapshot")
	}
	c.fillPast(c.nodes[1].Applied()+12, "c")
	for _, id := range c.ids {
		if as := c.nodes[id].Alarms(); len(as) != 0 {
			t.Fatalf("node %d still holds %+v", id, as)
		}
	}
}

func newVerifySnapCluster(t *testing.T) (*testCluster, map[uint64][]node.Alarm) {
	seen := map[uint64][]node.Alarm{}
	c := newTestCluster(t, func(cfg *node.Config) {
		cfg.VerifyInterval = 5
		cfg.SnapshotThreshold, cfg.SnapshotKeep = 10, 0
		id := cfg.Core.ID
		cfg.OnAlarm = func(a node.Alarm) { seen[id] = append(seen[id], a) }
	})
	c.campaign(1)
	return c, seen
}

// Verdicts need a majority: with one replica down and the other two
// disagreeing, nothing is decided until the checkpoint is old, then both
// are flagged.
func TestVerifyNoMajority(t *testing.T) {
	c, seen := verifyCluster(t, 5)
	c.fillPast(12, "a")
	c.nodes[3].Stop()
	c.sms[2].tamper = "two ways"
	c.fillPast(c.nodes[1].Applied()+30, "b")
	for _, id := range []uint64{1, 2} {
		as := c.nodes[id].Alarms()
		if len(as) != 2 || as[0].Node != 1 || as[1].Node != 2 || as[0].Decided || as[1].Decided {
			t.Fatalf("node %d: alarms %+v, want nodes 1 and 2 flagged, undecided", id, as)
		}
		if len(seen[id]) == 0 {
			t.Fatalf("node %d: OnAlarm never called", id)
		}
	}
	mustErr(t, c.nodes[1].Read(node.ReadStale, nil), node.ErrDiverged)
}

// Removing the diverged node clears the alarm on the others.
func TestVerifyRemovalClears(t *testing.T) {
	c, seen := verifyCluster(t, 5)
	c.fillPast(12, "a")
	c.sms[3].tamper = "x"
	c.fillPast(c.nodes[1].Applied()+12, "b")
	checkAlarm(t, c, seen, 3, 1)
	f := c.nodes[1].ProposeConfChange(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.RemoveNode, NodeID: 3}}})
	c.tick(5)
	if f.Err() != nil || !f.Resolved() {
		t.Fatalf("remove node 3: %v", f.Err())
	}
	for _, id := range []uint64{1, 2} {
		if as := c.nodes[id].Alarms(); len(as) != 0 {
			t.Fatalf("node %d still holds %+v after node 3 was removed", id, as)
		}
	}
}
