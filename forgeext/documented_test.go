package forgeext_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xraph/forge"

	consensus "github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/forgeext/middleware"
	"github.com/forge-consensus/consensus/server/servertest"
)

// users is an application state machine for the documented create_user
// command.
type users struct {
	mu sync.Mutex
	m  map[string]string
}

func (u *users) Apply(_ uint64, cmd consensus.Command) (any, error) {
	var p map[string]any
	if err := cmd.Decode(&p); err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]string{}
	}
	u.m[fmt.Sprint(p["id"])] = fmt.Sprint(p["name"])
	return len(u.m), nil
}

func (u *users) Snapshot() ([]byte, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return json.Marshal(u.m)
}

func (u *users) Restore(b []byte) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.m = nil
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, &u.m)
}

// TestDocumentedAPI drives a live three-app cluster through exactly the
// calls the extension's documentation shows (consensus is this package),
// from NewExtension with node names to the leadership middleware.
func TestDocumentedAPI(t *testing.T) {
	names := []string{"node-1", "node-2", "node-3"}
	ports := servertest.FreePorts(t, 9)
	var peers []consensus.PeerConfig
	for i, name := range names {
		peers = append(peers, consensus.PeerConfig{ID: name, Address: "localhost", Port: ports[3*i]})
	}
	apps := make([]forge.App, 3)
	svcs := make([]*consensus.Service, 3)
	states := make([]*users, 3)
	routers := make([]*httptest.Server, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, name := range names {
		app := forge.NewApp(forge.AppConfig{Name: name, EnableConfigAutoDiscovery: false,
			HTTPAddress: "127.0.0.1:0", HealthGracePeriod: time.Millisecond})
		var local consensus.Config // this test's own ports, storage and timing
		local.API.Addr = fmt.Sprintf("127.0.0.1:%d", ports[3*i+1])
		local.API.ClientAddr = fmt.Sprintf("127.0.0.1:%d", ports[3*i+2])
		local.Raft.HeartbeatInterval, local.Raft.ElectionTimeoutMin = 20*time.Millisecond, 200*time.Millisecond
		ext := consensus.NewExtension(
			consensus.WithConfig(local),
			consensus.WithNodeID(name),
			consensus.WithClusterID("my-cluster"),
			consensus.WithBindAddress("127.0.0.1", ports[3*i]),
			consensus.WithPeers(peers),
			consensus.WithStoragePath(t.TempDir()),
		)
		states[i] = &users{}
		if err := ext.Service().RegisterHandler("users", states[i], "create_user"); err != nil {
			t.Fatal(err)
		}
		if err := app.RegisterExtension(ext); err != nil {
			t.Fatal(err)
		}
		if err := app.Start(ctx); err != nil {
			t.Fatalf("%s: start: %v", name, err)
		}
		t.Cleanup(func() { app.Stop(context.Background()) })
		svc, err := forge.Resolve[*consensus.Service](app.Container(), "consensus")
		if err != nil {
			t.Fatal(err)
		}
		apps[i], svcs[i] = app, svc

		checker, err := forge.Resolve[*consensus.LeadershipChecker](app.Container(), "consensus:leadership")
		if err != nil {
			t.Fatal(err)
		}
		mw := middleware.NewLeadershipMiddleware(checker, app.Logger())
		router := app.Router()
		router.Use(mw.AddLeaderHeader())
		created := func(c forge.Context) error { return c.String(http.StatusCreated, "created") }
		if err := router.POST("/api/users", mw.RequireLeader()(created)); err != nil {
			t.Fatal(err)
		}
		read := func(c forge.Context) error { return c.String(http.StatusOK, "read") }
		if err := router.GET("/api/users", mw.ConsistencyMiddleware(middleware.ConsistencyStrong)(read)); err != nil {
			t.Fatal(err)
		}
		if err := router.GET("/api/any", mw.ConsistencyMiddleware(middleware.ConsistencyEventual)(read)); err != nil {
			t.Fatal(err)
		}
		if err := router.POST("/api/routed", mw.ReadOnlyRouting()(created)); err != nil {
			t.Fatal(err)
		}
		routers[i] = httptest.NewServer(router)
		t.Cleanup(routers[i].Close)
	}

	leaderIndex := func() int {
		var l int
		poll(t, "every app knows the same leader by name", func() bool {
			lead := svcs[0].GetLeader()
			l = slices.Index(names, lead)
			for _, s := range svcs {
				if s.GetLeader() != lead {
					return false
				}
			}
			return l >= 0 && svcs[l].IsLeader()
		})
		return l
	}
	l := leaderIndex()
	lead, f := svcs[l], svcs[(l+1)%3]
	if lead.GetRole() != "leader" || f.GetRole() != "follower" {
		t.Fatalf("roles: %q, %q", lead.GetRole(), f.GetRole())
	}

	cmd := consensus.Command{
		Type:    "create_user",
		Payload: map[string]interface{}{"id": "123", "name": "Alice"},
	}
	if err := f.Apply(ctx, cmd); !consensus.IsNotLeaderError(err) {
		t.Fatalf("Apply on a follower: %v; want a not-leader error", err)
	}
	if err := lead.Apply(ctx, cmd); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	poll(t, "every app applied create_user", func() bool {
		for _, st := range states {
			st.mu.Lock()
			ok := st.m["123"] == "Alice"
			st.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
	set := consensus.Command{Type: "set", Payload: map[string]interface{}{"key": "user:123", "value": []byte("Alice")}}
	if err := lead.Apply(ctx, set); err != nil {
		t.Fatal(err)
	}
	result, err := f.Read(ctx, "user:123")
	if err != nil || string(result) != "Alice" {
		t.Fatalf("Read on a follower: %q, %v", result, err)
	}

	info := lead.GetClusterInfo()
	if info.ID != "my-cluster" || info.Leader != names[l] || info.TotalNodes != 3 || info.ActiveNodes != 3 || !info.HasQuorum {
		t.Fatalf("GetClusterInfo: %+v", info)
	}
	health := lead.GetHealthStatus(ctx)
	if health.Status != "healthy" || !health.Leader || !health.HasQuorum || health.ActiveNodes != 3 || health.TotalNodes != 3 ||
		len(health.Details) == 0 {
		t.Fatalf("GetHealthStatus: %+v", health)
	}
	for _, d := range health.Details {
		if d.Name == "" || !d.Healthy {
			t.Fatalf("health detail %+v", d)
		}
	}
	if fh := f.GetHealthStatus(ctx); fh.Leader {
		t.Fatal("a follower's health says it leads")
	}
	if err := lead.HealthCheck(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lead.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}

	// Membership by name: node-4 is added (it never starts: three of four
	// voters are a quorum) and removed again.
	if err := lead.AddNode(ctx, "node-4", "10.0.1.13", 7000); err != nil {
		t.Fatalf("AddNode: %v", err)
	}
	if info := lead.GetClusterInfo(); info.TotalNodes != 4 || !slices.Contains(info.Nodes, "node-4") {
		t.Fatalf("after AddNode: %+v", info)
	}
	if err := lead.RemoveNode(ctx, "node-4"); err != nil {
		t.Fatalf("RemoveNode: %v", err)
	}
	if info := lead.GetClusterInfo(); info.TotalNodes != 3 || slices.Contains(info.Nodes, "node-4") {
		t.Fatalf("after RemoveNode: %+v", info)
	}

	// The middleware: writes on the leader only, the leader named in a
	// header, strong reads on any app.
	post := func(i int, path string) *http.Response {
		t.Helper()
		c := http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Post(routers[i].URL+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	fi := (l + 1) % 3
	if r := post(l, "/api/users"); r.StatusCode != http.StatusCreated || r.Header.Get(consensus.HeaderLeaderName) != names[l] {
		t.Fatalf("POST on the leader: %d, leader header %q", r.StatusCode, r.Header.Get(consensus.HeaderLeaderName))
	}
	if r := post(fi, "/api/users"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("POST on a follower: %d, want 503", r.StatusCode)
	}
	if r := post(fi, "/api/routed"); r.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("POST through ReadOnlyRouting on a follower: %d, want 307", r.StatusCode)
	}
	for _, path := range []string{"/api/users", "/api/any"} {
		resp, err := http.Get(routers[fi].URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s on a follower: %d", path, resp.StatusCode)
		}
	}

	// Leadership moves to a named node, then away with StepDown.
	target := names[(l+2)%3]
	if err := lead.TransferLeadership(ctx, target); err != nil {
		t.Fatalf("TransferLeadership: %v", err)
	}
	if l = leaderIndex(); names[l] != target {
		t.Fatalf("leader %s after transferring to %s", names[l], target)
	}
	if err := svcs[l].StepDown(ctx); err != nil {
		t.Fatalf("StepDown: %v", err)
	}
	if next := leaderIndex(); names[next] == target {
		t.Fatalf("%s still leads after StepDown", target)
	}
}
