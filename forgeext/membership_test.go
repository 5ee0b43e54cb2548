package forgeext_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xraph/forge"

	"github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

func TestAddAndRemoveAForgeAppThroughTheAdminAPI(t *testing.T) {
	nodes, svcs := cluster(t, 3, withTokens)
	l := leader(t, svcs)
	lead := httptest.NewServer(nodes[l].app.Router())
	defer lead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A fourth app, started in join mode, knowing the cluster's peers.
	ports := servertest.FreePorts(t, 3)
	peers := append(svcs[0].Config().Peers, server.PeerConfig{ID: "node-4", Address: "127.0.0.1", Port: ports[0],
		APIPort: ports[1], ClientPort: ports[2]})
	joiner := &testNode{id: 4, opts: []forgeext.Option{
		forgeext.WithNodeID("node-4"),
		forgeext.WithBindAddress("127.0.0.1", ports[0]),
		forgeext.WithStoragePath(t.TempDir()),
		func(c *forgeext.Config) error {
			c.Peers, c.Join, c.ClusterID = peers, true, "test" // the cluster_id of newNodes
			c.API.Addr, c.API.ClientAddr = addr(ports[1]), addr(ports[2])
			c.Raft.HeartbeatInterval, c.Raft.ElectionTimeoutMin = 20*time.Millisecond, 200*time.Millisecond
			return nil
		},
		withTokens,
	}}
	body := fmt.Sprintf(`{"node_id": "node-4", "address": "127.0.0.1", "port": %d}`, ports[0])
	if code, resp, _ := call(t, lead, "POST", "/consensus/add-node", "admin-token", body); code != http.StatusOK {
		t.Fatalf("add-node: %d %s", code, resp)
	}
	// It joins as a learner, not running yet: a wait for its promotion
	// times out saying so.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	err := svcs[l].WaitForVoter(short, "node-4")
	cancelShort()
	if !errors.Is(err, forgeext.ErrTimeout) || !strings.Contains(err.Error(), "is a learner: pending") {
		t.Fatalf("wait for a learner that does not run: %v", err)
	}
	joiner.start(t)
	t.Cleanup(func() { joiner.stop(t) })
	if err := svcs[l].WaitForVoter(ctx, "node-4"); err != nil {
		t.Fatalf("wait for node 4's promotion: %v", err)
	}
	if _, err := svcs[l].ApplyResult(ctx, set("joined", "yes")); err != nil {
		t.Fatal(err)
	}
	poll(t, "the fourth app serves the cluster's data", func() bool {
		v, err := joiner.svc.Read(ctx, "joined")
		return err == nil && string(v) == "yes"
	})
	info := svcs[l].GetClusterInfo()
	if info.TotalNodes != 4 || !slices.Contains(info.Nodes, "node-4") || info.Leader != svcs[l].NodeName() {
		t.Fatalf("cluster info after the join: %+v", info)
	}

	// Demoted to a learner, it says so.
	if err := svcs[l].AddLearner(ctx, "node-4", "127.0.0.1", ports[0]); err != nil {
		t.Fatalf("demote node 4: %v", err)
	}
	poll(t, "node 4 reports the learner role", func() bool { return joiner.svc.GetRole() == "learner" })
	if err := svcs[l].TransferLeadership(ctx, "node-4"); !errors.Is(err, forgeext.ErrConflict) {
		t.Fatalf("transfer to a learner: %v", err)
	}
	// Promoted on request, it votes again.
	if err := svcs[l].PromoteNode(ctx, "node-4"); err != nil {
		t.Fatalf("promote node 4: %v", err)
	}
	poll(t, "node 4 is a voter again", func() bool { return joiner.svc.GetRole() == "follower" })

	// Remove it again; the cluster carries on with three.
	if code, resp, _ := call(t, lead, "POST", "/consensus/remove-node", "admin-token", `{"node_id": "node-4"}`); code != http.StatusOK {
		t.Fatalf("remove-node: %d %s", code, resp)
	}
	if info := svcs[l].GetClusterInfo(); info.TotalNodes != 3 {
		t.Fatalf("cluster info after the removal: %d nodes", info.TotalNodes)
	}
	if _, err := svcs[l].ApplyResult(ctx, set("after", "removal")); err != nil {
		t.Fatalf("write after the removal: %v", err)
	}

	// StepDown hands leadership to another voter.
	if err := svcs[l].StepDown(ctx); err != nil {
		t.Fatalf("step down: %v", err)
	}
	if svcs[l].IsLeader() {
		t.Fatal("still leader after stepping down")
	}
}

