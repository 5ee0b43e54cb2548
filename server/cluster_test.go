package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

const tokensYAML = `security:
  tokens:
  - {token: view-secret, role: viewer}
  - {token: admin-secret, role: admin}
`

// post sends a JSON body to a node's admin API and returns the status and
// body.
func post(t *testing.T, s *server.Server, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.APIAddr()+"/consensus"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startJoiner starts node id (a name) with join: true, knowing the
// cluster's peers.
func startJoiner(t *testing.T, peers []server.PeerConfig, id string, port int) *server.Server {
	t.Helper()
	var b strings.Builder
	for _, p := range peers {
		fmt.Fprintf(&b, "  - {id: %s, address: %s, port: %d, api_port: %d, client_port: %d}\n",
			p.ID, p.Address, p.Port, p.APIPort, p.ClientPort)
	}
	fmt.Fprintf(&b, "  - {id: %s, address: 127.0.0.1, port: %d}\n", id, port)
	raw := fmt.Sprintf(`node_id: %s
bind_port: %d
join: true
peers:
%sraft: {heartbeat_interval: 20ms, election_timeout_min: 200ms}
storage: {type: pebble, path: %s}
api: {addr: "127.0.0.1:0", client_addr: "127.0.0.1:0"}
`, id, port, b.String(), filepath.Join(t.TempDir(), "data"))
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go s.Serve()
	return s
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a cluster that converges on its own
	}
}

func TestMembershipThroughTheAdminAPI(t *testing.T) {
	srvs, lead := servertest.StartClusterWith(t, 3, "pebble", "grpc", tokensYAML)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := servertest.FreePorts(t, 1)[0]
	body := fmt.Sprintf(`{"node_id": "node-4", "address": "127.0.0.1", "port": %d}`, port)

	// Tokens and roles are enforced before anything changes.
	if code, _ := post(t, lead, "/add-node", "", body); code != http.StatusUnauthorized {
		t.Fatalf("add-node without a token: %d, want 401", code)
	}
	if code, _ := post(t, lead, "/add-node", "view-secret", body); code != http.StatusForbidden {
		t.Fatalf("add-node as viewer: %d, want 403", code)
	}
	var follower *server.Server
	for _, s := range srvs {
		if s != lead {
			follower = s
		}
	}
	code, resp := post(t, follower, "/add-node", "admin-secret", body)
	if code != http.StatusServiceUnavailable || !strings.Contains(resp, lead.APIURL(lead.Runner().ID())) {
		t.Fatalf("add-node on a follower: %d %s; want 503 naming the leader", code, resp)
	}
	if n := len(lead.Info(ctx).Nodes); n != 3 {
		t.Fatalf("refused requests changed the membership: %d nodes", n)
	}

	// The leader adds node 4 as a learner; node 4 joins, catches up and
	// is promoted.
	if code, resp := post(t, lead, "/add-node", "admin-secret", body); code != http.StatusOK || !strings.Contains(resp, `"stage":"learner"`) {
		t.Fatalf("add-node: %d %s", code, resp)
	}
	// Again: the same join changes nothing (a retry); elsewhere it is a
	// conflict.
	if code, resp := post(t, lead, "/add-node", "admin-secret", body); code != http.StatusOK || !strings.Contains(resp, `"stage":"learner"`) {
		t.Fatalf("adding node 4 again: %d %s, want 200 learner", code, resp)
	}
	other := fmt.Sprintf(`{"node_id": "node-4", "address": "127.0.0.1", "port": %d}`, servertest.FreePorts(t, 1)[0])
	if code, _ := post(t, lead, "/add-node", "admin-secret", other); code != http.StatusConflict {
		t.Fatalf("adding node 4 again at another port: %d, want 409", code)
	}
	joiner := startJoiner(t, lead.Config().Peers, "4", port)
	eventually(t, "node 4 follows the leader, is active and promoted", func() bool {
		info := lead.Info(ctx)
		return joiner.Runner().Status().Lead == lead.Runner().ID() && info.TotalNodes == 4 && info.ActiveNodes == 4 &&
			info.Nodes[3].Voter
	})
	if _, err := lead.Runner().Propose(ctx, setCmd("k", "v")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node 4 applies the write", func() bool {
		return joiner.Runner().Status().Applied >= lead.Runner().Status().Commit
	})

	// Every node learnt node 4's address from the membership change.
	for _, s := range append(srvs, joiner) {
		if got, want := s.APIURL(4), fmt.Sprintf("http://127.0.0.1:%d", port+100); got != want {
			t.Fatalf("node %d: node 4's API at %q, want %q", s.Runner().ID(), got, want)
		}
	}

	// Leadership moves to node 4, which then removes node 1 (not itself).
	if err := lead.TransferLeadership(ctx, 4); err != nil {
		t.Fatalf("transfer to node 4: %v", err)
	}
	eventually(t, "node 4 leads", func() bool { return joiner.Runner().Status().Role == core.Leader })
	var nl *admin.NotLeaderError
	if err := lead.RemoveNode(ctx, 2); !errors.As(err, &nl) || nl.LeaderID != 4 {
		t.Fatalf("remove on the old leader: %v, want a not-leader error", err)
	}
	if err := joiner.RemoveNode(ctx, 9); !errors.Is(err, admin.ErrUnknownNode) {
		t.Fatalf("remove an unknown node: %v, want ErrUnknownNode", err)
	}
	if err := joiner.RemoveNode(ctx, srvs[0].Runner().ID()); err != nil {
		t.Fatalf("remove node 1: %v", err)
	}
	info := joiner.Info(ctx)
	if info.TotalNodes != 3 || info.Nodes[0].ID != 2 {
		t.Fatalf("after removing node 1: %+v", info.Nodes)
	}
	if got := joiner.APIURL(1); got != "" {
		t.Fatalf("node 1 still has an address after its removal: %q", got)
	}
	// A removed ID is never given to a new member.
	if err := joiner.AddNode(ctx, 1, "127.0.0.1", servertest.FreePorts(t, 1)[0]); !errors.Is(err, admin.ErrConflict) ||
		!strings.Contains(err.Error(), "never reused") {
		t.Fatalf("adding the removed node 1 again: %v, want a conflict", err)
	}

	// A learner can be added, but not given leadership.
	if err := joiner.AddLearner(ctx, 5, "127.0.0.1", servertest.FreePorts(t, 1)[0]); err != nil {
		t.Fatalf("add learner: %v", err)
	}
	if err := joiner.TransferLeadership(ctx, 5); !errors.Is(err, admin.ErrConflict) {
		t.Fatalf("transfer to a learner: %v, want ErrConflict", err)
	}
	// Any node snapshots itself; an operator may, a viewer may not.
	if code, _ := post(t, srvs[1], "/snapshot", "view-secret", ""); code != http.StatusForbidden {
		t.Fatalf("snapshot as viewer: %d, want 403", code)
	}
	if code, resp := post(t, srvs[1], "/snapshot", "admin-secret", ""); code != http.StatusOK || !strings.Contains(resp, `"index"`) {
		t.Fatalf("snapshot on node 2: %d %s", code, resp)
	}
	if idx, err := joiner.Snapshot(ctx); err != nil || idx < joiner.Runner().Status().Commit-1 {
		t.Fatalf("snapshot on node 4: %d, %v", idx, err)
	}
}

