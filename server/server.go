package server

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/tcp"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/metrics"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/runner"
)

// Server is one running node: storage, transport, runner, HTTP API and
// binary client protocol (package wire).
type Server struct {
	cfg Config
	// lview caches the leader's view of active members (a follower's /status).
	lview leaderView
	log   *slog.Logger
	run   *runner.Runner
	tr    transport.Transport
	st    interface{ Close() error }
	http  *http.Server
	ln    net.Listener
	wire  *wireServer
	dir   *directory
	// space refuses writes while storage is short of space (nil for
	// memory storage).
	space *spaceGuard
	// logSize is the node's storage, counting the log's size.
	logSize *sizedStorage
	// authLimit counts failed authentications per remote address, on the
	// HTTP API, the admin API and the client protocol.
	authLimit *authLimiter
	// apiTLS serves the HTTP API and the client protocol over TLS (nil:
	// plaintext).
	apiTLS *tls.Config

	metrics   *metrics.Metrics
	sm        *machine
	watchStop chan struct{} // ends watchLeadership
	watchDone chan struct{}
	// promoteStop ends promoteLearners, which closes promoteDone.
	promoteStop context.CancelFunc
	promoteDone chan struct{}
	// discStop ends discoveryLoop, which closes discDone.
	discStop context.CancelFunc
	discDone chan struct{}

	// prevMemoryLimit is the runtime's memory limit before New set
	// memory_limit (-1: New did not set it); Close puts it back.
	prevMemoryLimit int64

	once sync.Once
	err  error
}

