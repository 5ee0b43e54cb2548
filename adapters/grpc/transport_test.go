package grpc_test

import (
	"github.com/forge-consensus/consensus/internal/logtest"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// settle gives a transport time to (wrongly) deliver what must not arrive.
func settle() { time.Sleep(150 * time.Millisecond) }

// keepSending sends heartbeats from a to peer to, numbered from base,
// until cond holds.
func keepSending(t *testing.T, a *node, to, base uint64, cond func() bool, what string) {
	t.Helper()
	seq := base
	eventually(t, func() bool {
		seq++
		a.tr.Send([]core.Message{heartbeat(a.id, to, seq)})
		return cond()
	}, "%s", what)
}

// TestMutualTLSAuthentication checks node authentication under mutual TLS:
// the client certificate must name the ID the client claims.
func TestMutualTLSAuthentication(t *testing.T) {
	ca := newPKI(t, "cluster")
	server := start(t, 1, grpc.Options{TLS: ca.nodeTLS("node-1")}, nil)

	// dialer starts node 2 with tlsConf and points it at the server.
	dialer := func(t *testing.T, tlsConf *grpc.TLSConfig) *node {
		n := start(t, 2, grpc.Options{TLS: tlsConf}, nil)
		n.tr.SetPeer(1, server.tr.Addr())
		return n
	}
	// refused checks that nothing from n reaches the server while the
	// server counts refusals.
	refused := func(t *testing.T, n *node) {
		t.Helper()
		// Its messages are numbered from marker, apart from those of
		// earlier clients (which may still be landing).
		const marker = 1 << 40
		rejected := server.tr.Stats().Rejected
		keepSending(t, n, 1, marker, func() bool { return server.tr.Stats().Rejected > rejected },
			"refusal not counted in the server's Stats.Rejected")
		eventually(t, func() bool { return n.unreachable.Load() > 0 }, "client not told the server is unreachable")
		settle()
		for _, m := range server.in.All() {
			if m.Index > marker {
				t.Fatalf("message %d delivered from an unauthenticated client", m.Index-marker)
			}
		}
		if st := n.tr.Stats(); st.Sent != 0 {
			t.Fatalf("client Stats.Sent = %d, want 0", st.Sent)
		}
	}

	t.Run("ValidCertificate", func(t *testing.T) {
		n := dialer(t, ca.nodeTLS("node-2"))
		keepSending(t, n, 1, 0, func() bool { return server.in.Count() > 0 }, "no message from node-2")
		for _, m := range server.in.All() {
			if m.From != 2 {
				t.Fatalf("delivered a message from %d", m.From)
			}
		}
	})
	t.Run("IdentityInSANOnly", func(t *testing.T) {
		cert, key := ca.Issue("some host", "node-2")
		n := dialer(t, &grpc.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile, MutualTLS: true})
		before := server.in.Count()
		keepSending(t, n, 1, 0, func() bool { return server.in.Count() > before }, "no message from a node-2 SAN certificate")
	})
	t.Run("CertificateOfAnotherNode", func(t *testing.T) {
		refused(t, dialer(t, ca.nodeTLS("node-3"))) // claims ID 2 with node-3's certificate
	})
	t.Run("NoClientCertificate", func(t *testing.T) {
		cert, key := ca.Issue("node-2", "node-2")
		// MutualTLS off on the client: it verifies the server but presents
		// no certificate.
		refused(t, dialer(t, &grpc.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile}))
	})
	t.Run("CertificateOfAnotherCA", func(t *testing.T) {
		rogue := newPKI(t, "rogue")
		cert, key := rogue.Issue("node-2", "node-2")
		// Trusts the cluster CA (so it accepts the server) but presents a
		// node-2 certificate signed by another CA.
		refused(t, dialer(t, &grpc.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile, MutualTLS: true}))
	})
	t.Run("PlaintextClient", func(t *testing.T) {
		refused(t, dialer(t, nil))
	})
	t.Run("ServerOfAnotherIdentity", func(t *testing.T) {
		// Node 4 serves with node-5's certificate: a client that meant to
		// reach node 4 sends it nothing.
		impostor := start(t, 4, grpc.Options{TLS: ca.nodeTLS("node-5")}, nil)
		n := start(t, 2, grpc.Options{TLS: ca.nodeTLS("node-2")}, nil)
		n.tr.SetPeer(4, impostor.tr.Addr())
		keepSending(t, n, 4, 0, func() bool { return n.unreachable.Load() > 0 }, "client did not give up on the impostor")
		settle()
		if got := impostor.in.Count(); got != 0 {
			t.Fatalf("%d messages sent to a server that is not node 4", got)
		}
	})
}

// TestTrustedClaimWithoutMutualTLS documents that without mutual TLS the
// claimed ID is trusted: only From must match it.
func TestTrustedClaimWithoutMutualTLS(t *testing.T) {
	ca := newPKI(t, "cluster")
	cert, key := ca.Issue("node-1", "node-1")
	server := start(t, 1, grpc.Options{TLS: &grpc.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile}}, nil)
	cert2, key2 := ca.Issue("anything")
	n := start(t, 7, grpc.Options{TLS: &grpc.TLSConfig{CertFile: cert2, KeyFile: key2, CAFile: ca.CAFile}}, nil)
	n.tr.SetPeer(1, server.tr.Addr())
	keepSending(t, n, 1, 0, func() bool { return server.in.Count() > 0 }, "no message over server-only TLS")
}

