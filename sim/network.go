package sim

import (
	"fmt"

	"github.com/forge-consensus/consensus/core"
)

// NetworkOptions are a run's network faults (drawn per seed by Draw).
type NetworkOptions struct {
	// DelayMin and DelayMean shape the one-way delay of a message:
	// DelayMin + Exp(DelayMean).
	DelayMin  Time `json:"delay_min"`
	DelayMean Time `json:"delay_mean"`
	// DropRate is the probability that a message is lost.
	DropRate float64 `json:"drop_rate"`
	// DupRate is the probability that a message is also delivered a second
	// time, later: after an independent delay plus up to 4×DelayMean more.
	DupRate float64 `json:"dup_rate"`
	// QueueCap bounds the messages in flight (scheduled or held by a clog,
	// duplicates included) on one directed link; a send beyond it is
	// dropped and counted as an overflow. 0 means 64; negative is invalid.
	QueueCap int `json:"queue_cap"`
	// Encode round-trips every sent message through the wire codec, so the
	// receiver gets a decoded copy. A codec failure is a bug and panics.
	Encode bool `json:"encode"`
}

// defaultQueueCap is the per-link cap used when NetworkOptions.QueueCap is 0.
const defaultQueueCap = 64

// NetworkCounters count what happened to the messages of a run. Every sent
// message is counted once in Sent and, unless delivered, once in exactly one
// of Dropped, Overflow or BlockedDrops; a duplicate adds one to Duplicated
// and then ends like any message (Delivered or BlockedDrops).
type NetworkCounters struct {
	Sent         uint64 // messages handed to Send
	Delivered    uint64 // deliveries, duplicates included
	Dropped      uint64 // lost at random (DropRate)
	Duplicated   uint64 // extra copies scheduled (DupRate)
	Overflow     uint64 // dropped at send because the link's queue was full
	BlockedDrops uint64 // dropped on a blocked link, at send or at delivery
}

// Network is a simulated network between nodes. It is driven by a
// Scheduler and draws every random choice from its own Rand, so the same
// options, seed and calls give the same deliveries at the same times.
//
// Links are directed (from, to) pairs. A blocked link drops what is sent on
// it and what arrives on it; a clogged link holds messages (without losing
// them) until the clog ends. Reordering comes from independent delays.
type Network struct {
	o       NetworkOptions // in force (random faults off after SetFaults(false))
	base    NetworkOptions // as configured
	cap     int
	rng     *Rand
	s       *Scheduler
	tr      *Trace
	deliver func(m core.Message)

	dense [denseIDs * denseIDs]*link // links between small IDs
	far   map[linkKey]*link          // links with an ID >= denseIDs
	links []*link                    // every link, in creation order (HealAll)

	free []*flight // recycled in-flight records
	buf  []byte    // encode scratch (the decoder copies what it keeps)
	c    NetworkCounters
}

// denseIDs bounds the node IDs whose links live in the dense table.
const denseIDs = 32

type linkKey struct{ from, to uint64 }

// link is the state of one directed link.
type link struct {
	from, to  uint64
	blocked   bool
	clogUntil Time   // held while now < clogUntil
	clogGen   uint64 // invalidates superseded release events
	inflight  int    // scheduled or held messages, duplicates included
	seq       uint64 // send sequence, to keep held messages in send order
	held      []*flight
}

// flight is one scheduled or held delivery. Records are recycled, each with
// its delivery closure bound once, so a send allocates nothing in the
// steady state.
type flight struct {
	n   *Network
	l   *link
	m   core.Message
	seq uint64
	dup bool
	fn  func()
}

// Trace texts.
const (
	textLoss     = "loss"
	textOverflow = "overflow"
	textBlocked  = "blocked"
	textDup      = "dup"
	textRelease  = "release"
)

// NewNetwork returns a network that calls deliver, at delivery time, with
// each message that arrives (the receiver decides whether it is up, paused
// or crashed). tr may be nil.
func NewNetwork(o NetworkOptions, rng *Rand, s *Scheduler, tr *Trace, deliver func(m core.Message)) *Network {
	if rng == nil || s == nil || deliver == nil {
		panic("sim: NewNetwork: nil Rand, Scheduler or deliver")
	}
	c := o.QueueCap
	switch {
	case c == 0:
		c = defaultQueueCap
	case c < 0:
		panic(fmt.Sprintf("sim: NewNetwork: QueueCap %d is negative", c))
	}
	return &Network{o: o, base: o, cap: c, rng: rng, s: s, tr: tr, deliver: deliver}
}

