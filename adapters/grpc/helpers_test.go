package grpc_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/core"
)

// pki is a throw-away certificate authority writing PEM files into a test's
// temporary directory.
type pki struct {
	t      testing.TB
	dir    string
	name   string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	serial atomic.Int64
}

// newPKI creates a CA named name.
func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse CA certificate: %v", err)
	}
	p := &pki{t: t, dir: t.TempDir(), name: name, cert: cert, key: key}
	p.serial.Store(1)
	p.caFile = p.write(name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(file, typ string, der []byte) string {
	p.t.Helper()
	path := filepath.Join(p.dir, file)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// issue signs a server-and-client certificate with the given CommonName
// and DNS names (plus localhost and the loopback IPs, so that servers
// verify when dialled by address) and returns its PEM files.
func (p *pki) issue(cn string, dns ...string) (certFile, keyFile string) {
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
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatalf("certificate: %v", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatalf("marshal key: %v", err)
	}
	base := p.name + "-" + cn + "-" + big.NewInt(serial).String()
	return p.write(base+".pem", "CERTIFICATE", der), p.write(base+"-key.pem", "EC PRIVATE KEY", keyDER)
}

// nodeTLS returns mutual-TLS settings for a node whose certificate names
// identity (CommonName and DNS SAN).
func (p *pki) nodeTLS(identity string) *grpc.TLSConfig {
	cert, key := p.issue(identity, identity)
	return &grpc.TLSConfig{CertFile: cert, KeyFile: key, CAFile: p.caFile, MutualTLS: true}
}

// recorder collects delivered messages.
type recorder = transporttest.Recorder

// node is one transport under test.
type node struct {
	id          uint64
	tr          *grpc.Transport
	in          *recorder
	unreachable atomic.Int64
}

// testLogger logs warnings to the test until it ends.
func testLogger(t *testing.T) *slog.Logger {
	done := new(atomic.Bool)
	t.Cleanup(func() { done.Store(true) })
	return slog.New(slog.NewTextHandler(logWriter{t: t, done: done}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type logWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func (w logWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

// testConfig is the transport configuration of node id in tests: short
// timeouts and back-offs.
func testConfig(t *testing.T, id uint64) transport.Config {
	return transport.Config{
		ID:           id,
		ListenAddr:   "127.0.0.1:0",
		DialTimeout:  time.Second,
		WriteTimeout: 2 * time.Second,
		BackoffMin:   5 * time.Millisecond,
		BackoffMax:   100 * time.Millisecond,
		Logger:       testLogger(t),
	}
}

// start starts node id with opts; tweak, if not nil, edits its config. The
// transport is closed when the test ends.
func start(t *testing.T, id uint64, opts grpc.Options, tweak func(*transport.Config)) *node {
	t.Helper()
	n := &node{id: id, in: new(recorder)}
	cfg := testConfig(t, id)
	cfg.Deliver = n.in.Deliver
	cfg.Unreachable = func(uint64) { n.unreachable.Add(1) }
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := grpc.New(cfg, opts)
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

// eventually polls cond until it holds or fails t after a generous guard.
func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 10s: "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heartbeat is a small message numbered seq.
func heartbeat(from, to, seq uint64) core.Message {
	return core.Message{Type: core.MsgHeartbeat, From: from, To: to, Term: 1, Index: seq}
}

// snapshot is a MsgSnap with size bytes of data: patterned, or zeros
// when compressible.
func snapshot(from, to uint64, size int, compressible bool) core.Message {
	data := make([]byte, size)
	if !compressible {
		_, _ = io.ReadFull(rand.Reader, data)
	}
	return core.Message{
		Type: core.MsgSnap, From: from, To: to, Term: 2,
		Snapshot: &core.Snapshot{
			Meta: core.SnapshotMeta{Index: 10, Term: 2, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
			Data: data,
		},
	}
}

// roundTrip returns m as a receiver must deliver it.
func roundTrip(t *testing.T, m core.Message) core.Message {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	out, err := core.DecodeMessage(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// proxy forwards TCP connections from its address to target, counting the
// bytes sent towards target.
type proxy struct {
	l     net.Listener
	bytes atomic.Int64
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{l: l}
	var conns sync.Map
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			conns.Store(c, up)
			p.wg.Go(func() {
				_, _ = io.Copy(countingWriter{w: up, n: &p.bytes}, c)
				_ = up.Close()
			})
			p.wg.Go(func() {
				_, _ = io.Copy(c, up)
				_ = c.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		conns.Range(func(k, v any) bool {
			_ = k.(net.Conn).Close()
			_ = v.(net.Conn).Close()
			return true
		})
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
