package sim

import (
	"slices"

	"github.com/forge-consensus/consensus/core"
)

// Membership churn aimed at joint configurations (swarm profile only):
//
//   - replace-voter: add a fresh node as a learner, and once it has caught
//     up replace an old voter with it in one change (a joint configuration,
//     left automatically or, on some, explicitly after a while), on some
//     crashing the outgoing voter as the change is proposed, on some
//     cutting the leader and the fresh voter off from the rest the moment
//     the leader commits the joint configuration (before the others learn
//     of the commit), all while the other faults go on;
//   - conf-race: propose a second membership change right after a first
//     one, while it is still pending (correct code refuses it), and on half
//     of them cut the leader and just enough voters for a quorum of the
//     new configuration off from the rest the moment the leader next
//     commits a change of the voters (the rest still run in the
//     configuration before it);
//   - crash-after-conf-apply: crash a node right after it applies a
//     membership change, before its next sync.
//
// Every choice is drawn from streams of their own (the schedule from one
// per fault kind, the rest from the fault's R), so that the other faults of
// a seed are what they were without them.

// ConfChurnOptions are the rates of the membership faults above, in events
// per simulated second for the whole cluster (0 turns a kind off).
type ConfChurnOptions struct {
	ReplaceRate float64 `json:"replace_rate,omitempty"`
	// ReplaceCrash is the share of replacements that crash the outgoing
	// voter as the joint change is proposed.
	ReplaceCrash        float64 `json:"replace_crash,omitempty"`
	RaceRate            float64 `json:"race_rate,omitempty"`
	CrashAfterApplyRate float64 `json:"crash_after_apply_rate,omitempty"`
}

// drawConfChurn draws the membership fault rates of a swarm seed from
// their own generator r: each kind on with probability 0.5.
func drawConfChurn(r *Rand) ConfChurnOptions {
	o := ConfChurnOptions{
		ReplaceRate:         0.05 + 0.25*r.Float64(),
		ReplaceCrash:        r.Float64(),
		RaceRate:            0.05 + 0.25*r.Float64(),
		CrashAfterApplyRate: 0.1 + 0.4*r.Float64(),
	}
	on := [3]bool{r.Chance(0.5), r.Chance(0.5), r.Chance(0.5)}
	if !on[0] {
		o.ReplaceRate, o.ReplaceCrash = 0, 0
	}
	if !on[1] {
		o.RaceRate = 0
	}
	if !on[2] {
		o.CrashAfterApplyRate = 0
	}
	return o
}

// drawConfChurnFaults appends the membership faults of o to fs, each kind
// from a generator of its own.
func drawConfChurnFaults(o *Options, fs []Fault) []Fault {
	cc := &o.ConfChurn
	poisson := func(name string, rate float64, mk func(r *Rand, at Time) Fault) {
		if rate <= 0 {
			return
		}
		r := NewRand(o.Seed, name)
		mean := Time(float64(Second) / rate)
		for at := r.Exp(mean); at < o.HealAt; at += r.Exp(mean) {
			fs = append(fs, mk(r, at))
		}
	}
	restart := max(o.RestartMax, Millisecond)
	poisson("replace-voter", cc.ReplaceRate, func(r *Rand, at Time) Fault {
		f := Fault{At: at, Kind: FaultReplaceVoter, R: r.Uint64()}
		if r.Chance(cc.ReplaceCrash) {
			f.Dur = r.Range(Millisecond, restart)
		}
		return f
	})
	poisson("conf-race", cc.RaceRate, func(r *Rand, at Time) Fault {
		return Fault{At: at, Kind: FaultConfRace, R: r.Uint64()}
	})
	poisson("crash-after-conf-apply", cc.CrashAfterApplyRate, func(r *Rand, at Time) Fault {
		return Fault{At: at, Kind: FaultCrashAfterConfApply, Dur: r.Range(Millisecond, restart), R: r.Uint64()}
	})
	return fs
}

// confChurn is the run-time state of the membership faults.
type confChurn struct {
	rep *replacement // the voter replacement under way, if any
	// cut, when not 0, is armed by a conf-race: the cut at the next
	// commit of a change of the voters lasts that long; cutRng chooses
	// its side.
	cut    Time
	cutRng *Rand
	// The highest indexes of joint entries and leaves counted.
	enteredAt, leftAt uint64
}

