package forgeext_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/xraph/forge"

	"github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// testNode is one Forge app of a test cluster, restartable on the same
// ports and data.
type testNode struct {
	id   int
	opts []forgeext.Option
	// beforeStart, if set, runs on the new extension's service before the
	// app starts (to register handlers).
	beforeStart func(*forgeext.Service) error
	app         forge.App
	svc         *forgeext.Service
	stopped     bool
}

// start starts the node's app (again) and resolves its service.
func (n *testNode) start(t *testing.T) {
	t.Helper()
	app := forge.NewApp(forge.AppConfig{
		Name: fmt.Sprintf("node%d", n.id), EnableConfigAutoDiscovery: false,
		HTTPAddress: "127.0.0.1:0", HealthGracePeriod: time.Millisecond,
	})
	ext := forgeext.NewExtension(n.opts...)
	if n.beforeStart != nil {
		if err := n.beforeStart(ext.Service()); err != nil {
			t.Fatalf("node %d: before start: %v", n.id, err)
		}
	}
	if err := app.RegisterExtension(ext); err != nil {
		t.Fatalf("node %d: register: %v", n.id, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatalf("node %d: start: %v", n.id, err)
	}
	svc, err := forge.Resolve[*forgeext.Service](app.Container(), "consensus")
	if err != nil {
		t.Fatalf("node %d: resolve the service by name: %v", n.id, err)
	}
	byType, err := forge.Inject[*forgeext.Service](app.Container())
	if err != nil || byType != svc {
		t.Fatalf("node %d: inject the service by type: %v (same service: %v)", n.id, err, byType == svc)
	}
	n.app, n.svc, n.stopped = app, svc, false
}

// stop stops the node's app.
func (n *testNode) stop(t *testing.T) {
	t.Helper()
	if n.stopped {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.app.Stop(ctx); err != nil {
		t.Errorf("node %d: stop: %v", n.id, err)
	}
	n.stopped = true
}

// newNodes configures n Forge apps with the extension on loopback ports,
// each with its own data directory, plus extra options for all.
func newNodes(t *testing.T, n int, extra ...forgeext.Option) []*testNode {
	t.Helper()
	ports := servertest.FreePorts(t, 3*n)
	var peers []server.PeerConfig
	for i := range n {
		peers = append(peers, server.PeerConfig{ID: server.NodeName(strconv.Itoa(i + 1)), Address: "127.0.0.1",
			Port: ports[3*i], APIPort: ports[3*i+1], ClientPort: ports[3*i+2]})
	}
	var nodes []*testNode
	for i := range n {
		var cfg forgeext.Config
		cfg.ClusterID = "test"
		cfg.API.Addr = fmt.Sprintf("127.0.0.1:%d", ports[3*i+1])
		cfg.API.ClientAddr = fmt.Sprintf("127.0.0.1:%d", ports[3*i+2])
		cfg.Raft.HeartbeatInterval = 20 * time.Millisecond
		cfg.Raft.ElectionTimeoutMin = 200 * time.Millisecond
		opts := append([]forgeext.Option{
			forgeext.WithConfig(cfg),
			forgeext.WithNodeID(fmt.Sprint(i + 1)),
			forgeext.WithBindAddress("127.0.0.1", ports[3*i]),
			forgeext.WithStorageType("pebble"),
			forgeext.WithStoragePath(t.TempDir()),
			func(c *forgeext.Config) error { c.Peers = peers; return nil },
		}, extra...)
		nodes = append(nodes, &testNode{id: i + 1, opts: opts})
	}
	return nodes
}

// cluster starts n Forge apps, each with the extension, on loopback ports,
// and stops them at the test's end.
func cluster(t *testing.T, n int, extra ...forgeext.Option) ([]*testNode, []*forgeext.Service) {
	t.Helper()
	nodes := newNodes(t, n, extra...)
	var svcs []*forgeext.Service
	for _, nd := range nodes {
		nd.start(t)
		t.Cleanup(func() { nd.stop(t) })
		svcs = append(svcs, nd.svc)
	}
	return nodes, svcs
}

// leader waits until every service knows the same leader and returns its
// index.
func leader(t *testing.T, svcs []*forgeext.Service) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		l := svcs[0].LeaderID()
		agree := l != 0
		for _, s := range svcs {
			agree = agree && s.LeaderID() == l
		}
		if agree && svcs[l-1].IsLeader() {
			return int(l - 1)
		}
		time.Sleep(20 * time.Millisecond) // polling for an election, not asserting a duration
	}
	t.Fatal("no leader that every node knows")
	return -1
}

func set(key, value string) forgeext.Command {
	p, _ := json.Marshal(forgeext.KVPayload{Key: key, Value: []byte(value)})
	return forgeext.Command{Type: forgeext.CommandSet, Payload: p}
}

