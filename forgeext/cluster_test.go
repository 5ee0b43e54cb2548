package forgeext_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/server"
)

// withTokens configures the admin API's tokens.
func withTokens(c *forgeext.Config) error {
	c.Security.Tokens = []server.TokenConfig{
		{Token: "viewer-token", Role: "viewer"},
		{Token: "operator-token", Role: "operator"},
		{Token: "admin-token", Role: "admin"},
	}
	return nil
}

// call sends a request to an app's router and returns the status and body.
func call(t *testing.T, srv *httptest.Server, method, path, token, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// poll waits until cond holds (at most 15 s).
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a cluster that converges on its own
	}
}

func TestAdminAPIOnTheAppRouter(t *testing.T) {
	nodes, svcs := cluster(t, 3, withTokens)
	l := leader(t, svcs)
	http0 := make([]*httptest.Server, len(nodes))
	for i, n := range nodes {
		http0[i] = httptest.NewServer(n.app.Router())
		t.Cleanup(http0[i].Close)
	}
	lead, follower := http0[l], http0[(l+1)%3]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Reads need a viewer token; health probes need none.
	if code, _, _ := call(t, lead, "GET", "/consensus/status", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("status without a token: %d", code)
	}
	code, body, _ := call(t, lead, "GET", "/consensus/status", "viewer-token", "")
	var info forgeext.ClusterStatus
	if code != http.StatusOK || json.Unmarshal([]byte(body), &info) != nil || info.Leader != uint64(l+1) || info.TotalNodes != 3 || !info.HasQuorum {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body, _ := call(t, follower, "GET", "/consensus/health", "", ""); code != http.StatusOK || !strings.Contains(body, `"healthy":true`) {
		t.Fatalf("health on a follower: %d %s", code, body)
	}
	if code, body, _ := call(t, lead, "GET", "/consensus/leader", "viewer-token", ""); code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"leader_id":%d`, l+1)) {
		t.Fatalf("leader: %d %s", code, body)
	}

	// Roles: an operator snapshots and transfers, but does not change
	// membership; bad requests change nothing.
	if code, _, _ := call(t, lead, "POST", "/consensus/remove-node", "operator-token", `{"node_id": 2}`); code != http.StatusForbidden {
		t.Fatalf("remove-node as operator: %d", code)
	}
	if code, _, _ := call(t, lead, "POST", "/consensus/remove-node", "admin-token", `{"node_id": 9}`); code != http.StatusNotFound {
		t.Fatalf("remove an unknown node: %d", code)
	}
	if code, _, _ := call(t, lead, "POST", "/consensus/transfer-leadership", "admin-token", `{"target": 2}`); code != http.StatusBadRequest {
		t.Fatalf("transfer with a wrong field: %d", code)
	}
	if code, body, _ := call(t, follower, "POST", "/consensus/snapshot", "operator-token", ""); code != http.StatusOK || !strings.Contains(body, `"index"`) {
		t.Fatalf("snapshot on a follower: %d %s", code, body)
	}
	before := svcs[l].GetTerm()

	// Transfer leadership through the API; the old leader then answers
	// mutating requests with the new leader's address.
	target := (l+1)%3 + 1
	if code, body, _ := call(t, lead, "POST", "/consensus/transfer-leadership", "operator-token",
		fmt.Sprintf(`{"target_node_id": "node-%d"}`, target)); code != http.StatusOK {
		t.Fatalf("transfer: %d %s", code, body)
	}
	poll(t, "every node follows the new leader", func() bool {
		for _, s := range svcs {
			if s.LeaderID() != uint64(target) {
				return false
			}
		}
		return true
	})
	if svcs[target-1].GetTerm() <= before {
		t.Fatalf("term did not advance with the transfer")
	}
	code, body, _ = call(t, lead, "POST", "/consensus/remove-node", "admin-token", `{"node_id": 1}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, fmt.Sprintf(`"leader_id":%d`, target)) {
		t.Fatalf("remove-node on the old leader: %d %s", code, body)
	}

	// Metrics through the app's router count what the service did.
	if _, err := svcs[target-1].ApplyResult(ctx, set("m", "1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		node int
		want string
	}{
		{target, fmt.Sprintf(`forge_consensus_is_leader{node_id="%d"} 1`, target)},
		{target, fmt.Sprintf(`forge_consensus_operations_total{node_id="%d",op="apply"} 1`, target)},
		{l + 1, fmt.Sprintf(`forge_consensus_operations_total{node_id="%d",op="transfer_leadership"} 1`, l+1)},
		{l + 1, fmt.Sprintf(`forge_consensus_operations_failed_total{node_id="%d",op="remove_node"} 2`, l+1)},
	} {
		code, body, _ := call(t, http0[c.node-1], "GET", "/consensus/metrics", "viewer-token", "")
		if code != http.StatusOK || !strings.Contains(body, c.want) {
			t.Errorf("node %d's metrics (status %d) lack %q", c.node, code, c.want)
		}
	}
}

func TestHealthFollowsQuorum(t *testing.T) {
	nodes, svcs := cluster(t, 3)
	l := leader(t, svcs)
	ctx := context.Background()
	if err := svcs[l].HealthCheck(ctx); err != nil {
		t.Fatalf("health of a full cluster: %v", err)
	}
	for i, n := range nodes {
		if i != l {
			n.stop(t)
		}
	}
	poll(t, "the leader turns unhealthy without its followers", func() bool {
		return svcs[l].HealthCheck(ctx) != nil
	})
	if h := svcs[l].GetHealthStatus(ctx); h.Status != "unhealthy" || h.HasQuorum {
		t.Fatalf("health without followers: %+v", h)
	}
	ext, err := nodes[l].app.GetExtension("consensus")
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Health(ctx); err == nil {
		t.Fatal("the extension's Forge health check passes without a quorum")
	}
	// The followers come back on the same data: healthy again.
	for i, n := range nodes {
		if i != l {
			n.start(t)
		}
	}
	poll(t, "the cluster is healthy again", func() bool {
		for _, n := range nodes {
			if n.svc.HealthCheck(ctx) != nil {
				return false
			}
		}
		return true
	})
	if err := ext.Health(ctx); err != nil {
		t.Fatalf("the extension's Forge health check after recovery: %v", err)
	}
	if _, err := nodes[0].svc.Read(ctx, "nothing"); !errors.Is(err, forgeext.ErrKeyNotFound) {
		t.Fatalf("read after recovery: %v", err)
	}
}
