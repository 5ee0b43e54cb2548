package sim

import (
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// TestReachCrash: a crash counts the persistence step of the write in
// flight, and completed writes no fsync covered.
func TestReachCrash(t *testing.T) {
	f := newDiskFixture(t, DiskOptions{WriteMean: Millisecond}, 1)
	c := &cluster{}
	p := &proc{disk: f.d}
	k := &c.counters.Reached
	c.reachCrash(p) // idle disk: nothing
	if *k != (Reached{}) {
		t.Fatalf("idle crash counted %+v", *k)
	}
	f.write(t, node.Update{Entries: ents(1, 1, 5), HardState: core.HardState{Term: 1}, Sync: true})
	f.write(t, node.Update{Entries: ents(1, 6, 6)}) // written, not synced
	f.save(node.Update{Entries: ents(2, 4, 7), Sync: true})
	c.reachCrash(p)
	if want := (Reached{CrashEntries: 1, CrashOverwrite: 1, CrashUnsynced: 1}); *k != want {
		t.Fatalf("crash overwriting a suffix: %+v, want %+v", *k, want)
	}
	f.run()
	*k = Reached{}
	f.save(node.Update{HardState: core.HardState{Term: 2, Commit: 5}, Sync: true})
	c.reachCrash(p)
	f.run()
	f.save(node.Update{LocalSnapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 5, Term: 1}}, CompactTo: 5, Sync: true})
	c.reachCrash(p)
	f.run()
	f.save(node.Update{Snapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 20, Term: 2}}, Sync: true})
	c.reachCrash(p)
	f.run()
	f.save(node.Update{Entries: ents(2, 21, 22), Sync: true})
	c.reachCrash(p)
	if want := (Reached{CrashHardState: 1, CrashCompaction: 1, CrashSnapshot: 1, CrashEntries: 1}); *k != want {
		t.Fatalf("crashes at each step: %+v, want %+v", *k, want)
	}
}

// ckWrite hands u to the checker as written and durable.
func ckWrite(c *Checker, id uint64, u node.Update) {
	c.Write(0, id, &u)
	c.Durable(0, id, &u)
}

// TestCheckerConflicts: a log conflicts with a snapshot when it holds
// another term at the snapshot's index, or ends below it on an entry
// that is not the committed one.
func TestCheckerConflicts(t *testing.T) {
	c := NewChecker([]uint64{1, 2, 3})
	ckWrite(c, 1, node.Update{Entries: ents(1, 1, 6), HardState: core.HardState{Term: 1, Commit: 3}})
	ckWrite(c, 2, node.Update{Entries: ents(1, 1, 3), HardState: core.HardState{Term: 1, Commit: 3}})
	ckWrite(c, 2, node.Update{Entries: ents(2, 4, 5), HardState: core.HardState{Term: 2, Commit: 5}})
	for _, tc := range []struct {
		id, index, term uint64
		want            bool
	}{
		{1, 5, 1, false}, // the same term at the snapshot's index
		{1, 5, 2, true},  // index 5 holds term 1, the snapshot term 2
		{1, 3, 1, false}, // a committed prefix
		{2, 8, 2, false}, // ends on the committed entry 5
		{3, 8, 2, false}, // empty log
	} {
		if got := c.conflicts(tc.id, tc.index, tc.term); got != tc.want {
			t.Errorf("conflicts(n%d, %d, term %d) = %v, want %v", tc.id, tc.index, tc.term, got, tc.want)
		}
	}
	// Node 3 ends below the snapshot on an entry of a deposed term that
	// was never committed: entry 4 of term 1 differs from the committed
	// entry 4 of term 2.
	ckWrite(c, 3, node.Update{Entries: ents(1, 1, 4), HardState: core.HardState{Term: 1}})
	if !c.conflicts(3, 8, 2) {
		t.Error("a stale uncommitted tail below the snapshot does not conflict")
	}
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
}

// TestCheckerOldTermTail: a new leader holds an old-term tail when an
// entry of an earlier term lies past the highest committed index.
func TestCheckerOldTermTail(t *testing.T) {
	c := NewChecker([]uint64{1, 2})
	ckWrite(c, 1, node.Update{Entries: ents(1, 1, 5), HardState: core.HardState{Term: 1, Commit: 3}})
	ckWrite(c, 1, node.Update{Entries: ents(3, 6, 6), HardState: core.HardState{Term: 3, Commit: 3}})
	if c.oldTermTail(1, 3) != 5 {
		t.Error("entries 4 and 5 of term 1 past commit 3: no old-term tail")
	}
	ckWrite(c, 2, node.Update{Entries: ents(1, 1, 5), HardState: core.HardState{Term: 1, Commit: 5}})
	if c.oldTermTail(1, 3) != 0 {
		t.Error("everything of term 1 committed: old-term tail")
	}
	if c.oldTermTail(2, 1) != 0 {
		t.Error("entries of its own term only: old-term tail")
	}
}