// replacement replaces one voter with a fresh node.
type replacement struct {
	old, fresh uint64
	step       replaceStep
	at         Time   // when the current step began
	until      uint64 // the index the fresh learner must apply first
	crash      Time   // crash the outgoing voter this long when the change is proposed
	explicit   bool   // a joint configuration left by an explicit leave
	leaveAfter Time   // how long an explicit joint configuration is held
	// cut, when not 0, partitions the leader and the fresh voter from the
	// others for that long once the leader commits the joint change.
	cut Time
}

type replaceStep uint8

const (
	replaceCatchUp replaceStep = iota // the fresh learner catches up
	replaceJoint                      // the joint change is proposed: wait until it is left
)

// Replacement timing: how often a replacement looks at the cluster, and
// how long each step may take before it is given up (a leader change may
// have lost a proposal; the churn goes on with the next fault).
const (
	replacePoll    = 50 * Millisecond
	replaceCatchMx = 3 * Second
	replaceJointMx = 10 * Second
)

// replaceVoter starts a voter replacement: a fresh node is proposed as a
// learner; replaceTick does the rest.
func (c *cluster) replaceVoter(f Fault, r *Rand) {
	if c.churn.rep != nil || len(c.procs) >= 3*c.o.Nodes+2 {
		return
	}
	l := c.leader()
	if l == nil {
		return
	}
	cs := l.n.Core().Status().Config
	if cs.Joint() || len(cs.Voters) == 0 {
		return
	}
	old := cs.Voters[r.Intn(len(cs.Voters))]
	fresh := uint64(len(c.procs) + 1)
	if c.ndamaged > 0 && !c.damageMinority(l, old, 0, fresh) {
		return
	}
	if !c.proposeConf(l, core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: fresh}}}, "replace") {
		return
	}
	p := c.addProc()
	c.start(p)
	rp := &replacement{old: old, fresh: p.id, at: c.s.Now(), until: l.status.LastIndex, crash: f.Dur}
	if r.Chance(0.5) {
		rp.explicit, rp.leaveAfter = true, r.Range(0, 2*Second)
	}
	if r.Chance(0.5) {
		rp.cut = r.Range(200*Millisecond, 3*Second)
	}
	c.churn.rep = rp
	c.s.After(replacePoll, c.replaceTick)
}

// proposeConf proposes cc on leader l and reports whether it was taken
// (not refused at once).
func (c *cluster) proposeConf(l *proc, cc core.ConfChange, text string) bool {
	fut := l.n.ProposeConfChange(cc)
	l.observe()
	if fut.Resolved() && fut.Err() != nil {
		return false
	}
	c.counters.MembershipChanges++
	var peer, typ uint64
	if len(cc.Changes) > 0 {
		peer, typ = cc.Changes[0].NodeID, uint64(cc.Changes[0].Type)
	}
	c.tr.Add(Event{At: c.s.Now(), Kind: EvMembership, Node: l.id, Peer: peer, A: typ, Text: text})
	return true
}

// replaceTick advances the replacement under way and polls again until it
// is done or given up.
func (c *cluster) replaceTick() {
	rp := c.churn.rep
	if c.failed || rp == nil {
		return
	}
	if c.replaceStep(rp) {
		c.churn.rep = nil
		return
	}
	c.s.After(replacePoll, c.replaceTick)
}

