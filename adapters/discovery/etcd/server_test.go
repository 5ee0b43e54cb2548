package etcd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdBinary is Debian's etcd-server package's binary.
const etcdBinary = "/usr/bin/etcd"

// startTimeout bounds how long a test waits for etcd to serve.
const startTimeout = 60 * time.Second

// testServer is a one-member etcd the test started on loopback, with
// its own data directory and free ports.
type testServer struct {
	t         *testing.T
	dir       string // data directory
	clientURL string
	peerURL   string
	tls       *testTLS // nil: plain http

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

// testTLS holds the PEM files of a test certificate authority, a server
// certificate for 127.0.0.1 and a client certificate.
type testTLS struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

// startEtcd starts an etcd (TLS with client certificates when withTLS)
// and returns once it serves; it is killed at the test's end. Without
// the binary the test is skipped, or fails under CI=true.
func startEtcd(t *testing.T, withTLS bool) *testServer {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v; CI needs Debian's etcd-server package (apt-get install etcd-server)", etcdBinary, err)
		}
		t.Skipf("%s: %v; install Debian's etcd-server package (apt-get install etcd-server) to run the etcd discovery tests", etcdBinary, err)
	}
	s := &testServer{t: t, dir: filepath.Join(t.TempDir(), "etcd"), logs: &lockedBuffer{}}
	scheme := "http"
	if withTLS {
		s.tls = newTestTLS(t)
		scheme = "https"
	}
	s.clientURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
	s.peerURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("etcd's output:\n%s", s.logs.String())
		}
	})
	s.start()
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs etcd on s's data directory and ports (a restart when they
// were used before) and waits until it answers a read.
func (s *testServer) start() {
	t := s.t
	t.Helper()
	args := []string{
		"--name", "test",
		"--data-dir", s.dir,
		"--listen-client-urls", s.clientURL,
		"--advertise-client-urls", s.clientURL,
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "test=" + s.peerURL,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	if s.tls != nil {
		args = append(args,
			"--cert-file", s.tls.serverCert,
			"--key-file", s.tls.serverKey,
			"--client-cert-auth",
			"--trusted-ca-file", s.tls.caFile,
		)
	}
	cmd := exec.Command(etcdBinary, args...)
	// The test's etcd reads no ETCD_* settings of the environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	switch runtime.GOARCH {
	case "amd64", "arm64", "ppc64le":
	default:
		cmd.Env = append(cmd.Env, "ETCD_UNSUPPORTED_ARCH="+runtime.GOARCH)
	}
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	c := s.client()
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Get(ctx, "ready")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("etcd exited while starting (%v); its output:\n%s", cmd.ProcessState, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not serve within %v: %v", startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// kill kills etcd (SIGKILL: no clean shutdown) and waits for it to exit.
func (s *testServer) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// client returns a plain etcd client of the server, for the test to
// look at and write keys behind the Source's back.
func (s *testServer) client() *clientv3.Client {
	s.t.Helper()
	cfg := clientv3.Config{Endpoints: []string{s.clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if s.tls != nil {
		pair, err := tls.LoadX509KeyPair(s.tls.clientCert, s.tls.clientKey)
		if err != nil {
			s.t.Fatal(err)
		}
		caPEM, err := os.ReadFile(s.tls.caFile)
		if err != nil {
			s.t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		cfg.TLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		s.t.Fatalf("etcd client: %v", err)
	}
	return c
}

// config returns a Config for the server, with TTL ttl (0: the default)
// and the test's log.
func (s *testServer) config(ttl time.Duration) Config {
	return Config{
		Endpoints: []string{s.clientURL},
		ClusterID: "test",
		TTL:       ttl,
		Logger:    testLogger(s.t),
	}
}

// newSource returns a Source for cfg, closed at the test's end.
func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	src, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger returns a logger that writes to the test's log until the
// test ends (goroutines of the etcd client may log a little later).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// newTestTLS writes a certificate authority, a server certificate for
// 127.0.0.1 and a client certificate, all signed by it, to PEM files.
func newTestTLS(t *testing.T) *testTLS {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	srvDER, srvKey := leaf(2, "etcd", x509.ExtKeyUsageServerAuth)
	cliDER, cliKey := leaf(3, "node", x509.ExtKeyUsageClientAuth)
	return &testTLS{
		caFile:     write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", srvDER),
		serverKey:  writeKey("server-key.pem", srvKey),
		clientCert: write("client.pem", "CERTIFICATE", cliDER),
		clientKey:  writeKey("client-key.pem", cliKey),
	}
}

// waitFor polls cond until it returns nil or the deadline passes, and
// then fails with cond's last error.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// receive waits for a value on ch, failing if ch closes or nothing
// comes within timeout.
func receive(t *testing.T, what string, ch <-chan struct{}, timeout time.Duration) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: Changes channel closed", what)
		}
	case <-time.After(timeout):
		t.Fatalf("%s: no change signalled within %v", what, timeout)
	}
}

var errNotYet = errors.New("not yet")