// TestCompression sends varied messages with gzip at several levels, to
// receivers with and without compression, and checks they arrive intact
// and that a compressible snapshot crosses the wire compressed.
func TestCompression(t *testing.T) {
	for _, tc := range []struct {
		name      string
		level     int
		receiver  grpc.Options
		maxOnWire int64
	}{
		{name: "DefaultLevel", level: 0, maxOnWire: 1 << 20},
		{name: "Fastest", level: 1, maxOnWire: 1 << 20},
		{name: "Best", level: 9, maxOnWire: 1 << 20},
		{name: "Mixed", level: 6, receiver: grpc.Options{Compression: "gzip", CompressionLevel: 2}, maxOnWire: 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := start(t, 2, tc.receiver, nil)
			a := start(t, 1, grpc.Options{Compression: "gzip", CompressionLevel: tc.level}, nil)
			p := newProxy(t, b.tr.Addr())
			a.tr.SetPeer(2, p.addr())

			msgs := []core.Message{
				heartbeat(1, 2, 1),
				{Type: core.MsgApp, From: 1, To: 2, Term: 3, LogTerm: 3, Index: 10, Commit: 9,
					Entries: []core.Entry{{Term: 3, Index: 11, Data: []byte(strings.Repeat("abc", 1000))}, {Term: 3, Index: 12}}},
				snapshot(1, 2, 8<<20, true),    // 8 MiB of zeros: chunked, compresses to little
				snapshot(1, 2, 256<<10, false), // random: does not compress
				{Type: core.MsgReadIndex, From: 1, To: 2, Term: 3, Context: []byte("ctx")},
			}
			var want []core.Message
			for _, m := range msgs {
				want = append(want, roundTrip(t, m))
			}
			a.tr.Send(msgs)
			eventually(t, func() bool { return b.in.Count() >= len(want) }, "received %d of %d", b.in.Count(), len(want))
			if got := b.in.All(); !reflect.DeepEqual(got, want) {
				t.Fatalf("messages altered in transit")
			}
			if n := p.bytes.Load(); n > tc.maxOnWire+256<<10 {
				t.Fatalf("%d bytes on the wire for 8.3 MiB of mostly zeros: not compressed", n)
			}
		})
	}
}

// TestChunkedSnapshot sends a 10 MiB snapshot in 1 MiB chunks, then one
// above the receiver's MaxMessageBytes, which is rejected without being
// delivered while the stream keeps working.
func TestChunkedSnapshot(t *testing.T) {
	const limit = 12 << 20
	opts := grpc.Options{ChunkBytes: 1 << 20}
	b := start(t, 2, opts, func(c *transport.Config) { c.MaxMessageBytes = limit })
	a := start(t, 1, opts, func(c *transport.Config) { c.MaxMessageBytes = 64 << 20 })
	a.tr.SetPeer(2, b.tr.Addr())

	big := snapshot(1, 2, 10<<20, false)
	want := []core.Message{heartbeat(1, 2, 1), roundTrip(t, big), heartbeat(1, 2, 2)}
	a.tr.Send([]core.Message{heartbeat(1, 2, 1), big, heartbeat(1, 2, 2)})
	eventually(t, func() bool { return b.in.Count() >= 3 }, "received %d of 3", b.in.Count())
	if got := b.in.All(); !reflect.DeepEqual(got, want) {
		t.Fatalf("10 MiB snapshot altered in transit")
	}

	rejected := b.tr.Stats().Rejected
	a.tr.Send([]core.Message{snapshot(1, 2, limit+1, true), heartbeat(1, 2, 3)})
	eventually(t, func() bool { return b.in.Count() >= 4 }, "message after the oversize one not received")
	if st := b.tr.Stats(); st.Rejected != rejected+1 {
		t.Fatalf("receiver Stats.Rejected = %d, want %d", st.Rejected, rejected+1)
	}
	if got := b.in.All()[3]; got.Type != core.MsgHeartbeat || got.Index != 3 {
		t.Fatalf("delivered %v after the oversize snapshot, want heartbeat 3", got.Type)
	}
	if st := a.tr.Stats(); st.Dropped != 0 || st.Sent != 5 {
		t.Fatalf("sender Stats = %+v, want 5 sent", st)
	}
}

// TestSmallChunks reassembles a message cut into many small chunks.
func TestSmallChunks(t *testing.T) {
	opts := grpc.Options{ChunkBytes: grpc.MinChunkBytes}
	b := start(t, 2, opts, nil)
	a := start(t, 1, opts, nil)
	a.tr.SetPeer(2, b.tr.Addr())
	msgs := []core.Message{snapshot(1, 2, 300<<10, false)}
	for i := range uint64(100) {
		msgs = append(msgs, heartbeat(1, 2, i))
	}
	var want []core.Message
	for _, m := range msgs {
		want = append(want, roundTrip(t, m))
	}
	a.tr.Send(msgs)
	eventually(t, func() bool { return b.in.Count() >= len(want) }, "received %d of %d", b.in.Count(), len(want))
	if got := b.in.All(); !reflect.DeepEqual(got, want) {
		t.Fatalf("messages altered in transit")
	}
}

