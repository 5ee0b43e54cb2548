package tcp

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/internal/logtest"
)

// rawPeer dials tr as a stranger would and, if hello, completes the
// handshake claiming to be node from.
func rawPeer(t *testing.T, tr *Transport, hello_ bool, from uint64) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tr.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if !hello_ {
		return c
	}
	if _, err := c.Write(transport.AppendFrame(nil, appendHello(nil, hello{version: ProtocolVersion, from: from, to: tr.cfg.ID}))); err != nil {
		t.Fatalf("write hello: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := transport.ReadFrame(c, maxHandshakeBytes)
	if err != nil {
		t.Fatalf("read ack: %v", err)
	}
	if a, err := parseAck(p); err != nil || a.status != statusOK {
		t.Fatalf("ack: %+v, %v", a, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// closedWithin reports whether the listener closes c within d (reading
// nothing but the end of the stream).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestStalledHugeFramesBounded is the probe of issue 13: strangers claim
// to be node 1 (plaintext, so the claim is trusted), announce 64 MiB
// frames, send a little of each and stall. The listener's memory grows
// with what it received, not with what was announced, and it closes the
// connections once the frames stall past FrameTimeout.
func TestStalledHugeFramesBounded(t *testing.T) {
	const (
		conns     = 5
		announced = 64<<20 - 1
		sent      = 2 << 20
	)
	var r recorder
	tr := start(t, 2, &r, func(c *transport.Config) { c.FrameTimeout = 300 * time.Millisecond })

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})

	cs := make([]net.Conn, conns)
	payload := make([]byte, transport.FrameHeaderSize+sent)
	binary.BigEndian.PutUint32(payload, announced)
	for i := range cs {
		cs[i] = rawPeer(t, tr, true, 1)
		if _, err := cs[i].Write(payload); err != nil {
			t.Fatalf("conn %d: write: %v", i, err)
		}
	}
	start := time.Now()
	for i, c := range cs {
		if !closedWithin(c, 10*time.Second) {
			t.Errorf("conn %d: a stalled 64 MiB frame kept its connection open for %v", i, time.Since(start))
		}
	}
	close(stop)
	wg.Wait()
	grew := int64(peak.Load()) - int64(base)
	t.Logf("heap in use grew by at most %.1f MiB for %d stalled frames announcing 64 MiB with 2 MiB sent; closed after %v",
		float64(grew)/(1<<20), conns, time.Since(start).Round(time.Millisecond))
	// Reserving what was announced would take 5 x 64 MiB; what was
	// received (10 MiB, buffers at most twice that) must be the bound.
	if limit := int64(64 << 20); grew > limit {
		t.Errorf("heap in use grew by %d MiB, want under %d MiB", grew>>20, limit>>20)
	}
	if got := tr.Stats().Rejected; got < conns {
		t.Errorf("Rejected = %d, want at least %d (the stalled connections)", got, conns)
	}
	if r.Count() != 0 {
		t.Errorf("%d messages delivered from the strangers", r.Count())
	}
}

// TestInboundConnectionCaps: strangers that connect and say nothing fill
// the handshake pool, not the table; one over a cap is closed at once;
// once their handshake deadline has passed a real peer gets in.
func TestInboundConnectionCaps(t *testing.T) {
	var r recorder
	tr := start(t, 2, &r, func(c *transport.Config) {
		c.DialTimeout = time.Second
		c.MaxHandshakes = 3
		c.MaxInboundConnsPerIP = 5
	})

	// Pre-handshake: 3 held, the 4th closed at once (well before the
	// handshake deadline would close it).
	for range 3 {
		rawPeer(t, tr, false, 0)
	}
	waitFor(t, func() bool { _, h := tr.limits.Counts(); return h == 3 }, "3 connections in their handshake")
	if c := rawPeer(t, tr, false, 0); !closedWithin(c, 500*time.Millisecond) {
		t.Fatal("a connection over transport.max_handshakes was not closed at once")
	}
	// The handshake deadline frees the pool.
	waitFor(t, func() bool { n, _ := tr.limits.Counts(); return n == 0 }, "the silent connections closed by the handshake deadline")

	// Per IP: 5 authenticated connections from 127.0.0.1 held, a 6th
	// closed at once.
	held := make([]net.Conn, 5)
	for i := range held {
		held[i] = rawPeer(t, tr, true, 1)
	}
	if c := rawPeer(t, tr, false, 0); !closedWithin(c, 500*time.Millisecond) {
		t.Fatal("a connection over transport.max_inbound_conns_per_ip was not closed at once")
	}
	if got := tr.Stats().Rejected; got < 2 {
		t.Errorf("Rejected = %d, want the 2 refused connections counted", got)
	}

	// A real peer gets in once a place is free.
	_ = held[0].Close()
	var r3 recorder
	peer := start(t, 3, &r3, nil)
	peer.SetPeer(2, tr.Addr())
	var seq uint64
	waitFor(t, func() bool {
		seq++
		peer.Send(append([]core.Message(nil), heartbeat(3, 2, seq)))
		return r.Count() > 0
	}, "delivery from a real peer")
}

// TestIdleConnectionClosedByDialerFirst: a connection that carries nothing
// is closed by its dialer after IdleTimeout/2, before the listener's
// IdleTimeout would close it under a write; the next message redials and
// nothing is lost.
func TestIdleConnectionClosedByDialerFirst(t *testing.T) {
	idle := func(c *transport.Config) { c.IdleTimeout = 400 * time.Millisecond }
	logs := &logtest.Counter{}
	var ra, rb recorder
	a := start(t, 1, &ra, func(c *transport.Config) { idle(c); c.Logger = slog.New(logs) })
	b := start(t, 2, &rb, idle)
	a.SetPeer(2, b.Addr())
	inbound := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.inbound)
	}
	for i := range uint64(3) {
		a.Send([]core.Message{heartbeat(1, 2, i+1)})
		waitFor(t, func() bool { return rb.Count() == int(i+1) }, "delivery")
		waitFor(t, func() bool { return inbound() == 0 }, "the idle connection to close")
	}
	if st := a.Stats(); st.Dropped != 0 || st.Sent != 3 {
		t.Fatalf("dialer Stats %+v: want 3 sent, none dropped", st)
	}
	if n := logs.Count(slog.LevelDebug, "idle connection closed"); n != 3 {
		t.Errorf("the dialer closed %d idle connections, want 3 (the listener closed the others)", n)
	}
	if st := b.Stats(); st.Rejected != 0 {
		t.Fatalf("listener Stats %+v: an idle close counted as a refusal", st)
	}
}