func TestForgeAppsFormACluster(t *testing.T) {
	_, svcs := cluster(t, 3)
	l := leader(t, svcs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lead := svcs[l]
	if got := lead.GetRole(); got != "leader" {
		t.Fatalf("leader's role = %q", got)
	}
	if lead.GetTerm() == 0 {
		t.Fatal("leader in term 0")
	}
	if _, err := lead.ApplyResult(ctx, set("user/1", "ada")); err != nil {
		t.Fatalf("apply on the leader: %v", err)
	}
	// Linearizable reads on every node see the write.
	for i, s := range svcs {
		v, err := s.Read(ctx, "user/1")
		if err != nil || string(v) != "ada" {
			t.Fatalf("node %d: read = %q, %v; want ada", i+1, v, err)
		}
	}
	// A follower refuses writes with the leader's ID.
	f := svcs[(l+1)%3]
	if got := f.GetRole(); got != "follower" {
		t.Fatalf("follower's role = %q", got)
	}
	_, err := f.ApplyResult(ctx, set("user/2", "bob"))
	var nl *forgeext.NotLeaderError
	if !forgeext.IsNotLeaderError(err) || !errors.As(err, &nl) || nl.LeaderID != uint64(l+1) || nl.LeaderAddress == "" {
		t.Fatalf("apply on a follower: %v; want a not-leader error naming node %d and its address", err, l+1)
	}
	if _, err := f.Read(ctx, "user/2"); !errors.Is(err, forgeext.ErrKeyNotFound) {
		t.Fatalf("read of the refused write: %v; want ErrKeyNotFound", err)
	}
	// Compare-and-set and delete.
	cas := func(expected, value string) forgeext.Command {
		p, _ := json.Marshal(forgeext.KVPayload{Key: "user/1", Expected: []byte(expected), Value: []byte(value)})
		return forgeext.Command{Type: forgeext.CommandCAS, Payload: p}
	}
	if r, err := lead.ApplyResult(ctx, cas("nobody", "x")); err != nil || r.OK || string(r.Value) != "ada" {
		t.Fatalf("failed cas = %+v, %v; want not OK with the current value", r, err)
	}
	if r, err := lead.ApplyResult(ctx, cas("ada", "grace")); err != nil || !r.OK {
		t.Fatalf("cas = %+v, %v; want OK", r, err)
	}
	del, _ := json.Marshal(forgeext.KVPayload{Key: "user/1"})
	if r, err := lead.ApplyResult(ctx, forgeext.Command{Type: forgeext.CommandDelete, Payload: del}); err != nil || !r.Found || string(r.Value) != "grace" {
		t.Fatalf("delete = %+v, %v", r, err)
	}
	if _, err := lead.Read(ctx, "user/1", forgeext.WithConsistency(forgeext.Stale)); !errors.Is(err, forgeext.ErrKeyNotFound) {
		t.Fatalf("read after delete: %v; want ErrKeyNotFound", err)
	}
}

func TestInvalidCommandsChangeNothing(t *testing.T) {
	_, svcs := cluster(t, 1)
	s := svcs[leader(t, svcs)]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := s.GetTerm()
	for _, c := range []forgeext.Command{
		{Type: "launch", Payload: []byte(`{"key":"k"}`)},
		{Type: forgeext.CommandSet, Payload: []byte(`{"key":`)},
		{Type: forgeext.CommandDelete, Payload: []byte(`{"key":"k","value":"dmFsdWU="}`)},
		{Type: forgeext.CommandSet, Payload: []byte(`{"key":"` + string(make([]byte, 5000)) + `"}`)},
	} {
		if _, err := s.ApplyResult(ctx, c); !errors.Is(err, forgeext.ErrInvalidCommand) {
			t.Errorf("Apply(%s, %.40q) = %v; want ErrInvalidCommand", c.Type, c.Payload, err)
		}
	}
	if _, err := s.Read(ctx, "k"); !errors.Is(err, forgeext.ErrKeyNotFound) {
		t.Fatalf("read after invalid commands: %v", err)
	}
	if s.GetTerm() != before {
		t.Fatal("term changed")
	}
}

func TestStartAndStopAreIdempotent(t *testing.T) {
	_, svcs := cluster(t, 1)
	s := svcs[0]
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if s.GetRole() != "stopped" {
		t.Fatalf("role after stop = %q", s.GetRole())
	}
	if _, err := s.ApplyResult(ctx, set("k", "v")); !errors.Is(err, forgeext.ErrNotStarted) {
		t.Fatalf("apply after stop: %v; want ErrNotStarted", err)
	}
}

func freePorts(t *testing.T, n int) []int { return servertest.FreePorts(t, n) }

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
