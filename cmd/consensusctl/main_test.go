package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/admin"
)

// fakeCluster implements admin.Cluster, recording the mutating calls.
type fakeCluster struct {
	mu     sync.Mutex
	calls  []string
	info   admin.ClusterInfo
	health admin.HealthStatus
	err    error // returned by the mutating methods
}

func (f *fakeCluster) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fakeCluster) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeCluster) Info(context.Context) admin.ClusterInfo    { return f.info }
func (f *fakeCluster) Health(context.Context) admin.HealthStatus { return f.health }
func (f *fakeCluster) AddNode(_ context.Context, id uint64, addr string, port int) error {
	return f.record("AddNode(%d,%s,%d)", id, addr, port)
}
func (f *fakeCluster) RemoveNode(_ context.Context, id uint64) error {
	return f.record("RemoveNode(%d)", id)
}
func (f *fakeCluster) TransferLeadership(_ context.Context, id uint64) error {
	return f.record("TransferLeadership(%d)", id)
}
func (f *fakeCluster) Snapshot(context.Context) (uint64, error) { return 42, f.record("Snapshot") }

func healthyCluster() *fakeCluster {
	return &fakeCluster{
		info: admin.ClusterInfo{ID: "c1", NodeID: 1, Leader: 1, LeaderAddress: "http://10.0.0.1:7801", Term: 4,
			Role: "leader", CommitIndex: 9, LastApplied: 9, TotalNodes: 2, ActiveNodes: 2, HasQuorum: true,
			Nodes: []admin.NodeStatus{
				{ID: 1, Address: "10.0.0.1:7001", Role: "leader", Voter: true, Active: true, MatchIndex: 9},
				{ID: 2, Address: "10.0.0.2:7001", Role: "follower", Voter: true, Active: true, MatchIndex: 7, Lag: 2}}},
		health: admin.HealthStatus{Status: "healthy", Healthy: true, Leader: 1, HasQuorum: true, ActiveNodes: 2,
			TotalNodes: 2, Checks: []admin.Check{{Name: "quorum", Healthy: true}}},
	}
}

const token = "s3cret-admin"

// seen is one request a test node received.
type seen struct{ method, uri, auth, body string }

// testNode is an httptest server with the admin API under /consensus and a
// fake key-value API under /kv/.
type testNode struct {
	*httptest.Server
	cluster *fakeCluster
	mu      sync.Mutex
	kv      map[string]string
	reqs    []seen
	// kvLocation, if set, answers every request under /kv/ with 307 there,
	// plus the request URI unless it contains "://".
	kvLocation string
}

func newNode(t *testing.T, cfg admin.Config, c *fakeCluster, kvLocation string) *testNode {
	t.Helper()
	if cfg.Tokens == nil {
		cfg.Tokens = map[string]admin.Role{token: admin.RoleAdmin}
	}
	h, err := admin.Handler(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{cluster: c, kv: map[string]string{"greeting": "hello"}, kvLocation: kvLocation}
	mux := http.NewServeMux()
	mux.Handle("/consensus/", h)
	mux.HandleFunc("/kv/", n.serveKV)
	n.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n.mu.Lock()
		n.reqs = append(n.reqs, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), string(body)})
		n.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		mux.ServeHTTP(w, r)
	}))
	n.Start()
	t.Cleanup(n.Close)
	return n
}

func (n *testNode) Seen() []seen {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]seen(nil), n.reqs...)
}

func (n *testNode) serveKV(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/kv/")
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.kvLocation != "" {
		loc := n.kvLocation
		if !strings.Contains(loc, "://") || strings.HasPrefix(loc, "http") {
			loc += r.URL.RequestURI()
		}
		w.Header().Set("Location", loc)
		writeJSON(w, http.StatusTemporaryRedirect, map[string]any{"error": "not the leader"})
		return
	}
	switch r.Method {
	case http.MethodGet:
		v, ok := n.kv[key]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "key not found"})
			return
		}
		_, _ = io.WriteString(w, v)
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		n.kv[key] = string(b)
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case http.MethodDelete:
		_, ok := n.kv[key]
		delete(n.kv, key)
		writeJSON(w, http.StatusOK, map[string]any{"deleted": ok})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs consensusctl with env as its environment.
