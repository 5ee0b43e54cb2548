package server_test

import (
	"bufio"
	"context"
	"errors"
	"github.com/forge-consensus/consensus/internal/logtest"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/client"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
	"github.com/forge-consensus/consensus/wire"
)

// startCluster starts n in-memory nodes over TCP and waits for a leader.
func startCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	srvs, _ := servertest.StartCluster(t, n, "memory", "tcp")
	return srvs
}

// rawConn is a test client speaking the wire protocol by hand.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// send writes one frame holding reqs.
func (c *rawConn) send(reqs ...wire.Request) {
	c.t.Helper()
	var payload []byte
	for i := range reqs {
		payload = wire.AppendRequest(payload, &reqs[i])
	}
	if _, err := c.nc.Write(wire.AppendFrame(nil, payload)); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads responses until it has n of them, by ID.
func (c *rawConn) recv(n int) map[uint64]wire.Response {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := map[uint64]wire.Response{}
	for len(got) < n {
		p, err := wire.ReadFrame(c.br, nil)
		if err != nil {
			c.t.Fatalf("after %d of %d responses: %v", len(got), n, err)
		}
		for len(p) > 0 {
			r, rest, err := wire.DecodeResponse(p)
			if err != nil {
				c.t.Fatal(err)
			}
			if _, dup := got[r.ID]; dup {
				c.t.Fatalf("response %d twice", r.ID)
			}
			got[r.ID] = r
			p = rest
		}
	}
	return got
}

// do sends one request and returns its response.
func (c *rawConn) do(r wire.Request) wire.Response {
	c.t.Helper()
	c.send(r)
	resp := c.recv(1)[r.ID]
	return resp
}

func put(id uint64, key, value string) wire.Request {
	return wire.Request{ID: id, Op: wire.OpPut, Key: []byte(key), Value: []byte(value)}
}

func get(id uint64, key string, c wire.Consistency) wire.Request {
	return wire.Request{ID: id, Op: wire.OpGet, Key: []byte(key), Consistency: c}
}

// TestWireWritesAndReads: writes on the leader, then reads on every node:
// linearizable reads see them at once, stale reads eventually; deletes
// report whether the key existed.
func TestWireWritesAndReads(t *testing.T) {
	srvs := startCluster(t, 3)
	lead := servertest.Leader(t, srvs)
	lc := dialRaw(t, lead.ClientAddr())
	var reqs []wire.Request
	for i := range 10 {
		reqs = append(reqs, put(uint64(i+1), "k"+strconv.Itoa(i), "v"+strconv.Itoa(i)))
	}
	lc.send(reqs...)
	for id, r := range lc.recv(len(reqs)) {
		if r.Status != wire.StatusOK {
			t.Fatalf("put %d: %v %q", id, r.Status, r.Value)
		}
	}
	for _, s := range srvs {
		c := dialRaw(t, s.ClientAddr())
		for i := range 10 {
			r := c.do(get(uint64(i+100), "k"+strconv.Itoa(i), wire.Linearizable))
			if r.Status != wire.StatusOK || string(r.Value) != "v"+strconv.Itoa(i) {
				t.Fatalf("node %d: linearizable get k%d: %v %q", s.Runner().ID(), i, r.Status, r.Value)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := c.do(get(200, "k9", wire.Stale))
			if r.Status == wire.StatusOK && string(r.Value) == "v9" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: stale get: %v %q", s.Runner().ID(), r.Status, r.Value)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if r := c.do(get(201, "absent", wire.Linearizable)); r.Status != wire.StatusNotFound {
			t.Fatalf("node %d: get of an absent key: %v", s.Runner().ID(), r.Status)
		}
	}
	del := wire.Request{ID: 300, Op: wire.OpDelete, Key: []byte("k0")}
	if r := lc.do(del); r.Status != wire.StatusOK || string(r.Value) != "1" {
		t.Fatalf("delete: %v %q", r.Status, r.Value)
	}
	del.ID = 301
	if r := lc.do(del); r.Status != wire.StatusOK || string(r.Value) != "0" {
		t.Fatalf("second delete: %v %q", r.Status, r.Value)
	}
	if r := lc.do(get(302, "k0", wire.Linearizable)); r.Status != wire.StatusNotFound {
		t.Fatalf("get after delete: %v", r.Status)
	}
	// Lease reads are off in this cluster: refused, with the reason.
	if r := lc.do(get(303, "k1", wire.Lease)); r.Status != wire.StatusRefused || !strings.Contains(string(r.Value), "lease") {
		t.Fatalf("lease read: %v %q", r.Status, r.Value)
	}
}

// TestWireNotLeader: a write to a follower is answered NotLeader with the
// leader's ID and client address, and is not applied.
func TestWireNotLeader(t *testing.T) {
	srvs := startCluster(t, 3)
	lead := servertest.Leader(t, srvs)
	for _, s := range srvs {
		if s == lead {
			continue
		}
		c := dialRaw(t, s.ClientAddr())
		r := c.do(put(1, "f", "x"))
		if r.Status != wire.StatusNotLeader || r.LeaderID != lead.Runner().ID() || r.LeaderAddr != lead.ClientAddr() {
			t.Fatalf("put on follower %d: %+v, want NotLeader %d at %s", s.Runner().ID(), r, lead.Runner().ID(),
				lead.ClientAddr())
		}
		r = c.do(wire.Request{ID: 2, Op: wire.OpDelete, Key: []byte("f")})
		if r.Status != wire.StatusNotLeader || r.LeaderID != lead.Runner().ID() {
			t.Fatalf("delete on follower: %+v", r)
		}
	}
	if r := dialRaw(t, lead.ClientAddr()).do(get(3, "f", wire.Linearizable)); r.Status != wire.StatusNotFound {
		t.Fatalf("the refused write was applied: %+v", r)
	}
}

// TestWireMalformedFrame: a frame that cannot be parsed, or fails its CRC,
// closes the connection without an answer, and changes nothing (even the
// good requests before the bad one in the frame).
func TestWireMalformedFrame(t *testing.T) {
	srvs := startCluster(t, 3)
	lead := servertest.Leader(t, srvs)
	good := put(1, "m", "should not be written")
	payload := wire.AppendRequest(nil, &good)
	bad := append(payload, 2, byte(wire.OpPut), 0, 0, 0, 1, 'k', 10, 'v') // value cut short
	badCRC := wire.AppendFrame(nil, payload)
	badCRC[4] ^= 1
	oversize := []byte{0xff, 0, 0, 0, 0, 0, 0, 0}
	for name, frame := range map[string][]byte{
		"malformed": wire.AppendFrame(nil, bad), "crc": badCRC, "oversize": oversize, "empty": wire.AppendFrame(nil, nil),
	} {
		c := dialRaw(t, lead.ClientAddr())
		if _, err := c.nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.br.Read(make([]byte, 1))
		if n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatalf("%s: read %d bytes, %v; want the connection closed", name, n, err)
		}
	}
	c := dialRaw(t, lead.ClientAddr())
	if r := c.do(get(2, "m", wire.Linearizable)); r.Status != wire.StatusNotFound {
		t.Fatalf("a request of a malformed frame was applied: %+v", r)
	}
	// The server still serves, and answers an invalid (but well-formed)
	// request with BadRequest without dropping the connection.
	c.send(wire.Request{ID: 3, Op: wire.OpGet}, put(4, "ok", "v"))
	rs := c.recv(2)
	if rs[3].Status != wire.StatusBadRequest || !strings.Contains(string(rs[3].Value), "empty key") || rs[4].Status != wire.StatusOK {
		t.Fatalf("invalid request: %+v", rs)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestWirePipelined: many requests in many frames on one connection, sent
// without waiting (more than the in-flight bound), are all answered once,
// with matching IDs.
func TestWirePipelined(t *testing.T) {
	srvs := startCluster(t, 3)
	lead := servertest.Leader(t, srvs)
	c := dialRaw(t, lead.ClientAddr())
	const n = 3 * server.WireMaxInFlight / 2
	errc := make(chan error, 1)
	go func() {
		var b wire.Batch
		for i := range n {
			var r wire.Request
			switch key := "p" + strconv.Itoa(i%500); i % 3 {
			case 0:
				r = put(uint64(i), key, strconv.Itoa(i))
			case 1:
				r = get(uint64(i), key, wire.Linearizable)
			default:
				r = get(uint64(i), key, wire.Stale)
			}
			b.AppendRequest(&r)
			if b.Len() == 1000 {
				if _, err := c.nc.Write(b.Bytes()); err != nil {
					errc <- err
					return
				}
				b.Reset()
			}
		}
		_, err := c.nc.Write(b.Bytes())
		errc <- err
	}()
	got := c.recv(n)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i := range uint64(n) {
		r, ok := got[i]
		if !ok {
			t.Fatalf("no response to %d", i)
		}
		if r.Status != wire.StatusOK && !(i%3 != 0 && r.Status == wire.StatusNotFound) {
			t.Fatalf("response %d: %+v", i, r)
		}
	}
}

// TestWireCloseEndsConnections: closing a server closes its client
// connections.
func TestWireCloseEndsConnections(t *testing.T) {
	srvs := startCluster(t, 1)
	c := dialRaw(t, srvs[0].ClientAddr())
	if r := c.do(put(1, "a", "b")); r.Status != wire.StatusOK {
		t.Fatalf("put: %+v", r)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srvs[0].Close()
	}()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("read after Close: %v", err)
	}
	wg.Wait()
}

// TestWireBackPressure: a client that sends far more requests than the
// in-flight bound without reading any response stalls its connection's
// reader at the bound; once it reads, every request is answered.
func TestWireBackPressure(t *testing.T) {
	srvs := startCluster(t, 1)
	s := srvs[0]
	c := dialRaw(t, s.ClientAddr())
	if r := c.do(put(0, "big", strings.Repeat("v", 1000))); r.Status != wire.StatusOK {
		t.Fatalf("put: %+v", r)
	}
	const n = 3 * server.WireMaxInFlight
	errc := make(chan error, 1)
	go func() {
		var b wire.Batch
		for i := 1; i <= n; i++ {
			b.AppendRequest(&wire.Request{ID: uint64(i), Op: wire.OpGet, Consistency: wire.Stale, Key: []byte("big")})
		}
		_, err := c.nc.Write(b.Bytes())
		errc <- err
	}()
	// The responses (1 KB each) fill the socket buffers, the writer blocks,
	// and the reader must stop at the bound.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if inflight, waiting, ok := s.WireConnState(); ok {
			if inflight > server.WireMaxInFlight {
				t.Fatalf("%d requests in flight", inflight)
			}
			if waiting {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader never waited for room")
		}
		time.Sleep(time.Millisecond)
	}
	got := c.recv(n)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= n; i++ {
		if r := got[i]; r.Status != wire.StatusOK || len(r.Value) != 1000 {
			t.Fatalf("response %d: %v, %d bytes", i, r.Status, len(r.Value))
		}
	}
}

// BenchmarkWire measures writes through the client protocol on a 3-node
// cluster in this process (Pebble with fsync, gRPC, as consensusd
// local-cluster runs), with a given number of concurrent callers sharing
// one client.Client:
//
//	go test ./server -run '^$' -bench BenchmarkWire -benchtime 50000x -cpuprofile /tmp/cpu.out
func BenchmarkWire(b *testing.B) {
	for _, clients := range []int{1, 100, 1000} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			srvs, _ := servertest.StartCluster(b, 3, "pebble", "grpc")
			cl, err := client.New(client.Config{Addrs: servertest.ClientAddrs(srvs)})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			ctx := context.Background()
			value := make([]byte, 128)
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = "key" + strconv.Itoa(i)
			}
			if err := cl.Put(ctx, "warm-up", value); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
						if err := cl.Put(ctx, keys[i%int64(len(keys))], value); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// TestWireBadFramesDoNotFloodTheLog: a client sending bad frames on
// connection after connection gets each connection closed, and the node
// warns at most once a second (the rest at Debug).
func TestWireBadFramesDoNotFloodTheLog(t *testing.T) {
	logs := &logtest.Counter{}
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
		Logger: slog.New(logs)})
	_ = srvs
	bad := wire.AppendFrame(nil, nil) // empty
	const n = 200
	start := time.Now()
	for range n {
		c := dialRaw(t, lead.ClientAddr())
		if _, err := c.nc.Write(bad); err != nil {
			t.Fatal(err)
		}
		c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if k, _ := c.br.Read(make([]byte, 1)); k != 0 {
			t.Fatal("the server answered an empty frame")
		}
		c.nc.Close()
	}
	elapsed := time.Since(start)
	warns := logs.CountPrefix(slog.LevelWarn, "client protocol: ")
	debugs := logs.CountPrefix(slog.LevelDebug, "client protocol: ")
	if most := int(elapsed/time.Second) + 1; warns == 0 || warns > most || warns+debugs < n {
		t.Fatalf("%d warnings and %d debug lines for %d bad frames in %v; want 1 to %d warnings", warns, debugs, n, elapsed, most)
	}
}
