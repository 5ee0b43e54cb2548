package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeCluster records every call and answers from its fields.
type fakeCluster struct {
	mu     sync.Mutex
	calls  []string
	info   ClusterInfo
	health HealthStatus
	err    error // returned by the mutating methods
	index  uint64
}

func (f *fakeCluster) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeCluster) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Mutations returns the calls but reads (Info, Health): add-node and
// promote read the member's stage after the change.
func (f *fakeCluster) Mutations() []string {
	var out []string
	for _, c := range f.Calls() {
		if c != "Info" && c != "Health" {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeCluster) Info(context.Context) ClusterInfo    { f.record("Info"); return f.info }
func (f *fakeCluster) Health(context.Context) HealthStatus { f.record("Health"); return f.health }
func (f *fakeCluster) AddNode(_ context.Context, id uint64, addr string, port int) error {
	f.record("AddNode(%d,%s,%d)", id, addr, port)
	return f.err
}
func (f *fakeCluster) RemoveNode(_ context.Context, id uint64) error {
	f.record("RemoveNode(%d)", id)
	return f.err
}
func (f *fakeCluster) TransferLeadership(_ context.Context, id uint64) error {
	f.record("TransferLeadership(%d)", id)
	return f.err
}
func (f *fakeCluster) Snapshot(context.Context) (uint64, error) {
	f.record("Snapshot")
	return f.index, f.err
}

func healthyFake() *fakeCluster {
	return &fakeCluster{
		info: ClusterInfo{ID: "c1", NodeID: 1, Leader: 1, LeaderAddress: "http://10.0.0.1:7801", Term: 4,
			Role: "leader", CommitIndex: 9, LastApplied: 9, TotalNodes: 2, ActiveNodes: 2, HasQuorum: true,
			Nodes: []NodeStatus{{ID: 1, Address: "10.0.0.1:7001", Role: "leader", Voter: true, Active: true, MatchIndex: 9},
				{ID: 2, Address: "10.0.0.2:7001", Role: "follower", Voter: true, Active: true, MatchIndex: 7, Lag: 2}}},
		health: HealthStatus{Status: "healthy", Healthy: true, Leader: 1, HasQuorum: true, ActiveNodes: 2, TotalNodes: 2,
			Checks: []Check{{Name: "quorum", Healthy: true}}},
		index: 42,
	}
}

var testTokens = map[string]Role{"view-tok": RoleViewer, "op-tok": RoleOperator, "admin-tok": RoleAdmin}

func newHandler(t testing.TB, cfg Config, c Cluster) http.Handler {
	t.Helper()
	h, err := Handler(cfg, c)
	if err != nil {
		t.Fatalf("Handler: %v", err)
	}
	return h
}

// do sends one request; token "" sends no Authorization header.
func do(h http.Handler, method, path, body, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// jsonBody checks the response is JSON and decodes it.
func jsonBody(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", rec.Body, err)
	}
	if rec.Code >= 400 {
		if msg, _ := m["error"].(string); msg == "" {
			t.Fatalf("error response %d has no \"error\" field: %s", rec.Code, rec.Body)
		}
	}
	return m
}

func expect(t *testing.T, rec *httptest.ResponseRecorder, status int) map[string]any {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	return jsonBody(t, rec)
}

func TestReadRoutes(t *testing.T) {
	f := healthyFake()
	h := newHandler(t, Config{}, f)

	m := expect(t, do(h, "GET", "/consensus/health", "", ""), 200)
	if m["status"] != "healthy" || m["healthy"] != true || m["error"] != nil || len(m["checks"].([]any)) != 1 {
		t.Errorf("health body = %v", m)
	}
	if m := expect(t, do(h, "GET", "/consensus/health/live", "", ""), 200); m["status"] != "alive" {
		t.Errorf("live body = %v", m)
	}
	if m := expect(t, do(h, "GET", "/consensus/health/ready", "", ""), 200); m["ready"] != true {
		t.Errorf("ready body = %v", m)
	}
	m = expect(t, do(h, "GET", "/consensus/status", "", ""), 200)
	if m["cluster_id"] != "c1" || m["leader_id"] != 1.0 || m["term"] != 4.0 || m["has_quorum"] != true || len(m["nodes"].([]any)) != 2 {
		t.Errorf("status body = %v", m)
	}
	m = expect(t, do(h, "GET", "/consensus/nodes", "", ""), 200)
	nodes := m["nodes"].([]any)
	if len(nodes) != 2 || nodes[1].(map[string]any)["lag"] != 2.0 || nodes[1].(map[string]any)["role"] != "follower" {
		t.Errorf("nodes body = %v", m)
	}
	m = expect(t, do(h, "GET", "/consensus/leader", "", ""), 200)
	if m["leader_id"] != 1.0 || m["leader_address"] != "http://10.0.0.1:7801" || m["term"] != 4.0 {
		t.Errorf("leader body = %v", m)
	}
	for _, c := range f.Calls() {
		if c != "Info" && c != "Health" {
			t.Errorf("GET caused mutating call %s", c)
		}
	}
}

func TestUnhealthyAndLeaderless(t *testing.T) {
	f := &fakeCluster{health: HealthStatus{Status: "unhealthy"}, info: ClusterInfo{Term: 7}}
	h := newHandler(t, Config{}, f)

	m := expect(t, do(h, "GET", "/consensus/health", "", ""), 503)
	if m["status"] != "unhealthy" || m["healthy"] != false {
		t.Errorf("health body = %v", m)
	}
	if checks, ok := m["checks"].([]any); !ok || len(checks) != 0 {
		t.Errorf("checks = %v, want []", m["checks"])
	}
	if m := expect(t, do(h, "GET", "/consensus/health/ready", "", ""), 503); m["ready"] != false || m["status"] != "unhealthy" {
		t.Errorf("ready body = %v", m)
	}
	expect(t, do(h, "GET", "/consensus/health/live", "", ""), 200)
	m = expect(t, do(h, "GET", "/consensus/leader", "", ""), 503)
	if m["leader_id"] != 0.0 || m["term"] != 7.0 {
		t.Errorf("leader body = %v", m)
	}
	if _, ok := m["leader_address"]; !ok {
		t.Errorf("leader body lacks leader_address: %v", m)
	}
	if m := expect(t, do(h, "GET", "/consensus/nodes", "", ""), 200); m["nodes"] == nil {
		t.Errorf("nodes = null, want []")
	}
}

func TestMetrics(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "raft_term 4\n")
	})
	rec := do(newHandler(t, Config{}, healthyFake()), "GET", "/consensus/metrics", "", "")
	expect(t, rec, 404)

	h := newHandler(t, Config{Metrics: metrics}, healthyFake())
	if rec := do(h, "GET", "/consensus/metrics", "", ""); rec.Code != 200 || rec.Body.String() != "raft_term 4\n" {
		t.Errorf("open metrics = %d %q", rec.Code, rec.Body)
	}

	h = newHandler(t, Config{Metrics: metrics, Tokens: testTokens}, healthyFake())
	expect(t, do(h, "GET", "/consensus/metrics", "", ""), 401)
	if rec := do(h, "GET", "/consensus/metrics", "", "view-tok"); rec.Code != 200 {
		t.Errorf("viewer metrics = %d", rec.Code)
	}

	h = newHandler(t, Config{Metrics: metrics, Tokens: testTokens, OpenMetrics: true}, healthyFake())
	if rec := do(h, "GET", "/consensus/metrics", "", ""); rec.Code != 200 {
		t.Errorf("OpenMetrics without token = %d", rec.Code)
	}
}

