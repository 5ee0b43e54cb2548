package tcp

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/core"
)

// TestReconnectAfterHealFollowsBackoff is the one-way cut of issue 13 for
// the tcp transport (the gRPC transport's test has the story): after the
// way back is cut and healed just after an attempt gave up, messages flow
// again within the back-off maximum plus a margin.
func TestReconnectAfterHealFollowsBackoff(t *testing.T) {
	const (
		backoffMax = time.Second
		margin     = 350 * time.Millisecond
		cycles     = 2
	)
	var ra, rb recorder
	b := start(t, 2, &rb, nil)
	px := transporttest.NewCutProxy(t, b.Addr())
	a := start(t, 1, &ra, func(c *transport.Config) {
		c.BackoffMin = 200 * time.Millisecond
		c.BackoffMax = backoffMax
		c.DialTimeout = 500 * time.Millisecond
	})
	a.SetPeer(2, px.Addr())

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
				a.Send([]core.Message{heartbeat(1, 2, seq.Add(1))})
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, func() bool { return rb.Count() > 0 }, "first delivery")

	for cycle := range cycles {
		px.Cut()
		for range 4 {
			select {
			case <-px.AttemptFailed():
			case <-time.After(30 * time.Second):
				t.Fatalf("cycle %d: no connection attempt during the cut", cycle)
			}
		}
		before := rb.Count()
		px.Heal()
		healed := time.Now()
		waitFor(t, func() bool { return rb.Count() > before }, "delivery after the heal")
		delay := time.Since(healed)
		t.Logf("cycle %d: first message %v after the heal", cycle, delay.Round(time.Millisecond))
		if delay > backoffMax+margin {
			t.Errorf("cycle %d: first message %v after the heal, want at most the back-off maximum %v (+%v)",
				cycle, delay.Round(time.Millisecond), backoffMax, margin)
		}
	}
}
