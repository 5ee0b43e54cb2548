package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/client"
	"github.com/forge-consensus/consensus/internal/logtest"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
	"github.com/forge-consensus/consensus/wire"
)

// The tokens of the data-plane tests: long, distinctive strings, so that a
// log that leaked one would be found.
const (
	readerToken = "tok-reader-5b1d7c0e9a"
	writerToken = "tok-writer-84f2aa61c3"
	viewerToken = "tok-viewer-0d9e3b27f4"
	adminToken  = "tok-admin-6c4e19d8b2"
)

const dataTokens = `security:
  tokens:
    - {token: ` + readerToken + `, role: reader}
    - {token: ` + writerToken + `, role: writer}
    - {token: ` + viewerToken + `, role: viewer}
    - {token: ` + adminToken + `, role: admin}
`

// authDo sends a request with an optional bearer token and returns the
// status and body.
func authDo(t *testing.T, hc *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDataPlaneNeedsToken is the probe of issue 13: with reader and writer
// tokens configured, /kv, /status and the client protocol serve no request
// without a token, and each role does what its table says.
func TestDataPlaneNeedsToken(t *testing.T) {
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
		API: "  fault_switch: true\n", Extra: dataTokens})
	base := "http://" + lead.APIAddr()
	hc := http.DefaultClient

	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"PUT", "/kv/k", "", http.StatusUnauthorized},
		{"GET", "/kv/k", "", http.StatusUnauthorized},
		{"DELETE", "/kv/k", "", http.StatusUnauthorized},
		{"GET", "/status", "", http.StatusUnauthorized},
		{"PUT", "/kv/k", "wrong-token", http.StatusUnauthorized},
		{"PUT", "/kv/k", readerToken, http.StatusForbidden},
		{"PUT", "/kv/k", viewerToken, http.StatusForbidden},
		{"GET", "/kv/k", viewerToken, http.StatusForbidden},
		{"PUT", "/kv/k", writerToken, http.StatusOK},
		{"GET", "/kv/k", readerToken, http.StatusOK},
		{"GET", "/kv/k", writerToken, http.StatusOK},
		{"PUT", "/kv/k", adminToken, http.StatusOK},
		{"GET", "/status", viewerToken, http.StatusOK},
		{"GET", "/status", readerToken, http.StatusOK},
		{"DELETE", "/kv/k", writerToken, http.StatusOK},
		{"POST", "/admin/block?peer=0&on=false", "", http.StatusUnauthorized},
		{"POST", "/admin/block?peer=0&on=false", readerToken, http.StatusForbidden},
		{"POST", "/admin/block?peer=0&on=false", writerToken, http.StatusOK},
	} {
		code, body := authDo(t, hc, tc.method, base+tc.path, tc.token, "v")
		if code != tc.want {
			t.Errorf("%s %s with token %q: %d %s, want %d", tc.method, tc.path, tc.token, code, body, tc.want)
		}
	}
	// The admin API's health probes stay open for load balancers.
	if code, body := authDo(t, hc, "GET", base+"/consensus/health/live", "", ""); code != http.StatusOK {
		t.Errorf("health/live without a token: %d %s", code, body)
	}
	// A data token grants nothing on the admin API.
	if code, _ := authDo(t, hc, "GET", base+"/consensus/status", writerToken, ""); code != http.StatusUnauthorized {
		t.Errorf("admin status with a writer token: %d, want 401", code)
	}

	ctx := context.Background()
	addrs := servertest.ClientAddrs(srvs)
	newClient := func(token string) *client.Client {
		c, err := client.New(client.Config{Addrs: addrs, Token: token, RequestTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if err := newClient("").Put(ctx, "w", []byte("x")); !errors.Is(err, client.ErrRefused) || !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("client without a token: Put: %v", err)
	}
	if err := newClient("wrong-token").Put(ctx, "w", []byte("x")); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("client with a wrong token: Put: %v", err)
	}
	if _, _, err := newClient(viewerToken).Get(ctx, "w", client.Linearizable); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("client with a viewer token: Get: %v", err)
	}
	reader, writer := newClient(readerToken), newClient(writerToken)
	if err := reader.Put(ctx, "w", []byte("x")); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("reader: Put: %v", err)
	}
	if err := writer.Put(ctx, "w", []byte("x")); err != nil {
		t.Errorf("writer: Put: %v", err)
	}
	if v, ok, err := reader.Get(ctx, "w", client.Linearizable); err != nil || !ok || string(v) != "x" {
		t.Errorf("reader: Get: %q %v %v", v, ok, err)
	}
	if _, err := newClient(adminToken).Delete(ctx, "w"); err != nil {
		t.Errorf("admin: Delete: %v", err)
	}

	// By hand: a client that never authenticates (older than Auth) gets a
	// status it knows; one that authenticates in the same frame as its
	// requests is served in order.
	raw := dialRaw(t, lead.ClientAddr())
	raw.send(wire.Request{ID: 1, Op: wire.OpPut, Key: []byte("r"), Value: []byte("v")})
	if r := raw.recv(1)[1]; r.Status != wire.StatusRefused || !strings.Contains(string(r.Value), "unauthorized") {
		t.Errorf("unauthenticated Put: %v %q", r.Status, r.Value)
	}
	raw.send(wire.Request{ID: 2, Op: wire.OpAuth, Value: []byte(readerToken)},
		wire.Request{ID: 3, Op: wire.OpPut, Key: []byte("r"), Value: []byte("v")},
		wire.Request{ID: 4, Op: wire.OpAuth, Value: []byte(writerToken)},
		wire.Request{ID: 5, Op: wire.OpPut, Key: []byte("r"), Value: []byte("v")},
		wire.Request{ID: 6, Op: wire.OpAuth, Value: []byte("wrong-token")},
		wire.Request{ID: 7, Op: wire.OpGet, Key: []byte("r")})
	got := raw.recv(6)
	for id, want := range map[uint64]wire.Status{2: wire.StatusOK, 3: wire.StatusForbidden, 4: wire.StatusOK,
		5: wire.StatusOK, 6: wire.StatusUnauthorized, 7: wire.StatusUnauthorized} {
		if got[id].Status != want {
			t.Errorf("request %d: %v %q, want %v", id, got[id].Status, got[id].Value, want)
		}
	}
	if string(got[2].Value) != "reader" || string(got[4].Value) != "writer" {
		t.Errorf("Auth answers name roles %q and %q", got[2].Value, got[4].Value)
	}
}