func TestMutations(t *testing.T) {
	tests := []struct {
		path, body string
		wantCall   string
		wantBody   map[string]any
	}{
		{"/add-node", `{"node_id":3,"address":"10.0.0.3","port":7003}`, "AddNode(3,10.0.0.3,7003)",
			map[string]any{"ok": true, "node_id": 3.0}},
		{"/add-node", `{"node_id":"3","address":" h ","port":1}`, "AddNode(3,h,1)", nil},
		{"/add-node", `{"node_id":"node-3","address":"h","port":65535}`, "AddNode(3,h,65535)",
			map[string]any{"ok": true, "node_id": "node-3"}},
		{"/add-node", `{"node_id":"us-east-1a","address":"h","port":7000}`, "AddNode(13601976760535038199,h,7000)",
			map[string]any{"ok": true, "node_id": "us-east-1a"}},
		{"/remove-node", `{"node_id":2}`, "RemoveNode(2)", map[string]any{"ok": true, "node_id": 2.0}},
		{"/remove-node", `{"node_id":"node-2"}`, "RemoveNode(2)", nil},
		{"/transfer-leadership", `{"target_node_id":2}`, "TransferLeadership(2)",
			map[string]any{"ok": true, "target_node_id": 2.0}},
		{"/transfer-leadership", `{"target_node_id":"node-2"}`, "TransferLeadership(2)",
			map[string]any{"ok": true, "target_node_id": "node-2"}},
		{"/snapshot", ``, "Snapshot", map[string]any{"ok": true, "index": 42.0}},
		{"/snapshot", ` {} `, "Snapshot", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.body, func(t *testing.T) {
			f := healthyFake()
			h := newHandler(t, Config{Tokens: testTokens}, f)
			m := expect(t, do(h, "POST", "/consensus"+tt.path, tt.body, "admin-tok"), 200)
			if calls := f.Mutations(); len(calls) != 1 || calls[0] != tt.wantCall {
				t.Errorf("calls = %v, want [%s]", calls, tt.wantCall)
			}
			for k, v := range tt.wantBody {
				if m[k] != v {
					t.Errorf("body[%s] = %v, want %v (%v)", k, m[k], v, m)
				}
			}
		})
	}
}

