// Package transporttest is the conformance suite of transport.Transport.
// Every implementation runs it from its tests:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T, cfg transport.Config) transport.Transport {
//			tr, err := mytransport.New(cfg)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return tr
//		}, transporttest.Options{RawGarbage: true})
//	}
//
// The suite waits for conditions with generous failure guards and makes no
// timing assertions; it runs its subtests sequentially, each on fresh
// transports listening on loopback ports.
package transporttest

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// Options adapt the suite to an implementation.
type Options struct {
	// RawGarbage runs the test that opens raw TCP connections to Addr and
	// writes garbage: set it for implementations that listen on raw TCP
	// and count such connections in Stats.Rejected.
	RawGarbage bool
	// Timeout bounds each wait for a condition (0: 10s). It is a failure
	// guard, not a performance target.
	Timeout time.Duration
}

// Run runs the conformance suite against transports made by newTransport,
// which must return a started transport for cfg or fail t. The suite closes
// every transport it makes. At most one Options value is used.
func Run(t *testing.T, newTransport func(t *testing.T, cfg transport.Config) transport.Transport, opts ...Options) {
	s := &suite{newTransport: newTransport}
	if len(opts) > 0 {
		s.opts = opts[0]
	}
	t.Run("Addr", s.testAddr)
	t.Run("DeliveryInOrder", s.testDeliveryInOrder)
	t.Run("Batching", s.testBatching)
	t.Run("LargeMessage", s.testLargeMessage)
	t.Run("OversizeRejected", s.testOversizeRejected)
	t.Run("OversizeNotSent", s.testOversizeNotSent)
	t.Run("SendNeverBlocks", s.testSendNeverBlocks)
	t.Run("SendNeverBlocksStalledPeer", s.testSendNeverBlocksStalledPeer)
	t.Run("Reconnect", s.testReconnect)
	t.Run("Block", s.testBlock)
	t.Run("BlockAll", s.testBlockAll)
	t.Run("RemoveAndRedirect", s.testRemoveAndRedirect)
	t.Run("Authentication", s.testAuthentication)
	t.Run("ClusterID", s.testClusterID)
	t.Run("Close", s.testClose)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("RawGarbage", func(t *testing.T) {
		if !s.opts.RawGarbage {
			t.Skip("Options.RawGarbage not set: the transport does not listen on raw TCP")
		}
		s.testRawGarbage(t)
	})
}

// testAddr: Addr resolves the listening port.
func (s *suite) testAddr(t *testing.T) {
	m := s.start(t, 1, nil)
	host, port, err := net.SplitHostPort(m.tr.Addr())
	if err != nil {
		t.Fatalf("Addr() = %q: %v", m.tr.Addr(), err)
	}
	if p, err := strconv.Atoi(port); err != nil || p == 0 || host == "" {
		t.Fatalf("Addr() = %q: want a resolved host:port", m.tr.Addr())
	}
}

