package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// nodeStatus returns member id as s sees it.
func nodeStatus(ctx context.Context, s *server.Server, id uint64) (admin.NodeStatus, bool) {
	for _, n := range s.Info(ctx).Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return admin.NodeStatus{}, false
}

// TestAddNodeIsLearnerFirst (issue 13 §3 probe): add-node makes the new
// node a learner, never a voter at once, and says so; a learner that is
// not running is not promoted, and a wait for its promotion times out
// saying why; a new leader carries on with the promotion, once the node
// runs and has caught up; add-node ?wait=voter returns once promoted; a
// learner added with "learner": true stays one until POST /promote.
func TestAddNodeIsLearnerFirst(t *testing.T) {
	srvs, lead := servertest.StartClusterWith(t, 3, "memory", "grpc", tokensYAML)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ports := servertest.FreePorts(t, 2)

	// Node 4 joins as a learner; it is not running yet.
	body := fmt.Sprintf(`{"node_id": "node-4", "address": "127.0.0.1", "port": %d}`, ports[0])
	code, resp := post(t, lead, "/add-node", "admin-secret", body)
	if code != http.StatusOK || !strings.Contains(resp, `"stage":"learner"`) {
		t.Fatalf("add-node: %d %s; want 200 with stage learner", code, resp)
	}
	if n, ok := nodeStatus(ctx, lead, 4); !ok || n.Voter || n.Role != "learner" || !strings.HasPrefix(n.Promotion, "pending: ") {
		t.Fatalf("node 4 right after add-node: %+v (found %v); want a learner pending promotion", n, ok)
	}
	if h := lead.Health(ctx); !h.Healthy {
		t.Fatalf("a learner that does not run hurts the cluster's health: %+v", h)
	}

	// Not running, it is not caught up: promote refuses, a wait times out
	// saying why.
	code, resp = post(t, lead, "/promote", "admin-secret", `{"node_id": 4}`)
	if code != http.StatusConflict || !strings.Contains(resp, "not caught up") {
		t.Fatalf("promote a learner that does not run: %d %s; want 409 not caught up", code, resp)
	}
	code, resp = post(t, lead, "/promote?wait=voter&timeout=300ms", "admin-secret", `{"node_id": 4}`)
	if code != http.StatusGatewayTimeout || !strings.Contains(resp, "still a learner after 300ms") {
		t.Fatalf("promote with a wait that times out: %d %s; want 504 still a learner", code, resp)
	}
	if n, _ := nodeStatus(ctx, lead, 4); n.Voter {
		t.Fatal("a learner that never ran was promoted")
	}

	// Leadership moves; the new leader promotes node 4 once it runs.
	var next *server.Server
	for _, s := range srvs {
		if s != lead {
			next = s
			break
		}
	}
	if err := lead.TransferLeadership(ctx, next.Runner().ID()); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	joiner := startJoiner(t, lead.Config().Peers, "node-4", ports[0])
	eventually(t, "the new leader promotes node 4", func() bool {
		n, _ := nodeStatus(ctx, next, 4)
		return n.Voter && n.Promotion == ""
	})
	for _, s := range append(srvs, joiner) {
		eventually(t, "every node sees node 4 as a voter", func() bool {
			n, _ := nodeStatus(ctx, s, 4)
			return n.Voter
		})
	}

	// Node 5 is added as a learner to stay one; node 6 joins learner-first
	// while add-node waits for its promotion.
	ports = append(ports, servertest.FreePorts(t, 1)...)
	body5 := fmt.Sprintf(`{"node_id": 5, "address": "127.0.0.1", "port": %d, "learner": true}`, ports[1])
	if code, resp := post(t, next, "/add-node", "admin-secret", body5); code != http.StatusOK || !strings.Contains(resp, `"stage":"learner"`) {
		t.Fatalf("add-node 5 as a learner: %d %s", code, resp)
	}
	peers := append(lead.Config().Peers, server.PeerConfig{ID: "node-4", Address: "127.0.0.1", Port: ports[0]})
	five := startJoiner(t, peers, "5", ports[1])
	eventually(t, "node 5 catches up", func() bool {
		return five.Runner().Status().Applied >= next.Runner().Status().Commit
	})
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	body6 := fmt.Sprintf(`{"node_id": 6, "address": "127.0.0.1", "port": %d}`, ports[2])
	go func() {
		code, resp := post(t, next, "/add-node?wait=voter&timeout=30s", "admin-secret", body6)
		done <- answer{code, resp}
	}()
	eventually(t, "node 6 is a learner", func() bool { _, ok := nodeStatus(ctx, next, 6); return ok })
	startJoiner(t, peers, "6", ports[2])
	a := <-done
	if a.code != http.StatusOK || !strings.Contains(a.body, `"stage":"voter"`) {
		t.Fatalf("add-node 6 waiting for its promotion: %d %s", a.code, a.body)
	}
	// Node 5 caught up before node 6 and sorts first, yet stays a learner.
	if n, _ := nodeStatus(ctx, next, 5); n.Voter || !strings.HasPrefix(n.Promotion, "manual: ") {
		t.Fatalf("node 5, added to stay a learner: %+v", n)
	}
	code, resp = post(t, next, "/promote?wait=voter&timeout=30s", "admin-secret", `{"node_id": 5}`)
	if code != http.StatusOK || !strings.Contains(resp, `"stage":"voter"`) {
		t.Fatalf("promote node 5: %d %s", code, resp)
	}
	if n, _ := nodeStatus(ctx, next, 5); !n.Voter {
		t.Fatalf("node 5 after promote: %+v", n)
	}
}
