package sim

import (
	"slices"

	"github.com/forge-consensus/consensus/core"
)

// inject carries out one scheduled fault against the cluster as it is now.
func (c *cluster) inject(f Fault) {
	if c.healing || c.failed {
		return
	}
	r := NewRand(f.R, "target")
	now := c.s.Now()
	live := c.liveProcs()
	switch f.Kind {
	case FaultCrash:
		if len(live) > 0 {
			c.crash(live[r.Intn(len(live))], f.Dur)
		}
	case FaultCrashOnWrite:
		if len(live) > 0 {
			live[r.Intn(len(live))].crashOnWrite = true
		}
	case FaultPause:
		if len(live) > 0 {
			c.pause(live[r.Intn(len(live))], f.Dur)
		}
	case FaultPartition:
		c.partitionNet(f, r)
	case FaultClog:
		ids := c.memberIDs()
		if len(ids) >= 2 {
			a := ids[r.Intn(len(ids))]
			b := ids[r.Intn(len(ids))]
			if a != b {
				c.counters.Clogs++
				c.net.Clog(a, b, now+f.Dur)
			}
		}
	case FaultMembership:
		c.changeMembership(r)
	case FaultTransfer:
		l := c.leader()
		voters, _ := c.members()
		if l == nil || len(voters) < 2 {
			return
		}
		to := voters[r.Intn(len(voters))]
		if to == l.id {
			return
		}
		c.counters.Transfers++
		c.tr.Add(Event{At: now, Kind: EvTransfer, Node: l.id, Peer: to})
		if l.n.TransferLeadership(to) == nil { // refusals (a transfer under way) are fine
			c.reachTransfer(l, to)
		}
		l.observe()
	case FaultFlip, FaultLostWrite, FaultMisdirect, FaultLatent:
		c.damageStorage(f, r)
	case FaultReplaceVoter:
		c.replaceVoter(f, r)
	case FaultConfRace:
		c.confRace(r)
	case FaultCrashAfterConfApply:
		c.armCrashAfterConfApply(f, r)
	case FaultLeaseRace:
		c.startLeaseRace(f, r)
	case FaultLeaderChurn:
		c.startChurn(f)
	}
}

func (c *cluster) liveProcs() []*proc {
	var ps []*proc
	for _, p := range c.procs {
		if p.up && !p.removed {
			ps = append(ps, p)
		}
	}
	return ps
}

// memberIDs returns every process that is not removed, sorted.
func (c *cluster) memberIDs() []uint64 {
	var ids []uint64
	for _, p := range c.procs {
		if !p.removed {
			ids = append(ids, p.id)
		}
	}
	return ids
}

// partitionNet cuts the network into the fault's shape for its duration,
// possibly one way only and possibly flapping. One partition at a time.
func (c *cluster) partitionNet(f Fault, r *Rand) {
	if c.partition {
		return
	}
	ids := c.memberIDs()
	if len(ids) < 2 {
		return
	}
	var a, bridge []uint64
	shuffled := slices.Clone(ids)
	for i := len(shuffled) - 1; i > 0; i-- {
		j := r.Intn(i + 1)
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	}
	switch f.Shape {
	case ShapeIsolateOne:
		a = shuffled[:1]
	case ShapeIsolateLeader:
		if l := c.leader(); l != nil {
			a = []uint64{l.id}
			c.counters.LeaderIsolated++
		} else {
			a = shuffled[:1]
		}
	case ShapeSplit:
		a = shuffled[:1+r.Intn(len(ids)-1)]
	case ShapeMinority:
		a = shuffled[:max(1, (len(ids)-1)/2)]
	case ShapeBridge:
		if len(ids) < 3 {
			a = shuffled[:1]
			break
		}
		bridge = shuffled[:1]
		rest := shuffled[1:]
		a = rest[:len(rest)/2]
	}
	inA := func(id uint64) bool { return slices.Contains(a, id) }
	var links [][2]uint64
	for _, x := range ids {
		for _, y := range ids {
			if x == y || !inA(x) || inA(y) || slices.Contains(bridge, y) {
				continue
			}
			// x in A, y on the other side (not the bridge).
			if !f.OneWay || f.R&1 == 0 {
				links = append(links, [2]uint64{x, y})
			}
			if !f.OneWay || f.R&1 == 1 {
				links = append(links, [2]uint64{y, x})
			}
		}
	}
	if len(links) == 0 {
		return
	}
	c.partition = true
	c.counters.Partitions++
	c.reachPartition()
	now := c.s.Now()
	text := "partition"
	if f.OneWay {
		text = "one-way partition"
	}
	c.tr.Add(Event{At: now, Kind: EvPartition, A: uint64(f.Shape), B: uint64(len(links)), Text: text})
	for _, id := range a {
		c.hist.Annotate(annotation(now, now+f.Dur, "partition", id))
	}
	set := func(blocked bool) {
		for _, l := range links {
			c.net.SetBlocked(l[0], l[1], blocked)
		}
	}
	set(true)
	end := now + f.Dur
	if f.Flap {
		period := r.Range(50*Millisecond, 300*Millisecond)
		on := true
		var flap func()
		flap = func() {
			if !c.partition || c.healing {
				return
			}
			on = !on
			set(on)
			if c.s.Now()+period < end {
				c.s.After(period, flap)
			}
		}
		c.s.After(period, flap)
	}
	c.s.At(end, func() {
		if c.healing || !c.partition {
			return
		}
		set(false)
		c.partition = false
		c.tr.Add(Event{At: c.s.Now(), Kind: EvHeal})
	})
}

