package tcp

import (
	"errors"
	"github.com/forge-consensus/consensus/internal/lograte"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/core"
)

// TestConformanceMutualTLS runs the conformance suite with mutual TLS:
// every node has a certificate naming its own ID, from one CA. Raw garbage
// connections fail the TLS handshake and are counted as rejected.
func TestConformanceMutualTLS(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	transporttest.Run(t, func(t *testing.T, cfg transport.Config) transport.Transport {
		tr, err := New(cfg, WithTLS(ca.NodeTLS(cfg.ID, true)))
		if err != nil {
			t.Fatalf("tcp.New with mutual TLS: %v", err)
		}
		return tr
	}, transporttest.Options{RawGarbage: true})
}

// tlsDialTimeout is the DialTimeout of the nodes of the TLS tests.
const tlsDialTimeout = 2 * time.Second

// tlsNode is a transport of the TLS tests with what it received, its
// Unreachable calls and its warnings.
type tlsNode struct {
	tr          *Transport
	in          *recorder
	unreachable atomic.Int64
	log         *logSink
}

// startTLS starts node id with TLS settings c (nil: plaintext). It is
// closed when the test ends.
func startTLS(t *testing.T, id uint64, c *transport.TLSConfig) *tlsNode {
	t.Helper()
	n := &tlsNode{in: new(recorder), log: new(logSink)}
	cfg := transport.Config{
		ID: id, ListenAddr: "127.0.0.1:0", Deliver: n.in.Deliver,
		Unreachable: func(uint64) { n.unreachable.Add(1) },
		DialTimeout: tlsDialTimeout,
		BackoffMin:  5 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Logger: slog.New(n.log),
	}
	tr, err := New(cfg, WithTLS(c))
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

// dialOnce dials peer id at addr from tr once, as the peer's writer does
// (TLS and protocol handshakes included), and returns how long it took and
// its error. A connection it makes is closed at once.
func dialOnce(tr *Transport, id uint64, addr string) (time.Duration, error) {
	p := newPeer(tr, id, addr)
	defer p.cancel()
	start := time.Now()
	_, raw, err := p.dial(addr)
	elapsed := time.Since(start)
	if err == nil {
		_ = raw.Close()
	}
	return elapsed, err
}

// checkCleanFailure fails t unless err is a dial failure that came within
// the dial timeout, by an answer rather than by the timeout.
func checkCleanFailure(t *testing.T, elapsed time.Duration, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("dial succeeded")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("dial failed by timing out after %v instead of being refused: %v", elapsed, err)
	}
	if elapsed > tlsDialTimeout {
		t.Fatalf("dial took %v, more than the dial timeout %v: %v", elapsed, tlsDialTimeout, err)
	}
}

// TestTLSRoundTrip: messages, small and large, travel both ways over TLS
// and over mutual TLS, in order and intact.
func TestTLSRoundTrip(t *testing.T) {
	for _, mutual := range []bool{false, true} {
		name := "TLS"
		if mutual {
			name = "MutualTLS"
		}
		t.Run(name, func(t *testing.T) {
			ca := transporttest.NewPKI(t, "cluster")
			a := startTLS(t, 1, ca.NodeTLS(1, mutual))
			b := startTLS(t, 2, ca.NodeTLS(2, mutual))
			a.tr.SetPeer(2, b.tr.Addr())
			b.tr.SetPeer(1, a.tr.Addr())

			const n = 100
			big := core.Message{Type: core.MsgApp, From: 1, To: 2, Term: 1, LogTerm: 1, Index: n + 1,
				Entries: []core.Entry{{Term: 1, Index: n + 2, Data: make([]byte, 1<<20)}}}
			var ab, ba []core.Message
			for i := uint64(1); i <= n; i++ {
				ab = append(ab, heartbeat(1, 2, i))
				ba = append(ba, heartbeat(2, 1, i))
			}
			a.tr.Send(append(ab, big))
			b.tr.Send(ba)
			waitFor(t, func() bool { return b.in.Count() == n+1 && a.in.Count() == n }, "messages both ways")
			for i, m := range b.in.All()[:n] {
				if m.From != 1 || m.To != 2 || m.Index != uint64(i+1) {
					t.Fatalf("node 2 received %v from %d to %d index %d at %d", m.Type, m.From, m.To, m.Index, i)
				}
			}
			if got := b.in.All()[n]; got.Type != core.MsgApp || len(got.Entries) != 1 || len(got.Entries[0].Data) != 1<<20 {
				t.Fatalf("large message arrived as %v with %d entries", got.Type, len(got.Entries))
			}
			for i, m := range a.in.All() {
				if m.From != 2 || m.To != 1 || m.Index != uint64(i+1) {
					t.Fatalf("node 1 received %v from %d to %d index %d at %d", m.Type, m.From, m.To, m.Index, i)
				}
			}
			if ra, rb := a.tr.Stats().Rejected, b.tr.Stats().Rejected; ra != 0 || rb != 0 {
				t.Fatalf("Rejected = %d, %d, want 0", ra, rb)
			}
		})
	}
}