// testDeliveryInOrder: messages of every kind between three transports
// arrive intact and, per sender, in order; nothing else arrives.
func (s *suite) testDeliveryInOrder(t *testing.T) {
	ms := s.cluster(t, 3, nil)
	const perPeer = 300
	want := make(map[[2]uint64][]core.Message) // [from, to] → messages
	for _, a := range ms {
		var batch []core.Message
		for seq := uint64(1); seq <= perPeer; seq++ {
			for _, b := range ms {
				if a == b {
					continue
				}
				m := sample(a.id, b.id, seq)
				want[[2]uint64{a.id, b.id}] = append(want[[2]uint64{a.id, b.id}], roundTrip(t, m))
				batch = append(batch, m)
			}
			// Sends of varying sizes, destinations interleaved.
			if len(batch) >= int(seq%7)+1 {
				a.tr.Send(batch)
				batch = nil
			}
		}
		a.tr.Send(batch)
	}
	for _, b := range ms {
		eventually(t, s.timeout(), func() bool { return b.in.count(0) >= 2*perPeer },
			"node %d received %d of %d messages", b.id, b.in.count(0), 2*perPeer)
	}
	settle()
	for _, b := range ms {
		if n := b.in.count(0); n != 2*perPeer {
			t.Errorf("node %d received %d messages, want %d", b.id, n, 2*perPeer)
		}
		for _, a := range ms {
			if a == b {
				continue
			}
			got, exp := b.in.from(a.id), want[[2]uint64{a.id, b.id}]
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("%d → %d: delivered messages differ from those sent (lost, reordered, altered or aliased)%s",
					a.id, b.id, firstDiff(got, exp))
			}
		}
	}
	for _, a := range ms {
		// The sender may count a message sent after the receiver has it.
		eventually(t, s.timeout(), func() bool { return a.tr.Stats().Sent >= 2*perPeer },
			"node %d: Stats.Sent = %d, want %d", a.id, a.tr.Stats().Sent, 2*perPeer)
		st := a.tr.Stats()
		if st.Received != 2*perPeer {
			t.Errorf("node %d: Stats.Received = %d, want %d", a.id, st.Received, 2*perPeer)
		}
		if st.Sent != 2*perPeer {
			t.Errorf("node %d: Stats.Sent = %d, want %d", a.id, st.Sent, 2*perPeer)
		}
		if st.Dropped != 0 || st.Rejected != 0 {
			t.Errorf("node %d: Stats = %+v, want nothing dropped or rejected", a.id, st)
		}
	}
}

// testBatching: 10,000 messages in one Send, then many small Sends, all
// arrive in order.
func (s *suite) testBatching(t *testing.T) {
	ms := s.cluster(t, 2, func(c *transport.Config) { c.QueueSize = 1 << 15 })
	a, b := ms[0], ms[1]
	const big = 10000
	var want []core.Message
	batch := make([]core.Message, 0, big)
	for seq := uint64(1); seq <= big; seq++ {
		m := app(a.id, b.id, seq, int(seq%64))
		batch = append(batch, m)
		want = append(want, roundTrip(t, m))
	}
	mustReturn("Send of 10,000 messages", func() { a.tr.Send(batch) })
	for i := range 1000 {
		var small []core.Message
		for j := range 10 {
			m := heartbeat(a.id, b.id, uint64(big+1+i*10+j))
			small = append(small, m)
			want = append(want, roundTrip(t, m))
		}
		a.tr.Send(small)
	}
	eventually(t, s.timeout(), func() bool { return b.in.count(a.id) >= len(want) },
		"received %d of %d messages", b.in.count(a.id), len(want))
	if got := b.in.from(a.id); !reflect.DeepEqual(got, want) {
		t.Errorf("delivered messages differ from those sent%s", firstDiff(got, want))
	}
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Sent >= uint64(len(want)) },
		"sender Stats.Sent = %d, want %d", a.tr.Stats().Sent, len(want))
	if st := a.tr.Stats(); st.Sent != uint64(len(want)) || st.Dropped != 0 {
		t.Errorf("sender Stats = %+v, want Sent %d and nothing dropped", st, len(want))
	}
}

// testLargeMessage: an 8 MiB snapshot arrives intact.
func (s *suite) testLargeMessage(t *testing.T) {
	ms := s.cluster(t, 2, nil)
	a, b := ms[0], ms[1]
	m := snap(a.id, b.id, 1, 8<<20)
	want := []core.Message{roundTrip(t, m), roundTrip(t, heartbeat(a.id, b.id, 2))}
	a.tr.Send([]core.Message{m, heartbeat(a.id, b.id, 2)})
	eventually(t, s.timeout(), func() bool { return b.in.count(a.id) >= 2 }, "8 MiB snapshot not received")
	if got := b.in.from(a.id); !reflect.DeepEqual(got, want) {
		t.Errorf("8 MiB snapshot altered in transit%s", firstDiff(got, want))
	}
}

