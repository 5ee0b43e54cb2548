package sim

import (
	"slices"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
)

// scenario drives the simulator by hand, for the histories random search
// rarely reaches. Elections happen only when the script asks (a long
// election timeout); safety is checked after every event as in a run.
type scenario struct {
	t *testing.T
	c *cluster
}

func newScenario(t *testing.T, nodes int, bugs uint64, tweak func(*Options)) *scenario {
	t.Helper()
	o := Options{
		Seed: 1, Profile: "scripted", Nodes: nodes,
		Duration: 1000 * Second, HealAt: 1000 * Second, LivenessTimeouts: 10,
		TickInterval: 10 * Millisecond, ElectionTick: 1000, HeartbeatTick: 5,
		Network:       NetworkOptions{DelayMin: Millisecond, DelayMean: Millisecond, QueueCap: 256},
		Disk:          DiskOptions{WriteMean: 100 * Microsecond, SyncMean: 200 * Microsecond},
		MaxSizePerMsg: 1, MaxInflightMsgs: 256,
		Bugs: bugs,
	}
	if tweak != nil {
		tweak(&o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{o: o, s: &Scheduler{}, res: &Result{Options: o}, leaders: make(map[uint64]uint64)}
	c.tr = NewTrace(TraceOptions{})
	c.boot()
	return &scenario{t: t, c: c}
}

func (s *scenario) p(id uint64) *proc { return s.c.proc(id) }

// runUntil runs events for at most d of virtual time, until cond holds
// after an event. It reports whether cond held.
func (s *scenario) runUntil(d Time, cond func() bool) bool {
	end := s.c.s.Now() + d
	for s.c.step(end) {
		if cond != nil && cond() {
			return true
		}
	}
	return cond != nil && !s.c.failed && cond()
}

func (s *scenario) runFor(d Time) { s.runUntil(d, nil) }

// cut blocks both directions between id and every other node but keep.
func (s *scenario) cut(id uint64, keep ...uint64) {
	for _, q := range s.c.procs {
		if q.id == id || containsID(keep, q.id) {
			continue
		}
		s.c.net.SetBlocked(id, q.id, true)
		s.c.net.SetBlocked(q.id, id, true)
	}
}

// mute blocks everything id sends (messages in flight are lost too).
func (s *scenario) mute(id uint64) {
	for _, q := range s.c.procs {
		if q.id != id {
			s.c.net.SetBlocked(id, q.id, true)
		}
	}
}

func containsID(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (s *scenario) crash(id uint64) { s.c.crash(s.p(id), 1000*Second) }

func (s *scenario) restart(id uint64) { s.c.start(s.p(id)) }

// elect makes id campaign until it leads (or d passes).
func (s *scenario) elect(id uint64, d Time) bool {
	p := s.p(id)
	end := s.c.s.Now() + d
	for s.c.s.Now() < end && !s.c.failed {
		_ = p.n.Campaign()
		p.after()
		if s.runUntil(200*Millisecond, func() bool { return p.status.Role == core.Leader }) {
			return true
		}
	}
	return false
}

func (s *scenario) put(id uint64, key, value string) *node.Future {
	p := s.p(id)
	f := p.n.Propose(kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: key, Value: []byte(value)}))
	p.after()
	return f
}

// figure8 plays the Raft paper's Figure 8 on five nodes: an entry of an
// old term reaches a majority under a later leader, which crashes before
// an entry of its own term commits; a node that never had the entry then
// wins. Counting replicas to commit the old entry loses it. It returns the
// verdict the checker reached.
func figure8(t *testing.T, bugs uint64) *Result {
	s := newScenario(t, 5, bugs, nil)
	c := s.c
	if !s.elect(1, Second) {
		t.Fatal("n1 not elected")
	}
	s.put(1, "x", "0")
	s.runFor(100 * Millisecond)

	// (a) n1 appends "a" at k, replicated to n2 only; n1 crashes.
	s.cut(1, 2)
	s.put(1, "x", "a")
	s.runFor(100 * Millisecond)
	k := s.p(1).status.LastIndex
	if s.p(2).status.LastIndex != k {
		t.Fatalf("n2 has last index %d, want %d", s.p(2).status.LastIndex, k)
	}
	s.crash(1)
	c.net.HealAll()

	// (b) n5 is elected by n3, n4 and itself, appends its empty entry at
	// k (a later term), replicates nothing, and crashes.
	s.cut(2)
	s.cut(1)
	p5 := s.p(5)
	_ = p5.n.Campaign()
	p5.after()
	if !s.runUntil(Second, func() bool { return p5.status.Role == core.Leader }) {
		t.Fatal("n5 not elected")
	}
	s.mute(5)
	s.runFor(50 * Millisecond)
	s.crash(5)
	c.net.HealAll()

	// (c) n1 restarts and is elected by n2, n3, n4; it replicates the
	// old-term "a" at k and crashes as soon as it counts k committed.
	s.cut(5)
	s.restart(1)
	p1 := s.p(1)
	if !s.elect(1, 2*Second) {
		t.Fatal("n1 not re-elected")
	}
	if !s.runUntil(2*Second, func() bool { return p1.status.Commit >= k }) {
		t.Fatalf("n1 never committed %d", k)
	}
	s.mute(1)
	s.crash(1)
	c.net.HealAll()

	// (d) n5 restarts and, with n2 cut off, is elected by n3 and n4.
	s.cut(1)
	s.cut(2)
	s.restart(5)
	s.elect(5, 2*Second)
	s.runFor(Second)
	c.finish()
	return c.res
}

// TestScenarioFigure8: the correct core survives Figure 8; with replica
// counting planted (simbugs builds) the checker catches the lost commit.
func TestScenarioFigure8(t *testing.T) {
	if res := figure8(t, 0); res.Verdict.Failed() {
		t.Fatalf("figure 8 without the bug: %s: %s: %s", res.Verdict, res.Check, res.Detail)
	}
	if !core.BugsEnabled {
		t.Skip("planting the bug needs -tags simbugs")
	}
	res := figure8(t, uint64(core.BugCommitOldTerm))
	if res.Verdict != VerdictSafety {
		t.Fatalf("figure 8 with commit-old-term: verdict %s, want a safety violation", res.Verdict)
	}
	t.Logf("caught: %s: %s", res.Check, res.Detail)
}

// TestScenarioSnapshotDuringPartition: a follower cut off while the leader
// compacts its log catches up by snapshot once the partition heals, and
// converges.
func TestScenarioSnapshotDuringPartition(t *testing.T) {
	s := newScenario(t, 3, 0, func(o *Options) {
		o.SnapshotThreshold, o.SnapshotKeep = 10, 2
		o.MaxSizePerMsg = 1 << 20
	})
	if !s.elect(1, Second) {
		t.Fatal("n1 not elected")
	}
	s.cut(3)
	for i := range 40 {
		s.put(1, "k", string(rune('a'+i%26)))
		s.runFor(10 * Millisecond)
	}
	if s.p(1).status.Commit < 40 {
		t.Fatalf("leader commit %d, want ≥ 40", s.p(1).status.Commit)
	}
	s.c.net.HealAll()
	p1, p3 := s.p(1), s.p(3)
	if !s.runUntil(5*Second, func() bool {
		return p3.status.Applied == p1.status.Applied && p3.sm.Hash() == p1.sm.Hash()
	}) {
		t.Fatalf("n3 did not converge: applied %d vs %d", p3.status.Applied, p1.status.Applied)
	}
	if s.c.counters.SnapshotsInstalled == 0 {
		t.Fatal("n3 caught up without a snapshot")
	}
	if s.c.failed {
		t.Fatalf("%s: %s", s.c.res.Check, s.c.res.Detail)
	}
}

// TestScenarioCrashDuringWrite: a follower that crashes with its append in
// flight (torn or lost) and restarts never breaks safety, and catches up.
func TestScenarioCrashDuringWrite(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		s := newScenario(t, 3, 0, func(o *Options) {
			o.Seed = seed
			o.Disk.TornRate = 0.5
			o.Disk.SyncMean = 5 * Millisecond
		})
		if !s.elect(1, Second) {
			t.Fatal("n1 not elected")
		}
		p2 := s.p(2)
		for i := range 10 {
			p2.crashOnWrite = true
			s.put(1, "k", string(rune('a'+i)))
			s.runFor(50 * Millisecond)
			if !p2.up {
				s.restart(2)
			}
		}
		p1 := s.p(1)
		if !s.runUntil(5*Second, func() bool { return p2.up && p2.status.Applied == p1.status.Applied }) {
			t.Fatalf("seed %d: n2 did not catch up: %+v vs %+v", seed, p2.status, p1.status)
		}
		if s.c.failed {
			t.Fatalf("seed %d: %s: %s", seed, s.c.res.Check, s.c.res.Detail)
		}
		if s.c.counters.CrashDuringWrite == 0 {
			t.Fatalf("seed %d: no crash hit a write in flight", seed)
		}
	}
}