// New opens the node's storage, starts its transport and runner, and
// listens for the HTTP API and the client protocol (call Serve to answer
// requests).
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.API.APILimits.applyDefaults() // a Config built in code gets the defaults too
	if cfg.Discovery.RefreshInterval == 0 {
		cfg.Discovery.applyDefaults(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Discovery.Enabled() && cfg.discovered == nil {
		// A program that did not run Discover: run it here, waiting as
		// long as it takes.
		var err error
		if cfg, err = Discover(context.Background(), cfg, log); err != nil {
			return nil, err
		}
	}
	joining := cfg.Join || (cfg.discovered != nil && cfg.discovered.join)
	id := cfg.NodeID.ID()
	dir := newDirectory(cfg.Peers)
	// Logs name nodes: the transports, runner and node log numeric IDs
	// ("node", "peer", "leader", ...), which the handler shows by name.
	log = slog.New(namingHandler{h: log.Handler(), name: dir.name})
	base := log // for the transport, node and runner, which name the node themselves
	log = log.With("node", id)
	s := &Server{cfg: cfg, log: log, dir: dir, prevMemoryLimit: -1, authLimit: newAuthLimiter()}
	if cfg.MemoryLimit > 0 {
		s.prevMemoryLimit = debug.SetMemoryLimit(cfg.MemoryLimit)
		log.Info("memory limit set", "memory_limit", cfg.MemoryLimit)
	}
	m, err := metrics.New(nil, metricsSource{s}, metrics.Options{Logger: log})
	if err != nil {
		if cfg.discovered != nil {
			cfg.discovered.close()
		}
		return nil, fmt.Errorf("server: node %d: metrics: %w", id, err)
	}
	s.metrics = m
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	storage, closer, err := openNodeStorage(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("server: node %d: %w", id, err)
	}
	if closer != nil {
		s.st = closer
		if !*cfg.Storage.SyncWrites {
			log.Warn("storage.sync_writes is off: acknowledged writes can be lost on power failure")
		}
	}

	if cfg.Storage.Type != "memory" && cfg.Storage.Path != "" {
		s.space = newSpaceGuard(cfg.Storage.Path, uint64(cfg.Storage.MinFreeSpace), storage, log)
	}
	s.logSize = newSizedStorage(storage)

	// The transport delivers to the runner, which needs the transport to
	// start: messages that arrive in between are dropped (Raft retries).
	var run atomic.Pointer[runner.Runner]
	tc := transport.Config{
		ID: id, ClusterID: cfg.ClusterHash(), ListenAddr: net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)),
		Deliver: func(m core.Message) {
			if r := run.Load(); r != nil {
				r.Deliver(m)
			}
		},
		MaxMessageBytes: cfg.Transport.MaxMessageSize,
		DialTimeout:     cfg.Transport.ConnectionTimeout,
		WriteTimeout:    cfg.Transport.Timeout,
		Logger:          base,

		MaxInboundConns:      cfg.Transport.MaxInboundConns,
		MaxInboundConnsPerIP: cfg.Transport.MaxInboundConnsPerIP,
		MaxHandshakes:        cfg.Transport.MaxHandshakes,
		FrameTimeout:         cfg.Transport.FrameTimeout,
		IdleTimeout:          cfg.Transport.IdleTimeout,
	}
	var tlsConf *transport.TLSConfig // nil: plaintext
	if sec := cfg.Security; sec.EnableTLS || sec.EnableMTLS {
		tlsConf = &transport.TLSConfig{CertFile: sec.CertFile, KeyFile: sec.KeyFile, CAFile: sec.CAFile,
			MutualTLS: sec.EnableMTLS}
	}
	switch cfg.Transport.Type {
	case "tcp":
		var t *tcp.Transport
		if t, err = tcp.New(tc, tcp.WithTLS(tlsConf)); err == nil {
			s.tr = t // never a typed nil: Close checks s.tr != nil
		}
	default:
		var opts grpc.Options
		if cfg.Transport.EnableCompression {
			opts.Compression, opts.CompressionLevel = "gzip", cfg.Transport.CompressionLevel
		}
		opts.TLS = tlsConf
		var t *grpc.Transport
		if t, err = grpc.New(tc, opts); err == nil {
			s.tr = t
		}
	}
	if err != nil {
		return nil, fmt.Errorf("server: node %d: transport: %w", id, err)
	}
	var voters []uint64
	if !joining {
		for _, p := range cfg.Peers {
			voters = append(voters, p.ID.ID())
		}
	}
	s.syncPeers()
	sm := &machine{kv: newStore(), dir: s.dir, restored: s.syncPeers, snapshotted: m.SnapshotTaken,
		app: cfg.App}
	s.sm = sm

	tick, hb, et := cfg.Ticks()
	seed, inc := random64(), random64()
	r, err := runner.Start(runner.Config{
		Node: node.Config{
			Core: core.Config{
				ID: id, Voters: voters, ElectionTick: et, HeartbeatTick: hb, Seed: seed,
				PreVote: *cfg.Raft.PreVote, CheckQuorum: *cfg.Raft.CheckQuorum,
			},
			Storage: s.logSize.nodeStorage(), Transport: s.tr, StateMachine: sm,
			Incarnation:       inc,
			LeaseReads:        cfg.Raft.LeaseReads,
			SnapshotThreshold: cfg.Raft.SnapshotThreshold,
			SnapshotKeep:      cfg.Raft.TrailingLogs,
			PeerAddress:       s.apiURL,
			ConfChangeApplied: s.confChangeApplied,
			AdmitWrite:        s.admitWrite,
			Logger:            base,
			VerifyInterval:    *cfg.Raft.VerifyInterval,
			OnAlarm:           s.onAlarm,
		},
		TickInterval: tick,
		Logger:       base,
	})
	if err != nil {
		return nil, fmt.Errorf("server: node %d: %w", id, keyError("security.encryption_old_keys", err))
	}
	s.run = r
	run.Store(r)
	if !joining {
		s.warnIfIdle(log)
	}

	if s.apiTLS, err = apiTLSConfig(cfg); err != nil {
		return nil, fmt.Errorf("server: node %d: %w", id, err)
	}
	auth := newDataAuth(cfg.Security, s.authLimit, log)
	if !auth.required && !cfg.API.MTLS {
		level := slog.LevelInfo // on loopback: only local processes can reach it
		if cfg.API.AllowUnauthenticated {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "the data plane (/kv, /status, the client protocol) needs no token: "+
			"anyone who can reach api.addr or api.client_addr can read and write every key "+
			"(set security.tokens with role reader or writer)",
			"api", cfg.API.Addr, "client", cfg.API.ClientAddr,
			"api.allow_unauthenticated", cfg.API.AllowUnauthenticated)
	}
	mux := http.NewServeMux()
	api := &API{Node: r, LeaderAPI: s.apiURL, FollowerWrites: cfg.API.FollowerWrites,
		Timeout: cfg.API.RequestTimeout, Observe: m.ObserveOperation, Alarms: r.Alarms, auth: auth}
	if es, ok := storage.(encrypt.Store); ok {
		api.Encryption = func() any { return es.Usage() }
	}
	mux.Handle("/", api)
	if d := cfg.discovered; d != nil {
		mux.Handle(helloPath, d.serveHello(cfg.ClusterID, cfg.Security.Tokens))
	}
	if cfg.API.FaultSwitch {
		mux.HandleFunc("/admin/block", func(w http.ResponseWriter, r *http.Request) {
			if auth.authorizeHTTP(w, r, accessWrite) {
				s.block(w, r)
			}
		})
	}
	s.startWatch()
	s.startPromoter()
	s.startDiscovery()
	if cfg.AdminAPI.Enabled == nil || *cfg.AdminAPI.Enabled {
		h, err := s.adminHandler(s.metrics.Handler())
		if err != nil {
			return nil, fmt.Errorf("server: node %d: admin_api: %w", id, err)
		}
		prefix := cfg.AdminAPI.PathPrefix
		if prefix == "" {
			prefix = "/consensus"
		}
		mux.Handle(prefix+"/", h)
	}
	var ln net.Listener
	if d := cfg.discovered; d != nil {
		ln = d.takeListener() // bound while discovery ran
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.API.Addr); err != nil {
			return nil, fmt.Errorf("server: node %d: api.addr: %w", id, err)
		}
	}
	s.ln = limitListener(ln, cfg.API.APILimits, "http api", log)
	wln, err := net.Listen("tcp", cfg.API.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("server: node %d: api.client_addr: %w", id, err)
	}
	wln = blockingListener{Listener: limitListener(wln, cfg.API.APILimits, "client protocol", log), limit: s.authLimit, log: log}
	if s.apiTLS != nil {
		wln = tls.NewListener(wln, s.apiTLS)
	}
	s.wire = newWireServer(wln, r, s.clientAddr, log)
	s.wire.setLimits(cfg.API.APILimits)
	s.wire.observe = m.ObserveOperation
	s.wire.auth = auth
	s.http = httpServer(mux, cfg.API.APILimits, log)
	s.http.TLSConfig = s.apiTLS
	ok = true
	log.Info("node ready", "raft", s.tr.Addr(), "api", s.ln.Addr().String(), "client", wln.Addr().String(),
		"transport", cfg.Transport.Type, "storage", cfg.Storage.Type)
	return s, nil
}