// TestDataPlaneOpenWithoutTokens: without reader or writer tokens a
// loopback node serves the data plane as before, to old and new clients
// (an Auth is answered OK and its token ignored).
func TestDataPlaneOpenWithoutTokens(t *testing.T) {
	srvs, lead := servertest.StartClusterWith(t, 1, "memory", "tcp",
		"security:\n  tokens:\n    - {token: "+adminToken+", role: admin}\n")
	if code, body := authDo(t, http.DefaultClient, "PUT", "http://"+lead.APIAddr()+"/kv/k", "", "v"); code != http.StatusOK {
		t.Fatalf("PUT without a token: %d %s", code, body)
	}
	for _, token := range []string{"", "any-token"} {
		c, err := client.New(client.Config{Addrs: servertest.ClientAddrs(srvs), Token: token})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Put(context.Background(), "k", []byte("v")); err != nil {
			t.Errorf("token %q: Put: %v", token, err)
		}
		c.Close()
	}
}

// TestOffLoopbackNeedsTokens is the other half of the probe: a node that
// serves the data plane off loopback without tokens refuses to start,
// naming the keys, unless told explicitly.
func TestOffLoopbackNeedsTokens(t *testing.T) {
	port := servertest.FreePorts(t, 1)[0]
	base := fmt.Sprintf("node_id: 1\nbind_port: %d\nstorage: {type: memory}\npeers: [{id: 1, address: 127.0.0.1, port: %d}]\n", port, port)
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"all interfaces", "api: {addr: '0.0.0.0:7100'}\n", "api.addr"},
		{"empty host", "api: {addr: ':7100'}\n", "api.addr"},
		{"ipv6 any", "api: {client_addr: '[::]:7200'}\n", "api.client_addr"},
		{"a lan address", "api: {client_addr: '10.1.2.3:7200'}\n", "api.client_addr"},
		{"a host name", "api: {addr: 'node1.example:7100'}\n", "api.addr"},
		{"admin tokens only", "api: {addr: '0.0.0.0:7100'}\nsecurity: {tokens: [{token: t1, role: admin}]}\n", "api.addr"},
		{"loopback", "api: {addr: '127.0.0.1:7100', client_addr: 'localhost:7200'}\n", ""},
		{"ipv6 loopback", "api: {addr: '[::1]:7100'}\n", ""},
		{"explicitly open", "api: {addr: '0.0.0.0:7100', allow_unauthenticated: true}\n", ""},
		{"writer token", "api: {addr: '0.0.0.0:7100'}\nsecurity: {tokens: [{token: t1, role: writer}]}\n", ""},
		{"reader token", "api: {client_addr: '0.0.0.0:7200'}\nsecurity: {tokens: [{token: t1, role: reader}]}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.ParseConfig([]byte(base+tc.yaml), os.Getenv)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "api.allow_unauthenticated") || !strings.Contains(err.Error(), "security.tokens") {
				t.Fatalf("got %v, want an error naming %s, security.tokens and api.allow_unauthenticated", err, tc.want)
			}
		})
	}
	// New refuses such a configuration too (it does not go through
	// ParseConfig).
	cfg, err := server.ParseConfig([]byte(base), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.API.Addr = "0.0.0.0:0"
	s, err := server.New(cfg, nil)
	if s != nil {
		s.Close()
	}
	if !errors.Is(err, server.ErrInvalidConfig) {
		t.Fatalf("New off loopback: %v", err)
	}
}