// TestScenarioDamagedNodeRefusedAndRepaired: a follower whose hard state
// flipped refuses to start (fail-stop, counted); the harness removes it and
// promotes a fresh node in its place; the cluster keeps committing, and no
// second node may be damaged while the first counts.
func TestScenarioDamagedNodeRefusedAndRepaired(t *testing.T) {
	s := newScenario(t, 3, 0, func(o *Options) {
		o.Storage = StorageOptions{MaxDamaged: 1, RepairShare: 1, RepairMax: 100 * Millisecond}
	})
	if !s.elect(1, Second) {
		t.Fatal("n1 not elected")
	}
	for i := range 5 {
		s.put(1, "k", string(rune('a'+i)))
		s.runFor(20 * Millisecond)
	}
	c, p3 := s.c, s.p(3)
	// Damage n3 at rest: flips until one hits its hard state.
	if !c.damageAllowed(p3) {
		t.Fatal("n3 may not be damaged")
	}
	for seed := uint64(1); !p3.disk.Damaged() || p3.disk.damage[0].rec != recHardState; seed++ {
		p3.disk.damage = nil
		p3.disk.Flip(NewRand(seed, "flip"))
		if seed > 1000 {
			t.Fatal("no flip hit n3's hard state")
		}
	}
	p3.damaged, c.ndamaged = true, 1
	if !p3.damaged || c.ndamaged != 1 {
		t.Fatalf("n3 damaged %v, %d damaged", p3.damaged, c.ndamaged)
	}
	if c.damageAllowed(s.p(2)) || !c.damageAllowed(p3) {
		t.Fatal("a second node of three may be damaged")
	}
	s.crash(3)
	s.restart(3)
	if !p3.refused || p3.up || c.counters.StorageRefusals != 1 {
		t.Fatalf("n3 up %v refused %v, refusals %d", p3.up, p3.refused, c.counters.StorageRefusals)
	}
	s.restart(3) // a refusing node never starts again
	if p3.up || c.counters.StorageRefusals != 1 {
		t.Fatal("a refusing node started again")
	}
	if !s.runUntil(10*Second, func() bool { return c.counters.StorageRepairs == 1 }) {
		t.Fatalf("no repair: %s", c.livenessReport())
	}
	voters, _ := c.members()
	if !p3.removed || c.ndamaged != 0 || !slices.Equal(voters, []uint64{1, 2, 4}) {
		t.Fatalf("after the repair: n3 removed %v, %d damaged, voters %v", p3.removed, c.ndamaged, voters)
	}
	f := s.put(1, "k", "after")
	p4 := s.p(4)
	if !s.runUntil(5*Second, func() bool {
		return f.Resolved() && p4.status.Applied == s.p(1).status.Applied
	}) || f.Err() != nil {
		t.Fatalf("no commit after the repair: %v, %s", f.Err(), c.livenessReport())
	}
	if c.failed {
		t.Fatalf("%s: %s", c.res.Check, c.res.Detail)
	}
}