// TestReachRoleAndConf: competing candidates are counted once per term,
// a transfer completes when its target leads, and joint configurations
// are counted once when entered and left, with partitions.
func TestReachRoleAndConf(t *testing.T) {
	c := &cluster{s: &Scheduler{}, chk: NewChecker([]uint64{1, 2, 3})}
	k := &c.counters.Reached
	ps := []*proc{{id: 1}, {id: 2}, {id: 3}}
	cand := func(p *proc, term uint64) {
		c.reachRole(p, core.BasicStatus{Term: term - 1}, core.BasicStatus{Role: core.Candidate, Term: term})
	}
	cand(ps[0], 2)
	cand(ps[1], 3)
	if k.CompetingCandidates != 0 {
		t.Fatal("candidates of different terms compete")
	}
	cand(ps[2], 3)
	cand(ps[0], 3)
	if k.CompetingCandidates != 1 {
		t.Fatalf("three candidates of term 3: %d competing elections, want 1", k.CompetingCandidates)
	}
	c.reachTransfer(&proc{id: 1, status: core.BasicStatus{Term: 3}}, 2)
	lead := func(p *proc, term uint64) {
		c.reachRole(p, core.BasicStatus{Term: term}, core.BasicStatus{Role: core.Leader, Term: term})
	}
	lead(ps[2], 4) // someone else took over first: the transfer is over
	lead(ps[1], 5)
	if k.TransfersCompleted != 0 {
		t.Fatal("transfer completed by a later election")
	}
	c.reachTransfer(&proc{id: 2, status: core.BasicStatus{Term: 5}}, 3)
	lead(ps[2], 6)
	if k.TransfersCompleted != 1 {
		t.Fatal("transfer to 3 not completed")
	}

	c.reachConf(10, true)
	c.reachConf(10, true) // another node applies the same entry
	c.partition = true
	c.reachPartition()
	c.reachPartition()
	c.reachConf(11, false)
	c.reachConf(11, false)
	c.reachConf(12, false) // a simple change
	if want := (Reached{JointEntered: 1, JointLeft: 1, JointPartitioned: 1, JointLeftPartitioned: 1}); k.JointEntered != 1 ||
		k.JointLeft != 1 || k.JointPartitioned != 1 || k.JointLeftPartitioned != 1 {
		t.Fatalf("joint: %+v, want %+v", *k, want)
	}
	c.reachConf(13, true) // entered under partition
	c.reachConf(14, false)
	if k.JointEntered != 2 || k.JointPartitioned != 2 || k.JointLeftPartitioned != 2 {
		t.Fatalf("joint under partition: %+v", *k)
	}
}

// TestReachApp: an append that announces a commit index past what it
// verifies counts when the follower accepts it and holds, after it, an
// entry the leader does not have.
func TestReachApp(t *testing.T) {
	c := &cluster{s: &Scheduler{}, chk: NewChecker([]uint64{1, 2})}
	ckWrite(c.chk, 1, node.Update{Entries: append(ents(1, 1, 5), ents(3, 6, 8)...), HardState: core.HardState{Term: 3, Commit: 8}})
	ckWrite(c.chk, 2, node.Update{Entries: append(ents(1, 1, 5), ents(2, 6, 8)...), HardState: core.HardState{Term: 2, Commit: 5}})
	k := &c.counters.Reached
	c.reachApp(1, 2, 5, 2, 6) // rejected: entry 5 has term 1
	c.reachApp(1, 2, 8, 3, 8) // nothing after what it verifies
	if k.StaleTailCommit != 0 {
		t.Fatalf("counted %d", k.StaleTailCommit)
	}
	c.reachApp(1, 2, 5, 1, 6) // entry 6 of term 3; the follower's 7 (term 2) is stale
	if k.StaleTailCommit != 1 {
		t.Fatalf("stale tail after the verified index: counted %d", k.StaleTailCommit)
	}
	if c.chk.Err() != nil {
		t.Fatal(c.chk.Err())
	}
}

// TestReachCommit: a new leader with an old-term tail counts once when its
// commit index passes the tail in the same term.
func TestReachCommit(t *testing.T) {
	c := &cluster{s: &Scheduler{}, chk: NewChecker([]uint64{1, 2})}
	ckWrite(c.chk, 1, node.Update{Entries: ents(1, 1, 5), HardState: core.HardState{Term: 1, Commit: 3}})
	p := &proc{id: 1}
	k := &c.counters.Reached
	st := core.BasicStatus{Role: core.Leader, Term: 2, Commit: 3}
	c.reachRole(p, core.BasicStatus{Term: 2}, st)
	if k.OldTermTail != 1 || c.reach.tailIndex != 5 {
		t.Fatalf("old-term tail: %d, index %d", k.OldTermTail, c.reach.tailIndex)
	}
	st.Commit = 4
	c.reachCommit(p, st)
	st.Commit = 6
	c.reachCommit(p, st)
	c.reachCommit(p, st)
	if k.OldTermCommitted != 1 {
		t.Fatalf("committed past the tail: %d, want 1", k.OldTermCommitted)
	}
	// Deposed before committing past it: not counted.
	c.reachRole(p, core.BasicStatus{Term: 3}, core.BasicStatus{Role: core.Leader, Term: 3, Commit: 3})
	c.reachCommit(p, core.BasicStatus{Role: core.Follower, Term: 4, Commit: 6})
	if k.OldTermCommitted != 1 || c.reach.tailLeader != 0 {
		t.Fatalf("deposed leader counted: %d", k.OldTermCommitted)
	}
}
