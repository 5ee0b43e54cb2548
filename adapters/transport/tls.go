package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/forge-consensus/consensus/nodename"
)

// TLSConfig configures TLS, and optionally mutual TLS with node
// authentication, from PEM files. It is shared by the transports that
// support TLS.
//
// Every node serves CertFile/KeyFile and, as a client, verifies its peers'
// server certificates against CAFile (the system roots when CAFile is
// empty) and ServerName (the dialled host when empty).
//
// With MutualTLS, CAFile is required: servers demand a client certificate
// signed by that CA, clients present CertFile, and every node is
// authenticated by the rule of [NodeIdentity]: the certificate's
// CommonName or one of its DNS SANs must be "node-<ID>" (decimal). A
// connection whose hello claims another ID, and any message whose From is
// not the authenticated ID, are refused. A client also checks that the
// server it reached presents the identity of the peer it meant to dial.
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

// Load reads the files c names and returns the configuration of the
// listening side (server) and of the dialling side (client), both with TLS
// 1.2 as the minimum version. With MutualTLS the server requires and
// verifies client certificates against CAFile, and the client presents
// CertFile (whether or not the server lists its CA as acceptable). The client's ServerName is c.ServerName: a transport that
// leaves it empty should set it per dial (for example to the dialled host)
// on a clone. Errors name the file at fault.
func (c *TLSConfig) Load() (server, client *tls.Config, err error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, nil, errors.New("transport: TLS needs CertFile and KeyFile")
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: load TLS key pair %s, %s: %w", c.CertFile, c.KeyFile, err)
	}
	var pool *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("transport: read TLS CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("transport: TLS CA file %s holds no PEM certificate", c.CAFile)
		}
	} else if c.MutualTLS {
		return nil, nil, errors.New("transport: mutual TLS needs CAFile")
	}

	server = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	client = &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		ServerName: c.ServerName,
	}
	if c.MutualTLS {
		server.ClientAuth = tls.RequireAndVerifyClientCert
		server.ClientCAs = pool
		client.Certificates = []tls.Certificate{cert}
		// Present the certificate even to a server that does not list
		// its CA as acceptable (crypto/tls would then send none): the
		// server refuses either way, but can tell an untrusted
		// certificate from a missing one.
		client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		}
	}
	return server, client, nil
}

// NodeIdentity returns the certificate identity of node id under mutual
// TLS: "node-<id>". A certificate authenticates node id when its
// CommonName or one of its DNS SANs equals this string.
func NodeIdentity(id uint64) string {
	return "node-" + strconv.FormatUint(id, 10)
}

// CertHasIdentity reports whether cert authenticates node id: its
// CommonName or one of its DNS SANs is NodeIdentity(id) ("node-7") or
// the ID in decimal ("7"), or, for a node with a name other than a number
// (package nodename), that name ("us-east-1a"): a node's certificate
// names the node. A nil cert
// authenticates nobody. The caller is responsible for cert having been
// verified (for example, the leaf of a verified TLS chain).
func CertHasIdentity(cert *x509.Certificate, id uint64) bool {
	if cert == nil {
		return false
	}
	names := func(name string) bool {
		if nodename.Numeric(id) {
			// Canonical forms only: "node-7" or "7", not "node-07".
			return name == NodeIdentity(id) || name == nodename.String(id)
		}
		if name == NodeIdentity(id) {
			return true
		}
		n, err := nodename.ID(name)
		return err == nil && n == id
	}
	if names(cert.Subject.CommonName) {
		return true
	}
	for _, name := range cert.DNSNames {
		if names(name) {
			return true
		}
	}
	return false
}

// VerifiedLeaf returns the verified leaf certificate of a TLS connection
// state, or nil when the peer's certificate was not verified (or not
// presented).
func VerifiedLeaf(st tls.ConnectionState) *x509.Certificate {
	if len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
		return st.VerifiedChains[0][0]
	}
	return nil
}

// ExplainTLSError returns err, from a TLS handshake, prefixed with what
// was wrong in words an operator can act on: a certificate of an unknown
// authority, an expired one, one for another name, no certificate, a
// certificate the other side refused, a peer that does not speak TLS, a
// handshake cut short or timed out. A nil err stays nil; an error it does
// not recognise is returned wrapped as "TLS handshake failed". The result
// wraps err.
func ExplainTLSError(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", tlsReason(err), err)
}

func tlsReason(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		record   tls.RecordHeaderError
		netErr   net.Error
	)
	msg := err.Error()
	switch {
	case errors.As(err, &unknown):
		return "TLS: the certificate is signed by an unknown authority (not the CA of ca_file)"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "TLS: the certificate has expired or is not yet valid"
	case errors.As(err, &invalid):
		return "TLS: the certificate is not valid for this use"
	case errors.As(err, &hostname):
		return "TLS: the certificate does not name the host dialled"
	case strings.Contains(msg, "didn't provide a certificate"):
		return "TLS: the client presented no certificate (mutual TLS requires one)"
	case errors.As(err, &record) || strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "TLS: the other side does not speak TLS (plaintext, or another protocol)"
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"):
		return "TLS: the other side does not trust our certificate (signed by a CA it does not know)"
	case strings.Contains(msg, "remote error: tls: expired certificate"):
		return "TLS: the other side says our certificate has expired"
	case strings.Contains(msg, "remote error: tls: certificate required"):
		return "TLS: the other side requires a client certificate (mutual TLS)"
	case strings.Contains(msg, "remote error: tls: bad certificate"):
		return "TLS: the other side refused our certificate"
	case strings.Contains(msg, "remote error: "):
		return "TLS: refused by the other side"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "TLS: handshake timed out"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "connection reset"):
		return "TLS: the connection closed during the handshake (the other side refused it, or does not speak TLS)"
	}
	return "TLS handshake failed"
}
