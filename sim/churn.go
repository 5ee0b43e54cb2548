package sim

import (
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
)

// Leader churn: windows of adversarial schedules around leader changes,
// the histories behind Raft's Figure 8 and stale-tail commit bugs. During
// a window every new leader is cut off, a short random time after it took
// over (often before its first entries reached anyone, sometimes after
// part of a long tail reached part of the cluster), together with at most
// a minority of the others, or crashed; the group cut off before it comes
// back at the same moment, so that an earlier leader with a long
// uncommitted tail of its term may win again and replicate that tail in a
// later term. Some cuts also make two nodes campaign at once once the
// followers' leases ran out (competing elections).
//
// A window holds the partition slot (no partition fault starts while it
// lasts, and it starts only when none is in force). Every choice comes from
// generators of its own: the window schedule from the "leader-churn-faults"
// stream, the choices inside a window from the fault's R.

// churn is the state of the leader-churn window in force.
type churn struct {
	r          *Rand
	end        Time
	cut        [][2]uint64 // the links blocked now
	leaderTerm uint64      // the term of the last leader acted on
	pending    bool        // a cut is scheduled
	cutTerm    uint64      // the term of the last leader cut
	// watch is a leader that took over with uncommitted entries of earlier
	// terms (lo, noop), noop being its own first entry: it is cut off once
	// a quorum holds part of that tail but, as far as its
	// acknowledgements say, not yet its own entry.
	watch     *proc
	watchTerm uint64
	lo, noop  uint64
	acked     []uint64 // followers that acknowledged part of the tail
}

// drawLeaderChurn draws the leader-churn options of a seed, and the small
// message knobs, from their own generator r, so that every other choice of
// the seed stays what it was. Every value is drawn whether or not it is used.
func drawLeaderChurn(o *Options, r *Rand) {
	on := r.Chance(0.5)
	rate := 0.03 + 0.12*r.Float64()
	window := int(r.Range(6, 20))
	small := r.Chance(0.55)
	size := uint64(r.Range(64, 512))
	inflight := int(r.Range(1, 8))
	if o.Profile == "calm" {
		return
	}
	if on {
		o.LeaderChurnRate, o.LeaderChurnTimeouts = rate, window
	}
	// Small messages only on fast networks: with 7 nodes, 50–90 ms delays,
	// tiny messages and short queues replication falls behind what client
	// retries (and, before node/verify.go backed off, verification reports)
	// append, and a healed cluster never settles.
	if small && o.Network.DelayMean <= 20*Millisecond {
		o.MaxSizePerMsg, o.MaxInflightMsgs = size, inflight
	}
}

// drawChurnFaults draws the leader-churn windows of a run from their own
// generator: a Poisson process over the fault phase.
func drawChurnFaults(o *Options) []Fault {
	if o.LeaderChurnRate <= 0 {
		return nil
	}
	r := NewRand(o.Seed, "leader-churn-faults")
	var fs []Fault
	mean := Time(float64(Second) / o.LeaderChurnRate)
	et := Time(o.ElectionTick) * o.TickInterval
	for at := r.Exp(mean); at < o.HealAt; at += r.Exp(mean) {
		fs = append(fs, Fault{At: at, Kind: FaultLeaderChurn,
			Dur: r.Range(3*et, max(Time(o.LeaderChurnTimeouts), 3)*et), R: r.Uint64()})
	}
	return fs
}

// startChurn opens a leader-churn window for f.Dur, unless a partition or
// another window is in force.
func (c *cluster) startChurn(f Fault) {
	if c.partition || c.leaderChurn != nil {
		return
	}
	now := c.s.Now()
	c.partition = true
	ch := &churn{r: NewRand(f.R, "churn"), end: now + f.Dur}
	c.leaderChurn = ch
	c.counters.LeaderChurns++
	c.tr.Add(Event{At: now, Kind: EvPhase, A: uint64(f.Dur), Text: "leader churn"})
	c.s.At(ch.end, func() {
		if c.leaderChurn != ch || c.healing {
			return
		}
		c.churnHeal(ch)
		c.leaderChurn = nil
		c.partition = false
		c.tr.Add(Event{At: c.s.Now(), Kind: EvHeal, Text: "leader churn over"})
	})
	if l := c.leader(); l != nil {
		c.churnLeader(l)
	}
}

// churnLeader schedules the cut of p, which has just become leader, if a
// window is in force.
func (c *cluster) churnLeader(p *proc) {
	ch := c.leaderChurn
	if ch == nil || c.healing || ch.pending || p.status.Term <= ch.leaderTerm {
		return
	}
	ch.leaderTerm, ch.pending = p.status.Term, true
	o := &c.o
	oneWay := o.Network.DelayMin + o.Network.DelayMean
	rtt := 2*oneWay + o.Disk.WriteMean + o.Disk.SyncMean
	var d Time
	if ch.r.Chance(0.35) {
		d = ch.r.Range(0, oneWay) // before its first entries land anywhere
	} else {
		d = ch.r.Range(0, 6*rtt) // after some of its entries landed
	}
	term, epoch := p.status.Term, p.epoch
	ch.watch = nil
	if st := p.status; st.LastIndex > st.Commit+1 {
		ch.watch, ch.watchTerm, ch.lo, ch.noop, ch.acked = p, term, st.Commit, st.LastIndex, ch.acked[:0]
		d *= 4 // give the tail time to spread; the watch may cut earlier
	}
	c.s.After(d, func() {
		if c.leaderChurn != ch {
			return
		}
		ch.pending = false
		c.churnCutNow(ch, p, term, epoch)
	})
}