// TestMutualTLSRefusals: a mutual-TLS listener refuses clients that are
// not authenticated as the node their hello names: it delivers nothing,
// counts the refusal in Stats.Rejected and warns with the real cause.
func TestMutualTLSRefusals(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	rogue := transporttest.NewPKI(t, "rogue")
	cases := []struct {
		name    string
		client  func() *transport.TLSConfig // the settings of client node 2
		warning string                      // the server's warning
		cause   string                      // in the warning
		dialErr string                      // in the client's dial error, if set
		reason  string                      // the explanation in the warning, if set
	}{
		{
			name: "CertificateOfAnotherCA",
			// Trusts the cluster CA, so it accepts the server, but
			// presents a node-2 certificate of another CA.
			client: func() *transport.TLSConfig {
				cert, key := rogue.Issue("node-2", "node-2")
				return &transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile, MutualTLS: true}
			},
			warning: "TLS handshake failed",
			cause:   "x509: certificate signed by unknown authority",
			reason:  "signed by an unknown authority (not the CA of ca_file)",
		},
		{
			name: "NoClientCertificate",
			// Verifies the server but presents no certificate.
			client:  func() *transport.TLSConfig { return ca.NodeTLS(2, false) },
			warning: "TLS handshake failed",
			cause:   "tls: client didn't provide a certificate",
			reason:  "the client presented no certificate",
		},
		{
			name: "CertificateOfAnotherNode",
			// Node 2 with node 3's certificate.
			client:  func() *transport.TLSConfig { return ca.NodeTLS(3, true) },
			warning: "sender not authenticated",
			cause:   "is not node-2",
			dialErr: statusText(statusUnauthenticated),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server := startTLS(t, 1, ca.NodeTLS(1, true))
			client := startTLS(t, 2, tc.client())

			elapsed, err := dialOnce(client.tr, 1, server.tr.Addr())
			checkCleanFailure(t, elapsed, err)
			if tc.dialErr != "" && !strings.Contains(err.Error(), tc.dialErr) {
				t.Fatalf("dial error %q does not say %q", err, tc.dialErr)
			}
			waitFor(t, func() bool { return server.tr.Stats().Rejected >= 1 }, "the refusal to be counted")
			waitFor(t, func() bool { return len(server.log.warnings(tc.warning)) > 0 }, "the refusal to be logged")
			w := server.log.warnings(tc.warning)[0]
			if !strings.Contains(w, tc.cause) || !strings.Contains(w, "remote=127.0.0.1:") {
				t.Fatalf("warning %q does not name the remote address and the cause %q", w, tc.cause)
			}
			if !strings.Contains(w, tc.reason) {
				t.Fatalf("warning %q does not explain %q", w, tc.reason)
			}
			if tc.cause != "tls: client didn't provide a certificate" && strings.Contains(w, "didn't provide") {
				t.Fatalf("warning %q blames a missing certificate", w)
			}

			// Through Send: the client gives up and nothing arrives.
			client.tr.SetPeer(1, server.tr.Addr())
			seq := uint64(0)
			waitFor(t, func() bool {
				seq++
				client.tr.Send([]core.Message{heartbeat(2, 1, seq)})
				return server.tr.Stats().Rejected >= 2 && client.unreachable.Load() > 0
			}, "the client to be refused and told the server is unreachable")
			if st := client.tr.Stats(); st.Sent != 0 {
				t.Fatalf("client Stats.Sent = %d, want 0", st.Sent)
			}
			if got := server.in.Count(); got != 0 {
				t.Fatalf("%d messages delivered from an unauthenticated client", got)
			}
		})
	}
}

