package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
	"github.com/forge-consensus/consensus/wire"
)

// startCluster starts n in-memory nodes over TCP and waits for a leader.
func startCluster(t testing.TB, n int) ([]*server.Server, *server.Server) {
	t.Helper()
	return servertest.StartCluster(t, n, "memory", "tcp")
}

func newClient(t testing.TB, addrs ...string) *Client {
	t.Helper()
	c, err := New(Config{Addrs: addrs, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPutGetDelete: the basic operations, at every consistency.
func TestPutGetDelete(t *testing.T) {
	srvs, _ := startCluster(t, 3)
	c := newClient(t, servertest.ClientAddrs(srvs)...)
	ctx := context.Background()
	if err := c.Put(ctx, "greeting", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []Consistency{Linearizable, Stale} {
		v, found, err := c.Get(ctx, "greeting", cl)
		if err != nil || !found || string(v) != "hello" {
			t.Fatalf("get (%d): %q %v %v", cl, v, found, err)
		}
	}
	if _, _, err := c.Get(ctx, "greeting", Lease); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("lease read without leases: %v", err)
	}
	if err := c.Put(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, found, err := c.Get(ctx, "empty", Linearizable); err != nil || !found || len(v) != 0 {
		t.Fatalf("get empty value: %q %v %v", v, found, err)
	}
	if existed, err := c.Delete(ctx, "greeting"); err != nil || !existed {
		t.Fatalf("delete: %v %v", existed, err)
	}
	if existed, err := c.Delete(ctx, "greeting"); err != nil || existed {
		t.Fatalf("second delete: %v %v", existed, err)
	}
	if v, found, err := c.Get(ctx, "greeting", Linearizable); err != nil || found || v != nil {
		t.Fatalf("get after delete: %q %v %v", v, found, err)
	}
	// Invalid requests fail before anything is sent.
	if err := c.Put(ctx, "", []byte("x")); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("empty key: %v", err)
	}
	if err := c.Put(ctx, "k", make([]byte, wire.MaxValueLen+1)); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("long value: %v", err)
	}
}

// TestFollowsLeaderHint: a client that knows only a follower finds the
// leader through the NotLeader hint.
func TestFollowsLeaderHint(t *testing.T) {
	srvs, lead := startCluster(t, 3)
	var follower *server.Server
	for _, s := range srvs {
		if s != lead {
			follower = s
		}
	}
	c := newClient(t, follower.ClientAddr())
	ctx := context.Background()
	if err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, found, err := c.Get(ctx, "k", Linearizable); err != nil || !found || string(v) != "v" {
		t.Fatalf("get: %q %v %v", v, found, err)
	}
	if got := c.leader.Load().addr; got != lead.ClientAddr() {
		t.Fatalf("client sends to %s, the leader is at %s", got, lead.ClientAddr())
	}
}

// TestExactlyOnceWire: the same session write sent twice is applied once:
// the second Delete is answered from the session cache ("existed"), where a
// fresh Delete finds nothing.
func TestExactlyOnceWire(t *testing.T) {
	_, lead := startCluster(t, 3)
	nc, err := net.Dial("tcp", lead.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	do := func(r wire.Request) wire.Response {
		t.Helper()
		if _, err := nc.Write(wire.AppendFrame(nil, wire.AppendRequest(nil, &r))); err != nil {
			t.Fatal(err)
		}
		p, err := wire.ReadFrame(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := wire.DecodeResponse(p)
		if err != nil || resp.ID != r.ID {
			t.Fatalf("response %+v %v", resp, err)
		}
		return resp
	}
	if r := do(wire.Request{ID: 1, Op: wire.OpPut, Key: []byte("x"), Value: []byte("1")}); r.Status != wire.StatusOK {
		t.Fatalf("put: %+v", r)
	}
	del := wire.Request{ID: 2, Op: wire.OpDelete, ClientID: 77, Seq: 1, Key: []byte("x")}
	for i := range 2 {
		del.ID = uint64(10 + i)
		if r := do(del); r.Status != wire.StatusOK || string(r.Value) != "1" {
			t.Fatalf("session delete, attempt %d: %v %q", i+1, r.Status, r.Value)
		}
	}
	if r := do(wire.Request{ID: 20, Op: wire.OpDelete, Key: []byte("x")}); string(r.Value) != "0" {
		t.Fatalf("plain delete: %v %q", r.Status, r.Value)
	}
	// An older Seq is refused.
	del.ID, del.Seq = 21, 2
	do(del)
	del.ID, del.Seq = 22, 1
	if r := do(del); r.Status != wire.StatusRefused || string(r.Value) != "StaleSeq" {
		t.Fatalf("stale seq: %v %q", r.Status, r.Value)
	}
}

// lossyProxy forwards connections to target; on the first connection it
// swallows the first response frame and cuts the connection, as if the
// network lost it after the node applied the request.
type lossyProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  int
	lost   int // responses swallowed
}

func startProxy(t *testing.T, target string) *lossyProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns++
			first := p.conns == 1
			p.mu.Unlock()
			go func() {
				_, _ = copyAll(out, in)
				out.Close()
			}()
			go func() {
				defer in.Close()
				defer out.Close()
				if first {
					br := bufio.NewReader(out)
					if _, err := wire.ReadFrame(br, nil); err == nil {
						p.mu.Lock()
						p.lost++
						p.mu.Unlock()
					}
					return
				}
				_, _ = copyAll(in, out)
			}()
		}
	}()
	return p
}