// TestTokenConfigValidation: token roles and duplicates are checked,
// naming the key.
func TestTokenConfigValidation(t *testing.T) {
	base := "node_id: 1\nstorage: {type: memory}\npeers: [{id: 1, address: 127.0.0.1, port: 7000}]\n"
	for yaml, want := range map[string]string{
		"security: {tokens: [{token: t1, role: root}]}\n":                             "security.tokens[0].role",
		"security: {tokens: [{token: t1, role: reader}, {token: t1, role: admin}]}\n": "security.tokens[1].token",
		"api: {tls: true}\n":  "security.cert_file",
		"api: {mtls: true}\n": "security.cert_file",
		"api: {mtls: true}\nsecurity: {cert_file: c, key_file: k}\n": "security.ca_file",
	} {
		if _, err := server.ParseConfig([]byte(base+yaml), os.Getenv); !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error naming %s", yaml, err, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuthFailuresLimitedAndNeverLogged: wrong tokens from one address,
// on any API, are limited (then even a right token is refused, with 429 on
// HTTP and a closed connection on the client protocol), and no token ever
// reaches the log, at any level.
func TestAuthFailuresLimitedAndNeverLogged(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
		Extra: dataTokens, Logger: log})
	base := "http://" + lead.APIAddr()
	hc := http.DefaultClient
	ctx := context.Background()

	// Right tokens work, on every API.
	if code, body := authDo(t, hc, "PUT", base+"/kv/k", writerToken, "v"); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := authDo(t, hc, "GET", base+"/consensus/status", adminToken, ""); code != http.StatusOK {
		t.Fatalf("admin status: %d %s", code, body)
	}
	c, err := client.New(client.Config{Addrs: servertest.ClientAddrs(srvs), Token: readerToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Get(ctx, "k", client.Linearizable); err != nil {
		t.Fatalf("Get: %v", err)
	}

	// Wrong tokens, spread over the HTTP API, the admin API and the client
	// protocol: the address is refused at the limit.
	wrong := func(i int) string { return "guess-" + strings.Repeat("x", i) + "-" + writerToken[:8] }
	codes := map[int]int{}
	for i := range server.AuthMaxFailures {
		switch i % 3 {
		case 0:
			code, _ := authDo(t, hc, "GET", base+"/kv/k", wrong(i), "")
			codes[code]++
		case 1:
			code, _ := authDo(t, hc, "GET", base+"/consensus/status", wrong(i), "")
			codes[code]++
		case 2:
			raw := dialRaw(t, lead.ClientAddr())
			raw.send(wire.Request{ID: 1, Op: wire.OpAuth, Value: []byte(wrong(i))})
			if r := raw.recv(1)[1]; r.Status != wire.StatusUnauthorized {
				t.Fatalf("wrong Auth: %v", r.Status)
			}
			codes[http.StatusUnauthorized]++
		}
	}
	if codes[http.StatusUnauthorized] != server.AuthMaxFailures-1 || codes[http.StatusTooManyRequests] != 1 {
		t.Fatalf("answers to %d wrong tokens: %v, want 401s and one 429 at the limit", server.AuthMaxFailures, codes)
	}
	// Now even right tokens are refused from this address.
	if code, _ := authDo(t, hc, "GET", base+"/kv/k", readerToken, ""); code != http.StatusTooManyRequests {
		t.Errorf("right token while refused: %d, want 429", code)
	}
	if code, _ := authDo(t, hc, "GET", base+"/consensus/status", adminToken, ""); code != http.StatusTooManyRequests {
		t.Errorf("admin, right token while refused: %d, want 429", code)
	}
	nc, err := net.Dial("tcp", lead.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := nc.Read(make([]byte, 1)); err == nil {
		t.Errorf("client protocol while refused: read %d bytes, want the connection closed", n)
	}

	out := logs.String()
	for _, tok := range []string{readerToken, writerToken, viewerToken, adminToken, "guess-", writerToken[:8]} {
		if strings.Contains(out, tok) {
			t.Errorf("the log holds token bytes %q", tok)
		}
	}
	if !strings.Contains(out, "data plane: authentication failed") || !strings.Contains(out, "too many failed authentications") {
		t.Errorf("the failures were not logged:\n%s", out)
	}
}

// TestAPITLS: with api.tls the HTTP API and the client protocol are served
// over TLS from security.cert_file/key_file, and clients that trust the CA
// (with a token) are served; with api.mtls a client needs a certificate.
func TestAPITLS(t *testing.T) {
	pki := transporttest.NewPKI(t, "api-ca")
	cert, key := pki.Issue("node-1")
	clientCert, clientKey := pki.Issue("client")
	pem, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	sec := dataTokens + "  cert_file: " + cert + "\n  key_file: " + key + "\n  ca_file: " + pki.CAFile + "\n"
	for _, mutual := range []bool{false, true} {
		name := map[bool]string{false: "tls", true: "mtls"}[mutual]
		t.Run(name, func(t *testing.T) {
			srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
				API: "  " + name + ": true\n", Extra: sec})
			tc := &tls.Config{RootCAs: roots}
			if mutual {
				tc.Certificates = []tls.Certificate{pair}
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
			defer hc.CloseIdleConnections()
			if code, body := authDo(t, hc, "PUT", "https://"+lead.APIAddr()+"/kv/k", writerToken, "v"); code != http.StatusOK {
				t.Fatalf("https PUT: %d %s", code, body)
			}
			c, err := client.New(client.Config{Addrs: servertest.ClientAddrs(srvs), Token: readerToken, TLS: tc})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if v, ok, err := c.Get(context.Background(), "k", client.Linearizable); err != nil || !ok || string(v) != "v" {
				t.Fatalf("TLS client Get: %q %v %v", v, ok, err)
			}
			// Plaintext gets nothing: Go's server answers 400.
			if resp, err := http.Get("http://" + lead.APIAddr() + "/status"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("plaintext HTTP: %d, want 400", resp.StatusCode)
				}
			}
			plain, _ := client.New(client.Config{Addrs: servertest.ClientAddrs(srvs), Token: readerToken,
				RequestTimeout: 500 * time.Millisecond})
			defer plain.Close()
			if _, _, err := plain.Get(context.Background(), "k", client.Linearizable); err == nil {
				t.Error("plaintext client protocol served")
			}
			if mutual { // no client certificate: refused
				noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
				if _, err := noCert.Get("https://" + lead.APIAddr() + "/status"); err == nil {
					t.Error("mtls: served a client without a certificate")
				}
				c2, _ := client.New(client.Config{Addrs: servertest.ClientAddrs(srvs), Token: readerToken,
					TLS: &tls.Config{RootCAs: roots}, RequestTimeout: 500 * time.Millisecond})
				defer c2.Close()
				if _, _, err := c2.Get(context.Background(), "k", client.Linearizable); err == nil {
					t.Error("mtls: client protocol served a client without a certificate")
				}
			}
		})
	}
}

// TestFollowerHealthOverAPITLS: with the HTTP API on mutual TLS and
// tokens, a follower still asks the leader for its view of active
// members (over TLS, with its own certificate and a viewer token).
func TestFollowerHealthOverAPITLS(t *testing.T) {
	pki := transporttest.NewPKI(t, "api-ca")
	cert, key := pki.Issue("node")
	sec := dataTokens + "  cert_file: " + cert + "\n  key_file: " + key + "\n  ca_file: " + pki.CAFile + "\n"
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 3, Storage: "memory", Transport: "tcp",
		API: "  mtls: true\n", Extra: sec})
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for lead.Health(ctx).ActiveNodes != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the leader never saw every member active")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range srvs {
		if h := s.Health(ctx); h.ActiveFrom != "leader" || h.ActiveNodes != 3 {
			t.Fatalf("health %+v: want 3 active, from the leader", h)
		}
	}
}

