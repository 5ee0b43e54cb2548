package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/forge-consensus/consensus/admin"
)

// joinCluster is an admin.MemberAdder and admin.Promoter whose node 4 is a
// learner until promoted: by the leader after polls Info calls (-1: never),
// or by PromoteMember.
type joinCluster struct {
	*fakeCluster
	mu       sync.Mutex
	member   bool
	manual   bool
	voter    bool
	polls    int
	promoteA int
	uris     []string
}

func (j *joinCluster) AddMember(_ context.Context, m admin.NewMember) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.member, j.manual = true, m.Learner
	return j.record("AddMember(%d,%s,%d,%v)", m.ID, m.Address, m.Port, m.Learner)
}

func (j *joinCluster) PromoteMember(_ context.Context, id uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.promoteA < 0 || j.polls < j.promoteA {
		return fmt.Errorf("%w: node %d: 500 entries behind", admin.ErrNotCaughtUp, id)
	}
	j.voter = true
	return j.record("PromoteMember(%d)", id)
}

func (j *joinCluster) Info(ctx context.Context) admin.ClusterInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	info := j.fakeCluster.Info(ctx)
	if !j.member {
		return info
	}
	j.polls++
	if !j.manual && j.promoteA >= 0 && j.polls >= j.promoteA {
		j.voter = true
	}
	n := admin.NodeStatus{ID: 4, Role: "learner", Promotion: "pending: 500 entries behind"}
	if j.manual {
		n.Promotion = "manual: added as a learner"
	}
	if j.voter {
		n = admin.NodeStatus{ID: 4, Role: "follower", Voter: true}
	}
	info.Nodes = append(append([]admin.NodeStatus(nil), info.Nodes...), n)
	return info
}

func startJoinCluster(t *testing.T, j *joinCluster) string {
	t.Helper()
	h, err := admin.Handler(admin.Config{Tokens: map[string]admin.Role{token: admin.RoleAdmin}}, j)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		j.uris = append(j.uris, r.URL.RequestURI())
		j.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestAddNodeStages: add-node says the node joined as a learner; --wait
// waits for its promotion (?wait=voter&timeout=D) and says voter, or fails
// saying why; --learner keeps it one, and promote promotes it.
func TestAddNodeStages(t *testing.T) {
	j := &joinCluster{fakeCluster: healthyCluster(), promoteA: -1}
	url := startJoinCluster(t, j)
	r := ctl(t, url, "add-node", "node-4", "10.0.0.4", "7004")
	wantCode(t, r, 0)
	if want := "node node-4 added at 10.0.0.4:7004: a learner, promoted to voter once it has caught up (--wait waits for that)\npending: 500 entries behind\n"; r.stdout != want {
		t.Errorf("add-node: %q, want %q", r.stdout, want)
	}
	r = ctl(t, url, "add-node", "node-4", "10.0.0.4", "7004", "--wait", "--wait-timeout", "150ms")
	wantCode(t, r, 1)
	if want := "consensusctl: add-node: node node-4 is still a learner after 150ms: pending: 500 entries behind\n"; r.stderr != want {
		t.Errorf("add-node --wait that times out: %q, want %q", r.stderr, want)
	}
	if last := j.uris[len(j.uris)-1]; last != "/consensus/add-node?timeout=150ms&wait=voter" {
		t.Errorf("add-node --wait asked %s", last)
	}

	j = &joinCluster{fakeCluster: healthyCluster(), promoteA: 3}
	url = startJoinCluster(t, j)
	r = ctl(t, url, "--timeout", "100ms", "add-node", "--wait", "4", "10.0.0.4", "7004")
	wantCode(t, r, 0) // the wait is not cut by the request timeout
	if want := "node 4 added at 10.0.0.4:7004: a voter\n"; r.stdout != want {
		t.Errorf("add-node --wait: %q, want %q", r.stdout, want)
	}
	r = ctl(t, url, "-o", "json", "promote", "4")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"stage": "voter"`) {
		t.Errorf("promote -o json: %s", r.stdout)
	}

	j = &joinCluster{fakeCluster: healthyCluster(), promoteA: 5}
	url = startJoinCluster(t, j)
	r = ctl(t, url, "add-node", "4", "10.0.0.4", "7004", "--learner")
	wantCode(t, r, 0)
	if want := "node 4 added at 10.0.0.4:7004: a learner until promoted (consensusctl promote 4)\n"; r.stdout != want {
		t.Errorf("add-node --learner: %q, want %q", r.stdout, want)
	}
	r = ctl(t, url, "promote", "4")
	wantCode(t, r, 1)
	if want := "consensusctl: promote: admin: learner not caught up: node 4: 500 entries behind\n"; r.stderr != want {
		t.Errorf("promote a learner behind: %q, want %q", r.stderr, want)
	}
	r = ctl(t, url, "promote", "4", "--wait")
	wantCode(t, r, 0)
	if want := "node 4: a voter\n"; r.stdout != want {
		t.Errorf("promote --wait: %q, want %q", r.stdout, want)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add-node", "4", "a b/c", "7004"}, `invalid host "a b/c"`},
		{[]string{"add-node", "4", "10.0.0.4:7004", "7004"}, "host:port"},
		{[]string{"add-node", "4", "h", "7004", "--learner", "--wait"}, "--wait waits for a promotion"},
		{[]string{"add-node", "4", "h", "7004", "--wait", "--wait-timeout", "11m"}, "--wait-timeout 11m0s"},
		{[]string{"promote"}, "want 1 argument"},
		{[]string{"promote", "18446744073709551615"}, "2^63-1"},
	} {
		r := ctl(t, url, tc.args...)
		wantCode(t, r, 2)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
}