func TestMiddlewareOnARunningCluster(t *testing.T) {
	nodes := newNodes(t, 3)
	var routers []*httptest.Server
	for _, n := range nodes {
		n.start(t)
		t.Cleanup(func() { n.stop(t) })
	}
	svcs := []*forgeext.Service{nodes[0].svc, nodes[1].svc, nodes[2].svc}
	l := leader(t, svcs)
	for _, n := range nodes {
		r := n.app.Router()
		r.Use(n.svc.AddLeaderHeader())
		api := r.Group("/api", forge.WithGroupMiddleware(n.svc.ReadOnlyRouting()))
		_ = api.GET("/x", func(c forge.Context) error { return c.String(http.StatusOK, "read") },
			forge.WithMiddleware(n.svc.ConsistencyMiddleware(forgeext.Linearizable)))
		_ = api.POST("/x", func(c forge.Context) error { return c.String(http.StatusOK, "written") })
		routers = append(routers, httptest.NewServer(r))
	}
	defer func() {
		for _, s := range routers {
			s.Close()
		}
	}()
	f := (l + 1) % 3
	code, body, h := call(t, routers[f], "GET", "/api/x", "", "")
	if code != http.StatusOK || body != "read" || h.Get("X-Consensus-Leader") != fmt.Sprint(l+1) || h.Get("X-Consensus-Role") != "follower" {
		t.Fatalf("read on a follower: %d %q, headers %v", code, body, h)
	}
	code, _, h = call(t, routers[f], "POST", "/api/x?y=1", "", "")
	if code != http.StatusTemporaryRedirect || !strings.HasPrefix(h.Get("Location"), svcs[f].LeaderURL()) ||
		!strings.HasSuffix(h.Get("Location"), "/api/x?y=1") {
		t.Fatalf("write on a follower: %d, Location %q (leader %q)", code, h.Get("Location"), svcs[f].LeaderURL())
	}
	code, body, h = call(t, routers[l], "POST", "/api/x", "", "")
	if code != http.StatusOK || body != "written" || h.Get("X-Consensus-Role") != "leader" || h.Get("X-Consensus-Term") == "" {
		t.Fatalf("write on the leader: %d %q, headers %v", code, body, h)
	}
}

func TestRedirectsNameTheLeadersApp(t *testing.T) {
	urls := map[string]string{"1": "http://app1.example:8080", "node-2": "http://app2.example:8080", "3": "https://app3.example"}
	nodes, svcs := cluster(t, 3, forgeext.WithAppURLs(urls))
	l := leader(t, svcs)
	f := (l + 1) % 3
	want := []string{urls["1"], urls["node-2"], urls["3"]}[l]
	if got := svcs[f].LeaderURL(); got != want {
		t.Fatalf("follower's LeaderURL = %q, want the leader's app %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := svcs[f].ApplyResult(ctx, set("k", "v"))
	var nl *forgeext.NotLeaderError
	if !errors.As(err, &nl) || nl.LeaderAddress != want {
		t.Fatalf("apply on a follower: %v; want a hint naming %q", err, want)
	}
	r := nodes[f].app.Router()
	_ = r.POST("/w", func(c forge.Context) error { return c.String(http.StatusOK, "w") },
		forge.WithMiddleware(svcs[f].ReadOnlyRouting()))
	srv := httptest.NewServer(r)
	defer srv.Close()
	if code, _, h := call(t, srv, "POST", "/w", "", ""); code != http.StatusTemporaryRedirect || h.Get("Location") != want+"/w" {
		t.Fatalf("write on a follower: %d, Location %q; want 307 to %s/w", code, h.Get("Location"), want)
	}
}

func TestAdminAPINamesTheLeadersApp(t *testing.T) {
	urls := map[string]string{"1": "http://app1.example", "2": "http://app2.example", "3": "http://app3.example"}
	nodes, svcs := cluster(t, 3, forgeext.WithAppURLs(urls), withTokens)
	l := leader(t, svcs)
	f := (l + 1) % 3
	srv := httptest.NewServer(nodes[f].app.Router())
	defer srv.Close()
	want := urls[fmt.Sprint(l+1)]
	if code, body, _ := call(t, srv, "GET", "/consensus/leader", "viewer-token", ""); code != http.StatusOK || !strings.Contains(body, `"leader_address":"`+want+`"`) {
		t.Fatalf("leader on a follower: %d %s; want %s", code, body, want)
	}
	if code, body, _ := call(t, srv, "POST", "/consensus/remove-node", "admin-token", `{"node_id": 1}`); code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
		t.Fatalf("remove-node on a follower: %d %s; want 503 naming %s", code, body, want)
	}
}
