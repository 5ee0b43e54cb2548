package grpc_test

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
)

// TestConformance runs the transport conformance suite over plaintext.
func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, cfg transport.Config) transport.Transport {
		tr, err := grpc.New(cfg, grpc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	})
}

// TestConformanceMutualTLS runs the suite with mutual TLS: every node gets
// a certificate for its own ID from one CA. Raw garbage connections fail
// the TLS handshake and are counted as rejected, so that test runs too
// (over plaintext, gRPC's HTTP/2 server drops them before the transport
// sees them).
func TestConformanceMutualTLS(t *testing.T) {
	ca := newPKI(t, "cluster")
	transporttest.Run(t, func(t *testing.T, cfg transport.Config) transport.Transport {
		tr, err := grpc.New(cfg, grpc.Options{TLS: ca.nodeTLS(grpc.NodeIdentity(cfg.ID))})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}, transporttest.Options{RawGarbage: true})
}

// TestConformanceGzip runs the suite with gzip compression and small
// chunks, so that every large message is chunked.
func TestConformanceGzip(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, cfg transport.Config) transport.Transport {
		tr, err := grpc.New(cfg, grpc.Options{Compression: "gzip", CompressionLevel: 1, ChunkBytes: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	})
}