// TestScenarioLostWriteDetected: a follower whose fsync lied refuses after
// a crash, instead of starting with less than it acknowledged; left down,
// it does not stop the other two.
func TestScenarioLostWriteDetected(t *testing.T) {
	s := newScenario(t, 3, 0, func(o *Options) { o.Storage = StorageOptions{MaxDamaged: 1} })
	if !s.elect(1, Second) {
		t.Fatal("n1 not elected")
	}
	c, p2 := s.c, s.p(2)
	if !c.damageAllowed(p2) {
		t.Fatal("n2 may not be damaged")
	}
	p2.damaged, c.ndamaged = true, 1
	p2.disk.ArmWriteFault(DamageLost, NewRand(1, "x"))
	s.put(1, "k", "v")
	if !s.runUntil(Second, func() bool { return p2.disk.Counters().LostWrites == 1 }) {
		t.Fatal("the armed write fault never fired")
	}
	s.runFor(100 * Millisecond)
	s.crash(2)
	s.restart(2)
	if !p2.refused || c.counters.StorageRefusals != 1 {
		t.Fatalf("n2 refused %v (damage: %s)", p2.refused, p2.disk.DamageReport())
	}
	f := s.put(1, "k", "w")
	if !s.runUntil(2*Second, f.Resolved) || f.Err() != nil {
		t.Fatalf("two healthy nodes of three did not commit: %v", f.Err())
	}
	if c.failed {
		t.Fatalf("%s: %s", c.res.Check, c.res.Detail)
	}
}