func runCLI(t *testing.T, rc runConfig, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if rc.stdin == nil {
		rc.stdin = strings.NewReader("")
	}
	getenv := func(k string) string { return env[k] }
	if rc.client == nil { // the real entry point
		return result{run(args, rc.stdin, &stdout, &stderr, getenv), stdout.String(), stderr.String()}
	}
	rc.stdout, rc.stderr, rc.getenv = &stdout, &stderr, getenv
	code := rc.run(args)
	return result{code, stdout.String(), stderr.String()}
}

// ctl runs consensusctl against endpoints with the admin token.
func ctl(t *testing.T, endpoints string, args ...string) result {
	t.Helper()
	return runCLI(t, runConfig{}, nil, append([]string{"--endpoints", endpoints, "--token", token}, args...)...)
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
}

// closedAddr is the base URL of a listener that was closed: dialing it fails.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestReadCommandsTable(t *testing.T) {
	n := newNode(t, admin.Config{}, healthyCluster(), "")
	nodes := "" +
		"ID  ADDRESS        ROLE      VOTER  ACTIVE  MATCH  LAG\n" +
		"1   10.0.0.1:7001  leader    yes    yes     9      0\n" +
		"2   10.0.0.2:7001  follower  yes    yes     7      2\n"
	for _, tc := range []struct{ cmd, want string }{
		{"nodes", nodes},
		{"status", "" +
			"CLUSTER  c1\n" +
			"NODE     1 (leader)\n" +
			"LEADER   1 at http://10.0.0.1:7801\n" +
			"TERM     4\n" +
			"COMMIT   9\n" +
			"APPLIED  9\n" +
			"NODES    2 active of 2\n" +
			"QUORUM   yes\n\n" + nodes},
		{"leader", "ID  ADDRESS               TERM\n1   http://10.0.0.1:7801  4\n"},
		{"health", "" +
			"STATUS  healthy\n" +
			"LEADER  1\n" +
			"QUORUM  yes\n" +
			"NODES   2 active of 2\n\n" +
			"CHECK   HEALTHY  MESSAGE\n" +
			"quorum  yes      \n"},
	} {
		r := ctl(t, n.URL, tc.cmd)
		wantCode(t, r, 0)
		if r.stdout != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.cmd, r.stdout, tc.want)
		}
	}
	for _, s := range n.Seen() {
		if s.auth != "Bearer "+token {
			t.Errorf("%s %s: Authorization %q, want the bearer token", s.method, s.uri, s.auth)
		}
	}
}

func TestReadCommandsJSON(t *testing.T) {
	c := healthyCluster()
	n := newNode(t, admin.Config{}, c, "")
	for _, tc := range []struct {
		cmd  string
		want any
	}{
		{"status", c.info},
		{"nodes", map[string]any{"nodes": c.info.Nodes}},
		{"leader", map[string]any{"leader_id": 1, "leader_address": "http://10.0.0.1:7801", "term": 4}},
		{"health", c.health},
	} {
		for _, flag := range []string{"-o", "--output"} {
			r := ctl(t, n.URL, flag, "json", tc.cmd)
			wantCode(t, r, 0)
			want, _ := json.MarshalIndent(tc.want, "", "  ")
			var got, exp any
			_ = json.Unmarshal(want, &exp)
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || !reflect.DeepEqual(got, exp) {
				t.Errorf("%s: %v\n%s\nwant:\n%s", tc.cmd, err, r.stdout, want)
			}
			if !strings.HasPrefix(r.stdout, "{\n  \"") {
				t.Errorf("%s: not indented:\n%s", tc.cmd, r.stdout)
			}
		}
	}
}

