package grpc_test

import (
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/core"
)

// pki is the shared test CA, with the helper these tests use.
type pki struct{ *transporttest.PKI }

// newPKI creates a CA named name.
func newPKI(t testing.TB, name string) pki { return pki{transporttest.NewPKI(t, name)} }

// nodeTLS returns mutual-TLS settings for a node whose certificate names
// identity (CommonName and DNS SAN).
func (p pki) nodeTLS(identity string) *grpc.TLSConfig {
	cert, key := p.Issue(identity, identity)
	return &grpc.TLSConfig{CertFile: cert, KeyFile: key, CAFile: p.CAFile, MutualTLS: true}
}

// recorder collects delivered messages.
type recorder = transporttest.Recorder

// node is one transport under test.
type node struct {
	id          uint64
	tr          *grpc.Transport
	in          *recorder
	unreachable atomic.Int64
}

// testLogger logs warnings to the test until it ends.
func testLogger(t *testing.T) *slog.Logger {
	done := new(atomic.Bool)
	t.Cleanup(func() { done.Store(true) })
	return slog.New(slog.NewTextHandler(logWriter{t: t, done: done}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type logWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func (w logWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

// testConfig is the transport configuration of node id in tests: short
// timeouts and back-offs.
func testConfig(t *testing.T, id uint64) transport.Config {
	return transport.Config{
		ID:           id,
		ListenAddr:   "127.0.0.1:0",
		DialTimeout:  time.Second,
		WriteTimeout: 2 * time.Second,
		BackoffMin:   5 * time.Millisecond,
		BackoffMax:   100 * time.Millisecond,
		Logger:       testLogger(t),
	}
}

// start starts node id with opts; tweak, if not nil, edits its config. The
// transport is closed when the test ends.
func start(t *testing.T, id uint64, opts grpc.Options, tweak func(*transport.Config)) *node {
	t.Helper()
	n := &node{id: id, in: new(recorder)}
	cfg := testConfig(t, id)
	cfg.Deliver = n.in.Deliver
	cfg.Unreachable = func(uint64) { n.unreachable.Add(1) }
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := grpc.New(cfg, opts)
	if err != nil {
		t.Fatalf("node %d: New: %v", id, err)
	}
	n.tr = tr
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("node %d: Close: %v", id, err)
		}
	})
	return n
}

// eventually polls cond until it holds or fails t after a generous guard.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 10s: "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heartbeat is a small message numbered seq.
func heartbeat(from, to, seq uint64) core.Message {
	return core.Message{Type: core.MsgHeartbeat, From: from, To: to, Term: 1, Index: seq}
}

// snapshot is a MsgSnap with size bytes of data: patterned, or zeros
// when compressible.
func snapshot(from, to uint64, size int, compressible bool) core.Message {
	data := make([]byte, size)
	if !compressible {
		_, _ = io.ReadFull(rand.Reader, data)
	}
	return core.Message{
		Type: core.MsgSnap, From: from, To: to, Term: 2,
		Snapshot: &core.Snapshot{
			Meta: core.SnapshotMeta{Index: 10, Term: 2, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
			Data: data,
		},
	}
}

// roundTrip returns m as a receiver must deliver it.
func roundTrip(t *testing.T, m core.Message) core.Message {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	out, err := core.DecodeMessage(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// proxy forwards TCP connections from its address to target, counting the
// bytes sent towards target.
type proxy struct {
	l     net.Listener
	bytes atomic.Int64
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{l: l}
	var conns sync.Map
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			conns.Store(c, up)
			p.wg.Go(func() {
				_, _ = io.Copy(countingWriter{w: up, n: &p.bytes}, c)
				_ = up.Close()
			})
			p.wg.Go(func() {
				_, _ = io.Copy(c, up)
				_ = c.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		conns.Range(func(k, v any) bool {
			_ = k.(net.Conn).Close()
			_ = v.(net.Conn).Close()
			return true
		})
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
