package transport_test

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
)

// handshake runs a TLS handshake between a server and a client on
// loopback and returns both sides' errors, explained.
func handshake(t *testing.T, server, client *tls.Config, plainClient bool) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returned; a read sees the verdict.
			_, err = tc.Read(make([]byte, 1))
			if err != nil && strings.Contains(err.Error(), "EOF") {
				err = nil
			}
		}
		done <- transport.ExplainTLSError(err)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if plainClient {
		_, _ = c.Write([]byte("FCTP hello, no TLS here\n"))
		return <-done, nil
	}
	tc := tls.Client(c, client)
	err = tc.Handshake()
	if err == nil {
		_, err = tc.Read(make([]byte, 1)) // the server's verdict on our certificate
		if err != nil && strings.Contains(err.Error(), "EOF") {
			err = nil
		}
	}
	clientErr = transport.ExplainTLSError(err)
	_ = c.Close()
	return <-done, clientErr
}

// TestExplainTLSError: each way a TLS handshake between nodes goes wrong
// is logged for what it is (issue 13: a certificate of the wrong CA was
// logged as "client didn't provide a certificate").
func TestExplainTLSError(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	rogue := transporttest.NewPKI(t, "rogue")
	load := func(c *transport.TLSConfig) (server, client *tls.Config) {
		t.Helper()
		s, cl, err := c.Load()
		if err != nil {
			t.Fatal(err)
		}
		cl.ServerName = "localhost"
		return s, cl
	}
	serverTLS, _ := load(ca.NodeTLS(1, true))
	withCert := func(p *transporttest.PKI, expired bool, mutual bool) *tls.Config {
		cert, key := p.Issue("node-2", "node-2")
		if expired {
			cert, key = p.IssueExpired("node-2", "node-2")
		}
		_, c := load(&transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile, MutualTLS: mutual})
		return c
	}
	expiredServer, _ := func() (*tls.Config, *tls.Config) {
		cert, key := ca.IssueExpired("node-1", "node-1")
		return load(&transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.CAFile})
	}()
	_, otherName := load(ca.NodeTLS(2, true))
	otherName.ServerName = "node-9.example"

	for _, tc := range []struct {
		name               string
		server, client     *tls.Config
		plain              bool
		wantServer, wantCl string
	}{
		{name: "ClientCertOfAnotherCA", server: serverTLS, client: withCert(rogue, false, true),
			wantServer: "unknown authority", wantCl: "does not trust our certificate"},
		{name: "ExpiredClientCert", server: serverTLS, client: withCert(ca, true, true),
			wantServer: "has expired", wantCl: "has expired"},
		{name: "NoClientCert", server: serverTLS, client: withCert(ca, false, false),
			wantServer: "presented no certificate", wantCl: "requires a client certificate"},
		{name: "ExpiredServerCert", server: expiredServer, client: withCert(ca, false, true),
			wantCl: "has expired"},
		{name: "ServerOfAnotherName", server: serverTLS, client: otherName,
			wantCl: "does not name the host"},
		{name: "NotTLS", server: serverTLS, plain: true,
			wantServer: "does not speak TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr := handshake(t, tc.server, tc.client, tc.plain)
			if tc.wantServer != "" && (serr == nil || !strings.Contains(serr.Error(), tc.wantServer)) {
				t.Errorf("server side: %v, want it to say %q", serr, tc.wantServer)
			}
			if tc.wantCl != "" && (cerr == nil || !strings.Contains(cerr.Error(), tc.wantCl)) {
				t.Errorf("client side: %v, want it to say %q", cerr, tc.wantCl)
			}
			if serr != nil && tc.name != "NoClientCert" && strings.Contains(serr.Error(), "didn't provide") {
				t.Errorf("server side blames a missing certificate: %v", serr)
			}
		})
	}
}
