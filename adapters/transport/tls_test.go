package transport

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeIdentity(t *testing.T) {
	if got := NodeIdentity(7); got != "node-7" {
		t.Fatalf("NodeIdentity(7) = %q", got)
	}
	if got := NodeIdentity(1<<64 - 1); got != "node-18446744073709551615" {
		t.Fatalf("NodeIdentity(max) = %q", got)
	}
}

func TestCertHasIdentity(t *testing.T) {
	for _, tc := range []struct {
		cn   string
		dns  []string
		want bool
	}{
		{"node-7", nil, true},
		{"x", []string{"a", "node-7"}, true},
		{"node-70", []string{"node-07", "node-7.example", "NODE-7"}, false},
		{"", nil, false},
	} {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.dns}
		if got := CertHasIdentity(cert, 7); got != tc.want {
			t.Errorf("CertHasIdentity(CN %q, DNS %v, 7) = %v, want %v", tc.cn, tc.dns, got, tc.want)
		}
	}
	if CertHasIdentity(nil, 7) {
		t.Error("a nil certificate has an identity")
	}
	// A named node's certificate names it.
	zone := uint64(0xbcc3edcc1ecf38f7) // nodename.ID("us-east-1a")
	for _, tc := range []struct {
		names []string
		id    uint64
		want  bool
	}{
		{[]string{"us-east-1a"}, zone, true},
		{[]string{"us-east-1b"}, zone, false},
		{[]string{"node-13601976760535038199"}, zone, true},
		{[]string{"7"}, 7, true},
		{[]string{"us-east-1a"}, 7, false},
	} {
		cert := &x509.Certificate{DNSNames: tc.names}
		if got := CertHasIdentity(cert, tc.id); got != tc.want {
			t.Errorf("CertHasIdentity(DNS %v, %d) = %v, want %v", tc.names, tc.id, got, tc.want)
		}
	}
	if VerifiedLeaf(tls.ConnectionState{}) != nil {
		t.Error("a connection without verified chains has a leaf")
	}
}

// TestTLSConfigLoadErrors: Load fails with an error naming the file at
// fault, or the missing setting.
func TestTLSConfigLoadErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		c    TLSConfig
		want string
	}{
		{TLSConfig{}, "CertFile"},
		{TLSConfig{CertFile: missing, KeyFile: missing}, missing},
		{TLSConfig{CertFile: junk, KeyFile: junk}, junk},
	} {
		if _, _, err := tc.c.Load(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%+v) = %v, want an error naming %q", tc.c, err, tc.want)
		}
	}
}