// testOversizeRejected: a message above the receiver's MaxMessageBytes is
// rejected and counted, and later messages still get through.
func (s *suite) testOversizeRejected(t *testing.T) {
	const limit = 1 << 20
	a := s.start(t, 1, nil)
	b := s.start(t, 2, func(c *transport.Config) { c.MaxMessageBytes = limit })
	a.tr.SetPeer(b.id, b.tr.Addr())
	b.tr.SetPeer(a.id, a.tr.Addr())

	a.tr.Send([]core.Message{heartbeat(a.id, b.id, 1)})
	eventually(t, s.timeout(), func() bool { return b.in.count(a.id) == 1 }, "first message not received")

	a.tr.Send([]core.Message{snap(a.id, b.id, 2, 2*limit)})
	eventually(t, s.timeout(), func() bool { return b.tr.Stats().Rejected >= 1 },
		"oversize message not counted in receiver's Stats.Rejected (Stats %+v)", b.tr.Stats())
	seq := uint64(3)
	eventually(t, s.timeout(), func() bool {
		if b.in.count(a.id) > 1 {
			return true
		}
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, seq)})
		seq++
		return false
	}, "no message received after the oversize one")
	for _, m := range b.in.from(a.id) {
		if m.Type == core.MsgSnap {
			t.Fatalf("oversize message delivered")
		}
	}
}

// testOversizeNotSent: a message above the sender's own MaxMessageBytes is
// dropped and counted by the sender; the next message still goes.
func (s *suite) testOversizeNotSent(t *testing.T) {
	const limit = 1 << 20
	ms := s.cluster(t, 2, func(c *transport.Config) { c.MaxMessageBytes = limit })
	a, b := ms[0], ms[1]
	a.tr.Send([]core.Message{snap(a.id, b.id, 1, 2*limit), heartbeat(a.id, b.id, 2)})
	eventually(t, s.timeout(), func() bool { return b.in.count(a.id) >= 1 }, "message after an oversize one not received")
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Dropped >= 1 },
		"oversize message not counted in sender's Stats.Dropped (Stats %+v)", a.tr.Stats())
	if got := b.in.from(a.id); len(got) != 1 || got[0].Type != core.MsgHeartbeat {
		t.Fatalf("received %d messages (%v), want only the heartbeat", len(got), got)
	}
}

// testSendNeverBlocks: with the peer down, 100,000 Sends return and the
// overflow is counted as dropped; the peer is reported unreachable.
func (s *suite) testSendNeverBlocks(t *testing.T) {
	const queue = 1024
	a := s.start(t, 1, func(c *transport.Config) { c.QueueSize = queue })
	a.tr.SetPeer(2, deadAddr(t))
	const n = 100000
	mustReturn("100,000 Sends to a peer that is down", func() {
		for i := range uint64(n) {
			a.tr.Send([]core.Message{heartbeat(1, 2, i+1)})
		}
	})
	batch := make([]core.Message, n)
	for i := range batch {
		batch[i] = heartbeat(1, 2, uint64(n+i+1))
	}
	mustReturn("a Send of 100,000 messages to a peer that is down", func() { a.tr.Send(batch) })
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Dropped >= 2*n-queue },
		"Stats.Dropped = %d, want at least %d", a.tr.Stats().Dropped, 2*n-queue)
	eventually(t, s.timeout(), func() bool { return a.unreachableCount(2) > 0 },
		"Unreachable(2) not called for a peer that is down")
	if st := a.tr.Stats(); st.Sent != 0 {
		t.Errorf("Stats.Sent = %d with the only peer down", st.Sent)
	}
}

// testSendNeverBlocksStalledPeer: a peer that accepts connections but never
// reads or answers does not make Send block.
func (s *suite) testSendNeverBlocksStalledPeer(t *testing.T) {
	const queue = 1024
	a := s.start(t, 1, func(c *transport.Config) {
		c.QueueSize = queue
		c.DialTimeout = 200 * time.Millisecond
		c.WriteTimeout = 200 * time.Millisecond
	})
	a.tr.SetPeer(2, stalledListener(t))
	const n = 20000
	mustReturn("Sends to a stalled peer", func() {
		for i := range uint64(n) {
			a.tr.Send([]core.Message{app(1, 2, i+1, 1024)})
		}
	})
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Dropped >= n-queue },
		"Stats.Dropped = %d, want at least %d", a.tr.Stats().Dropped, n-queue)
	eventually(t, s.timeout(), func() bool { return a.unreachableCount(2) > 0 },
		"Unreachable(2) not called for a stalled peer")
}