// warnIfIdle warns when the node is in no cluster and has no way into
// one: no peers configured, no state of its own, and join off. Such a node
// would otherwise say "node ready" and never do anything.
func (s *Server) warnIfIdle(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.run.CoreStatus(ctx)
	if err != nil {
		return
	}
	if len(st.Config.Voters)+len(st.Config.Learners)+len(st.Config.VotersOutgoing) == 0 {
		log.Warn("this node is not a member of any cluster and will do nothing: its storage holds no membership, " +
			"peers is empty and join is off; list the cluster's members (this node included) in peers, " +
			"or set join: true and add the node from the leader (POST /consensus/add-node)")
	}
}

// Serve answers HTTP and client-protocol requests until Close; it returns
// nil after Close.
func (s *Server) Serve() error {
	s.wire.serve()
	var err error
	if s.apiTLS != nil {
		err = s.http.ServeTLS(s.ln, "", "") // the certificate is in TLSConfig
	} else {
		err = s.http.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Config returns the node's configuration.
func (s *Server) Config() Config { return s.cfg }

// Runner returns the node's runner.
func (s *Server) Runner() *runner.Runner { return s.run }

// APIAddr returns the address the HTTP API listens on.
func (s *Server) APIAddr() string { return s.ln.Addr().String() }

// ClientAddr returns the address the client protocol listens on.
func (s *Server) ClientAddr() string { return s.wire.ln.Addr().String() }

// Close stops the client protocol, the HTTP API, the node, the transport
// and the storage, in that order. It is idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		var errs []error
		if s.wire != nil {
			errs = append(errs, s.wire.close())
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			errs = append(errs, s.http.Shutdown(ctx))
			cancel()
		}
		if s.ln != nil { // Shutdown closes it only if Serve ran
			if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		if s.watchDone != nil {
			close(s.watchStop)
			<-s.watchDone
		}
		if s.promoteDone != nil {
			s.promoteStop()
			<-s.promoteDone
		}
		s.stopDiscovery()
		if s.run != nil {
			s.run.Stop()
		}
		if s.tr != nil {
			errs = append(errs, s.tr.Close())
		}
		if s.space != nil {
			s.space.Close()
		}
		if s.st != nil {
			errs = append(errs, s.st.Close())
		}
		if s.prevMemoryLimit >= 0 {
			debug.SetMemoryLimit(s.prevMemoryLimit)
		}
		s.err = errors.Join(errs...)
	})
	return s.err
}

// AdminHandler returns the admin REST API (package admin) over this node,
// configured from admin_api.* and security.tokens, with metrics served by
// the given handler (nil: none). consensusd mounts it on its HTTP API; the
// Forge extension on the app's router.
func (s *Server) AdminHandler(metrics http.Handler) (http.Handler, error) {
	return s.adminHandler(metrics)
}

func (s *Server) adminHandler(metrics http.Handler) (http.Handler, error) {
	a := s.cfg.AdminAPI
	tokens := make(map[string]admin.Role, len(s.cfg.Security.Tokens))
	for _, t := range s.cfg.Security.Tokens {
		switch r := admin.Role(t.Role); r {
		case admin.RoleViewer, admin.RoleOperator, admin.RoleAdmin:
			tokens[t.Token] = r
		}
		// reader and writer tokens are for the data plane only.
	}
	h, err := admin.Handler(admin.Config{
		PathPrefix: a.PathPrefix, Tokens: tokens, AllowUnauthenticated: a.AllowUnauthenticated,
		RedirectWrites: a.RedirectWrites, Metrics: metrics, Logger: s.log,
	}, observedCluster{s})
	if err != nil {
		return nil, err
	}
	return limitAuthFailures(h, s.authLimit, s.log), nil
}