func TestInvalidRequestsDoNotCallCluster(t *testing.T) {
	big := `{"node_id":1,"address":"` + strings.Repeat("a", maxBodyBytes) + `","port":1}`
	tests := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"bad json", "POST", "/consensus/remove-node", `{"node_id":`, 400, "invalid JSON"},
		{"syntax", "POST", "/consensus/remove-node", `{"node_id" 1}`, 400, "syntax error"},
		{"unknown field", "POST", "/consensus/remove-node", `{"node_id":1,"force":true}`, 400, `unknown field "force"`},
		{"unknown field snapshot", "POST", "/consensus/snapshot", `{"x":1}`, 400, `unknown field "x"`},
		{"trailing data", "POST", "/consensus/remove-node", `{"node_id":1}{}`, 400, "after the object"},
		{"array", "POST", "/consensus/remove-node", `[1]`, 400, "must be a JSON object"},
		{"null", "POST", "/consensus/snapshot", `null`, 400, "must be a JSON object"},
		{"empty", "POST", "/consensus/remove-node", ``, 400, "empty"},
		{"wrong type", "POST", "/consensus/add-node", `{"node_id":1,"address":"h","port":"80"}`, 400, `"port"`},
		{"oversize", "POST", "/consensus/add-node", big, 413, "exceeds"},
		{"missing node_id", "POST", "/consensus/add-node", `{"address":"h","port":1}`, 400, "node_id is required"},
		{"zero node_id", "POST", "/consensus/remove-node", `{"node_id":0}`, 400, "invalid node id 0"},
		{"zero target", "POST", "/consensus/transfer-leadership", `{}`, 400, "target_node_id is required"},
		{"empty address", "POST", "/consensus/add-node", `{"node_id":1,"address":" ","port":1}`, 400, "address is required"},
		{"port 0", "POST", "/consensus/add-node", `{"node_id":1,"address":"h"}`, 400, "port must be"},
		{"port high", "POST", "/consensus/add-node", `{"node_id":1,"address":"h","port":65536}`, 400, "port must be"},
		{"bad name", "POST", "/consensus/remove-node", `{"node_id":"node x"}`, 400, "invalid node id"},
		{"address as name", "POST", "/consensus/remove-node", `{"node_id":"a b/c\u0000:x"}`, 400, "invalid node id"},
		{"id 2^64-1", "POST", "/consensus/remove-node", `{"node_id":18446744073709551615}`, 400, "invalid node id"},
		{"negative id", "POST", "/consensus/remove-node", `{"node_id":-1}`, 400, "invalid node id"},
		{"fraction id", "POST", "/consensus/remove-node", `{"node_id":1.5}`, 400, "invalid node id"},
		{"bool id", "POST", "/consensus/remove-node", `{"node_id":true}`, 400, "invalid node id"},
		{"unknown path", "GET", "/consensus/nope", ``, 404, "no such endpoint"},
		{"trailing slash", "GET", "/consensus/status/", ``, 404, "no such endpoint"},
		{"outside prefix", "GET", "/status", ``, 404, "no such endpoint"},
		{"prefix lookalike", "GET", "/consensusx/status", ``, 404, "no such endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := healthyFake()
			h := newHandler(t, Config{Tokens: testTokens}, f)
			m := expect(t, do(h, tt.method, tt.path, tt.body, "admin-tok"), tt.status)
			if msg := m["error"].(string); !strings.Contains(msg, tt.msg) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.msg)
			}
			if calls := f.Calls(); len(calls) != 0 {
				t.Errorf("cluster called for an invalid request: %v", calls)
			}
		})
	}
}

