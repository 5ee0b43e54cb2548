package grpc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"

	"google.golang.org/grpc/credentials"
)

// TLSConfig configures TLS, and optionally mutual TLS with node
// authentication, from PEM files.
//
// Every node serves CertFile/KeyFile and, as a client, verifies its peers'
// server certificates against CAFile (the system roots when CAFile is
// empty) and ServerName (the dialled host when empty).
//
// With MutualTLS, CAFile is required: servers demand a client certificate
// signed by that CA, clients present CertFile, and every node is
// authenticated by the rule of [NodeIdentity]: the certificate's
// CommonName or one of its DNS SANs must be "node-<ID>" (decimal). A
// stream whose hello claims another ID, and any message whose From is not
// the authenticated ID, are refused. A client also checks that the server
// it reached presents the identity of the peer it meant to dial.
type TLSConfig struct {
	// CertFile and KeyFile hold this node's PEM certificate (chain) and key.
	CertFile, KeyFile string
	// CAFile holds the PEM certificates of the CAs trusted to sign peers'
	// certificates.
	CAFile string
	// MutualTLS requires and authenticates client certificates.
	MutualTLS bool
	// ServerName overrides the name verified in servers' certificates.
	ServerName string
}

// NodeIdentity returns the certificate identity of node id under mutual
// TLS: "node-<id>". A certificate authenticates node id when its
// CommonName or one of its DNS SANs equals this string.
func NodeIdentity(id uint64) string {
	return "node-" + strconv.FormatUint(id, 10)
}

// certHasIdentity reports whether cert authenticates node id.
func certHasIdentity(cert *x509.Certificate, id uint64) bool {
	if cert == nil {
		return false
	}
	want := NodeIdentity(id)
	if cert.Subject.CommonName == want {
		return true
	}
	for _, name := range cert.DNSNames {
		if name == want {
			return true
		}
	}
	return false
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
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("grpc transport: TLS needs CertFile and KeyFile")
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("grpc transport: load key pair %s, %s: %w", c.CertFile, c.KeyFile, err)
	}
	var pool *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("grpc transport: read CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("grpc transport: CA file %s holds no PEM certificate", c.CAFile)
		}
	} else if c.MutualTLS {
		return nil, errors.New("grpc transport: mutual TLS needs CAFile")
	}

	server := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	client := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		ServerName: c.ServerName,
	}
	if c.MutualTLS {
		server.ClientAuth = tls.RequireAndVerifyClientCert
		server.ClientCAs = pool
		client.Certificates = []tls.Certificate{cert}
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
	if len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
		return ti.State.VerifiedChains[0][0]
	}
	return nil
}
