package sim

import (
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/linearizability"
	"github.com/forge-consensus/consensus/node"
)

// Lease races (the lease profile's own fault, FaultLeaseRace): about half
// the clients are steered to the leader and only read, on its lease; after
// a lead time (50-500 ms) the leader either hands leadership over and is cut off from everyone from
// its MsgTimeoutNow on (it hears nobody; only its link to the transferee
// stays open, so the MsgTimeoutNow arrives), or is cut off from everyone
// while the others elect a new leader that takes writes. A sound lease
// lapses before any later leader commits; a lease trusted after a transfer
// or a read answered without a lease check serves stale reads (the
// lease-read check, checklease.go, and Porcupine see them).

// Lease race modes (Fault.Shape of a FaultLeaseRace).
const (
	leaseRaceTransfer = iota // hand leadership over, cut off from the MsgTimeoutNow on
	leaseRaceIsolate         // cut off at once, both ways
)

// leaseRace is a lease race under way.
type leaseRace struct {
	leader uint64
	to     uint64 // the transferee (transfer mode)
	dur    Time   // how long the leader stays cut off
	armed  bool   // waiting for the leader's MsgTimeoutNow
	links  [][2]uint64
}

// drawLeaseRaceRate draws the rate of lease races (per simulated second)
// of a lease-profile seed from its own generator: on in 7 seeds of 10.
func drawLeaseRaceRate(r *Rand) float64 {
	rate := 0.05 + 0.25*r.Float64()
	if !r.Chance(0.7) {
		return 0
	}
	return rate
}

// drawLeaseRaces draws the lease races of a run from their own generator
// (the other fault classes draw the same with them on or off).
func drawLeaseRaces(o *Options) []Fault {
	if o.LeaseRaceRate <= 0 {
		return nil
	}
	r := NewRand(o.Seed, "lease-race-faults")
	et := Time(o.ElectionTick) * o.TickInterval
	mean := Time(float64(Second) / o.LeaseRaceRate)
	var fs []Fault
	for at := r.Exp(mean); at < o.HealAt; at += r.Exp(mean) {
		shape := leaseRaceTransfer
		if r.Chance(0.4) {
			shape = leaseRaceIsolate
		}
		fs = append(fs, Fault{At: at, Kind: FaultLeaseRace, Shape: shape, Dur: r.Range(2*et, 5*et), R: r.Uint64()})
	}
	return fs
}

// startLeaseRace carries out a FaultLeaseRace: one at a time, and not
// while a partition is in force (the race holds the network as one).
func (c *cluster) startLeaseRace(f Fault, r *Rand) {
	if c.partition || c.race != nil {
		return
	}
	l := c.leader()
	voters, _ := c.members()
	if l == nil || len(voters) < 3 {
		return
	}
	now := c.s.Now()
	race := &leaseRace{leader: l.id, dur: f.Dur}
	c.partition, c.race = true, race
	c.counters.LeaseRaces++
	// Steer about half the clients (at least one) to the leader: until
	// the race ends they only read, on the lease. The transfer or the cut
	// comes after a lead time, once their operations in flight elsewhere
	// are likely done and they read on the leader.
	lead := r.Range(50*Millisecond, 500*Millisecond)
	n := len(c.clients)
	for _, i := range r.perm(n)[:(n+1)/2] {
		cl := c.clients[i]
		cl.target, cl.leaseUntil = l.id, now+lead+f.Dur+Time(c.o.ElectionTick)*c.o.TickInterval
	}
	c.tr.Add(Event{At: now, Kind: EvPhase, Node: l.id, Text: "lease race: clients steered to the leader"})
	c.s.After(lead, func() { c.runLeaseRace(race, f.Shape, r) })
}

// runLeaseRace hands leadership over or cuts the leader off, if it still
// leads; otherwise the race ends.
func (c *cluster) runLeaseRace(race *leaseRace, mode int, r *Rand) {
	if c.race != race {
		return
	}
	l := c.proc(race.leader)
	if c.healing || l == nil || !l.up || l.n == nil || l.status.Role != core.Leader {
		c.endLeaseRace(race)
		return
	}
	now := c.s.Now()
	if mode == leaseRaceIsolate {
		c.tr.Add(Event{At: now, Kind: EvPartition, Node: l.id, Text: "lease race: leader cut off"})
		c.cutLeader(race)
		return
	}
	voters, _ := c.members()
	var others []uint64
	for _, id := range voters {
		if id != l.id {
			others = append(others, id)
		}
	}
	if len(others) == 0 {
		c.endLeaseRace(race)
		return
	}
	race.to = others[r.Intn(len(others))]
	c.tr.Add(Event{At: now, Kind: EvTransfer, Node: l.id, Peer: race.to, Text: "lease race"})
	race.armed = true
	if err := l.n.TransferLeadership(race.to); err != nil {
		race.armed = false
		c.endLeaseRace(race) // a transfer under way: no race
		return
	}
	l.observe()
	// The MsgTimeoutNow waits for the transferee to catch up; the core
	// gives up on the transfer after an election timeout or so.
	c.s.After(3*Time(c.o.ElectionTick)*c.o.TickInterval, func() {
		if c.race == race && race.armed {
			race.armed = false
			c.endLeaseRace(race)
		}
	})
}