// changeMembership removes a voter, adds a new learner, or promotes one.
func (c *cluster) changeMembership(r *Rand) {
	l := c.leader()
	if l == nil {
		return
	}
	voters, learners := c.members()
	var cc core.ConfChange
	switch {
	case len(learners) > 0:
		cc.Changes = []core.ConfChangeSingle{{Type: core.AddVoter, NodeID: learners[r.Intn(len(learners))]}}
		if p := c.proc(cc.Changes[0].NodeID); c.ndamaged > 0 && p != nil && p.damaged && !c.damageMinority(l, 0, 0, p.id) {
			return // a damaged learner would make the damaged voters no minority
		}
	case len(voters) > 3 && r.Chance(0.6), len(c.procs) >= 2*c.o.Nodes+2 && len(voters) > 1:
		cc.Changes = []core.ConfChangeSingle{{Type: core.RemoveNode, NodeID: voters[r.Intn(len(voters))]}}
		if c.ndamaged > 0 && !c.damageMinority(l, cc.Changes[0].NodeID, 0, 0) {
			return // the damaged nodes would no longer be a minority of the voters
		}
		c.noteRemoval(cc.Changes[0].NodeID)
	case len(c.procs) < 2*c.o.Nodes+2:
		p := c.addProc()
		c.start(p)
		cc.Changes = []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: p.id}}
	default:
		return
	}
	if r.Chance(0.3) {
		cc.Transition = core.TransitionJointImplicit
	}
	f := l.n.ProposeConfChange(cc)
	l.observe()
	if f.Resolved() && f.Err() != nil {
		if ch := cc.Changes[0]; ch.Type == core.AddLearner {
			p := c.proc(ch.NodeID)
			p.removed = true // never joined: retire the slot
		}
		return
	}
	c.counters.MembershipChanges++
	ch := cc.Changes[0]
	c.tr.Add(Event{At: c.s.Now(), Kind: EvMembership, Node: l.id, Peer: ch.NodeID, A: uint64(ch.Type)})
}

