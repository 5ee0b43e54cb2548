package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestNamedCluster: members named by strings end to end. Status and health
// name this node, the leader and every member; the admin API adds a
// member by name, and every node (the joiner too) then shows that name;
// leadership moves to a member named in the request; a restarted node
// shows the same names.
func TestNamedCluster(t *testing.T) {
	names := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 3, Storage: "pebble", Transport: "grpc",
		Extra: tokensYAML, Names: names})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nameOf := func(info admin.ClusterInfo) []string {
		var ns []string
		for _, n := range info.Nodes {
			ns = append(ns, n.Name)
		}
		slices.Sort(ns)
		return ns
	}
	for i, s := range srvs {
		info := s.Info(ctx)
		if info.NodeName != names[i] || !slices.Contains(names, info.LeaderName) || info.LeaderName != string(lead.Config().NodeID) {
			t.Fatalf("node %d: node_name %q leader_name %q (leader %s)", i+1, info.NodeName, info.LeaderName, lead.Config().NodeID)
		}
		if h := s.Health(ctx); h.LeaderName != info.LeaderName {
			t.Fatalf("node %d: health leader_name %q", i+1, h.LeaderName)
		}
	}
	if got := nameOf(lead.Info(ctx)); !slices.Equal(got, names) {
		t.Fatalf("leader's members: %v", got)
	}

	// Bad addresses and another member's address are refused, changing
	// nothing.
	for body, want := range map[string]int{
		`{"node_id": "x1", "address": "a b/c\u0000:x", "port": 7000}`:                                        http.StatusBadRequest,
		`{"node_id": "x1", "address": "10.0.0.9:7000", "port": 7000}`:                                        http.StatusBadRequest,
		`{"node_id": "x1", "address": "-bad-.example", "port": 7000}`:                                        http.StatusBadRequest,
		`{"node_id": 18446744073709551615, "address": "h", "port": 7000}`:                                    http.StatusBadRequest,
		fmt.Sprintf(`{"node_id": "x1", "address": "127.0.0.1", "port": %d}`, srvs[0].Config().Peers[0].Port): http.StatusConflict,
	} {
		if code, resp := post(t, lead, "/add-node", "admin-secret", body); code != want {
			t.Fatalf("add-node %s: %d %s, want %d", body, code, resp, want)
		}
	}
	if n := len(lead.Info(ctx).Nodes); n != 3 {
		t.Fatalf("refused add-nodes changed the membership: %d nodes", n)
	}

	port := servertest.FreePorts(t, 1)[0]
	body := fmt.Sprintf(`{"node_id": "us-west-2a", "address": "127.0.0.1", "port": %d}`, port)
	code, resp := post(t, lead, "/add-node", "admin-secret", body)
	if code != http.StatusOK {
		t.Fatalf("add-node: %d %s", code, resp)
	}
	var ok struct {
		NodeID string `json:"node_id"`
	}
	if err := json.Unmarshal([]byte(resp), &ok); err != nil || ok.NodeID != "us-west-2a" {
		t.Fatalf("add-node answer %s", resp)
	}
	joiner := startJoiner(t, lead.Config().Peers, "us-west-2a", port)
	all := append(slices.Clone(names), "us-west-2a")
	for _, s := range append(slices.Clone(srvs), joiner) {
		eventually(t, "every node shows the new member's name", func() bool {
			return slices.Equal(nameOf(s.Info(ctx)), all)
		})
	}
	eventually(t, "the leader sees all four active", func() bool { return lead.Info(ctx).ActiveNodes == 4 })
	if got := nameOf(lead.Info(ctx)); !slices.Equal(got, all) {
		t.Fatalf("leader's members after the add: %v", got)
	}
	// Metrics label the node and its peers by name.
	req, _ := http.NewRequest(http.MethodGet, "http://"+lead.APIAddr()+"/consensus/metrics", nil)
	req.Header.Set("Authorization", "Bearer view-secret")
	mresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	want := fmt.Sprintf(`forge_consensus_peer_active{node_id=%q,peer="us-west-2a"} 1`, lead.Config().NodeID)
	if mresp.StatusCode != http.StatusOK || !strings.Contains(string(mbody), want) {
		t.Fatalf("metrics (%d) lack %s:\n%s", mresp.StatusCode, want, mbody)
	}

	// Leadership to a member named in the request.
	target := "us-east-1a"
	if string(lead.Config().NodeID) == target {
		target = "us-east-1b"
	}
	code, resp = post(t, lead, "/transfer-leadership", "admin-secret", fmt.Sprintf(`{"target_node_id": %q}`, target))
	if code != http.StatusOK {
		t.Fatalf("transfer-leadership: %d %s", code, resp)
	}
	eventually(t, "the named target leads", func() bool { return joiner.Info(ctx).LeaderName == target })

	// A restarted follower shows the same names, the joiner's from its
	// storage.
	var f int
	for i, s := range srvs {
		if string(s.Config().NodeID) != target {
			f = i
		}
	}
	cfg := srvs[f].Config()
	if err := srvs[f].Close(); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go s.Serve()
	eventually(t, "the restarted node knows the leader by name", func() bool { return s.Info(ctx).LeaderName == target })
	if h := s.Health(ctx); h.LeaderName != target {
		t.Fatalf("restarted node's health: leader_name %q", h.LeaderName)
	}
}