func TestWrongMethod(t *testing.T) {
	for _, tt := range []struct{ method, path, allow string }{
		{"POST", "/consensus/status", "GET"},
		{"DELETE", "/consensus/health", "GET"},
		{"GET", "/consensus/add-node", "POST"},
		{"PUT", "/consensus/snapshot", "POST"},
	} {
		f := healthyFake()
		rec := do(newHandler(t, Config{Tokens: testTokens}, f), tt.method, tt.path, `{}`, "admin-tok")
		expect(t, rec, 405)
		if got := rec.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
		if calls := f.Calls(); len(calls) != 0 {
			t.Errorf("%s %s: cluster called: %v", tt.method, tt.path, calls)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err    error
		status int
	}{
		{ErrUnknownNode, 404},
		{fmt.Errorf("remove node 9: %w", ErrUnknownNode), 404},
		{ErrInvalidRequest, 400},
		{fmt.Errorf("remove last voter: %w", ErrConflict), 409},
		{ErrNoQuorum, 503},
		{context.DeadlineExceeded, 504},
		{fmt.Errorf("propose: %w", context.DeadlineExceeded), 504},
		{errors.New("disk on fire"), 500},
		{&NotLeaderError{LeaderID: 2, LeaderAddress: "http://10.0.0.2:7801"}, 503}, // RedirectWrites off
		{fmt.Errorf("wrapped: %w", &NotLeaderError{}), 503},
	}
	for _, tt := range tests {
		for _, path := range []string{"/add-node", "/remove-node", "/transfer-leadership", "/snapshot"} {
			body := map[string]string{"/add-node": `{"node_id":5,"address":"h","port":80}`, "/remove-node": `{"node_id":5}`,
				"/transfer-leadership": `{"target_node_id":5}`, "/snapshot": `{}`}[path]
			f := healthyFake()
			f.err = tt.err
			h := newHandler(t, Config{Tokens: testTokens}, f)
			rec := do(h, "POST", "/consensus"+path, body, "admin-tok")
			m := expect(t, rec, tt.status)
			if m["error"] != tt.err.Error() {
				t.Errorf("%s %v: error = %v", path, tt.err, m["error"])
			}
			if rec.Header().Get("Location") != "" {
				t.Errorf("%s %v: unexpected Location", path, tt.err)
			}
			if len(f.Calls()) != 1 {
				t.Errorf("%s: calls = %v", path, f.Calls())
			}
		}
	}
}

func TestNotLeader(t *testing.T) {
	leader := &NotLeaderError{LeaderID: 2, LeaderAddress: "http://127.0.0.1:7801"}
	tests := []struct {
		name     string
		redirect bool
		err      error
		status   int
		location string
	}{
		{"redirect", true, leader, 307, "http://127.0.0.1:7801/consensus/add-node"},
		{"redirect trailing slash", true, &NotLeaderError{2, "http://127.0.0.1:7801/"}, 307, "http://127.0.0.1:7801/consensus/add-node"},
		{"redirect wrapped", true, fmt.Errorf("add: %w", leader), 307, "http://127.0.0.1:7801/consensus/add-node"},
		{"redirect off", false, leader, 503, ""},
		{"no address", true, &NotLeaderError{LeaderID: 2}, 503, ""},
		{"leader unknown", true, &NotLeaderError{}, 503, ""},
		{"bad address", true, &NotLeaderError{2, "javascript:alert(1)"}, 503, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := healthyFake()
			f.err = tt.err
			h := newHandler(t, Config{Tokens: testTokens, RedirectWrites: tt.redirect}, f)
			rec := do(h, "POST", "/consensus/add-node", `{"node_id":5,"address":"h","port":80}`, "admin-tok")
			m := expect(t, rec, tt.status)
			if got := rec.Header().Get("Location"); got != tt.location {
				t.Errorf("Location = %q, want %q", got, tt.location)
			}
			var nl *NotLeaderError
			errors.As(tt.err, &nl)
			if m["leader_id"] != float64(nl.LeaderID) || m["leader_address"] != nl.LeaderAddress {
				t.Errorf("body = %v, want leader fields of %+v", m, nl)
			}
		})
	}
}