// testReconnect: after a peer restarts on the same address, messages flow
// again both ways.
func (s *suite) testReconnect(t *testing.T) {
	ms := s.cluster(t, 2, nil)
	a, b := ms[0], ms[1]
	a.tr.Send([]core.Message{heartbeat(a.id, b.id, 1)})
	eventually(t, s.timeout(), func() bool { return b.in.count(a.id) == 1 }, "first message not received")

	addr := b.tr.Addr()
	b.close(t)
	// Keep sending while the peer is down: the sender notices.
	for i := range uint64(20) {
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, 2+i)})
		time.Sleep(5 * time.Millisecond)
	}
	eventually(t, s.timeout(), func() bool {
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, 100)})
		return a.unreachableCount(b.id) > 0
	}, "Unreachable not called while the peer was down")

	b2 := s.start(t, b.id, func(c *transport.Config) { c.ListenAddr = addr })
	b2.tr.SetPeer(a.id, a.tr.Addr())
	seq := uint64(1000)
	eventually(t, s.timeout(), func() bool {
		seq++
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, seq)})
		return b2.in.count(a.id) > 0
	}, "no message reached the restarted peer")
	eventually(t, s.timeout(), func() bool {
		seq++
		b2.tr.Send([]core.Message{heartbeat(b.id, a.id, seq)})
		return a.in.count(b.id) > 0
	}, "no message from the restarted peer")
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Reconnects >= 1 },
		"Stats.Reconnects = 0 after reconnecting")
	if late := b.in.late.Load(); late != 0 {
		t.Errorf("Deliver called %d times after Close returned", late)
	}
}

// flowing checks, resending, that messages from a reach b.
func (s *suite) flowing(t *testing.T, a, b *member, what string) {
	t.Helper()
	before := b.in.count(a.id)
	seq := uint64(1 << 20)
	eventually(t, s.timeout(), func() bool {
		seq++
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, seq)})
		return b.in.count(a.id) > before
	}, "%d → %d: %s", a.id, b.id, what)
}

// testBlock: Block(id) cuts both directions with that peer only, and
// unblocking restores them.
func (s *suite) testBlock(t *testing.T) {
	ms := s.cluster(t, 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	s.flowing(t, a, b, "before blocking")
	s.flowing(t, b, a, "before blocking")

	settle() // let the messages above land before counting
	a.tr.Block(b.id, true)
	fromB, toB, dropped := a.in.count(b.id), b.in.count(a.id), a.tr.Stats().Dropped
	const n = 20
	for i := range uint64(n) {
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, 100+i)})
		b.tr.Send([]core.Message{heartbeat(b.id, a.id, 100+i)})
	}
	// The others still talk.
	s.flowing(t, a, c, "with another peer blocked")
	s.flowing(t, c, a, "with another peer blocked")
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Dropped >= dropped+2*n },
		"Stats.Dropped = %d, want at least %d (messages to and from the blocked peer)",
		a.tr.Stats().Dropped, dropped+2*n)
	settle()
	if got := b.in.count(a.id); got != toB {
		t.Errorf("blocked peer received %d messages", got-toB)
	}
	if got := a.in.count(b.id); got != fromB {
		t.Errorf("%d messages delivered from the blocked peer", got-fromB)
	}

	a.tr.Block(b.id, false)
	s.flowing(t, a, b, "after unblocking")
	s.flowing(t, b, a, "after unblocking")
}