// replaceStep advances rp by at most one proposal and reports whether it
// is finished.
func (c *cluster) replaceStep(rp *replacement) bool {
	now := c.s.Now()
	fresh := c.proc(rp.fresh)
	if fresh == nil || fresh.removed || fresh.retireAt != 0 {
		return true
	}
	l := c.leader()
	if l == nil {
		return now-rp.at > replaceJointMx
	}
	cs := l.n.Core().Status().Config
	switch rp.step {
	case replaceCatchUp:
		switch {
		case now-rp.at > replaceCatchMx || c.healing:
			return true
		case cs.Joint() || !slices.Contains(cs.Learners, rp.fresh):
			return false // not added yet, or another change in force
		case !fresh.up || fresh.status.Applied < rp.until:
			return false
		case !slices.Contains(cs.Voters, rp.old):
			return true // removed meanwhile
		}
		if c.ndamaged > 0 && !c.damageMinority(l, rp.old, 0, rp.fresh) {
			return true
		}
		cc := core.ConfChange{Changes: []core.ConfChangeSingle{
			{Type: core.AddVoter, NodeID: rp.fresh}, {Type: core.RemoveNode, NodeID: rp.old}}}
		if rp.explicit {
			cc.Transition = core.TransitionJointExplicit
		}
		if !c.proposeConf(l, cc, "replace") {
			return false
		}
		c.noteRemoval(rp.old)
		rp.step, rp.at = replaceJoint, now
		if o := c.proc(rp.old); rp.crash > 0 && o != nil && o != l && o.up {
			c.crash(o, rp.crash)
		}
	case replaceJoint:
		switch {
		case !cs.Joint() && slices.Contains(cs.Voters, rp.fresh) && !confNames(&cs, rp.old):
			c.counters.VoterReplacements++
			c.tr.Add(Event{At: now, Kind: EvMembership, Node: rp.fresh, Peer: rp.old, Text: "replaced"})
			return true
		case cs.Joint() && rp.explicit && now-rp.at >= rp.leaveAfter:
			c.proposeConf(l, core.ConfChange{}, "leave joint") // refused while the entry is pending: again later
		case now-rp.at > replaceJointMx && !(rp.explicit && cs.Joint()):
			return true // an explicit joint configuration is never left behind
		}
	}
	return false
}

// confRace proposes a membership change and, right after it, a second one
// while the first is still pending: correct code refuses the second.
func (c *cluster) confRace(r *Rand) {
	l := c.leader()
	if l == nil {
		return
	}
	before := c.counters.MembershipChanges
	c.changeMembership(r)
	if c.counters.MembershipChanges == before || c.leader() != l {
		return
	}
	first := l.status.LastIndex
	if r.Chance(0.5) {
		c.churn.cut, c.churn.cutRng = r.Range(200*Millisecond, 3*Second), r.Split("cut")
	}
	race := func() {
		if c.healing || c.failed || !l.up || l.n == nil || l.status.Role != core.Leader || l.status.Commit >= first {
			return // no longer pending, or no longer the leader
		}
		c.counters.ConfChangesWhilePending++
		c.proposeSecond(l, r)
	}
	if d := r.Range(0, 2*c.o.TickInterval); d > 0 {
		c.s.After(d, race)
	} else {
		race()
	}
}

// proposeSecond proposes a change chosen with r that would be valid on its
// own: promote a learner, remove a voter, or add a learner (whose process
// starts only if the change is taken).
func (c *cluster) proposeSecond(l *proc, r *Rand) {
	voters, learners := c.members()
	var ch core.ConfChangeSingle
	switch {
	case len(learners) > 0:
		ch = core.ConfChangeSingle{Type: core.AddVoter, NodeID: learners[r.Intn(len(learners))]}
		if p := c.proc(ch.NodeID); c.ndamaged > 0 && p != nil && p.damaged && !c.damageMinority(l, 0, 0, p.id) {
			return
		}
	case len(voters) > 2:
		ch = core.ConfChangeSingle{Type: core.RemoveNode, NodeID: voters[r.Intn(len(voters))]}
		if c.ndamaged > 0 && !c.damageMinority(l, ch.NodeID, 0, 0) {
			return
		}
	case len(c.procs) < 3*c.o.Nodes+2:
		ch = core.ConfChangeSingle{Type: core.AddLearner, NodeID: uint64(len(c.procs) + 1)}
	default:
		return
	}
	if !c.proposeConf(l, core.ConfChange{Changes: []core.ConfChangeSingle{ch}}, "race") {
		return
	}
	switch ch.Type {
	case core.RemoveNode:
		c.noteRemoval(ch.NodeID)
	case core.AddLearner:
		c.start(c.addProc())
	}
}

// armCrashAfterConfApply makes a live process chosen with r crash, for
// f.Dur, right after it next applies a membership change.
func (c *cluster) armCrashAfterConfApply(f Fault, r *Rand) {
	live := c.liveProcs()
	if len(live) == 0 {
		return
	}
	p := live[r.Intn(len(live))]
	p.crashAfterConf = max(f.Dur, Millisecond)
}