// TestMutualTLSServerOfAnotherIdentity: a client refuses a listener whose
// certificate names another node than the one it dialled, and writes it
// no message.
func TestMutualTLSServerOfAnotherIdentity(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	impostor := startTLS(t, 4, ca.NodeTLS(5, true)) // node 4 with node 5's certificate
	client := startTLS(t, 2, ca.NodeTLS(2, true))

	elapsed, err := dialOnce(client.tr, 4, impostor.tr.Addr())
	checkCleanFailure(t, elapsed, err)
	if !errors.Is(err, errUnauthenticated) || !strings.Contains(err.Error(), "is not node-4") {
		t.Fatalf("dial error %v: want an authentication failure naming node-4", err)
	}

	client.tr.SetPeer(4, impostor.tr.Addr())
	seq := uint64(0)
	waitFor(t, func() bool {
		seq++
		client.tr.Send([]core.Message{heartbeat(2, 4, seq)})
		return client.unreachable.Load() > 0
	}, "the client to give up on the impostor")
	if st := client.tr.Stats(); st.Sent != 0 {
		t.Fatalf("client Stats.Sent = %d, want 0", st.Sent)
	}
	if got := impostor.in.Count(); got != 0 {
		t.Fatalf("%d messages delivered to a listener that is not node 4", got)
	}
}

// TestTLSPlaintextMismatch: a plaintext dialer and a TLS listener, or the
// reverse, fail the dial at once (not by the timeout), and the listener
// counts the refusal.
func TestTLSPlaintextMismatch(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	for _, tc := range []struct {
		name           string
		server, client *transport.TLSConfig
	}{
		{"PlaintextDialerTLSListener", ca.NodeTLS(1, false), nil},
		{"PlaintextDialerMutualTLSListener", ca.NodeTLS(1, true), nil},
		{"TLSDialerPlaintextListener", nil, ca.NodeTLS(2, false)},
		{"MutualTLSDialerPlaintextListener", nil, ca.NodeTLS(2, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := startTLS(t, 1, tc.server)
			client := startTLS(t, 2, tc.client)
			elapsed, err := dialOnce(client.tr, 1, server.tr.Addr())
			checkCleanFailure(t, elapsed, err)
			waitFor(t, func() bool { return server.tr.Stats().Rejected >= 1 }, "the listener to count the refusal")
			if tc.server != nil {
				waitFor(t, func() bool { return len(server.log.warnings("TLS handshake failed")) > 0 }, "the refusal to be logged")
				if w := server.log.warnings("TLS handshake failed")[0]; !strings.Contains(w, "does not look like a TLS handshake") {
					t.Fatalf("warning %q does not give the cause", w)
				}
			}

			client.tr.SetPeer(1, server.tr.Addr())
			seq := uint64(0)
			waitFor(t, func() bool {
				seq++
				client.tr.Send([]core.Message{heartbeat(2, 1, seq)})
				return client.unreachable.Load() > 0
			}, "the client to report the listener unreachable")
			if got := server.in.Count(); got != 0 {
				t.Fatalf("%d messages delivered across a TLS mismatch", got)
			}
		})
	}
}

// TestTLSRefusalWarningsLimited: a flood of failed TLS handshakes is
// counted in full but warned about at most once a second.
func TestTLSRefusalWarningsLimited(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	server := startTLS(t, 1, ca.NodeTLS(1, true))
	const n = 50
	start := time.Now()
	for range n {
		conn, err := net.Dial("tcp", server.tr.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_, _ = io.Copy(io.Discard, conn) // until the listener hangs up
		_ = conn.Close()
	}
	waitFor(t, func() bool { return server.tr.Stats().Rejected >= n }, "every refusal to be counted")
	elapsed := time.Since(start)
	warnings := server.log.warnings("TLS handshake failed")
	if most := int(elapsed/lograte.DefaultInterval) + 1; len(warnings) == 0 || len(warnings) > most {
		t.Fatalf("%d warnings for %d refusals in %v, want 1 to %d", len(warnings), n, elapsed, most)
	}
}

// TestNewTLSErrors: New fails with an error naming the file at fault when
// the TLS files cannot be loaded.
func TestNewTLSErrors(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	cert, key := ca.Issue("node-1", "node-1")
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		c    *transport.TLSConfig
		want string
	}{
		{"NoFiles", &transport.TLSConfig{}, "CertFile"},
		{"MissingCert", &transport.TLSConfig{CertFile: missing, KeyFile: key}, missing},
		{"MissingCA", &transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: missing}, missing},
		{"CAWithoutPEM", &transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: junk}, junk},
		{"MutualWithoutCA", &transport.TLSConfig{CertFile: cert, KeyFile: key, MutualTLS: true}, "CAFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := New(transport.Config{ID: 1, ListenAddr: "127.0.0.1:0", Deliver: func(core.Message) {}}, WithTLS(tc.c))
			if err == nil {
				_ = tr.Close()
				t.Fatalf("New accepted %+v", tc.c)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "tcp: ") {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
		})
	}
}