// damageStorage carries out a silent storage fault against one node
// chosen with r among those not removed, if damaging it keeps the damaged
// nodes a minority (see damageAllowed); with f.Dur the node crashes that
// long after.
func (c *cluster) damageStorage(f Fault, r *Rand) {
	var ps []*proc
	for _, p := range c.procs {
		if !p.removed && !p.refused {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return
	}
	p := ps[r.Intn(len(ps))]
	if !c.damageAllowed(p) {
		return
	}
	switch f.Kind {
	case FaultFlip:
		if !p.disk.Flip(r) {
			return
		}
	case FaultLatent:
		if !p.disk.MakeUnreadable(r) {
			return
		}
	case FaultLostWrite:
		p.disk.ArmWriteFault(DamageLost, r)
	case FaultMisdirect:
		p.disk.ArmWriteFault(DamageMisdirect, r)
	}
	if !p.damaged {
		p.damaged = true
		c.ndamaged++
	}
	c.counters.StorageFaults++
	c.tr.Add(Event{At: c.s.Now(), Kind: EvDiskDamage, Node: p.id, Text: f.Kind.String()})
	if f.Dur > 0 {
		epoch := p.epoch
		c.s.After(f.Dur, func() {
			if p.epoch == epoch && p.up && !c.healing {
				c.crash(p, c.rng.Range(Millisecond, max(c.o.RestartMax, Millisecond)))
			}
		})
	}
}

// damageAllowed reports whether p may be damaged: it is damaged already,
// or one more damaged node stays within Storage.MaxDamaged and a minority
// of every voter set (incoming and outgoing, and the incoming one without
// a voter whose removal may be pending). A node that is not a voter counts
// as one: its promotion may be pending, and would otherwise make the
// damaged nodes half the voters once it commits.
func (c *cluster) damageAllowed(p *proc) bool {
	if p.damaged {
		return true
	}
	if c.ndamaged+1 > c.o.Storage.MaxDamaged {
		return false
	}
	l := c.configSource()
	if l == nil {
		return false
	}
	cs := l.n.Core().Status().Config
	if !slices.Contains(cs.Voters, p.id) && !slices.Contains(cs.VotersOutgoing, p.id) {
		return c.damageMinority(l, 0, p.id, p.id)
	}
	return c.damageMinority(l, 0, p.id, 0)
}

// configSource is the process whose configuration counts: the leader, or
// the most advanced live process.
func (c *cluster) configSource() *proc {
	p := c.leader()
	if p == nil {
		for _, q := range c.procs {
			if q.up && q.n != nil && (p == nil || q.status.Commit > p.status.Commit) {
				p = q
			}
		}
	}
	return p
}

// damageMinority reports whether the damaged nodes (plus extra, if not 0)
// are a minority of each voter set of l's configuration, with without
// (if not 0) taken out of the voters and add (if not 0) added to them, and
// also with the voter whose removal the harness proposed last taken out,
// in case it is pending.
//
// It must hold in the configuration every live process holds too, not only
// in l's: a configuration takes effect at commit, and a process that has
// not learned of a commit (say, of a promotion) campaigns in the one
// before it, where the damaged nodes may be half the voters.
func (c *cluster) damageMinority(l *proc, without, extra, add uint64) bool {
	if !c.damageMinorityIn(l.n.Core().Status().Config, without, extra, add) {
		return false
	}
	for _, q := range c.procs {
		if q != l && q.up && q.n != nil && !q.removed &&
			!c.damageMinorityIn(q.n.Core().Status().Config, without, extra, add) {
			return false
		}
	}
	return true
}

// damageMinorityIn is damageMinority for one configuration cs.
func (c *cluster) damageMinorityIn(cs core.ConfState, without, extra, add uint64) bool {
	damaged := func(id uint64) bool {
		p := c.proc(id)
		return id == extra || p != nil && p.damaged && !p.removed
	}
	ok := func(set []uint64, out uint64) bool {
		n, d := 0, 0
		for _, id := range set {
			if id == out || id == without || id == add {
				continue
			}
			if p := c.proc(id); p != nil && p.removed {
				continue // retired: a stale view of the configuration still lists it
			}
			n++
			if damaged(id) {
				d++
			}
		}
		if add != 0 {
			n++
			if damaged(add) {
				d++
			}
		}
		return n == 0 || 2*d < n
	}
	for _, set := range [][]uint64{cs.Voters, cs.VotersOutgoing} {
		if !ok(set, 0) {
			return false
		}
		for _, r := range c.removing {
			if r != 0 && !ok(set, r) {
				return false
			}
		}
	}
	return true
}

// noteRemoval remembers that the harness proposed removing voter id.
func (c *cluster) noteRemoval(id uint64) {
	if c.removing[0] != id {
		c.removing[1], c.removing[0] = c.removing[0], id
	}
}