// testBlockAll: Block(0) cuts every peer; Block(0, false) clears every
// block, including single ones.
func (s *suite) testBlockAll(t *testing.T) {
	ms := s.cluster(t, 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	s.flowing(t, a, b, "before blocking")
	s.flowing(t, c, a, "before blocking")

	settle()
	a.tr.Block(0, true)
	fromC, toB := a.in.count(c.id), b.in.count(a.id)
	for i := range uint64(10) {
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, 100+i), heartbeat(a.id, c.id, 100+i)})
		c.tr.Send([]core.Message{heartbeat(c.id, a.id, 100+i)})
	}
	s.flowing(t, b, c, "between peers not blocked")
	settle()
	if got := b.in.count(a.id); got != toB {
		t.Errorf("%d messages sent with every peer blocked", got-toB)
	}
	if got := a.in.count(c.id); got != fromC {
		t.Errorf("%d messages delivered with every peer blocked", got-fromC)
	}

	a.tr.Block(b.id, true)
	a.tr.Block(0, false)
	s.flowing(t, a, b, "after Block(0, false)")
	s.flowing(t, c, a, "after Block(0, false)")
}

// testRemoveAndRedirect: SetPeer to a new address redirects; RemovePeer
// stops sends; sends to unknown peers are dropped.
func (s *suite) testRemoveAndRedirect(t *testing.T) {
	ms := s.cluster(t, 2, nil)
	a, b := ms[0], ms[1]
	s.flowing(t, a, b, "before redirecting")

	b2 := s.start(t, b.id, nil) // node 2 moved to a new address
	b2.tr.SetPeer(a.id, a.tr.Addr())
	a.tr.SetPeer(b.id, b2.tr.Addr())
	s.flowing(t, a, b2, "after SetPeer to a new address")
	settle()
	atOld := b.in.count(a.id)
	atNew := b2.in.count(a.id)
	for i := range uint64(20) {
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, 1<<30+i)})
	}
	eventually(t, s.timeout(), func() bool { return b2.in.count(a.id) >= atNew+20 },
		"messages lost after SetPeer to a new address")
	if got := b.in.count(a.id); got != atOld {
		t.Errorf("old address received %d messages after SetPeer to a new one", got-atOld)
	}

	settle()
	a.tr.RemovePeer(b.id)
	dropped := a.tr.Stats().Dropped
	atNew = b2.in.count(a.id)
	for i := range uint64(10) {
		a.tr.Send([]core.Message{heartbeat(a.id, b.id, 1<<31+i)})
	}
	a.tr.Send([]core.Message{heartbeat(a.id, 99, 1)}) // never known
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Dropped >= dropped+11 },
		"Stats.Dropped = %d, want at least %d after sends to removed and unknown peers",
		a.tr.Stats().Dropped, dropped+11)
	settle()
	if got := b2.in.count(a.id); got != atNew {
		t.Errorf("removed peer received %d messages", got-atNew)
	}
	// A removed peer may still talk to us.
	s.flowing(t, b2, a, "from a removed peer")
	// And it can be added back.
	a.tr.SetPeer(b.id, b2.tr.Addr())
	s.flowing(t, a, b2, "after adding the peer back")
}