// Options returns the network's configured options (QueueCap resolved).
func (n *Network) Options() NetworkOptions {
	o := n.base
	o.QueueCap = n.cap
	return o
}

// SetFaults switches the random faults (loss and duplication) on or off;
// they are on from the start. Delays, the queue cap and the links' blocks
// and clogs are not affected (HealAll clears those).
func (n *Network) SetFaults(on bool) {
	n.o = n.base
	if !on {
		n.o.DropRate, n.o.DupRate = 0, 0
	}
}

func (n *Network) trace(e Event) {
	if n.tr != nil {
		n.tr.Add(e)
	}
}

// lookup returns the link from→to, creating it if create is set (and
// returning nil for an unknown link otherwise).
func (n *Network) lookup(from, to uint64, create bool) *link {
	var slot **link
	if from < denseIDs && to < denseIDs {
		slot = &n.dense[from*denseIDs+to]
		if *slot != nil || !create {
			return *slot
		}
	} else if l, ok := n.far[linkKey{from, to}]; ok || !create {
		return l
	}
	l := &link{from: from, to: to}
	if slot != nil {
		*slot = l
	} else {
		if n.far == nil {
			n.far = make(map[linkKey]*link)
		}
		n.far[linkKey{from, to}] = l
	}
	n.links = append(n.links, l)
	return l
}

// delay draws a one-way delay.
func (n *Network) delay() Time { return n.o.DelayMin + n.rng.Exp(n.o.DelayMean) }

// Send sends each message from m.From to m.To. Messages are treated as
// read-only and are delivered as they are (or as decoded copies with
// Encode). The random draws for a message happen in this order: loss,
// delay, duplicate, duplicate delay.
func (n *Network) Send(msgs []core.Message) {
	now := n.s.Now()
	for i := range msgs {
		m := &msgs[i]
		n.c.Sent++
		n.trace(Event{At: now, Kind: EvSend, Node: m.From, Peer: m.To, A: uint64(m.Type), B: m.Index})
		if n.o.Encode {
			dm := n.roundTrip(m)
			m = &dm
		}
		l := n.lookup(m.From, m.To, true)
		switch {
		case l.blocked:
			n.c.BlockedDrops++
			n.trace(Event{At: now, Kind: EvDrop, Node: m.From, Peer: m.To, A: uint64(m.Type), B: m.Index, Text: textBlocked})
			continue
		case l.inflight >= n.cap:
			n.c.Overflow++
			n.trace(Event{At: now, Kind: EvDrop, Node: m.From, Peer: m.To, A: uint64(m.Type), B: m.Index, Text: textOverflow})
			continue
		case n.rng.Chance(n.o.DropRate):
			n.c.Dropped++
			n.trace(Event{At: now, Kind: EvDrop, Node: m.From, Peer: m.To, A: uint64(m.Type), B: m.Index, Text: textLoss})
			continue
		}
		n.launch(l, m, false, now)
		if n.rng.Chance(n.o.DupRate) && l.inflight < n.cap {
			n.c.Duplicated++
			n.trace(Event{At: now, Kind: EvDuplicate, Node: m.From, Peer: m.To, A: uint64(m.Type), B: m.Index})
			n.launch(l, m, true, now)
		}
	}
}

// launch puts one copy of m on link l: held if the link is clogged,
// otherwise scheduled after a drawn delay.
func (n *Network) launch(l *link, m *core.Message, dup bool, now Time) {
	f := n.newFlight()
	f.l, f.m, f.dup = l, *m, dup
	l.seq++
	f.seq = l.seq
	l.inflight++
	if l.clogUntil > now {
		l.held = append(l.held, f)
		return
	}
	d := n.delay()
	if dup {
		d += n.rng.Range(0, 4*n.o.DelayMean)
	}
	n.s.At(now+d, f.fn)
}

func (n *Network) newFlight() *flight {
	if k := len(n.free); k > 0 {
		f := n.free[k-1]
		n.free[k-1] = nil
		n.free = n.free[:k-1]
		return f
	}
	f := &flight{n: n}
	f.fn = f.arrive
	return f
}

func (n *Network) recycle(f *flight) {
	f.l, f.m = nil, core.Message{}
	n.free = append(n.free, f)
}

