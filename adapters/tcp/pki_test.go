package tcp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
)

// testCA is a throw-away ECDSA certificate authority that writes PEM files
// into a test's temporary directory.
type testCA struct {
	t      testing.TB
	dir    string
	name   string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string

	mu     sync.Mutex
	serial int64
}

// newTestCA creates a self-signed CA named name.
func newTestCA(t testing.TB, name string) *testCA {
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
	ca := &testCA{t: t, dir: t.TempDir(), name: name, cert: cert, key: key, serial: 1}
	ca.caFile = ca.writePEM(name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) writePEM(file, typ string, der []byte) string {
	ca.t.Helper()
	path := filepath.Join(ca.dir, file)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// issue signs a certificate for both server and client use with the given
// CommonName and DNS SANs; it is also valid for localhost and the loopback
// addresses, so that a server dialled by address verifies. It returns the
// certificate and key files.
func (ca *testCA) issue(cn string, dns ...string) (certFile, keyFile string) {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatalf("key: %v", err)
	}
	ca.mu.Lock()
	ca.serial++
	serial := ca.serial
	ca.mu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     append([]string{"localhost"}, dns...),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatalf("certificate %s: %v", cn, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		ca.t.Fatalf("marshal key: %v", err)
	}
	base := fmt.Sprintf("%s-%s-%d", ca.name, strings.ReplaceAll(cn, " ", "_"), serial)
	return ca.writePEM(base+".pem", "CERTIFICATE", der), ca.writePEM(base+"-key.pem", "EC PRIVATE KEY", keyDER)
}

// node returns the TLS settings of node id: a certificate naming
// NodeIdentity(id) in its CommonName and a DNS SAN, this CA trusted, and
// mutual TLS as asked.
func (ca *testCA) node(id uint64, mutual bool) *transport.TLSConfig {
	ident := transport.NodeIdentity(id)
	cert, key := ca.issue(ident, ident)
	return &transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.caFile, MutualTLS: mutual}
}

// logSink is a slog.Handler that keeps the records at Warn and above.
type logSink struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (s *logSink) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	s.recs = append(s.recs, r.Clone())
	s.mu.Unlock()
	return nil
}

func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

// warnings returns the Warn records whose message contains msg, each
// rendered as its message and attributes.
func (s *logSink) warnings(msg string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.recs {
		if r.Level != slog.LevelWarn || !strings.Contains(r.Message, msg) {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		out = append(out, b.String())
	}
	return out
}