// observedCluster is the Server as the admin API's Cluster, recording each
// change it makes in the node's metrics.
type observedCluster struct{ *Server }

func (c observedCluster) timed(op string, fn func() error) error {
	start := time.Now()
	err := fn()
	c.metrics.ObserveOperation(op, time.Since(start), err)
	return err
}

func (c observedCluster) AddNode(ctx context.Context, id uint64, address string, port int) error {
	return c.timed("add_node", func() error { return c.Server.AddNode(ctx, id, address, port) })
}

func (c observedCluster) AddMember(ctx context.Context, m admin.NewMember) error {
	return c.timed("add_node", func() error { return c.Server.AddMember(ctx, m) })
}

func (c observedCluster) PromoteMember(ctx context.Context, id uint64) error {
	return c.timed("promote", func() error { return c.Server.PromoteMember(ctx, id) })
}

func (c observedCluster) RemoveNode(ctx context.Context, id uint64) error {
	return c.timed("remove_node", func() error { return c.Server.RemoveNode(ctx, id) })
}

func (c observedCluster) TransferLeadership(ctx context.Context, target uint64) error {
	return c.timed("transfer_leadership", func() error { return c.Server.TransferLeadership(ctx, target) })
}

func (c observedCluster) Snapshot(ctx context.Context) (idx uint64, err error) {
	err = c.timed("snapshot", func() error {
		idx, err = c.Server.Snapshot(ctx)
		return err
	})
	return idx, err
}

// APIURL returns the base URL of node id's HTTP API, from the peer list
// ("" for a node not in it).
func (s *Server) APIURL(id uint64) string { return s.apiURL(id) }

// apiURL returns the base URL of a node's HTTP API ("" if unknown): https
// when this node serves it over TLS (api.tls), as every member's does.
func (s *Server) apiURL(id uint64) string {
	if m, ok := s.dir.get(id); ok {
		u := m.apiURL()
		if s.cfg.API.TLS || s.cfg.API.MTLS {
			u = "https://" + strings.TrimPrefix(u, "http://")
		}
		return u
	}
	return ""
}

// clientAddr returns a node's client-protocol address ("" if unknown).
func (s *Server) clientAddr(id uint64) string {
	if m, ok := s.dir.get(id); ok {
		return m.clientAddr()
	}
	return ""
}

// syncPeers points the transport at every member's address.
func (s *Server) syncPeers() {
	for _, m := range s.dir.all() {
		if m.ID != s.cfg.NodeID.ID() {
			s.tr.SetPeer(m.ID, m.raftAddr())
		}
	}
}

// confChangeApplied keeps the directory and the transport in step with
// the membership (on the node's goroutine, in log order).
func (s *Server) confChangeApplied(index uint64, cc core.ConfChange) {
	for _, id := range s.dir.memberChanged(cc) {
		if id == s.cfg.NodeID.ID() {
			continue
		}
		if m, ok := s.dir.get(id); ok {
			s.tr.SetPeer(id, m.raftAddr())
			as := "voter"
			for _, c := range cc.Changes {
				if c.NodeID == id && c.Type == core.AddLearner {
					as = "learner"
				}
			}
			s.log.Info("member added", "member", id, "as", as, "promote", m.Promote, "addr", m.raftAddr(), "index", index)
		} else {
			s.tr.RemovePeer(id)
			s.log.Info("member removed", "member", id, "index", index)
		}
	}
}

// block is the fault switch (api.fault_switch, for tests): POST
// /admin/block?peer=ID&on=true|false cuts this node off from a peer (0:
// from every peer) or heals it.
func (s *Server) block(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		httpError(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	peer, err1 := strconv.ParseUint(r.URL.Query().Get("peer"), 10, 64)
	on, err2 := strconv.ParseBool(r.URL.Query().Get("on"))
	if err1 != nil || err2 != nil {
		httpError(w, http.StatusBadRequest, "want ?peer=ID&on=true|false")
		return
	}
	s.tr.Block(peer, on)
	s.log.Warn("fault switch", "peer", peer, "blocked", on)
	writeJSON(w, http.StatusOK, map[string]any{"peer": peer, "blocked": on})
}

// onAlarm counts the divergence alarms the node raises (it logs them
// itself, at ERROR).
func (s *Server) onAlarm(a node.Alarm) {
	if !a.Cleared {
		s.metrics.CorruptionDetected()
	}
}

// random64 draws a seed from the operating system (production only: the
// core itself never reads randomness).
func random64() uint64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:])
}