func TestUnhealthyAndNoLeader(t *testing.T) {
	c := healthyCluster()
	c.health = admin.HealthStatus{Status: "degraded", Checks: []admin.Check{{Name: "quorum", Message: "1 of 3 active"}}}
	c.info.Leader, c.info.LeaderAddress = 0, ""
	n := newNode(t, admin.Config{}, c, "")

	r := ctl(t, n.URL, "health")
	wantCode(t, r, 1)
	if !strings.Contains(r.stdout, "STATUS  degraded") || !strings.Contains(r.stdout, "quorum  no       1 of 3 active") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	if r.stderr != "consensusctl: health: cluster is degraded\n" {
		t.Errorf("stderr: %q", r.stderr)
	}
	r = ctl(t, n.URL, "-o", "json", "health")
	wantCode(t, r, 1)
	if !strings.Contains(r.stdout, `"status": "degraded"`) {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	r = ctl(t, n.URL, "leader")
	wantCode(t, r, 1)
	if r.stdout != "" || r.stderr != "consensusctl: leader: no leader\n" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

func TestMutations(t *testing.T) {
	c := healthyCluster()
	n := newNode(t, admin.Config{}, c, "")
	for _, tc := range []struct {
		args            []string
		table, json, fn string
	}{
		{[]string{"add-node", "node-3", "10.0.0.3", "7001"}, "node node-3 added at 10.0.0.3:7001\n",
			"{\n  \"node_id\": \"node-3\",\n  \"ok\": true\n}\n", "AddNode(3,10.0.0.3,7001)"},
		{[]string{"remove-node", "2"}, "node 2 removed\n", "{\n  \"node_id\": \"2\",\n  \"ok\": true\n}\n", "RemoveNode(2)"},
		{[]string{"transfer-leadership", "node-2"}, "leadership transferred to node node-2\n",
			"{\n  \"ok\": true,\n  \"target_node_id\": \"node-2\"\n}\n", "TransferLeadership(2)"},
		{[]string{"snapshot"}, "snapshot taken at index 42\n", "{\n  \"index\": 42,\n  \"ok\": true\n}\n", "Snapshot"},
	} {
		r := ctl(t, n.URL, tc.args...)
		wantCode(t, r, 0)
		if r.stdout != tc.table {
			t.Errorf("%v: %q, want %q", tc.args, r.stdout, tc.table)
		}
		r = ctl(t, n.URL, append([]string{"-o", "json"}, tc.args...)...)
		wantCode(t, r, 0)
		if r.stdout != tc.json {
			t.Errorf("%v -o json: %q, want %q", tc.args, r.stdout, tc.json)
		}
		if calls := c.Calls(); calls[len(calls)-1] != tc.fn {
			t.Errorf("%v: cluster calls %v, want %s last", tc.args, calls, tc.fn)
		}
	}
	if s := n.Seen()[0]; s.body != `{"node_id":"node-3","address":"10.0.0.3","port":7001}` || s.auth != "Bearer "+token {
		t.Errorf("add-node request %+v", s)
	}
}

func TestServerRefusals(t *testing.T) {
	c := healthyCluster()
	c.err = fmt.Errorf("%w: node 3 exists", admin.ErrConflict)
	n := newNode(t, admin.Config{}, c, "")
	r := ctl(t, n.URL, "add-node", "3", "h", "1")
	wantCode(t, r, 1)
	if r.stderr != "consensusctl: add-node: admin: conflict: node 3 exists\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	// Wrong token, token from the environment: 401.
	r = runCLI(t, runConfig{}, map[string]string{"CONSENSUSCTL_ENDPOINTS": n.URL, "CONSENSUSCTL_TOKEN": "wrong"}, "snapshot")
	wantCode(t, r, 1)
	if r.stderr != "consensusctl: snapshot: invalid bearer token\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	if s := n.Seen(); s[len(s)-1].auth != "Bearer wrong" {
		t.Errorf("env token not sent: %+v", s[len(s)-1])
	}
	// A refusal from the first endpoint is final: the second is not asked.
	other := newNode(t, admin.Config{}, healthyCluster(), "")
	r = ctl(t, n.URL+","+other.URL, "kv", "get", "missing")
	wantCode(t, r, 1)
	if r.stderr != "consensusctl: kv get: key not found\n" || len(other.Seen()) != 0 {
		t.Errorf("stderr %q, second endpoint saw %v", r.stderr, other.Seen())
	}
}

func TestKV(t *testing.T) {
	n := newNode(t, admin.Config{}, healthyCluster(), "")
	r := ctl(t, n.URL, "kv", "get", "greeting")
	wantCode(t, r, 0)
	if r.stdout != "hello\n" {
		t.Errorf("get: %q", r.stdout)
	}
	r = ctl(t, n.URL, "-o", "json", "kv", "get", "--consistency", "stale", "greeting")
	wantCode(t, r, 0)
	if r.stdout != "{\n  \"key\": \"greeting\",\n  \"value\": \"hello\"\n}\n" {
		t.Errorf("get json: %q", r.stdout)
	}
	r = ctl(t, n.URL, "kv", "get", "greeting", "--consistency=lease")
	wantCode(t, r, 0)
	if s := n.Seen(); s[1].uri != "/kv/greeting?consistency=stale" || s[2].uri != "/kv/greeting?consistency=lease" {
		t.Errorf("requests %+v", s)
	}
	r = ctl(t, n.URL, "kv", "put", "a b/c", "v1")
	wantCode(t, r, 0)
	if r.stdout != "OK\n" {
		t.Errorf("put: %q", r.stdout)
	}
	r = runCLI(t, runConfig{stdin: strings.NewReader("from\nstdin")}, nil, "--endpoints", n.URL, "kv", "put", "--", "-k", "-")
	wantCode(t, r, 0)
	r = ctl(t, n.URL, "kv", "delete", "greeting")
	wantCode(t, r, 0)
	if r.stdout != "deleted\n" {
		t.Errorf("delete: %q", r.stdout)
	}
	r = ctl(t, n.URL, "-o", "json", "kv", "delete", "greeting")
	wantCode(t, r, 0)
	if r.stdout != "{\n  \"deleted\": false\n}\n" {
		t.Errorf("delete json: %q", r.stdout)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if want := map[string]string{"a b/c": "v1", "-k": "from\nstdin"}; !reflect.DeepEqual(n.kv, want) {
		t.Errorf("store %q, want %q", n.kv, want)
	}
}

func TestUsageErrors(t *testing.T) {
	n := newNode(t, admin.Config{}, healthyCluster(), "")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "consensusctl: no command given"},
		{[]string{"frobnicate"}, "consensusctl: frobnicate: unknown command"},
		{[]string{"status", "extra"}, "consensusctl: status: want 0 argument(s), got 1"},
		{[]string{"add-node", "3", "h"}, "consensusctl: add-node: want 3 argument(s), got 2"},
		{[]string{"add-node", "3", "h", "70000"}, `invalid port "70000"`},
		{[]string{"remove-node", "node x"}, `invalid node id: invalid node name "node x"`},
		{[]string{"transfer-leadership", "0"}, `invalid node id: invalid node name "0"`},
		{[]string{"--bogus", "status"}, "consensusctl: flag provided but not defined: -bogus"},
		{[]string{"-o", "yaml", "status"}, `--output "yaml"`},
		{[]string{"--timeout", "0s", "status"}, "--timeout must be positive"},
		{[]string{"--endpoints", "ftp://x", "status"}, `"ftp://x" is not an http(s) base URL`},
		{[]string{"--cert", "c.pem", "status"}, "--cert and --key go together"},
		{[]string{"kv"}, "want a subcommand"},
		{[]string{"kv", "list"}, "consensusctl: kv list: unknown subcommand"},
		{[]string{"kv", "put", "k"}, "consensusctl: kv put: want 2 argument(s), got 1"},
		{[]string{"kv", "get", "k", "--consistency", "strong"}, `--consistency "strong"`},
		{[]string{"kv", "delete", "k", "--consistency", "stale"}, "flag provided but not defined: -consistency"},
	} {
		r := ctl(t, n.URL, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.msg) || !strings.Contains(r.stderr, "\nusage: consensusctl") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q with the usage", tc.args, r.code, r.stderr, tc.msg)
		}
	}
	if s := n.Seen(); len(s) != 0 {
		t.Errorf("usage errors sent requests: %v", s)
	}
	r := ctl(t, n.URL, "-h")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: consensusctl") {
		t.Errorf("-h: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestFollowsRedirects(t *testing.T) {
	leaderCluster := healthyCluster()
	leader := newNode(t, admin.Config{}, leaderCluster, "")
	notLeader := &admin.NotLeaderError{LeaderID: 1, LeaderAddress: leader.URL}
	c307, c503 := healthyCluster(), healthyCluster()
	c307.err, c503.err = notLeader, notLeader
	redirecting := newNode(t, admin.Config{RedirectWrites: true}, c307, leader.URL)
	unavailable := newNode(t, admin.Config{}, c503, "")

	for name, follower := range map[string]*testNode{"307": redirecting, "503": unavailable} {
		r := ctl(t, follower.URL+","+leader.URL, "remove-node", "node-2")
		wantCode(t, r, 0)
		if got := leaderCluster.Calls(); got[len(got)-1] != "RemoveNode(2)" {
			t.Errorf("%s: leader calls %v", name, got)
		}
		s := leader.Seen()
		if last := s[len(s)-1]; last.uri != "/consensus/remove-node" || last.body != `{"node_id":"node-2"}` || last.auth != "Bearer "+token {
			t.Errorf("%s: leader got %+v", name, last)
		}
	}
	// A key-value write is re-sent with its body.
	r := ctl(t, redirecting.URL+","+leader.URL, "kv", "put", "k", "v")
	wantCode(t, r, 0)
	if s := leader.Seen(); s[len(s)-1] != (seen{"PUT", "/kv/k", "Bearer " + token, "v"}) {
		t.Errorf("leader got %+v", s[len(s)-1])
	}
}

