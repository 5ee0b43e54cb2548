package grpc

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
)

// heapPeak samples the heap in use until the returned stop is called,
// which returns the largest growth seen over the heap at the start.
func heapPeak() (stop func() int64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		return int64(peak.Load()) - int64(base)
	}
}

// TestStalledHugeChunkedMessagesBounded is the 64 MiB probe of issue 13
// against the gRPC transport: streams claiming node 1 (plaintext, so the
// claim is trusted) start chunked messages announcing 64 MiB, send 2 MiB
// and stall. The receiver's memory grows with what arrived, not with what
// was announced, and it ends the streams once they stall past
// FrameTimeout.
func TestStalledHugeChunkedMessagesBounded(t *testing.T) {
	const (
		streams   = 5
		announced = 64<<20 - 1
		sent      = 2 << 20
	)
	rec := new(transporttest.Recorder)
	tr, err := New(transport.Config{ID: 2, ListenAddr: "127.0.0.1:0", Deliver: rec.Deliver,
		DialTimeout: time.Second, FrameTimeout: 300 * time.Millisecond}, Options{ChunkBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })

	grew := heapPeak()
	data := make([]byte, sent)
	frame := appendChunk(nil, chunk{total: announced, offset: 0, data: data})
	css := make([]grpc.ClientStream, streams)
	for i := range css {
		css[i] = rawClient(t, tr)
		if err := greet(t, css[i], 1, 2); err != nil {
			t.Fatalf("stream %d: hello: %v", i, err)
		}
		if err := css[i].SendMsg(frame); err != nil {
			t.Fatalf("stream %d: send chunk: %v", i, err)
		}
	}
	start := time.Now()
	for i, cs := range css {
		// The server sends nothing after the ack: a receive returns
		// when it ends the stream (or the client's 10s context does).
		var f []byte
		err := cs.RecvMsg(&f)
		if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 9*time.Second {
			t.Errorf("stream %d: a stalled 64 MiB message kept its stream open for %v (%v)", i, time.Since(start), err)
		}
	}
	g := grew()
	t.Logf("heap in use grew by at most %.1f MiB for %d stalled messages announcing 64 MiB with 2 MiB sent; ended after %v",
		float64(g)/(1<<20), streams, time.Since(start).Round(time.Millisecond))
	if limit := int64(64 << 20); g > limit {
		t.Errorf("heap in use grew by %d MiB, want under %d MiB (reserving what was announced takes 5 x 64 MiB)", g>>20, limit>>20)
	}
	if got := tr.Stats().Rejected; got < streams {
		t.Errorf("Rejected = %d, want at least %d", got, streams)
	}
	if rec.Count() != 0 {
		t.Errorf("%d messages delivered", rec.Count())
	}
}

// TestInboundConnectionCaps: silent connections from one address fill its
// share; one more is closed at once, and the share frees itself within the
// handshake deadline (ConnectionTimeout). (Without TLS a gRPC connection
// has no handshake of its own to count against max_handshakes.)
func TestInboundConnectionCaps(t *testing.T) {
	rec := new(transporttest.Recorder)
	tr, err := New(transport.Config{ID: 2, ListenAddr: "127.0.0.1:0", Deliver: rec.Deliver,
		DialTimeout: time.Second, MaxInboundConnsPerIP: 3}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	dial := func() net.Conn {
		c, err := net.Dial("tcp", tr.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	closedWithin := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	for range 3 {
		dial()
	}
	waitFor(t, func() bool { n, _ := tr.limits.Counts(); return n == 3 }, "3 connections held")
	if !closedWithin(dial(), 500*time.Millisecond) {
		t.Fatal("a connection over transport.max_inbound_conns_per_ip was not closed at once")
	}
	waitFor(t, func() bool { n, _ := tr.limits.Counts(); return n == 0 }, "the silent connections closed by the handshake deadline")
	if got := tr.Stats().Rejected; got < 1 {
		t.Errorf("Rejected = %d, want the refused connection counted", got)
	}

	// A real client gets in and its stream works.
	cs := rawClient(t, tr)
	if err := greet(t, cs, 1, 2); err != nil {
		t.Fatalf("hello after the flood: %v", err)
	}
}