// noteConfApplied counts joint configurations entered and left (once per
// entry, by index), and crashes p right after the change if it is armed
// to. p applied cc at index.
func (c *cluster) noteConfApplied(p *proc, index uint64, cc *core.ConfChange) {
	ch := &c.churn
	switch {
	case index == 1:
		// The founding configuration (core's bootstrap entry), not a change.
	case cc.IsLeave():
		if index > ch.leftAt {
			ch.leftAt = index
			c.counters.JointLeft++
			if c.underFault() {
				c.counters.JointUnderFault++
			}
		}
	case cc.Transition != core.TransitionAuto || len(cc.Changes) > 1:
		if index > ch.enteredAt {
			ch.enteredAt = index
			c.counters.JointEntered++
			if c.underFault() {
				c.counters.JointUnderFault++
			}
		}
	}
	if d := p.crashAfterConf; d > 0 && !c.healing {
		p.crashAfterConf = 0
		epoch := p.epoch
		c.s.After(0, func() {
			if p.epoch == epoch && p.up && !c.healing {
				c.counters.CrashesAfterConfApply++
				c.crash(p, d)
			}
		})
	}
}

// underFault reports whether a partition is in force or a member process
// is down or paused.
func (c *cluster) underFault() bool {
	if c.partition {
		return true
	}
	for _, p := range c.procs {
		if p.member && !p.removed && p.retireAt == 0 && (!p.up || p.paused) {
			return true
		}
	}
	return false
}

// leaderConfCommitted is called when leader l has just committed a
// membership change, from configuration before to cs: if it entered the
// joint configuration of the replacement under way, and the replacement
// asks for it, l and the fresh voter are cut off from the other members
// before the commit reaches them; if a conf-race armed a cut and the
// voters changed, l and a quorum of the new voters are. The others still
// run in the configuration before the change, and may elect a leader
// among themselves: a leader that counted one half of a joint
// configuration, or took two changes at once, lost entries then.
func (c *cluster) leaderConfCommitted(l *proc, before, cs *core.ConfState) {
	if c.partition || c.healing {
		return
	}
	if rp := c.churn.rep; rp != nil && rp.cut > 0 && cs.Joint() && slices.Contains(cs.Voters, rp.fresh) {
		d := rp.cut
		rp.cut = 0
		c.cutOff([]uint64{l.id, rp.fresh}, d, "joint cut")
		return
	}
	if c.churn.cut > 0 && !slices.Equal(before.Voters, cs.Voters) {
		// The leader and voters new to the configuration first, then
		// others, up to a quorum of the new voters.
		d, r := c.churn.cut, c.churn.cutRng
		c.churn.cut, c.churn.cutRng = 0, nil
		side := []uint64{l.id}
		var rest []uint64
		for _, id := range cs.Voters {
			switch {
			case id == l.id:
			case !slices.Contains(before.Voters, id):
				side = append(side, id)
			default:
				rest = append(rest, id)
			}
		}
		for _, i := range r.perm(len(rest)) {
			if 2*len(side) > len(cs.Voters) {
				break
			}
			side = append(side, rest[i])
		}
		c.cutOff(side[:min(len(side), len(cs.Voters)/2+1)], d, "conf cut")
	}
}

// cutOff partitions side from the other members for d.
func (c *cluster) cutOff(side []uint64, d Time, text string) {
	var links [][2]uint64
	for _, x := range side {
		for _, y := range c.memberIDs() {
			if !slices.Contains(side, y) {
				links = append(links, [2]uint64{x, y}, [2]uint64{y, x})
			}
		}
	}
	if len(links) == 0 {
		return
	}
	now := c.s.Now()
	c.partition = true
	c.counters.Partitions++
	c.tr.Add(Event{At: now, Kind: EvPartition, A: uint64(ShapeIsolateLeader), B: uint64(len(links)), Text: text})
	for _, id := range side {
		c.hist.Annotate(annotation(now, now+d, "partition", id))
	}
	for _, k := range links {
		c.net.SetBlocked(k[0], k[1], true)
	}
	c.s.At(now+d, func() {
		if c.healing || !c.partition {
			return
		}
		for _, k := range links {
			c.net.SetBlocked(k[0], k[1], false)
		}
		c.partition = false
		c.tr.Add(Event{At: c.s.Now(), Kind: EvHeal})
	})
}
