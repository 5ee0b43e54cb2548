package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/xraph/forge"

	"github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/server"
)

// ClusterID is the cluster_id every node of the example uses.
const ClusterID = "forge-app"

// NodePorts is where one node listens on the cluster's host.
type NodePorts struct {
	// App is the Forge app's HTTP port: the users API, the admin API under
	// /consensus and Forge's own /_/health. 0 picks a free port (tests).
	App int
	// Raft is the peer port: Raft traffic between the nodes.
	Raft int
	// API is the port of the node's consensus HTTP API (the library's /kv
	// API and another copy of /consensus).
	API int
	// Client is the port of the binary client protocol.
	Client int
}

// DefaultPorts returns the fixed layout of node id: app port appBase+id,
// raft port raftBase+id, consensus API raftBase+100+id and client protocol
// raftBase+200+id (the library's defaults relative to the raft port).
func DefaultPorts(appBase, raftBase, id int) NodePorts {
	return NodePorts{App: appBase + id, Raft: raftBase + id, API: raftBase + 100 + id, Client: raftBase + 200 + id}
}

// ClusterConfig describes the cluster every node of the example belongs to.
type ClusterConfig struct {
	// Host is the address every node listens on and is reached at. The
	// example is meant for loopback ("127.0.0.1").
	Host string
	// Nodes lists every member's ports: node i+1 at index i.
	Nodes []NodePorts
	// DataDir holds the nodes' data: node N in DataDir/node-N.
	DataDir string
	// AdminToken, if set, is the admin API's bearer token (role admin).
	// Without it the admin API accepts mutating requests from anyone
	// (admin_api.allow_unauthenticated), which is only acceptable on
	// loopback.
	AdminToken string
	// Logger receives the example's own logs (nil: slog.Default()). The
	// consensus extension logs to slog.Default().
	Logger *slog.Logger
}

func (cc ClusterConfig) logger() *slog.Logger {
	if cc.Logger == nil {
		return slog.Default()
	}
	return cc.Logger
}

// addr joins the cluster's host and a port.
func (cc ClusterConfig) addr(port int) string { return net.JoinHostPort(cc.Host, strconv.Itoa(port)) }

// consensusConfig returns node id's consensus configuration.
func (cc ClusterConfig) consensusConfig(id int) forgeext.Config {
	var cfg forgeext.Config
	p := cc.Nodes[id-1]
	cfg.NodeID = server.NodeName(fmt.Sprintf("node-%d", id))
	cfg.ClusterID = ClusterID
	cfg.BindAddr, cfg.BindPort = cc.Host, p.Raft
	for i, q := range cc.Nodes {
		cfg.Peers = append(cfg.Peers, server.PeerConfig{
			ID: server.NodeName(fmt.Sprintf("node-%d", i+1)), Address: cc.Host, Port: q.Raft, APIPort: q.API, ClientPort: q.Client,
		})
	}
	cfg.API.Addr = cc.addr(p.API)
	cfg.API.ClientAddr = cc.addr(p.Client)
	// Redirects to the leader name the leader's app, where the users API
	// is (a node on a free port, in tests, has no known URL).
	for i, q := range cc.Nodes {
		if q.App != 0 {
			if cfg.AppURLs == nil {
				cfg.AppURLs = map[string]string{}
			}
			cfg.AppURLs[strconv.Itoa(i+1)] = "http://" + cc.addr(q.App)
		}
	}
	cfg.Storage.Type = "pebble"
	cfg.Storage.Path = filepath.Join(cc.DataDir, fmt.Sprintf("node-%d", id))
	if cc.AdminToken != "" {
		cfg.Security.Tokens = []server.TokenConfig{{Token: cc.AdminToken, Role: "admin"}}
	} else {
		cfg.AdminAPI.AllowUnauthenticated = true
	}
	return cfg
}

// validate checks what the example relies on.
func (cc ClusterConfig) validate() error {
	if cc.Host == "" {
		return errors.New("cluster config: host is empty")
	}
	if len(cc.Nodes) == 0 {
		return errors.New("cluster config: no nodes")
	}
	if cc.DataDir == "" {
		return errors.New("cluster config: data directory is empty")
	}
	return nil
}

// Node is one member of the cluster: a Forge app with the consensus
// extension and the users API, served on its own listener.
type Node struct {
	id  int
	cc  ClusterConfig
	log *slog.Logger
	app forge.App
	svc *forgeext.Service

	mu     sync.Mutex
	srv    *http.Server
	url    string
	served chan struct{} // closed when srv.Serve returns
}