// churnCutNow cuts p off if it still leads term term in the lifetime epoch
// and no cut of it happened yet.
func (c *cluster) churnCutNow(ch *churn, p *proc, term, epoch uint64) {
	if c.healing || c.leaderChurn != ch || ch.cutTerm >= term || p.epoch != epoch || !p.up ||
		p.status.Role != core.Leader || p.status.Term != term {
		return
	}
	ch.cutTerm = term
	c.churnCut(ch, p)
}

// churnAck watches the acknowledgements m that a watched leader receives:
// once followers that acknowledged part of its older terms' tail, but not
// its own first entry, make a quorum with it, it is cut off right after
// it handled m.
func (c *cluster) churnAck(ch *churn, m *core.Message) {
	p := ch.watch
	if m.Reject || m.Term != ch.watchTerm || m.Index <= ch.lo {
		return
	}
	if m.Index >= ch.noop {
		ch.watch = nil // its own entry got through: nothing left to catch
		return
	}
	for _, id := range ch.acked {
		if id == m.From {
			return
		}
	}
	ch.acked = append(ch.acked, m.From)
	voters, _ := c.members()
	if 2*(len(ch.acked)+1) <= len(voters) {
		return
	}
	ch.watch = nil
	term, epoch := ch.watchTerm, p.epoch
	c.s.After(0, func() { c.churnCutNow(ch, p, term, epoch) })
}

// churnCut cuts off (or crashes) leader p with at most a minority of the
// others, and lets the group cut off before come back.
func (c *cluster) churnCut(ch *churn, p *proc) {
	c.churnHeal(ch)
	c.counters.ChurnCutoffs++
	now := c.s.Now()
	r := ch.r
	ids := c.memberIDs()
	if r.Chance(0.1) || len(ids) < 2 {
		et := Time(c.o.ElectionTick) * c.o.TickInterval
		c.crash(p, r.Range(Millisecond, 3*et))
		return
	}
	others := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if id != p.id {
			others = append(others, id)
		}
	}
	for i := len(others) - 1; i > 0; i-- {
		j := r.Intn(i + 1)
		others[i], others[j] = others[j], others[i]
	}
	// The group is a minority: at most (n-1)/2 nodes, the leader included.
	helpers := r.Intn(max(1, (len(ids)-1)/2))
	group := append([]uint64{p.id}, others[:helpers]...)
	rest := others[helpers:]
	for _, a := range group {
		for _, b := range rest {
			ch.cut = append(ch.cut, [2]uint64{a, b}, [2]uint64{b, a})
		}
	}
	for _, l := range ch.cut {
		c.net.SetBlocked(l[0], l[1], true)
	}
	c.tr.Add(Event{At: now, Kind: EvPartition, Node: p.id, A: uint64(len(group)), B: uint64(len(ch.cut)), Text: "leader churn cut"})
	for _, id := range group {
		c.hist.Annotate(annotation(now, now, "churn cut", id))
	}
	// A burst of writes the cut-off leader appends in its term, which
	// reach only its group: a long uncommitted tail. They write a key no
	// client reads, with no session.
	// (A paused process takes none.)
	if k := r.Range(1, 24); !p.paused {
		for ; k > 0; k-- {
			cmd := kv.Command{Op: kv.OpSet, Key: "churn", Value: []byte{byte(k)}}
			_ = p.n.Propose(kv.EncodeCommand(cmd)) // refused when full: fine
		}
		p.after()
	}
	if r.Chance(0.3) && len(rest) >= 2 {
		// Competing elections: two nodes of the rest campaign at once,
		// once the followers' leases (an election timeout) ran out.
		a, b := rest[0], rest[1]
		et := Time(c.o.ElectionTick) * c.o.TickInterval
		c.s.After(et+r.Range(0, et/2), func() {
			if c.leaderChurn != ch || c.healing {
				return
			}
			for _, id := range []uint64{a, b} {
				if q := c.proc(id); q != nil && q.up && !q.paused && q.n != nil && q.status.Role != core.Leader {
					_ = q.n.Campaign() // a learner refuses: fine
					q.after()
				}
			}
		})
	}
}

// churnHeal restores the links the window cut.
func (c *cluster) churnHeal(ch *churn) {
	for _, l := range ch.cut {
		c.net.SetBlocked(l[0], l[1], false)
	}
	ch.cut = ch.cut[:0]
}

// reachesQuorum reports whether p can exchange messages with a quorum of
// the voters (itself included), as the network stands.
func (c *cluster) reachesQuorum(p *proc) bool {
	voters, _ := c.members()
	n := 0
	for _, id := range voters {
		q := c.proc(id)
		if q == nil || !q.up {
			continue
		}
		if id == p.id || !c.net.Blocked(p.id, id) && !c.net.Blocked(id, p.id) {
			n++
		}
	}
	return len(voters) == 0 || 2*n > len(voters)
}