// TestScenarioRemovalSurvivesCrash: a membership change is applied only
// from a durable commit index. n1 leads three nodes and removes n3, then
// n2, leaving itself the only voter; the harness retires n2 once n1 applied
// its removal. n1 then loses power. The commit index n1 applied the
// removal from must survive: otherwise n1 restarts with the configuration
// {n1, n2}, needs the retired n2 to make progress, and is stuck for good.
// The checker sees the defect when the change is applied
// (applied-durable), or else at the restart (restart-below-applied); with
// both checks off, its consequence shows: n1 is never elected again.
func TestScenarioRemovalSurvivesCrash(t *testing.T) {
	for _, skipped := range [][]string{nil, {CheckAppliedDurable}, {CheckAppliedDurable, CheckRestartBelowApplied}} {
		name := "checked"
		if len(skipped) > 0 {
			name = "without-" + strings.Join(skipped, ",")
		}
		skip := len(skipped) == 2
		t.Run(name, func(t *testing.T) {
			s := newScenario(t, 3, 0, func(o *Options) { o.SkipChecks = skipped })
			c, p1, p2, p3 := s.c, s.p(1), s.p(2), s.p(3)
			failed := func(what string) {
				t.Helper()
				if c.failed {
					t.Fatalf("%s: %s: %s", what, c.res.Check, c.res.Detail)
				}
				if v := c.chk.Err(); v != nil {
					t.Fatalf("%s: %v", what, v)
				}
			}
			if !s.elect(1, Second) {
				t.Fatal("n1 not elected")
			}
			if f := s.put(1, "k", "a"); !s.runUntil(Second, f.Resolved) || f.Err() != nil {
				t.Fatalf("first write: %v", f.Err())
			}
			remove := func(id uint64) *node.Future {
				f := p1.n.ProposeConfChange(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.RemoveNode, NodeID: id}}})
				p1.after()
				return f
			}
			f := remove(3)
			if !s.runUntil(2*Second, func() bool { return p3.removed }) || f.Err() != nil {
				failed("removing n3")
				t.Fatalf("n3 not retired: %v", f.Err())
			}
			f = remove(2)
			if !s.runUntil(2*Second, func() bool { return p2.removed }) || f.Err() != nil {
				failed("removing n2")
				t.Fatalf("n2 not retired: %v", f.Err())
			}
			res, _ := f.Result()
			idx, _ := res.(uint64)
			if voters, _ := c.members(); !slices.Equal(voters, []uint64{1}) || idx == 0 {
				t.Fatalf("voters %v after the removal at index %d, want [1]", voters, idx)
			}
			// Power loss: whatever no fsync covered is gone.
			s.crash(1)
			s.restart(1)
			failed("n1 restarted")
			if st := p1.status; !skip && st.Commit < idx {
				t.Fatalf("n1 restarted with commit index %d, below the removal of n2 at %d it applied", st.Commit, idx)
			}
			if !s.elect(1, 2*Second) {
				failed("re-electing n1")
				t.Fatalf("n1, the only voter, not elected again: %s", c.livenessReport())
			}
			if f := s.put(1, "k", "b"); !s.runUntil(Second, f.Resolved) || f.Err() != nil {
				failed("last write")
				t.Fatalf("no write after the restart: %v", f.Err())
			}
			failed("end")
		})
	}
}