// leaseRaceSend watches a node's messages for the MsgTimeoutNow of an
// armed transfer race, and cuts the leader off when it goes out.
func (c *cluster) leaseRaceSend(msgs []core.Message) {
	race := c.race
	if c.healing {
		// The fault phase is over: no cut from now on.
		race.armed = false
		c.race = nil
		return
	}
	for i := range msgs {
		if m := &msgs[i]; m.Type == core.MsgTimeoutNow && m.From == race.leader {
			race.armed = false
			c.tr.Add(Event{At: c.s.Now(), Kind: EvPartition, Node: race.leader, Peer: m.To,
				Text: "lease race: leader cut off at its MsgTimeoutNow"})
			c.cutLeader(race)
			return
		}
	}
}

// cutLeader blocks every link into the race's leader and every link out of
// it but the one to the transferee, for the race's duration.
func (c *cluster) cutLeader(race *leaseRace) {
	now := c.s.Now()
	for _, id := range c.memberIDs() {
		if id == race.leader {
			continue
		}
		race.links = append(race.links, [2]uint64{id, race.leader})
		if id != race.to {
			race.links = append(race.links, [2]uint64{race.leader, id})
		}
	}
	for _, l := range race.links {
		c.net.SetBlocked(l[0], l[1], true)
	}
	c.hist.Annotate(annotation(now, now+race.dur, "partition", race.leader, "lease-race", race.to))
	c.s.After(race.dur, func() { c.endLeaseRace(race) })
}

// endLeaseRace lifts the race's cut and frees the network.
func (c *cluster) endLeaseRace(race *leaseRace) {
	if c.race != race {
		return
	}
	c.race = nil
	if c.healing {
		return // healing lifted every cut
	}
	for _, l := range race.links {
		c.net.SetBlocked(l[0], l[1], false)
	}
	c.partition = false
	if len(race.links) > 0 {
		c.tr.Add(Event{At: c.s.Now(), Kind: EvHeal, Node: race.leader, Text: "lease race over"})
	}
}

// leaseReadAsked counts a lease read asked of p: during a transfer (or
// after its MsgTimeoutNow), or of a leader that a later one deposed.
func (c *cluster) leaseReadAsked(p *proc) {
	c.counters.LeaseReadsAsked++
	st := &p.status
	if st.Role != core.Leader {
		return
	}
	if st.LeadTransferee != 0 || c.chk.TimeoutNowSent(p.id, st.Term) {
		c.counters.LeaseReadsInTransfer++
	}
	if c.maxTerm > st.Term {
		c.counters.LeaseReadsDeposed++
	}
}

// leaseReadsObserved hands the lease reads p answered since its last
// status (old) to the lease-read check, and counts them.
func (c *cluster) leaseReadsObserved(p *proc, old, st *core.BasicStatus) {
	c.counters.LeaseReadsReplaced += st.LeaseReadRounds - old.LeaseReadRounds
	if st.LeaseReads != old.LeaseReads {
		c.counters.LeaseReadsAnswered += st.LeaseReads - old.LeaseReads
		c.chk.LeaseRead(c.s.Now(), p.id, st.LeaseReadTerm, st.LeaseReadIndex)
	}
}

// leaseRead makes op a read of its key on the lease while a lease race
// steers the client (the operation was drawn as usual, so that the
// client's generator moves as it would have). It returns the history
// input to record.
func (cl *client) leaseRead(op *clientOp, in linearizability.Input) linearizability.Input {
	if !cl.c.o.LeaseReads || cl.c.s.Now() >= cl.leaseUntil {
		return in
	}
	op.cmd = kv.Command{Op: kv.OpGet, Key: op.cmd.Key}
	op.viaLog, op.level = false, node.ReadLease
	return linearizability.Input{Kind: linearizability.Get, Key: op.cmd.Key}
}
