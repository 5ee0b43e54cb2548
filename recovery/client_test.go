package recovery

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/admin"
)

const testToken = "t0k3n"

// fakeAdmin is one member's admin API: it answers GET /status with info
// to requests that carry the token, and records the Host and whether
// the token came with every request.
type fakeAdmin struct {
	srv  *httptest.Server
	mu   sync.Mutex
	info admin.ClusterInfo
	reqs []fakeReq
	// onRequest, if set, is called with the number of requests so far
	// before each answer.
	onRequest func(n int)
}

type fakeReq struct {
	host  string
	token bool
}

func newFakeAdmin(t *testing.T, info admin.ClusterInfo) *fakeAdmin {
	f := &fakeAdmin{info: info}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		tok := r.Header.Get("Authorization") == "Bearer "+testToken
		f.reqs = append(f.reqs, fakeReq{host: r.Host, token: tok})
		if f.onRequest != nil {
			f.onRequest(len(f.reqs))
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path != "/status":
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "no such route"})
		case !tok:
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": "missing bearer token"})
		default:
			json.NewEncoder(w).Encode(f.info)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAdmin) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

// port is the fake's port.
func (f *fakeAdmin) port(t *testing.T) string {
	u, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestLeaderByNamedEndpoint: a follower's status names the leader at
// another spelling of its address (localhost for 127.0.0.1, as that
// member's own configuration writes it). The leader is a named member:
// it is asked at the endpoint named for it, always with the token, and
// never at the spelling the follower used.
func TestLeaderByNamedEndpoint(t *testing.T) {
	lead := newFakeAdmin(t, admin.ClusterInfo{NodeID: 3, Leader: 3, Role: "leader", Term: 2, CommitIndex: 7})
	follower := newFakeAdmin(t, admin.ClusterInfo{NodeID: 1, Leader: 3, Role: "follower",
		LeaderAddress: "http://localhost:" + lead.port(t)})
	c, err := newAdminClient(http.DefaultClient,
		[]endpoint{{url: follower.srv.URL, id: 1}, {url: lead.srv.URL, id: 3}}, "", testToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.leader(ctx, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if v.base != lead.srv.URL || v.info.NodeID != 3 {
		t.Fatalf("leader view at %s, node %d; want %s, node 3", v.base, v.info.NodeID, lead.srv.URL)
	}
	want := strings.TrimPrefix(lead.srv.URL, "http://")
	for _, r := range lead.requests() {
		if r.host != want || !r.token {
			t.Errorf("the leader was asked at %s (token: %v); want only %s, with the token", r.host, r.token, want)
		}
	}
}

// TestLeaderByItsOwnAnswer: with endpoints given without IDs
// (-endpoints), a member's ID is learnt from its own answer, and a
// follower that names it at another spelling leads there.
func TestLeaderByItsOwnAnswer(t *testing.T) {
	lead := newFakeAdmin(t, admin.ClusterInfo{NodeID: 3, Leader: 0, Role: "follower"})
	follower := newFakeAdmin(t, admin.ClusterInfo{NodeID: 1, Leader: 3, Role: "follower",
		LeaderAddress: "http://localhost:" + lead.port(t)})
	c, err := newAdminClient(http.DefaultClient, []endpoint{{url: lead.srv.URL}, {url: follower.srv.URL}}, "", testToken)
	if err != nil {
		t.Fatal(err)
	}
	// First rounds: node 3 does not know it leads yet; node 1 names it.
	// They end when node 3 is asked the third time: in the second round.
	ctx, cancel := context.WithCancel(context.Background())
	lead.mu.Lock()
	lead.onRequest = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	lead.mu.Unlock()
	_, err = c.leader(ctx, 10*time.Millisecond)
	cancel()
	lead.mu.Lock()
	lead.onRequest = nil
	lead.mu.Unlock()
	if err == nil {
		t.Fatal("a leader found while none answered as the leader")
	}
	if c.named[3] != lead.srv.URL || c.named[1] != follower.srv.URL {
		t.Fatalf("named endpoints %v, want node 3 at %s and node 1 at %s", c.named, lead.srv.URL, follower.srv.URL)
	}
	lead.mu.Lock()
	lead.info = admin.ClusterInfo{NodeID: 3, Leader: 3, Role: "leader"}
	lead.mu.Unlock()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v, err := c.leader(ctx, 10*time.Millisecond); err != nil || v.base != lead.srv.URL {
		t.Fatalf("leader at %q, %v; want %s", v.base, err, lead.srv.URL)
	}
	for _, r := range lead.requests() {
		if !r.token {
			t.Errorf("node 3 was asked at %s without the token", r.host)
		}
	}
}

// TestLeaderOutsideEndpoints: a leader that is not among the endpoints is
// asked at the address a follower names, without the token; its 401 is
// reported as such, and no leader is found.
func TestLeaderOutsideEndpoints(t *testing.T) {
	outsider := newFakeAdmin(t, admin.ClusterInfo{NodeID: 5, Leader: 5, Role: "leader"})
	follower := newFakeAdmin(t, admin.ClusterInfo{NodeID: 1, Leader: 5, Role: "follower",
		LeaderAddress: outsider.srv.URL})
	c, err := newAdminClient(http.DefaultClient, []endpoint{{url: follower.srv.URL, id: 1}}, "", testToken)
	if err != nil {
		t.Fatal(err)
	}
	// Looking ends in the second round, when node 5 is asked again: the
	// error reports the first, complete one.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outsider.mu.Lock()
	outsider.onRequest = func(n int) {
		if n == 2 {
			cancel()
		}
	}
	outsider.mu.Unlock()
	_, err = c.leader(ctx, 10*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "node 1 names node 5 as the leader at "+outsider.srv.URL+
		", not one of the endpoints") || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("error %v; want no leader, naming node 5's address and the 401", err)
	}
	reqs := outsider.requests()
	if len(reqs) == 0 {
		t.Fatal("the leader the follower named was never asked")
	}
	for _, r := range reqs {
		if r.token {
			t.Fatalf("the token was sent to %s, which is not an endpoint", r.host)
		}
	}
}

// TestHostKey: the spellings of one listener that a URL allows share a
// key; another host or port does not.
func TestHostKey(t *testing.T) {
	key := func(s string) string {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return hostKey(u)
	}
	same := [][2]string{
		{"http://Node-1.Example:80", "http://node-1.example"},
		{"http://node-1.example.:7101", "http://node-1.example:7101/"},
		{"https://[::1]", "https://[::1]:443"},
	}
	for _, p := range same {
		if key(p[0]) != key(p[1]) {
			t.Errorf("%s and %s: keys %s and %s differ", p[0], p[1], key(p[0]), key(p[1]))
		}
	}
	differ := [][2]string{
		{"http://127.0.0.1:7101", "http://127.0.0.1:7102"},
		{"http://127.0.0.1:7101", "http://localhost:7101"},
		{"http://host", "https://host"},
	}
	for _, p := range differ {
		if key(p[0]) == key(p[1]) {
			t.Errorf("%s and %s share the key %s", p[0], p[1], key(p[0]))
		}
	}
}
