package server_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
	"github.com/forge-consensus/consensus/wire"
)

// limitedNode starts one in-memory node whose api section gets the given
// lines (each "key: value").
func limitedNode(t *testing.T, api ...string) *server.Server {
	t.Helper()
	var extra strings.Builder
	for _, l := range api {
		extra.WriteString("  " + l + "\n")
	}
	srvs, _ := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
		Extra: extra.String()})
	return srvs[0]
}

// closedWithin waits up to d for the server to close nc (a read returns
// EOF or a reset; what the server sends first is skipped) and returns how
// long it took, or fails the test.
func closedWithin(t *testing.T, nc net.Conn, start time.Time, d time.Duration, what string) time.Duration {
	t.Helper()
	_ = nc.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open for %v", what, d)
	}
	return time.Since(start)
}

// stillServes checks that a normal client is served meanwhile.
func stillServes(t *testing.T, s *server.Server, key string) {
	t.Helper()
	c := dialRaw(t, s.ClientAddr())
	if r := c.do(put(1, key, "v")); r.Status != wire.StatusOK {
		t.Fatalf("put %s: %+v", key, r)
	}
	if r := c.do(get(2, key, wire.Linearizable)); r.Status != wire.StatusOK || string(r.Value) != "v" {
		t.Fatalf("get %s: %+v", key, r)
	}
}

// frameHeader announces a frame of n bytes (with a checksum that will not
// match: the frame is never finished).
func frameHeader(n int) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(n)), 0)
}