func TestRedirectLimits(t *testing.T) {
	loop := newNode(t, admin.Config{}, healthyCluster(), "")
	loop.mu.Lock()
	loop.kvLocation = loop.URL
	loop.mu.Unlock()
	r := ctl(t, loop.URL, "kv", "delete", "k")
	wantCode(t, r, 1)
	if n := len(loop.Seen()); n != 1+maxHops || !strings.Contains(r.stderr, "gave up after 3 redirects") {
		t.Errorf("%d requests, stderr %q", n, r.stderr)
	}
	bad := newNode(t, admin.Config{}, healthyCluster(), "file:///etc/passwd")
	r = ctl(t, bad.URL, "kv", "put", "k", "v")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `refusing to follow the leader redirect to "file:///etc/passwd"`) {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestTokenNotSentToOtherHosts(t *testing.T) {
	leader := newNode(t, admin.Config{}, healthyCluster(), "")
	c := healthyCluster()
	c.err = &admin.NotLeaderError{LeaderID: 1, LeaderAddress: leader.URL}
	follower := newNode(t, admin.Config{RedirectWrites: true}, c, leader.URL)
	r := ctl(t, follower.URL, "snapshot") // the leader is not among --endpoints
	wantCode(t, r, 1)
	s := leader.Seen()
	if len(s) != 1 || s[0].auth != "" {
		t.Fatalf("leader got %+v, want one request without Authorization", s)
	}
	if follower.Seen()[0].auth != "Bearer "+token {
		t.Errorf("follower did not get the token")
	}
	if !strings.Contains(r.stderr, "consensusctl: snapshot: missing bearer token") ||
		!strings.Contains(r.stderr, "not one of --endpoints") || strings.Contains(r.stderr+r.stdout, token) {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestFailover(t *testing.T) {
	n := newNode(t, admin.Config{}, healthyCluster(), "")
	down := closedAddr(t)
	r := ctl(t, down+","+n.URL, "leader")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "http://10.0.0.1:7801") {
		t.Errorf("stdout %q", r.stdout)
	}
	r = ctl(t, down+","+n.URL, "kv", "put", "k", "v") // not sent, so safe to retry
	wantCode(t, r, 0)
	// A write that was sent but got no answer may have taken effect: it is
	// not re-sent to the next endpoint.
	hangup := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	defer hangup.Close()
	r = ctl(t, hangup.URL+","+n.URL, "kv", "put", "k", "v2")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "consensusctl: kv put: no answer, the request may have taken effect: ") ||
		n.Seen()[len(n.Seen())-1].body != "v" {
		t.Errorf("stderr %q, last request on the second endpoint %+v", r.stderr, n.Seen())
	}
	r = ctl(t, hangup.URL+","+n.URL, "nodes") // a read is
	wantCode(t, r, 0)
	r = ctl(t, down+","+closedAddr(t), "status")
	wantCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "consensusctl: status: no endpoint answered: ") || !strings.Contains(r.stderr, down[len("http://"):]) {
		t.Errorf("stderr %q", r.stderr)
	}
}

