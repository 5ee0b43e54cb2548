package grpc

import (
	"crypto/x509"
	"fmt"

	"google.golang.org/grpc/credentials"

	"github.com/forge-consensus/consensus/adapters/transport"
)

// TLSConfig configures TLS, and optionally mutual TLS with node
// authentication, from PEM files. It is transport.TLSConfig, shared with
// the other transports; see there for the rules.
type TLSConfig = transport.TLSConfig

// NodeIdentity returns the certificate identity of node id under mutual
// TLS: "node-<id>". A certificate authenticates node id when its
// CommonName or one of its DNS SANs equals this string. It is
// transport.NodeIdentity.
func NodeIdentity(id uint64) string {
	return transport.NodeIdentity(id)
}

// certHasIdentity reports whether cert authenticates node id.
func certHasIdentity(cert *x509.Certificate, id uint64) bool {
	return transport.CertHasIdentity(cert, id)
}

// tlsCreds holds the loaded server and client credentials.
type tlsCreds struct {
	server credentials.TransportCredentials
	client credentials.TransportCredentials
	mutual bool
}

// loadTLS reads the files named by c and builds server and client
// credentials.
func loadTLS(c *TLSConfig) (*tlsCreds, error) {
	server, client, err := c.Load()
	if err != nil {
		return nil, fmt.Errorf("grpc transport: %w", err)
	}
	return &tlsCreds{
		server: credentials.NewTLS(server),
		client: credentials.NewTLS(client),
		mutual: c.MutualTLS,
	}, nil
}

// leafCert returns the verified leaf certificate of a TLS connection, or
// nil when the connection is not TLS or has none.
func leafCert(info credentials.AuthInfo) *x509.Certificate {
	ti, ok := info.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return transport.VerifiedLeaf(ti.State)
}