// testAuthentication: messages with a From other than the connection's
// peer, or addressed to another node, are rejected and counted.
func (s *suite) testAuthentication(t *testing.T) {
	ms := s.cluster(t, 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	s.flowing(t, a, b, "before spoofing")

	// a claims to be c.
	rejected := b.tr.Stats().Rejected
	a.tr.Send([]core.Message{heartbeat(c.id, b.id, 1)})
	eventually(t, s.timeout(), func() bool { return b.tr.Stats().Rejected > rejected },
		"message with a spoofed From not counted in Stats.Rejected")
	s.flowing(t, a, b, "after a spoofed message")
	if got := b.in.count(c.id); got != 0 {
		t.Errorf("%d spoofed messages delivered", got)
	}

	// a believes node 3 lives at b's address: b must not accept messages
	// addressed to 3.
	rejected = b.tr.Stats().Rejected
	a.tr.SetPeer(c.id, b.tr.Addr())
	eventually(t, s.timeout(), func() bool {
		a.tr.Send([]core.Message{heartbeat(a.id, c.id, 7)})
		return b.tr.Stats().Rejected > rejected
	}, "messages for another node not counted in Stats.Rejected")
	settle()
	for _, m := range b.in.from(a.id) {
		if m.To != b.id {
			t.Fatalf("delivered a message addressed to %d", m.To)
		}
	}
	a.tr.SetPeer(c.id, c.tr.Addr())
	s.flowing(t, a, c, "after correcting the address")
	s.flowing(t, a, b, "after misaddressed messages")
}

// testClusterID: a node refuses every connection from a node of another
// cluster (Config.ClusterID), even one with a valid node ID, and counts it
// in Stats.Rejected; nodes of one cluster talk, and a ClusterID of 0 on
// either side is not checked.
func (s *suite) testClusterID(t *testing.T) {
	const clusterA, clusterB = 0xA1, 0xB2
	in := func(c uint64) func(*transport.Config) { return func(cfg *transport.Config) { cfg.ClusterID = c } }
	a := s.start(t, 1, in(clusterA))
	b := s.start(t, 2, in(clusterB))
	a3 := s.start(t, 3, in(clusterA))
	none := s.start(t, 4, in(0))
	for _, from := range []*member{a, b, a3, none} {
		for _, to := range []*member{a, b, a3, none} {
			if from != to {
				from.tr.SetPeer(to.id, to.tr.Addr())
			}
		}
	}
	s.flowing(t, a, a3, "within cluster A")
	s.flowing(t, none, b, "from a node without a cluster ID")
	s.flowing(t, b, none, "to a node without a cluster ID")
	for _, c := range []struct{ from, to *member }{{a, b}, {b, a}, {b, a3}} {
		rejected := c.to.tr.Stats().Rejected
		eventually(t, s.timeout(), func() bool {
			c.from.tr.Send([]core.Message{heartbeat(c.from.id, c.to.id, 1)})
			return c.to.tr.Stats().Rejected > rejected
		}, "node %d of another cluster not refused by node %d", c.from.id, c.to.id)
	}
	settle()
	for _, c := range []struct{ from, to *member }{{a, b}, {b, a}, {b, a3}} {
		if got := c.to.in.count(c.from.id); got != 0 {
			t.Errorf("node %d delivered %d messages of node %d, of another cluster", c.to.id, got, c.from.id)
		}
	}
	s.flowing(t, a, a3, "after the refusals")
}

// testClose: Close is idempotent, stops delivery, and every method is safe
// afterwards.
func (s *suite) testClose(t *testing.T) {
	ms := s.cluster(t, 2, nil)
	a, b := ms[0], ms[1]
	s.flowing(t, a, b, "before closing")

	// Concurrent senders while b closes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := uint64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a.tr.Send([]core.Message{heartbeat(a.id, b.id, i)})
				b.tr.Send([]core.Message{heartbeat(b.id, a.id, i)})
				if g == 0 && i%64 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	b.close(t)
	n := b.in.count(0)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := b.tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := b.in.count(0); got != n {
		t.Errorf("%d messages delivered after Close returned", got-n)
	}
	if late := b.in.late.Load(); late != 0 {
		t.Errorf("Deliver called %d times after Close returned", late)
	}
	mustReturn("methods after Close", func() {
		b.tr.Send([]core.Message{heartbeat(b.id, a.id, 1)})
		b.tr.Send(nil)
		b.tr.SetPeer(3, "127.0.0.1:1")
		b.tr.Block(a.id, true)
		b.tr.Block(0, false)
		b.tr.RemovePeer(a.id)
		_ = b.tr.Stats()
		_ = b.tr.Addr()
	})
	if err := a.tr.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := a.tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	a.in.closed.Store(true)
	a.tr.Send([]core.Message{heartbeat(a.id, b.id, 1)})
}

// testConcurrent: every method used at once from many goroutines (run
// with -race); traffic flows once the churn stops.
func (s *suite) testConcurrent(t *testing.T) {
	ms := s.cluster(t, 3, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, a := range ms {
		for g := range 3 {
			wg.Go(func() {
				for i := uint64(0); ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var batch []core.Message
					for _, b := range ms {
						if b != a {
							batch = append(batch, sample(a.id, b.id, i))
						}
					}
					a.tr.Send(batch)
					if i%32 == uint64(g) {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(a.id, 1))
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				peer := ms[r.IntN(len(ms))]
				switch r.IntN(5) {
				case 0:
					a.tr.Block(peer.id, r.IntN(2) == 0)
				case 1:
					a.tr.Block(0, r.IntN(2) == 0)
				case 2:
					a.tr.SetPeer(peer.id, peer.tr.Addr())
				case 3:
					a.tr.RemovePeer(peer.id)
				default:
					_ = a.tr.Stats()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, a := range ms {
		a.tr.Block(0, false)
		for _, b := range ms {
			if a != b {
				a.tr.SetPeer(b.id, b.tr.Addr())
			}
		}
	}
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				s.flowing(t, a, b, "after concurrent churn")
			}
		}
	}
}

// testRawGarbage: raw TCP connections writing garbage do not crash the
// receiver, are counted as rejected, and the receiver keeps working.
func (s *suite) testRawGarbage(t *testing.T) {
	ms := s.cluster(t, 2, nil)
	a, b := ms[0], ms[1]
	s.flowing(t, b, a, "before garbage")

	r := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(r.Uint32())
	}
	payloads := [][]byte{
		garbage,
		// A header announcing a 1 GiB frame, then little.
		{0x3f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3},
		// A header announcing 4 GiB.
		{0xff, 0xff, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef},
		// A well-formed frame whose payload is nonsense.
		transport.AppendFrame(nil, []byte("hello, is this the consensus service?")),
		// HTTP.
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	}
	rejected := a.tr.Stats().Rejected
	for _, p := range payloads {
		conn, err := net.DialTimeout("tcp", a.tr.Addr(), s.timeout())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(p) // the receiver may hang up early
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.CloseWrite()
		}
		// Give the receiver a moment to read and hang up.
		_, _ = io.Copy(io.Discard, conn)
		_ = conn.Close()
	}
	// A connection that says nothing.
	if conn, err := net.Dial("tcp", a.tr.Addr()); err == nil {
		_ = conn.Close()
	}
	eventually(t, s.timeout(), func() bool { return a.tr.Stats().Rejected >= rejected+uint64(len(payloads)) },
		"Stats.Rejected = %d, want at least %d after %d garbage connections",
		a.tr.Stats().Rejected, rejected+uint64(len(payloads)), len(payloads))
	if got := a.in.count(0); got != a.in.count(b.id) {
		t.Errorf("garbage delivered as messages")
	}
	s.flowing(t, b, a, "after garbage")
	s.flowing(t, a, b, "after garbage")
}

// firstDiff describes the first difference between got and want.
func firstDiff(got, want []core.Message) string {
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			return ": first difference at message " + strconv.Itoa(i) + ": got " + describe(got[i]) + ", want " + describe(want[i])
		}
	}
	if len(got) != len(want) {
		return ": got " + strconv.Itoa(len(got)) + " messages, want " + strconv.Itoa(len(want))
	}
	return ""
}

// describe summarizes m without dumping large payloads.
func describe(m core.Message) string {
	var b bytes.Buffer
	b.WriteString(m.Type.String())
	b.WriteString(" from " + strconv.FormatUint(m.From, 10) + " to " + strconv.FormatUint(m.To, 10))
	b.WriteString(" index " + strconv.FormatUint(m.Index, 10))
	b.WriteString(" entries " + strconv.Itoa(len(m.Entries)))
	if m.Snapshot != nil {
		b.WriteString(" snapshot " + strconv.Itoa(len(m.Snapshot.Data)) + " bytes")
	}
	return b.String()
}