// TestWireStalledFramesDoNotReserveMemory is issue 13's probe: clients that
// announce the largest frame, send part of it and stall made the server
// reserve the whole announced frame for each; now its memory follows the
// bytes received (and api.max_read_memory bounds the large frames in all).
func TestWireStalledFramesDoNotReserveMemory(t *testing.T) {
	s := limitedNode(t)
	const conns, sent = 40, 200 << 10
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	for range conns {
		c := dialRaw(t, s.ClientAddr())
		if _, err := c.nc.Write(append(frameHeader(wire.MaxFrameBytes), make([]byte, sent)...)); err != nil {
			t.Fatal(err)
		}
	}
	// Before: 40 × 4 MiB reserved at once (160 MiB); now about 40 × 256 KiB.
	const bound = 48 << 20
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > base+bound {
			t.Fatalf("heap grew by %d MiB with %d stalled frames of %d KiB, want under %d MiB",
				(ms.HeapAlloc-base)>>20, conns, sent>>10, bound>>20)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stillServes(t, s, "during-stall")
}

// TestWireTrickledFrameCutOff: a client that trickles a frame a byte at a
// time is disconnected once api.read_timeout has passed since the frame
// began.
func TestWireTrickledFrameCutOff(t *testing.T) {
	s := limitedNode(t, "read_timeout: 1s")
	c := dialRaw(t, s.ClientAddr())
	start := time.Now()
	if _, err := c.nc.Write(frameHeader(1000)); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 1000 {
			if _, err := c.nc.Write([]byte{0}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	took := closedWithin(t, c.nc, start, 4*time.Second, "a trickled frame")
	if took < 900*time.Millisecond {
		t.Fatalf("cut off after %v, before api.read_timeout (1s)", took)
	}
	stillServes(t, s, "after-trickle")
}

// TestWireIdleConnectionClosed: a connection with nothing in flight that
// sends nothing for api.idle_timeout is closed.
func TestWireIdleConnectionClosed(t *testing.T) {
	s := limitedNode(t, "idle_timeout: 500ms")
	c := dialRaw(t, s.ClientAddr())
	if r := c.do(put(1, "k", "v")); r.Status != wire.StatusOK {
		t.Fatalf("put: %+v", r)
	}
	closedWithin(t, c.nc, time.Now(), 4*time.Second, "an idle connection")
}

// TestWireWriteTimeout: a client that sends requests and never reads the
// answers is disconnected once a write has waited api.write_timeout.
func TestWireWriteTimeout(t *testing.T) {
	s := limitedNode(t, "write_timeout: 1s")
	c := dialRaw(t, s.ClientAddr())
	if r := c.do(put(0, "big", strings.Repeat("v", 100<<10))); r.Status != wire.StatusOK {
		t.Fatalf("put: %+v", r)
	}
	go func() { // 400 MB of answers, never read
		for i := 1; i <= 4000; i++ {
			var b wire.Batch
			b.AppendRequest(&wire.Request{ID: uint64(i), Op: wire.OpGet, Consistency: wire.Stale, Key: []byte("big")})
			if _, err := c.nc.Write(b.Bytes()); err != nil {
				return
			}
		}
	}()
	// A liveness bound, generous for a loaded machine (a CI run once took
	// more than 10 s here; locally it takes about 3 s).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, ok := s.WireConnState(); !ok {
			break
		}
		if time.Now().After(deadline) {
			inflight, waiting, _ := s.WireConnState()
			t.Fatalf("the server kept a connection that never reads for 30s (api.write_timeout: 1s; %d in flight, reader waiting for room: %v)",
				inflight, waiting)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stillServes(t, s, "after-no-reader")
}

// TestConnectionCapPerIP: both listeners close, at accept, a connection
// beyond api.max_connections_per_ip from one address, and take one again
// once a connection closed.
func TestConnectionCapPerIP(t *testing.T) {
	s := limitedNode(t, "max_connections_per_ip: 4")
	for _, addr := range []string{s.ClientAddr(), s.APIAddr()} {
		var held []net.Conn
		for range 4 {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			held = append(held, nc)
		}
		extra, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		closedWithin(t, extra, time.Now(), 3*time.Second, "a fifth connection from 127.0.0.1 to "+addr)
		extra.Close()
		for _, nc := range held {
			nc.Close()
		}
	}
	// The held connections closed: their places are free again (the server
	// counts a connection until it notices the close).
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + s.APIAddr() + "/status")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTP API refuses connections after the others closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stillServes(t, s, "after-cap")
}

// trickleHTTP opens a connection to the HTTP API, sends a PUT's header
// announcing a 1000-byte body and then trickles the body a byte every
// 100 ms.
func trickleHTTP(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := fmt.Fprintf(nc, "PUT /kv/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 1000 {
			if _, err := nc.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return nc
}

// TestHTTPTrickledBodyCutOff is issue 13's probe: a client trickling a
// request body held an HTTP API connection for as long as it liked; now it
// is cut off at api.read_timeout.
func TestHTTPTrickledBodyCutOff(t *testing.T) {
	s := limitedNode(t, "read_timeout: 1s")
	start := time.Now()
	nc := trickleHTTP(t, s.APIAddr())
	took := closedWithin(t, nc, start, 4*time.Second, "a trickled HTTP body")
	if took < 900*time.Millisecond {
		t.Fatalf("cut off after %v, before api.read_timeout (1s)", took)
	}
	resp, err := http.Get("http://" + s.APIAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestHTTPMaxInFlight: beyond api.max_inflight requests in progress the
// HTTP API answers 503 with Retry-After, and serves again once they end.
func TestHTTPMaxInFlight(t *testing.T) {
	s := limitedNode(t, "max_inflight: 1", "read_timeout: 3s")
	nc := trickleHTTP(t, s.APIAddr()) // in progress while its body trickles
	url := "http://" + s.APIAddr() + "/status"
	status := func() (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, retry := status()
		if code == http.StatusServiceUnavailable {
			if retry == "" {
				t.Fatal("503 without Retry-After")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /status while a request is in progress with api.max_inflight 1: %d, want 503", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc.Close()
	deadline = time.Now().Add(5 * time.Second)
	for {
		if code, _ := status(); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the HTTP API still refuses requests after the one in progress ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAPILimitsValidate: bad limits are refused, naming their key.
func TestAPILimitsValidate(t *testing.T) {
	base := "node_id: 1\nbind_port: 7000\npeers:\n  - {id: 1, address: 127.0.0.1, port: 7000}\nstorage: {type: memory}\napi:\n"
	for _, tc := range []struct{ yaml, key string }{
		{"  max_connections: -1", "api.max_connections"},
		{"  max_connections_per_ip: -1", "api.max_connections_per_ip"},
		{"  max_connections: 10\n  max_connections_per_ip: 11", "api.max_connections_per_ip"},
		{"  read_timeout: -1s", "api.read_timeout"},
		{"  write_timeout: -1s", "api.write_timeout"},
		{"  idle_timeout: -1s", "api.idle_timeout"},
		{"  max_inflight: -5", "api.max_inflight"},
		{"  max_read_memory: -1", "api.max_read_memory"},
		{"  max_read_memory: 1024", "api.max_read_memory"},
	} {
		_, err := server.ParseConfig([]byte(base+tc.yaml+"\n"), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%q: err = %v, want one naming %s", tc.yaml, err, tc.key)
		}
	}
	c, err := server.ParseConfig([]byte(base+"  addr: 127.0.0.1:7100\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if l := c.API.APILimits; l.MaxConnections != server.DefaultMaxConnections ||
		l.MaxConnectionsPerIP != server.DefaultMaxConnectionsPerIP || l.ReadTimeout != server.DefaultAPIReadTimeout ||
		l.WriteTimeout != server.DefaultAPIWriteTimeout || l.IdleTimeout != server.DefaultAPIIdleTimeout ||
		l.MaxInFlight != server.DefaultMaxInFlight || l.MaxReadMemory != server.DefaultMaxReadMemory {
		t.Fatalf("defaults: %+v", l)
	}
}
