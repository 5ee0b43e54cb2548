package grpc_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTLSRefusalsSayWhy: a refused TLS handshake is logged for what it
// is (issue 13: a certificate of the wrong CA was logged as "client
// didn't provide a certificate"): the listener names the unknown
// authority of a client certificate, and a dialer that of a listener's.
func TestTLSRefusalsSayWhy(t *testing.T) {
	ca := newPKI(t, "cluster")
	rogue := newPKI(t, "rogue")
	var slogs, clogs syncBuffer
	server := start(t, 1, grpc.Options{TLS: ca.nodeTLS("node-1")}, func(c *transport.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&slogs, nil))
	})
	cert, key := rogue.Issue("node-2", "node-2")
	n := start(t, 2, grpc.Options{TLS: &grpc.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile, MutualTLS: true}},
		func(c *transport.Config) {
			c.Logger = slog.New(slog.NewTextHandler(&clogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
	n.tr.SetPeer(1, server.tr.Addr())
	keepSending(t, n, 1, 0, func() bool {
		return strings.Contains(slogs.String(), "signed by an unknown authority (not the CA of ca_file)")
	}, "the listener's warning to name the unknown authority")
	if strings.Contains(slogs.String(), "didn't provide") {
		t.Errorf("the listener blames a missing certificate:\n%s", slogs.String())
	}

	// The other way round: a dialer that trusts only the rogue CA.
	rcert, rkey := rogue.Issue("node-3", "node-3")
	d := start(t, 3, grpc.Options{TLS: &grpc.TLSConfig{CertFile: rcert, KeyFile: rkey, CAFile: rogue.CAFile, MutualTLS: true}},
		func(c *transport.Config) {
			c.Logger = slog.New(slog.NewTextHandler(&clogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
	d.tr.SetPeer(1, server.tr.Addr())
	keepSending(t, d, 1, 0, func() bool {
		return strings.Contains(clogs.String(), "signed by an unknown authority (not the CA of ca_file)")
	}, "the dialer's log to name the listener certificate's unknown authority")
}
