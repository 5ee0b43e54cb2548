package sim

import (
	"slices"

	"github.com/forge-consensus/consensus/core"
)

// A node whose storage refuses to load fails stop: it never starts again
// from that disk. An operator brings the cluster back to full strength the
// way our recovery procedure says: remove the member, add a fresh node
// (new ID, empty disk) as a learner, and promote it once it has caught up.
// The harness does that for some refusing nodes, chosen per seed, after a
// delay; the others stay down for the rest of the run.

// repair replaces one refusing node.
type repair struct {
	old   *proc
	fresh *proc
	step  repairStep
	at    Time   // when the current step may act (or acted)
	until uint64 // the index the fresh learner must apply before promotion
}

type repairStep uint8

const (
	repairRemove    repairStep = iota // propose removing old
	repairRemoving                    // wait until old is out of the configuration
	repairAdd                         // propose fresh as a learner
	repairAdding                      // wait until fresh is a caught-up learner
	repairPromoting                   // wait until fresh is a voter
)

// repairPoll is how often pending repairs look at the cluster, and
// repairRetry how long a proposed change may take before it is proposed
// again (a leader change may have dropped it).
const (
	repairPoll  = 50 * Millisecond
	repairRetry = 3 * Second
)

// refuse records that p's storage refused to load (err wraps ErrCorrupt):
// p fails stop, and is repaired later or left down.
func (c *cluster) refuse(p *proc, err error) {
	now := c.s.Now()
	p.refused = true
	c.counters.StorageRefusals++
	c.tr.Add(Event{At: now, Kind: EvDiskError, Node: p.id, Text: "refused"})
	c.hist.Annotate(annotation(now, now, "refused", p.id))
	_ = err // the error names the damage; the disk's report says the same
	if c.repairRng == nil {
		c.repairRng = NewRand(c.o.Seed, "repair")
	}
	r := c.repairRng
	if !r.Chance(c.o.Storage.RepairShare) {
		return // left down
	}
	c.repairs = append(c.repairs, &repair{old: p, at: now + r.Range(0, max(c.o.Storage.RepairMax, 0))})
	if len(c.repairs) == 1 {
		c.s.After(repairPoll, c.repairTick)
	}
}

// repairTick advances every pending repair and polls again while any is
// left.
func (c *cluster) repairTick() {
	if c.failed {
		return
	}
	k := 0
	for _, rp := range c.repairs {
		if !c.repairStep(rp) {
			c.repairs[k] = rp
			k++
		}
	}
	clear(c.repairs[k:])
	c.repairs = c.repairs[:k]
	if len(c.repairs) > 0 {
		c.s.After(repairPoll, c.repairTick)
	}
}

// confNames reports whether the configuration cs names id.
func confNames(cs *core.ConfState, id uint64) bool {
	for _, set := range [][]uint64{cs.Voters, cs.VotersOutgoing, cs.Learners, cs.LearnersNext} {
		if slices.Contains(set, id) {
			return true
		}
	}
	return false
}

// repairStep advances rp by at most one proposal and reports whether it is
// finished (done or given up).
func (c *cluster) repairStep(rp *repair) bool {
	now := c.s.Now()
	if now < rp.at {
		return false
	}
	l := c.leader()
	if l == nil {
		return false
	}
	cs := l.n.Core().Status().Config
	propose := func(t core.ConfChangeType, id uint64) bool {
		f := l.n.ProposeConfChange(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: t, NodeID: id}}})
		l.observe()
		if f.Resolved() && f.Err() != nil {
			return false // a change is pending, or the leader is leaving: later
		}
		c.tr.Add(Event{At: now, Kind: EvMembership, Node: l.id, Peer: id, A: uint64(t), Text: "repair"})
		return true
	}
	switch rp.step {
	case repairRemove:
		if rp.old.removed || !confNames(&cs, rp.old.id) {
			rp.step = repairAdd
			return c.repairStep(rp)
		}
		if cs.Joint() || !propose(core.RemoveNode, rp.old.id) {
			return false
		}
		rp.step, rp.at = repairRemoving, now
	case repairRemoving:
		switch {
		case !confNames(&cs, rp.old.id):
			rp.step = repairAdd
			return c.repairStep(rp)
		case now-rp.at > repairRetry:
			rp.step = repairRemove
		}
	case repairAdd:
		if rp.fresh == nil {
			rp.fresh = c.addProc()
			c.start(rp.fresh)
		}
		if rp.fresh.removed {
			return true // the churn removed the replacement: give up
		}
		if cs.Joint() || !propose(core.AddLearner, rp.fresh.id) {
			return false
		}
		rp.step, rp.at, rp.until = repairAdding, now, l.status.LastIndex
	case repairAdding:
		f := rp.fresh
		switch {
		case f.removed || f.retireAt != 0:
			return true
		case slices.Contains(cs.Voters, f.id):
			rp.step = repairPromoting
			return c.repairStep(rp)
		case !slices.Contains(cs.Learners, f.id):
			if now-rp.at > repairRetry {
				rp.step = repairAdd
			}
		case f.up && f.status.Applied >= rp.until && !cs.Joint():
			if propose(core.AddVoter, f.id) {
				rp.step, rp.at = repairPromoting, now
			}
		}
	case repairPromoting:
		f := rp.fresh
		switch {
		case f.removed || f.retireAt != 0:
			return true
		case slices.Contains(cs.Voters, f.id):
			c.counters.StorageRepairs++
			c.tr.Add(Event{At: now, Kind: EvMembership, Node: f.id, Peer: rp.old.id, Text: "repaired"})
			return true
		case now-rp.at > repairRetry:
			rp.step = repairAdding
		}
	}
	return false
}