func TestRoles(t *testing.T) {
	bodies := map[string]string{
		"/add-node": `{"node_id":5,"address":"h","port":80}`, "/remove-node": `{"node_id":5}`,
		"/transfer-leadership": `{"target_node_id":2}`, "/snapshot": ``,
	}
	allowed := map[string]map[string]bool{
		"view-tok":  {},
		"op-tok":    {"/snapshot": true, "/transfer-leadership": true},
		"admin-tok": {"/snapshot": true, "/transfer-leadership": true, "/add-node": true, "/remove-node": true},
	}
	for tok, ok := range allowed {
		for path, body := range bodies {
			f := healthyFake()
			h := newHandler(t, Config{Tokens: testTokens}, f)
			rec := do(h, "POST", "/consensus"+path, body, tok)
			want := 403
			if ok[path] {
				want = 200
			}
			if rec.Code != want {
				t.Errorf("%s POST %s = %d, want %d (%s)", tok, path, rec.Code, want, rec.Body)
			}
			jsonBody(t, rec)
			if got := len(f.Calls()) > 0; got != ok[path] {
				t.Errorf("%s POST %s: cluster called = %v", tok, path, got)
			}
		}
		for _, path := range []string{"/status", "/nodes", "/leader", "/health"} {
			if rec := do(newHandler(t, Config{Tokens: testTokens}, healthyFake()), "GET", "/consensus"+path, "", tok); rec.Code != 200 {
				t.Errorf("%s GET %s = %d", tok, path, rec.Code)
			}
		}
	}
}

func TestAuthentication(t *testing.T) {
	h := newHandler(t, Config{Tokens: testTokens}, healthyFake())
	for _, tt := range []struct{ name, auth string }{
		{"missing", ""}, {"invalid", "Bearer nope"}, {"prefix of a token", "Bearer admin"},
		{"wrong scheme", "Basic admin-tok"}, {"no token", "Bearer "},
	} {
		for _, req := range []struct{ method, path string }{{"GET", "/consensus/status"}, {"POST", "/consensus/snapshot"}} {
			f := healthyFake()
			h := newHandler(t, Config{Tokens: testTokens}, f)
			r := httptest.NewRequest(req.method, req.path, nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			expect(t, rec, 401)
			if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("%s: WWW-Authenticate = %q", tt.name, got)
			}
			if len(f.Calls()) != 0 {
				t.Errorf("%s: cluster called: %v", tt.name, f.Calls())
			}
		}
	}
	// Probes carry no tokens.
	for _, path := range []string{"/consensus/health", "/consensus/health/live", "/consensus/health/ready"} {
		if rec := do(h, "GET", path, "", ""); rec.Code != 200 {
			t.Errorf("GET %s without token = %d", path, rec.Code)
		}
	}
	// The scheme is case-insensitive.
	r := httptest.NewRequest("GET", "/consensus/status", nil)
	r.Header.Set("Authorization", "bearer view-tok")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	expect(t, rec, 200)
}

func TestNoTokens(t *testing.T) {
	for _, path := range []string{"/snapshot", "/add-node"} {
		f := healthyFake()
		h := newHandler(t, Config{}, f)
		m := expect(t, do(h, "POST", "/consensus"+path, `{"node_id":5,"address":"h","port":80}`, ""), 403)
		if !strings.Contains(m["error"].(string), "no tokens") {
			t.Errorf("error = %v", m["error"])
		}
		if len(f.Calls()) != 0 {
			t.Errorf("cluster called: %v", f.Calls())
		}
	}
	expect(t, do(newHandler(t, Config{}, healthyFake()), "GET", "/consensus/status", "", ""), 200)

	f := healthyFake()
	h := newHandler(t, Config{AllowUnauthenticated: true}, f)
	expect(t, do(h, "POST", "/consensus/add-node", `{"node_id":5,"address":"h","port":80}`, ""), 200)
	if calls := f.Mutations(); len(calls) != 1 || calls[0] != "AddNode(5,h,80)" {
		t.Errorf("calls = %v", calls)
	}
}

func TestCrossOriginRefused(t *testing.T) {
	f := healthyFake()
	h := newHandler(t, Config{AllowUnauthenticated: true}, f)
	r := httptest.NewRequest("POST", "/consensus/snapshot", strings.NewReader(`{}`))
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	expect(t, rec, 403)
	if len(f.Calls()) != 0 {
		t.Errorf("cluster called: %v", f.Calls())
	}
}

