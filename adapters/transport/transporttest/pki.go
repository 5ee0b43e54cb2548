package transporttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
)

// PKI is a throw-away ECDSA certificate authority for tests: it writes its
// CA certificate and the certificates it issues as PEM files into the
// test's temporary directory.
type PKI struct {
	// CAFile is the PEM file of the CA's certificate, to trust.
	CAFile string

	t      testing.TB
	dir    string
	name   string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewPKI creates a self-signed CA named name.
func NewPKI(t testing.TB, name string) *PKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("CA %s: key: %v", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("CA %s: certificate: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("CA %s: parse certificate: %v", name, err)
	}
	p := &PKI{t: t, dir: t.TempDir(), name: name, cert: cert, key: key}
	p.serial.Store(1)
	p.CAFile = p.write(name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *PKI) write(file, typ string, der []byte) string {
	p.t.Helper()
	path := filepath.Join(p.dir, file)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// Issue signs a certificate for both server and client use with the given
// CommonName and DNS SANs; it is also valid for localhost and the loopback
// addresses, so that a server dialled by address verifies. It returns the
// certificate and key files.
func (p *PKI) Issue(cn string, dns ...string) (certFile, keyFile string) {
	p.t.Helper()
	return p.issue(time.Now().Add(24*time.Hour), cn, nil, dns...)
}

// IssueFor is Issue for a server dialled by other addresses too: the
// certificate is also valid for the IP addresses ips (beside loopback).
func (p *PKI) IssueFor(cn string, ips []net.IP, dns ...string) (certFile, keyFile string) {
	p.t.Helper()
	return p.issue(time.Now().Add(24*time.Hour), cn, ips, dns...)
}

// IssueExpired is Issue with a certificate that expired an hour ago.
func (p *PKI) IssueExpired(cn string, dns ...string) (certFile, keyFile string) {
	p.t.Helper()
	return p.issue(time.Now().Add(-time.Hour), cn, nil, dns...)
}

func (p *PKI) issue(notAfter time.Time, cn string, ips []net.IP, dns ...string) (certFile, keyFile string) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatalf("key: %v", err)
	}
	serial := p.serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     append([]string{"localhost"}, dns...),
		IPAddresses:  append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, ips...),
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatalf("certificate %s: %v", cn, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatalf("marshal key: %v", err)
	}
	base := fmt.Sprintf("%s-%s-%d", p.name, strings.ReplaceAll(cn, " ", "_"), serial)
	return p.write(base+".pem", "CERTIFICATE", der), p.write(base+"-key.pem", "EC PRIVATE KEY", keyDER)
}

// NodeTLS returns the TLS settings of node id: a certificate naming
// transport.NodeIdentity(id) in its CommonName and a DNS SAN, this CA
// trusted, and mutual TLS as asked.
func (p *PKI) NodeTLS(id uint64, mutual bool) *transport.TLSConfig {
	ident := transport.NodeIdentity(id)
	cert, key := p.Issue(ident, ident)
	return &transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: p.CAFile, MutualTLS: mutual}
}