// arrive runs when a scheduled message reaches the end of its link: it is
// held if the link is clogged now, dropped if it is blocked now, and
// delivered otherwise.
func (f *flight) arrive() {
	n, l := f.n, f.l
	now := n.s.Now()
	if l.clogUntil > now {
		l.hold(f)
		return
	}
	l.inflight--
	m := f.m
	dup := f.dup
	n.recycle(f)
	if l.blocked {
		n.c.BlockedDrops++
		n.trace(Event{At: now, Kind: EvDrop, Node: m.From, Peer: m.To, A: uint64(m.Type), B: m.Index, Text: textBlocked})
		return
	}
	n.c.Delivered++
	e := Event{At: now, Kind: EvDeliver, Node: m.From, Peer: m.To, A: uint64(m.Type), B: m.Index}
	if dup {
		e.Text = textDup
	}
	n.trace(e)
	n.deliver(m)
}

// hold adds f to the held queue, keeping it in send order.
func (l *link) hold(f *flight) {
	i := len(l.held)
	l.held = append(l.held, f)
	for i > 0 && l.held[i-1].seq > f.seq {
		l.held[i] = l.held[i-1]
		i--
	}
	l.held[i] = f
}

// roundTrip encodes and decodes m, panicking if the codec fails.
func (n *Network) roundTrip(m *core.Message) core.Message {
	b, err := m.AppendBinary(n.buf[:0])
	if err != nil {
		panic(fmt.Sprintf("sim: network: encode %v %d->%d: %v", m.Type, m.From, m.To, err))
	}
	n.buf = b
	dm, err := core.DecodeMessage(b)
	if err != nil {
		panic(fmt.Sprintf("sim: network: wire round trip of %v %d->%d failed: %v", m.Type, m.From, m.To, err))
	}
	return dm
}

// SetBlocked cuts (or restores) the directed link from→to. Messages sent on
// a blocked link are dropped at once; messages already in flight are
// dropped when they arrive if the link is still blocked then.
func (n *Network) SetBlocked(from, to uint64, blocked bool) {
	if l := n.lookup(from, to, blocked); l != nil {
		l.blocked = blocked
	}
}

// Blocked reports whether the directed link from→to is cut.
func (n *Network) Blocked(from, to uint64) bool {
	l := n.lookup(from, to, false)
	return l != nil && l.blocked
}

// Clog holds the messages on the directed link from→to until the virtual
// time until: messages sent on it, and messages in flight that arrive,
// wait (they are not lost and still count against the queue cap). At until
// they are released in send order, each after a freshly drawn delay, with
// delivery times kept in send order (a released duplicate may still come
// late). A later Clog of the same link replaces the earlier end time; an
// end time not after now releases at once.
func (n *Network) Clog(from, to uint64, until Time) {
	l := n.lookup(from, to, true)
	now := n.s.Now()
	n.trace(Event{At: now, Kind: EvClog, Node: from, Peer: to, A: uint64(until)})
	l.clogGen++
	if until <= now {
		n.release(l)
		return
	}
	l.clogUntil = until
	gen := l.clogGen
	n.s.At(until, func() {
		if l.clogGen == gen {
			n.release(l)
		}
	})
}

// Clogged reports whether the directed link from→to holds messages now.
func (n *Network) Clogged(from, to uint64) bool {
	l := n.lookup(from, to, false)
	return l != nil && l.clogUntil > n.s.Now()
}

// release ends l's clog and schedules its held messages in send order.
func (n *Network) release(l *link) {
	now := n.s.Now()
	l.clogUntil = 0
	if len(l.held) == 0 {
		return
	}
	n.trace(Event{At: now, Kind: EvClog, Node: l.from, Peer: l.to, A: uint64(len(l.held)), Text: textRelease})
	last := now
	for i, f := range l.held {
		l.held[i] = nil
		at := now + n.delay()
		if f.dup {
			at += n.rng.Range(0, 4*n.o.DelayMean)
		} else {
			at = max(at, last)
			last = at
		}
		n.s.At(at, f.fn)
	}
	l.held = l.held[:0]
}

// HealAll unblocks and unclogs every link (releasing held messages), in
// the order the links were first used.
func (n *Network) HealAll() {
	for _, l := range n.links {
		l.blocked = false
		if l.clogUntil != 0 || len(l.held) > 0 {
			l.clogGen++
			n.release(l)
		}
	}
}

// InFlight returns the number of messages scheduled or held on from→to.
func (n *Network) InFlight(from, to uint64) int {
	if l := n.lookup(from, to, false); l != nil {
		return l.inflight
	}
	return 0
}

// Counters returns what happened to the messages so far.
func (n *Network) Counters() NetworkCounters { return n.c }