func TestPrefix(t *testing.T) {
	for _, tt := range []struct{ prefix, path string }{
		{"", "/consensus/status"}, {"/admin/", "/admin/status"}, {"/a/b", "/a/b/status"}, {"/", "/status"},
	} {
		if rec := do(newHandler(t, Config{PathPrefix: tt.prefix}, healthyFake()), "GET", tt.path, "", ""); rec.Code != 200 {
			t.Errorf("prefix %q: GET %s = %d", tt.prefix, tt.path, rec.Code)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		c    Cluster
	}{
		{"no leading slash", Config{PathPrefix: "consensus"}, healthyFake()},
		{"unclean prefix", Config{PathPrefix: "/a/../b"}, healthyFake()},
		{"double slash", Config{PathPrefix: "//"}, healthyFake()},
		{"query in prefix", Config{PathPrefix: "/a?b"}, healthyFake()},
		{"unknown role", Config{Tokens: map[string]Role{"sekrit-value": "root"}}, healthyFake()},
		{"empty token", Config{Tokens: map[string]Role{"": RoleAdmin}}, healthyFake()},
		{"nil cluster", Config{}, nil},
	} {
		h, err := Handler(tt.cfg, tt.c)
		if err == nil || h != nil {
			t.Errorf("%s: Handler = %v, %v; want an error", tt.name, h, err)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit") {
			t.Errorf("%s: error leaks the token: %v", tt.name, err)
		}
	}
}

func TestLogging(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	f := healthyFake()
	f.err = ErrConflict
	h := newHandler(t, Config{Tokens: testTokens, Logger: log}, f)

	do(h, "POST", "/consensus/add-node", `{"node_id":5,"address":"h","port":80}`, "view-tok")
	do(h, "POST", "/consensus/remove-node", `{"node_id":5}`, "admin-tok")
	out := buf.String()
	for _, want := range []string{"request refused", "method=POST", "path=/consensus/add-node", "status=403",
		`reason="role \"viewer\"`, "request failed", "path=/consensus/remove-node", "status=409"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "-tok") {
		t.Errorf("log leaks a token:\n%s", out)
	}
}

// memberFake is a fakeCluster that is also a MemberAdder.
type memberFake struct{ *fakeCluster }

func (f memberFake) AddMember(_ context.Context, m NewMember) error {
	f.record("AddMember(%d,%s,%d,%d,%d,%v)", m.ID, m.Address, m.Port, m.APIPort, m.ClientPort, m.Learner)
	return f.err
}

// TestAddMember: POST /add-node reaches AddMember, with a learner flag and
// ports, on a MemberAdder; a Cluster without it takes plain requests and
// refuses the rest with 501; bad ports are 400 and reach neither.
func TestAddMember(t *testing.T) {
	f := memberFake{healthyFake()}
	h := newHandler(t, Config{Tokens: testTokens}, f)
	body := expect(t, do(h, "POST", "/consensus/add-node",
		`{"node_id":4,"address":"h","port":7002,"api_port":7102,"client_port":7202,"learner":true}`, "admin-tok"), 200)
	if body["learner"] != true {
		t.Fatalf("answer %v lacks learner", body)
	}
	expect(t, do(h, "POST", "/consensus/add-node", `{"node_id":4,"address":"h","port":7002}`, "admin-tok"), 200)
	want := []string{"AddMember(4,h,7002,7102,7202,true)", "AddMember(4,h,7002,0,0,false)"}
	if got := f.Mutations(); !slicesEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	for _, b := range []string{`{"node_id":4,"address":"h","port":1,"api_port":70000}`,
		`{"node_id":4,"address":"h","port":1,"client_port":-1}`, `{"node_id":4,"address":"h","port":1,"learner":1}`} {
		expect(t, do(h, "POST", "/consensus/add-node", b, "admin-tok"), 400)
	}
	if got := f.Mutations(); len(got) != 2 {
		t.Fatalf("invalid requests reached the cluster: %v", got)
	}

	plain := healthyFake()
	h = newHandler(t, Config{Tokens: testTokens}, plain)
	expect(t, do(h, "POST", "/consensus/add-node", `{"node_id":4,"address":"h","port":7002,"learner":true}`, "admin-tok"), 501)
	expect(t, do(h, "POST", "/consensus/add-node", `{"node_id":4,"address":"h","port":7002,"api_port":9}`, "admin-tok"), 501)
	expect(t, do(h, "POST", "/consensus/add-node", `{"node_id":4,"address":"h","port":7002}`, "admin-tok"), 200)
	if got := plain.Mutations(); !slicesEqual(got, []string{"AddNode(4,h,7002)"}) {
		t.Fatalf("calls %v", got)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