// TestCircuitBreaker checks that consecutive failures open a peer's
// breaker (sends dropped at once, no dialing), and that a half-open probe
// after BackoffMax reconnects once the peer is back.
func TestCircuitBreaker(t *testing.T) {
	const cooldown = time.Second
	dead := deadAddr(t)
	a := start(t, 1, grpc.Options{}, func(c *transport.Config) {
		c.BreakerFailures = 2
		c.BackoffMin = 5 * time.Millisecond
		c.BackoffMax = cooldown
	})
	a.tr.SetPeer(2, dead)
	keepSending(t, a, 2, 0, func() bool { return a.unreachable.Load() >= 2 }, "two failures not reported")

	// Open: the probe is a cool-down away, sends are dropped on the spot.
	failures := a.unreachable.Load()
	for i := range uint64(50) {
		dropped := a.tr.Stats().Dropped
		a.tr.Send([]core.Message{heartbeat(1, 2, 100+i)})
		if got := a.tr.Stats().Dropped; got != dropped+1 {
			t.Fatalf("send to a peer behind an open breaker not dropped at once")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if got := a.unreachable.Load(); got != failures {
		t.Fatalf("%d dial attempts while the breaker was open", got-failures)
	}

	// The peer comes back: a probe after the cool-down closes the breaker.
	b := start(t, 2, grpc.Options{}, func(c *transport.Config) { c.ListenAddr = dead })
	keepSending(t, a, 2, 0, func() bool { return b.in.Count() > 0 }, "no message after the peer came back")
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	n := start(t, 99, grpc.Options{}, nil)
	addr := n.tr.Addr()
	if err := n.tr.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestNewRejectsBadOptions checks option validation.
func TestNewRejectsBadOptions(t *testing.T) {
	cfg := testConfig(t, 1)
	cfg.Deliver = func(core.Message) {}
	for _, tc := range []struct {
		name string
		opts grpc.Options
		want string
	}{
		{"UnknownCompression", grpc.Options{Compression: "zstd"}, "unknown compression"},
		{"LevelTooHigh", grpc.Options{Compression: "gzip", CompressionLevel: 10}, "level"},
		{"LevelWithoutCompression", grpc.Options{CompressionLevel: 3}, "without Compression"},
		{"ChunkTooSmall", grpc.Options{ChunkBytes: 10}, "ChunkBytes"},
		{"TLSWithoutFiles", grpc.Options{TLS: &grpc.TLSConfig{}}, "CertFile"},
		{"TLSMissingFile", grpc.Options{TLS: &grpc.TLSConfig{CertFile: "/nonexistent", KeyFile: "/nonexistent"}}, "key pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := grpc.New(cfg, tc.opts)
			if err == nil {
				_ = tr.Close()
				t.Fatalf("New accepted %+v", tc.opts)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	ca := newPKI(t, "cluster")
	cert, key := ca.Issue("node-1", "node-1")
	if _, err := grpc.New(cfg, grpc.Options{TLS: &grpc.TLSConfig{CertFile: cert, KeyFile: key, MutualTLS: true}}); err == nil {
		t.Fatalf("mutual TLS without CAFile accepted")
	}
	bad := cfg
	bad.ID = 0
	if _, err := grpc.New(bad, grpc.Options{}); err == nil {
		t.Fatalf("ID 0 accepted")
	}
}

// TestBreakerWarnsOncePerOutage: while a peer stays down its breaker opens
// again after every cool-down, but only the first opening is a warning;
// the peer's return is logged once.
func TestBreakerWarnsOncePerOutage(t *testing.T) {
	logs := &logtest.Counter{}
	dead := deadAddr(t)
	a := start(t, 1, grpc.Options{}, func(c *transport.Config) {
		c.BreakerFailures = 1
		c.BackoffMin = time.Millisecond
		c.BackoffMax = 20 * time.Millisecond
		c.Logger = slog.New(logs)
	})
	a.tr.SetPeer(2, dead)
	keepSending(t, a, 2, 0, func() bool {
		return logs.Count(slog.LevelDebug, "grpc transport: circuit breaker open again") >= 3
	}, "the breaker did not open three more times")
	if n := logs.Count(slog.LevelWarn, "grpc transport: circuit breaker open"); n != 1 {
		t.Fatalf("%d warnings for one outage, want 1", n)
	}
	b := start(t, 2, grpc.Options{}, func(c *transport.Config) { c.ListenAddr = dead })
	keepSending(t, a, 2, 0, func() bool { return b.in.Count() > 0 }, "no message after the peer came back")
	if n := logs.Count(slog.LevelInfo, "grpc transport: peer reachable again"); n != 1 {
		t.Fatalf("%d 'reachable again' lines, want 1", n)
	}
}
