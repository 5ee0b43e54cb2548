package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/runner"
)

type mesh struct {
	mu sync.RWMutex
	rs map[uint64]*runner.Runner
}

func (m *mesh) Send(msgs []core.Message) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, msg := range msgs {
		if r := m.rs[msg.To]; r != nil {
			r.Deliver(msg)
		}
	}
}

// apiCluster starts three in-memory nodes and an HTTP server per node.
func apiCluster(t *testing.T, followerWrites string) (map[uint64]*runner.Runner, map[uint64]*httptest.Server) {
	t.Helper()
	m := &mesh{rs: map[uint64]*runner.Runner{}}
	srvs := map[uint64]*httptest.Server{}
	for _, id := range []uint64{1, 2, 3} {
		r, err := runner.Start(runner.Config{
			Node: node.Config{
				Core:    core.Config{ID: id, Voters: []uint64{1, 2, 3}, Seed: id, PreVote: true, CheckQuorum: true},
				Storage: node.NewMemoryStorage(), Transport: m, StateMachine: kv.New(kv.Config{}),
			},
			TickInterval: 5 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		m.mu.Lock()
		m.rs[id] = r
		m.mu.Unlock()
	}
	for id, r := range m.rs {
		api := &API{Node: r, FollowerWrites: followerWrites, Timeout: 2 * time.Second,
			LeaderAPI: func(l uint64) string {
				if s := srvs[l]; s != nil {
					return s.URL
				}
				return ""
			}}
		srvs[id] = httptest.NewServer(api)
		t.Cleanup(srvs[id].Close)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, r := range m.rs {
			if r.Status().Role == core.Leader {
				return m.rs, srvs
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func do(t *testing.T, method, url, body string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func leaderFollower(rs map[uint64]*runner.Runner) (l, f uint64) {
	for id, r := range rs {
		if r.Status().Role == core.Leader {
			l = id
		} else {
			f = id
		}
	}
	return l, f
}

// TestAPIForward: writes on a follower are forwarded; reads at every
// level on every node see acknowledged writes (linearizable on any node).
func TestAPIForward(t *testing.T) {
	rs, srvs := apiCluster(t, "forward")
	_, f := leaderFollower(rs)
	if code, body, _ := do(t, "PUT", srvs[f].URL+"/kv/greeting", "hello", nil); code != 200 {
		t.Fatalf("PUT on follower: %d %s", code, body)
	}
	for id, s := range srvs {
		code, body, h := do(t, "GET", s.URL+"/kv/greeting", "", nil)
		if code != 200 || body != "hello" {
			t.Fatalf("GET on %d: %d %q", id, code, body)
		}
		if h.Get("X-Consensus-Leader") == "" || h.Get("X-Consensus-Term") == "" {
			t.Fatal("leader headers missing")
		}
	}
	if code, _, _ := do(t, "GET", srvs[f].URL+"/kv/missing", "", nil); code != 404 {
		t.Fatalf("GET missing: %d", code)
	}
	if code, body, _ := do(t, "GET", srvs[f].URL+"/kv/greeting?consistency=stale", "", nil); code != 200 && code != 404 {
		t.Fatalf("stale GET: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", srvs[f].URL+"/kv/greeting?consistency=bogus", "", nil); code != 400 {
		t.Fatalf("bad consistency: %d", code)
	}
	if code, _, _ := do(t, "GET", srvs[f].URL+"/kv/greeting?consistency=lease", "", nil); code != 503 && code != 307 {
		t.Fatalf("lease read with lease reads off: %d", code)
	}
	if code, body, _ := do(t, "DELETE", srvs[f].URL+"/kv/greeting", "", nil); code != 200 || !strings.Contains(body, "true") {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, _, _ := do(t, "GET", srvs[f].URL+"/kv/greeting", "", nil); code != 404 {
		t.Fatalf("GET after delete: %d", code)
	}
	if code, _, _ := do(t, "POST", srvs[f].URL+"/kv/greeting", "", nil); code != 405 {
		t.Fatalf("POST: %d", code)
	}
}

// TestAPIRedirect: with redirect, a follower answers writes with 307 to
// the leader's API, and the leader takes them.
func TestAPIRedirect(t *testing.T) {
	rs, srvs := apiCluster(t, "redirect")
	l, f := leaderFollower(rs)
	code, _, h := do(t, "PUT", srvs[f].URL+"/kv/k", "v", nil)
	if code != 307 || h.Get("Location") != srvs[l].URL+"/kv/k" {
		t.Fatalf("follower PUT: %d %q", code, h.Get("Location"))
	}
	if code, body, _ := do(t, "PUT", h.Get("Location"), "v", nil); code != 200 {
		t.Fatalf("PUT at the leader: %d %s", code, body)
	}
}

// TestAPISessions: a retried write with the same client ID and sequence
// number is applied once; bad session headers are refused.
func TestAPISessions(t *testing.T) {
	rs, srvs := apiCluster(t, "forward")
	l, _ := leaderFollower(rs)
	hdr := map[string]string{"X-Client-ID": "9", "X-Request-Seq": "1"}
	if code, body, _ := do(t, "PUT", srvs[l].URL+"/kv/a", "1", hdr); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body, _ := do(t, "PUT", srvs[l].URL+"/kv/a", "other", nil); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	// The retry answers from the session and does not write "1" again.
	if code, body, _ := do(t, "PUT", srvs[l].URL+"/kv/a", "1", hdr); code != 200 {
		t.Fatalf("retried PUT: %d %s", code, body)
	}
	if code, body, _ := do(t, "GET", srvs[l].URL+"/kv/a", "", nil); code != 200 || body != "other" {
		t.Fatalf("after the retry: %d %q, want other", code, body)
	}
	if code, _, _ := do(t, "PUT", srvs[l].URL+"/kv/a", "2", map[string]string{"X-Client-ID": "x"}); code != 400 {
		t.Fatalf("bad session header: %d", code)
	}
}