// NewNode builds node id (1-based) of the cluster: the Forge app, the
// consensus extension and the routes. Nothing listens until Start.
func NewNode(cc ClusterConfig, id int) (*Node, error) {
	if err := cc.validate(); err != nil {
		return nil, err
	}
	if id < 1 || id > len(cc.Nodes) {
		return nil, fmt.Errorf("node %d: not in the cluster (1..%d)", id, len(cc.Nodes))
	}
	log := cc.logger().With("node", id)
	app := forge.NewApp(forge.AppConfig{
		Name:        fmt.Sprintf("forge-app-node-%d", id),
		Version:     "0.1.0",
		Environment: "development",
		// Forge's own logs are off; the example logs with log/slog.
		Logger:                    forge.NewNoopLogger(),
		HTTPAddress:               cc.addr(cc.Nodes[id-1].App),
		EnableConfigAutoDiscovery: false,
	})
	ext := forgeext.NewExtension(forgeext.WithConfig(cc.consensusConfig(id)))
	if err := app.RegisterExtension(ext); err != nil {
		return nil, fmt.Errorf("node %d: register the consensus extension: %w", id, err)
	}
	// The service exists from NewExtension on, so the routes and their
	// middleware are set up before the app starts.
	svc := ext.Service()
	if err := registerRoutes(app.Router(), svc, log); err != nil {
		return nil, fmt.Errorf("node %d: %w", id, err)
	}
	return &Node{id: id, cc: cc, log: log, app: app, svc: svc}, nil
}

// ID returns the node's ID.
func (n *Node) ID() int { return n.id }

// Service returns the node's consensus service.
func (n *Node) Service() *forgeext.Service { return n.svc }

// App returns the node's Forge app.
func (n *Node) App() forge.App { return n.app }

// URL returns the base URL of the node's app ("" before Start).
func (n *Node) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.url
}

// ConsensusURL returns the base URL of the node's consensus HTTP API.
func (n *Node) ConsensusURL() string { return "http://" + n.cc.addr(n.cc.Nodes[n.id-1].API) }

// Start opens the app's port, starts the app (the node joins the cluster)
// and serves the app's router on the port. A node starts once: after Stop,
// build a new one with NewNode.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return fmt.Errorf("node %d: already started", n.id)
	}
	// Take the port first, so that a port in use fails before the node
	// joins the cluster.
	ln, err := net.Listen("tcp", n.cc.addr(n.cc.Nodes[n.id-1].App))
	if err != nil {
		return fmt.Errorf("node %d: listen for the app: %w", n.id, err)
	}
	if err := n.app.Start(ctx); err != nil {
		_ = ln.Close()
		// app.Stop does nothing for an app that did not finish starting,
		// but the consensus service may have started: stop it (Stop is
		// idempotent and a no-op if it never started).
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if serr := n.svc.Stop(stopCtx); serr != nil {
			err = errors.Join(err, serr)
		}
		return fmt.Errorf("node %d: start the app: %w", n.id, err)
	}
	n.srv = &http.Server{Handler: n.app.Router(), ReadHeaderTimeout: 10 * time.Second}
	n.url = "http://" + ln.Addr().String()
	n.served = make(chan struct{})
	go func(srv *http.Server, done chan<- struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("app HTTP server stopped", "err", err)
		}
	}(n.srv, n.served)
	n.log.Info("node started", "app", n.url, "consensus_api", n.ConsensusURL())
	return nil
}

// Stop stops serving (letting requests in flight finish while ctx allows)
// and stops the app, which stops the consensus service. It is idempotent.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return nil
	}
	var errs []error
	if err := n.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down the app's HTTP server: %w", err))
		_ = n.srv.Close()
	}
	<-n.served
	if err := n.app.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop the app: %w", err))
	}
	n.srv = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node %d: %w", n.id, err)
	}
	n.log.Info("node stopped")
	return nil
}

// Nodes is a set of nodes running in this process.
type Nodes []*Node

// StartNodes builds and starts the given nodes of the cluster in this
// process: all three for -local-cluster, one for -node N. On error it stops
// the nodes it had started.
func StartNodes(ctx context.Context, cc ClusterConfig, ids []int) (Nodes, error) {
	if err := cc.validate(); err != nil {
		return nil, err
	}
	log := cc.logger()
	if cc.AdminToken == "" {
		log.Warn("!!! CONSENSUS_ADMIN_TOKEN is not set: the admin API at /consensus accepts " +
			"membership and leadership changes from ANYONE who can reach it " +
			"(admin_api.allow_unauthenticated). Acceptable for this loopback-only demo, never elsewhere. !!!")
	}
	var nodes Nodes
	for _, id := range ids {
		n, err := NewNode(cc, id)
		if err == nil {
			err = n.Start(ctx)
		}
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			serr := nodes.Stop(stopCtx)
			cancel()
			return nil, errors.Join(err, serr)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// Stop stops every node, all at once (so that no node waits on a quorum
// that is already leaving), and returns their errors joined.
func (ns Nodes) Stop(ctx context.Context) error {
	errs := make([]error, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Go(func() { errs[i] = n.Stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Leader returns the node that leads once every node agrees on it, or nil.
func (ns Nodes) Leader() *Node {
	if len(ns) == 0 {
		return nil
	}
	lead := ns[0].svc.LeaderID()
	if lead == 0 {
		return nil
	}
	var leader *Node
	for _, n := range ns {
		if n.svc.LeaderID() != lead {
			return nil
		}
		if uint64(n.id) == lead && n.svc.IsLeader() {
			leader = n
		}
	}
	return leader
}