func TestHealthFollowsQuorum(t *testing.T) {
	srvs, lead := servertest.StartClusterWith(t, 3, "memory", "grpc", "")
	ctx := context.Background()
	if h := lead.Health(ctx); !h.Healthy || h.Status != "healthy" {
		t.Fatalf("health of a full cluster: %+v", h)
	}
	// Without its followers the leader loses its quorum (CheckQuorum).
	for _, s := range srvs {
		if s != lead {
			s.Close()
		}
	}
	eventually(t, "the leader reports no quorum", func() bool { return !lead.Health(ctx).Healthy })
	h := lead.Health(ctx)
	if h.Status != "unhealthy" || h.HasQuorum {
		t.Fatalf("health without followers: %+v", h)
	}
}

// TestFollowerHealthAgreesWithLeader: every node's health and status
// report the leader's view of which members are active. Before, a
// follower reported 2 of 3 nodes active (itself and the leader) while the
// leader reported 3 of 3, and only the leader ever said "degraded".
func TestFollowerHealthAgreesWithLeader(t *testing.T) {
	srvs, lead := servertest.StartClusterWith(t, 3, "memory", "grpc", "")
	ctx := context.Background()
	eventually(t, "the leader sees every member active", func() bool { return lead.Health(ctx).ActiveNodes == 3 })
	for _, s := range srvs {
		h, info := s.Health(ctx), s.Info(ctx)
		if h.ActiveNodes != 3 || h.TotalNodes != 3 || h.Status != "healthy" || h.ActiveFrom != "leader" {
			t.Fatalf("node %d health %+v, want 3 of 3 active, healthy, from the leader", info.NodeID, h)
		}
		if info.ActiveNodes != 3 || info.ActiveFrom != "leader" {
			t.Fatalf("node %d status: %d of %d active (from %q), want 3 of 3 from the leader", info.NodeID,
				info.ActiveNodes, info.TotalNodes, info.ActiveFrom)
		}
		for _, n := range info.Nodes {
			if !n.Active {
				t.Fatalf("node %d status says member %d is not active", info.NodeID, n.ID)
			}
		}
	}
	// Stop one follower: the leader says degraded, 2 of 3, and so does the
	// other follower.
	var down, other *server.Server
	for _, s := range srvs {
		switch {
		case s == lead:
		case down == nil:
			down = s
		default:
			other = s
		}
	}
	down.Close()
	eventually(t, "the leader reports the member down", func() bool { return lead.Health(ctx).ActiveNodes == 2 })
	want := lead.Health(ctx)
	if want.Status != "degraded" {
		t.Fatalf("leader health with a member down: %+v", want)
	}
	eventually(t, "the other follower reports what the leader does", func() bool {
		h := other.Health(ctx)
		return h.Status == want.Status && h.ActiveNodes == want.ActiveNodes && h.TotalNodes == want.TotalNodes
	})
}