func copyAll(dst, src net.Conn) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err != nil {
			return n, err
		}
	}
}

// TestRetryAfterLostResponse: a Delete whose response is lost (after the
// node applied it) is retried with its session on a new connection and
// answered from the session cache: applied once, "existed" still true.
func TestRetryAfterLostResponse(t *testing.T) {
	_, lead := startCluster(t, 3)
	ctx := context.Background()
	direct := newClient(t, lead.ClientAddr())
	if err := direct.Put(ctx, "once", []byte("v")); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, lead.ClientAddr())
	c := newClient(t, p.ln.Addr().String())
	existed, err := c.Delete(ctx, "once")
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	lost, conns := p.lost, p.conns
	p.mu.Unlock()
	if lost != 1 || conns < 2 {
		t.Fatalf("the proxy lost %d responses over %d connections", lost, conns)
	}
	if !existed {
		t.Fatal("the retried delete was applied twice (it found no key)")
	}
	if _, found, err := direct.Get(ctx, "once", Linearizable); err != nil || found {
		t.Fatalf("get: %v %v", found, err)
	}
}

// TestConcurrent: 200 goroutines share a client.
func TestConcurrent(t *testing.T) {
	srvs, _ := startCluster(t, 3)
	c := newClient(t, servertest.ClientAddrs(srvs)...)
	ctx := context.Background()
	var wg sync.WaitGroup
	errc := make(chan error, 200)
	for g := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				key := "g" + strconv.Itoa(g) + "/" + strconv.Itoa(i%5)
				val := strconv.Itoa(i)
				if err := c.Put(ctx, key, []byte(val)); err != nil {
					errc <- err
					return
				}
				v, found, err := c.Get(ctx, key, Linearizable)
				if err != nil || !found || string(v) != val {
					errc <- fmt.Errorf("get %s: %q %v %v", key, v, found, err)
					return
				}
			}
			if existed, err := c.Delete(ctx, "g"+strconv.Itoa(g)+"/0"); err != nil || !existed {
				errc <- fmt.Errorf("delete: %v %v", existed, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	c.sessMu.Lock()
	n := len(c.sessions)
	c.sessMu.Unlock()
	if n == 0 || n > 200 {
		t.Fatalf("%d sessions for 200 goroutines", n)
	}
}

// TestUnavailable: with no node reachable a request gives up after the
// request timeout, certainly not applied; a cancelled context ends it too.
func TestUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := New(Config{Addrs: []string{addr}, RequestTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Put(context.Background(), "k", []byte("v"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("put: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Get(ctx, "k", Linearizable); !errors.Is(err, context.Canceled) && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get with a cancelled context: %v", err)
	}
}

// TestUnknownOutcome: a write sent to a node that never answers gives up
// with ErrUnknownOutcome.
func TestUnknownOutcome(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // read and never answer
				defer nc.Close()
				_, _ = copyAll(discard{}, nc)
			}()
		}
	}()
	c, err := New(Config{Addrs: []string{ln.Addr().String()}, RequestTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Put(context.Background(), "k", []byte("v")); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("put: %v", err)
	}
	if _, _, err := c.Get(context.Background(), "k", Stale); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get: %v", err)
	}
}

type discard struct{ net.Conn }

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestClose: calls after Close fail with ErrClosed.
func TestClose(t *testing.T) {
	srvs, _ := startCluster(t, 1)
	c := newClient(t, servertest.ClientAddrs(srvs)...)
	if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Put(context.Background(), "k", []byte("v")); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after Close: %v", err)
	}
}

// TestLeaderFailover: when the leader goes away, requests in flight and
// later ones move to the new leader; session retries keep writes
// exactly-once.
func TestLeaderFailover(t *testing.T) {
	srvs, lead := startCluster(t, 3)
	c := newClient(t, servertest.ClientAddrs(srvs)...)
	ctx := context.Background()
	if err := c.Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Writers keep going while the leader stops.
	var wg sync.WaitGroup
	errc := make(chan error, 20)
	stop := make(chan struct{})
	var done atomic.Int64
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := c.Put(ctx, "w"+strconv.Itoa(g), []byte(strconv.Itoa(i))); err != nil {
					errc <- err
					return
				}
				done.Add(1)
			}
		}()
	}
	for done.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	lead.Close()
	var rest []*server.Server
	for _, s := range srvs {
		if s != lead {
			rest = append(rest, s)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for !(rest[0].Runner().Status().Role == core.Leader || rest[1].Runner().Status().Role == core.Leader) {
		if time.Now().After(deadline) {
			t.Fatal("no new leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	after := done.Load()
	for done.Load() < after+100 {
		if time.Now().After(deadline) {
			t.Fatal("writes did not resume")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if v, found, err := c.Get(ctx, "before", Linearizable); err != nil || !found || string(v) != "1" {
		t.Fatalf("get after failover: %q %v %v", v, found, err)
	}
}
