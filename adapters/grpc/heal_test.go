package grpc_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/core"
)

// TestReconnectAfterHealFollowsBackoff is the one-way cut of issue 13:
// after the way back from a peer is cut and healed, messages must flow
// again within the transport's back-off maximum (plus a margin for a
// loaded machine), not after gRPC's own, independent reconnect back-off
// has run out too. The cut holds the peer's answers, so connection
// attempts hang until they time out, as behind a firewall rule; each heal
// comes just after an attempt gave up, the worst moment for a client
// that waits for its own next attempt instead of ours.
func TestReconnectAfterHealFollowsBackoff(t *testing.T) {
	const (
		backoffMax = time.Second
		margin     = 350 * time.Millisecond
		cycles     = 3
	)
	b := start(t, 2, grpc.Options{}, nil)
	px := transporttest.NewCutProxy(t, b.tr.Addr())
	a := start(t, 1, grpc.Options{}, func(c *transport.Config) {
		c.BackoffMin = 200 * time.Millisecond
		c.BackoffMax = backoffMax
		c.DialTimeout = 500 * time.Millisecond
	})
	a.tr.SetPeer(2, px.Addr())

	// A leader's heartbeats: a message every 5ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Uint64
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				a.tr.Send([]core.Message{heartbeat(1, 2, seq.Add(1))})
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	eventually(t, func() bool { return b.in.Count() > 0 }, "first delivery")

	for cycle := range cycles {
		px.Cut()
		// Let the back-offs grow to their maximum: a few attempts fail.
		for range 5 {
			select {
			case <-px.AttemptFailed():
			case <-time.After(30 * time.Second):
				t.Fatalf("cycle %d: no connection attempt during the cut", cycle)
			}
		}
		before := b.in.Count()
		px.Heal()
		healed := time.Now()
		eventually(t, func() bool { return b.in.Count() > before }, "delivery after heal %d", cycle)
		delay := time.Since(healed)
		t.Logf("cycle %d: first message %v after the heal", cycle, delay.Round(time.Millisecond))
		if delay > backoffMax+margin {
			t.Errorf("cycle %d: first message %v after the heal, want at most the back-off maximum %v (+%v)",
				cycle, delay.Round(time.Millisecond), backoffMax, margin)
		}
	}
}