func setCmd(key, value string) []byte {
	return kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: key, Value: []byte(value)})
}

// scrape returns the value of the first sample of a metric whose line
// contains all of the given fragments.
func scrape(t *testing.T, s *server.Server, name string, fragments ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + s.APIAddr() + "/consensus/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d %s", resp.StatusCode, b)
	}
next:
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, f := range fragments {
			if !strings.Contains(line, f) {
				continue next
			}
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v, true
	}
	return 0, false
}

func TestMetricsFollowTheNode(t *testing.T) {
	srvs, lead := servertest.StartCluster(t, 3, "memory", "grpc")
	if v, _ := scrape(t, lead, "forge_consensus_is_leader"); v != 1 {
		t.Fatalf("leader's is_leader = %v", v)
	}
	var follower *server.Server
	for _, s := range srvs {
		if s != lead {
			follower = s
		}
	}
	if v, _ := scrape(t, follower, "forge_consensus_is_leader"); v != 0 {
		t.Fatalf("follower's is_leader = %v", v)
	}
	if v, _ := scrape(t, lead, "forge_consensus_cluster_size"); v != 3 {
		t.Fatalf("cluster_size = %v", v)
	}
	before, _ := scrape(t, lead, "forge_consensus_operations_total", `op="apply"`)
	commitBefore, _ := scrape(t, lead, "forge_consensus_commit_index")
	sizeBefore, _ := scrape(t, lead, "forge_consensus_log_size")
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/kv/m%d", lead.APIAddr(), i), strings.NewReader("v"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("put: %d", resp.StatusCode)
		}
	}
	if after, _ := scrape(t, lead, "forge_consensus_operations_total", `op="apply"`); after != before+5 {
		t.Fatalf("operations_total{op=apply} went from %v to %v after 5 writes", before, after)
	}
	if c, _ := scrape(t, lead, "forge_consensus_commit_index"); c < commitBefore+5 {
		t.Fatalf("commit_index went from %v to %v after 5 writes", commitBefore, c)
	}
	// Five entries of at least a 1-byte value and its key, each with its
	// term, index, type and data length: at least 5 × 7 bytes more.
	if size, _ := scrape(t, lead, "forge_consensus_log_size"); size < sizeBefore+5*7 {
		t.Fatalf("log_size went from %v to %v after 5 writes", sizeBefore, size)
	}
	if n, ok := scrape(t, lead, "forge_consensus_operation_duration_seconds_count", `op="apply"`); !ok || n < 5 {
		t.Fatalf("operation_duration_seconds_count{op=apply} = %v", n)
	}
	if _, ok := scrape(t, lead, "forge_consensus_peer_replication_lag"); !ok {
		t.Fatal("no peer_replication_lag on the leader")
	}
	// The leadership watcher samples every heartbeat interval.
	eventually(t, "leader_elections_total counts the election", func() bool {
		e, _ := scrape(t, lead, "forge_consensus_leader_elections_total")
		return e >= 1
	})
	if _, err := lead.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := scrape(t, lead, "forge_consensus_snapshots_total"); n < 1 {
		t.Fatalf("snapshots_total = %v after a snapshot", n)
	}
}