// TestAPITLSRefusalsLoggedAndLimited: a client of another CA refused by
// the HTTP API's mutual TLS is logged by the node's logger (not the
// standard library's), saying why, at most one Warn a second.
func TestAPITLSRefusalsLoggedAndLimited(t *testing.T) {
	pki := transporttest.NewPKI(t, "api-ca")
	cert, key := pki.Issue("node-1")
	other := transporttest.NewPKI(t, "other-ca")
	strangerCert, strangerKey := other.Issue("stranger")
	pair, err := tls.LoadX509KeyPair(strangerCert, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Counter{}
	sec := dataTokens + "  cert_file: " + cert + "\n  key_file: " + key + "\n  ca_file: " + pki.CAFile + "\n"
	_, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
		API: "  mtls: true\n", Extra: sec, Logger: slog.New(logs)})
	const n = 30
	start := time.Now()
	for range n {
		c, err := tls.Dial("tcp", lead.APIAddr(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}})
		if err == nil {
			// TLS 1.3: the server's refusal arrives after the client's
			// side of the handshake; a read sees it.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Fatal("a client certificate of another CA was accepted")
		}
	}
	const prefix = "http API: TLS handshake error"
	deadline := time.Now().Add(5 * time.Second)
	for logs.CountPrefix(slog.LevelWarn, prefix)+logs.CountPrefix(slog.LevelDebug, prefix) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d refused handshakes logged", logs.CountPrefix(slog.LevelWarn, prefix)+
				logs.CountPrefix(slog.LevelDebug, prefix), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	warns := logs.CountPrefix(slog.LevelWarn, prefix)
	if most := int(time.Since(start)/time.Second) + 1; warns < 1 || warns > most {
		t.Fatalf("%d warnings for %d refused handshakes; want 1 to %d", warns, n, most)
	}
	if logs.CountPrefix(slog.LevelWarn, prefix+" from") == 0 {
		t.Fatal("the warning does not name the client's address")
	}
}