// certs is a CA and a server and a client certificate it signed, as files.
type certs struct{ dir, ca, serverCert, serverKey, clientCert, clientKey string }

func makeCerts(t *testing.T) certs {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", keyDER)
	}
	c := certs{dir: dir, ca: write("ca.pem", "CERTIFICATE", caDER)}
	c.serverCert, c.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	c.clientCert, c.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return c
}

func startTLS(t *testing.T, c certs, clientAuth tls.ClientAuthType) string {
	t.Helper()
	h, err := admin.Handler(admin.Config{}, healthyCluster())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c.serverCert, c.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(c.ca)
	pool.AppendCertsFromPEM(pem)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: clientAuth, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestTLS(t *testing.T) {
	c := makeCerts(t)
	plain := startTLS(t, c, tls.NoClientCert)
	r := ctl(t, plain, "nodes")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "certificate") {
		t.Errorf("without --cacert: stderr %q", r.stderr)
	}
	r = ctl(t, plain, "--cacert", c.ca, "nodes")
	wantCode(t, r, 0)
	r = ctl(t, plain, "--insecure-skip-verify", "nodes")
	wantCode(t, r, 0)

	mutual := startTLS(t, c, tls.RequireAndVerifyClientCert)
	r = ctl(t, mutual, "--cacert", c.ca, "nodes")
	wantCode(t, r, 1)
	r = ctl(t, mutual, "--cacert", c.ca, "--cert", c.clientCert, "--key", c.clientKey, "nodes")
	wantCode(t, r, 0)

	r = ctl(t, plain, "--cacert", filepath.Join(c.dir, "missing.pem"), "nodes")
	wantCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "consensusctl: --cacert: open ") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestInjectedClient(t *testing.T) {
	h, _ := admin.Handler(admin.Config{}, healthyCluster())
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	r := runCLI(t, runConfig{client: srv.Client()}, nil, "--endpoints", srv.URL, "leader")
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "ID  ADDRESS") {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestStatusAndNodesComeFromTheLeader(t *testing.T) {
	lead := newNode(t, admin.Config{}, healthyCluster(), "")
	fc := healthyCluster()
	fc.info.NodeID, fc.info.Role, fc.info.LeaderAddress = 2, "follower", lead.URL
	fc.info.Nodes = []admin.NodeStatus{{ID: 1, Role: "leader", Voter: true, Active: true}, {ID: 2, Role: "follower", Voter: true, Active: true}}
	follower := newNode(t, admin.Config{}, fc, "")
	r := ctl(t, follower.URL+","+lead.URL, "status")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "NODE     1 (leader)") || !strings.Contains(r.stdout, "10.0.0.2:7001  follower  yes    yes     7      2") {
		t.Fatalf("status through a follower did not come from the leader:\n%s", r.stdout)
	}
	r = ctl(t, follower.URL+","+lead.URL, "nodes")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "10.0.0.1:7001") {
		t.Fatalf("nodes through a follower did not come from the leader:\n%s", r.stdout)
	}
	// A leader the token may not go to: the follower's own view stands.
	r = ctl(t, follower.URL, "status")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "NODE     2 (follower)") {
		t.Fatalf("status with the leader out of reach:\n%s", r.stdout)
	}
}

// TestNamesShown: the tables show a member's name when the node sends one,
// its ID otherwise.
func TestNamesShown(t *testing.T) {
	if got := leaderString(13601976760535038199, "us-east-1a", "http://10.0.0.1:7101"); got != "us-east-1a at http://10.0.0.1:7101" {
		t.Errorf("leader with a name: %q", got)
	}
	if got := leaderString(3, "", ""); got != "3" {
		t.Errorf("leader without a name: %q", got)
	}
	if got := leaderString(0, "x", ""); got != "none" {
		t.Errorf("no leader: %q", got)
	}
	var b strings.Builder
	nodesTable(&b, []admin.NodeStatus{{ID: 13601976760535038199, Name: "us-east-1a", Address: "a:1", Role: "leader"}, {ID: 4, Address: "b:2"}})
	if !strings.Contains(b.String(), "us-east-1a\ta:1\tleader") || !strings.Contains(b.String(), "\n4\tb:2\t") {
		t.Errorf("nodes table:\n%s", b.String())
	}
}
