package forgeext

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/forge-consensus/consensus/nodename"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/runner"
	"github.com/forge-consensus/consensus/server"
)

// Errors returned by the Service. Test them with errors.Is, and a
// not-leader error with IsNotLeaderError.
var (
	// ErrNotStarted: the service has not started or has stopped.
	ErrNotStarted = errors.New("consensus: service not running")
	// ErrNoQuorum: the request was dropped, typically because there is no
	// leader or no quorum; it had no effect and may be retried.
	ErrNoQuorum = errors.New("consensus: no quorum")
	// ErrTimeout: the request did not complete in time; a write may or may
	// not have been applied.
	ErrTimeout = errors.New("consensus: timeout")
	// ErrInvalidCommand: the command is malformed or of an unknown type; it
	// was not proposed.
	ErrInvalidCommand = errors.New("consensus: invalid command")
	// ErrKeyNotFound: Read found no value for the key.
	ErrKeyNotFound = errors.New("consensus: key not found")
	// ErrNoSpace: the node is out of storage space and refused the write,
	// which had no effect; reads still work, and writes are taken again
	// once space returns. It is node.ErrNoSpace.
	ErrNoSpace = node.ErrNoSpace
	// ErrDiverged: this node's state diverged from the cluster's
	// (cross-replica verification, raft.verify_interval); it serves no
	// reads or writes until repaired. Ask another node.
	ErrDiverged = node.ErrDiverged
)

// NotLeaderError says a request needs the leader and this node is not it.
type NotLeaderError struct {
	// LeaderID is the leader this node knows of (0: none).
	LeaderID uint64
	// LeaderAddress is the leader's HTTP API base URL, when known.
	LeaderAddress string
}

// Error describes the error with its hint.
func (e *NotLeaderError) Error() string {
	if e.LeaderID == 0 {
		return "consensus: not the leader, and no leader is known"
	}
	return fmt.Sprintf("consensus: not the leader; the leader is node %d at %s", e.LeaderID, e.LeaderAddress)
}

// IsNotLeaderError reports whether err is (or wraps) a *NotLeaderError.
func IsNotLeaderError(err error) bool {
	var nl *NotLeaderError
	return errors.As(err, &nl)
}

// Built-in command types: the key-value state machine's.
const (
	CommandSet    = "set"
	CommandDelete = "delete"
	CommandCAS    = "cas"
	// CommandCreate sets a key only if it is absent, in one command:
	// Result.OK says whether it did; otherwise Result.Value is the current
	// value. Every node must run a release that knows it.
	CommandCreate = "create"
)

// Command is a request to change the replicated state: a type, which
// picks the built-in key-value command or a registered Handler, and a
// payload. The payload is raw bytes ([]byte or json.RawMessage, as they
// are) or any value that encodes to JSON (a map, a struct), encoded when
// the command is applied. For the built-in types it is KVPayload's JSON:
// {"key": "...", "value": "...", "expected": "..."} (value for set and
// cas, expected for cas; values are byte strings, base64 in JSON). A
// Handler receives the payload as the bytes that were replicated
// ([]byte); Bytes and Decode read it.
type Command struct {
	Type    string
	Payload any
}

// Bytes returns the payload as bytes: raw bytes as they are, any other
// value encoded as JSON (nil: none).
func (c Command) Bytes() ([]byte, error) {
	switch p := c.Payload.(type) {
	case nil:
		return nil, nil
	case []byte:
		return p, nil
	case json.RawMessage:
		return p, nil
	}
	b, err := json.Marshal(c.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %s payload: %v", ErrInvalidCommand, c.Type, err)
	}
	return b, nil
}

// Decode decodes the payload's JSON into v (a Handler's usual first step).
func (c Command) Decode(v any) error {
	b, err := c.Bytes()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s payload: %v", ErrInvalidCommand, c.Type, err)
	}
	return nil
}

// KVPayload is the payload of the built-in commands.
type KVPayload struct {
	Key      string `json:"key"`
	Value    []byte `json:"value,omitempty"`
	Expected []byte `json:"expected,omitempty"`
}

// Result is what applying a command returned.
type Result struct {
	// Output is what a registered Handler returned (nil for the built-in
	// commands).
	Output any
	// OK: set and delete succeeded; for cas, the swap happened.
	OK bool
	// Found: the key existed before the command.
	Found bool
	// Value: the previous value (set, delete, successful cas) or the
	// current one (failed cas).
	Value []byte
}

// ReadConsistency is how fresh a read must be.
type ReadConsistency int

// Read consistency levels.
const (
	// Linearizable (the default) confirms leadership with a quorum and
	// waits until the state reflects every write acknowledged before the
	// read started. Works on any node.
	Linearizable ReadConsistency = iota
	// Lease answers on the leader from its lease, without a round trip;
	// needs raft.lease_reads and bounded clock drift.
	Lease
	// Stale answers from the local state at once: possibly old.
	Stale
)

// ReadOption changes how Read reads.
type ReadOption func(*ReadConsistency)

// WithConsistency sets the read's consistency (Linearizable by default).
func WithConsistency(c ReadConsistency) ReadOption {
	return func(r *ReadConsistency) { *r = c }
}

// Service is one node of the cluster, inside a Forge app. Its methods are
// safe for concurrent use.
type Service struct {
	cfg      Config
	log      *slog.Logger
	handlers handlers

	mu      sync.Mutex
	appURLs atomic.Pointer[map[uint64]string] // app_urls by node ID, read without mu
	srv     *server.Server
	admin   http.Handler  // the admin API over srv
	serving chan struct{} // closed when srv.Serve returns
	stopped bool
}

// adminHandler returns the admin API while the service runs.
func (s *Service) adminHandler() (http.Handler, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return nil, fmt.Errorf("consensus: admin API: %w", ErrNotStarted)
	}
	return s.admin, nil
}

// NewService returns a Service for cfg (already resolved and validated)
// that runs once started.
func NewService(cfg Config, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{log: log}
	s.configure(cfg)
	return s
}

// configure sets the configuration of a service that has not started.
func (s *Service) configure(cfg Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	if cfg.Logger != nil {
		s.log = cfg.Logger
	}
	urls := make(map[uint64]string, len(cfg.AppURLs))
	for k, u := range cfg.AppURLs {
		if id, err := server.ParseNodeID(k); err == nil {
			urls[id] = u
		}
	}
	s.appURLs.Store(&urls)
}

// Config returns the service's configuration.
func (s *Service) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Start opens storage, joins the cluster and starts serving. It is
// idempotent; a stopped service does not start again.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	if s.stopped {
		return fmt.Errorf("consensus: start: %w (stopped)", ErrNotStarted)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("consensus: start: %w", err)
	}
	sc := s.cfg.Config
	if s.handlers.freeze() {
		sc.App = &s.handlers
	}
	sc.HintURL = s.appURL
	nodeLog := s.log
	if !s.cfg.Observability.LogRaftDetails {
		nodeLog = slog.New(levelFilter{min: slog.LevelInfo, h: s.log.Handler()})
	}
	// With discovery, wait (as long as ctx allows) to form or join a
	// cluster.
	sc, err := server.Discover(ctx, sc, nodeLog)
	if err != nil {
		return fmt.Errorf("consensus: start: %w", err)
	}
	srv, err := server.New(sc, nodeLog)
	if err != nil {
		return fmt.Errorf("consensus: start: %w", err)
	}
	h, err := srv.AdminHandler(srv.Metrics().Handler())
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("consensus: start: admin API: %w", err)
	}
	s.srv, s.admin, s.serving = srv, h, make(chan struct{})
	go func() {
		defer close(s.serving)
		if err := srv.Serve(); err != nil {
			s.log.Error("consensus: serving stopped", "err", err)
		}
	}()
	return nil
}

// Stop leaves the cluster (this node stops answering) and closes storage.
// It is idempotent.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	select {
	case <-s.serving:
	case <-ctx.Done():
	}
	s.srv, s.admin = nil, nil
	if err != nil {
		return fmt.Errorf("consensus: stop: %w", err)
	}
	return nil
}

// record adds an operation to the node's metrics.
func (s *Service) record(op string, start time.Time, err error) {
	if srv, e := s.server(); e == nil {
		s.observe(srv, op, start, err)
	}
}

// running returns the node's runner, or ErrNotStarted.
func (s *Service) running() (*runner.Runner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil, ErrNotStarted
	}
	return s.srv.Runner(), nil
}

func (s *Service) status() (core.BasicStatus, bool) {
	r, err := s.running()
	if err != nil {
		return core.BasicStatus{}, false
	}
	return r.Status(), true
}

// NodeID returns this node's ID.
func (s *Service) NodeID() uint64 { return s.Config().NodeID.ID() }

// IsLeader reports whether this node is the leader.
func (s *Service) IsLeader() bool {
	st, ok := s.status()
	return ok && st.Role == core.Leader
}

// GetLeader returns the leader's name as this node knows it ("" when it
// knows none). LeaderID returns its numeric ID.
func (s *Service) GetLeader() string {
	id := s.LeaderID()
	if id == 0 {
		return ""
	}
	srv, err := s.server()
	if err != nil {
		return nodename.String(id)
	}
	return srv.NodeName(id)
}

// LeaderID returns the leader's ID as this node knows it (0: none).
func (s *Service) LeaderID() uint64 {
	st, _ := s.status()
	return st.Lead
}

// NodeName returns this node's name.
func (s *Service) NodeName() string { return string(s.Config().NodeID) }

// GetRole returns "leader", "follower", "learner" (a non-voting member)
// or "candidate" (a pre-candidate is a candidate), or "stopped" when the
// service is not running.
func (s *Service) GetRole() string {
	r, err := s.running()
	if err != nil {
		return "stopped"
	}
	switch st := r.Status(); st.Role {
	case core.Leader:
		return "leader"
	case core.Follower:
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if cs, err := r.CoreStatus(ctx); err == nil && slices.Contains(cs.Config.Learners, st.ID) {
			return "learner"
		}
		return "follower"
	default:
		return "candidate"
	}
}

// GetTerm returns the node's current term.
func (s *Service) GetTerm() uint64 {
	st, _ := s.status()
	return st.Term
}

// Apply proposes cmd and waits until it is committed and applied on this
// node (the leader). On a follower it returns a *NotLeaderError naming the
// leader (IsNotLeaderError). ApplyResult also returns what applying it
// gave.
func (s *Service) Apply(ctx context.Context, cmd Command) error {
	_, err := s.ApplyResult(ctx, cmd)
	return err
}

// ApplyResult is Apply, returning the state machine's result: a
// Handler's output, or for the built-in commands whether the key existed
// and its previous value.
func (s *Service) ApplyResult(ctx context.Context, cmd Command) (_ Result, err error) {
	ctx, end := s.operation(ctx, "apply", attribute.String("consensus.command", cmd.Type))
	defer func() { end(err) }()
	var data []byte
	if s.handlers.has(cmd.Type) {
		payload, err := cmd.Bytes()
		if err != nil {
			return Result{}, err
		}
		data = server.EncodeAppCommand(encodeAppCommand(cmd.Type, payload))
	} else {
		kc, err := kvCommand(cmd)
		if err != nil {
			return Result{}, err
		}
		data = kv.EncodeCommand(kc)
	}
	r, err := s.running()
	if err != nil {
		return Result{}, err
	}
	// The core would forward a follower's proposal to the leader; the
	// service's contract is that writes go to the leader, so that callers
	// (and the middleware) can route them.
	if st := r.Status(); st.Role != core.Leader {
		return Result{}, fmt.Errorf("consensus: apply %s: %w", cmd.Type, s.notLeader(st.Lead))
	}
	start := time.Now()
	res, err := r.Propose(ctx, data)
	s.record("apply", start, err)
	if err != nil {
		return Result{}, s.requestError("apply "+cmd.Type, err)
	}
	switch hr := res.(type) {
	case handlerResult:
		if hr.err != nil {
			return Result{Output: hr.v}, fmt.Errorf("consensus: apply %s: %w: %w", cmd.Type, ErrCommandFailed, hr.err)
		}
		return Result{Output: hr.v}, nil
	case error:
		return Result{}, fmt.Errorf("consensus: apply %s: %w", cmd.Type, hr)
	}
	kr, ok := res.(kv.Result)
	if !ok {
		return Result{}, fmt.Errorf("consensus: apply %s: unexpected result %T", cmd.Type, res)
	}
	if kr.Status != kv.StatusOK {
		return Result{}, fmt.Errorf("consensus: apply %s: %w: %v", cmd.Type, ErrInvalidCommand, kr.Status)
	}
	return Result{OK: kr.OK, Found: kr.Found, Value: kr.Value}, nil
}

// kvCommand turns a built-in command into the state machine's.
func kvCommand(cmd Command) (kv.Command, error) {
	var p KVPayload
	if kp, ok := cmd.Payload.(KVPayload); ok {
		p = kp
	} else if err := cmd.Decode(&p); err != nil {
		return kv.Command{}, err
	}
	var kc kv.Command
	if cmd.Type != CommandCAS && len(p.Expected) > 0 {
		return kv.Command{}, fmt.Errorf("%w: %s takes no expected value", ErrInvalidCommand, cmd.Type)
	}
	if cmd.Type == CommandDelete && len(p.Value) > 0 {
		return kv.Command{}, fmt.Errorf("%w: delete takes no value", ErrInvalidCommand)
	}
	switch cmd.Type {
	case CommandSet:
		kc = kv.Command{Op: kv.OpSet, Key: p.Key, Value: p.Value}
	case CommandDelete:
		kc = kv.Command{Op: kv.OpDelete, Key: p.Key}
	case CommandCAS:
		kc = kv.Command{Op: kv.OpCAS, Key: p.Key, Value: p.Value, Expected: p.Expected}
	case CommandCreate:
		kc = kv.Command{Op: kv.OpCreate, Key: p.Key, Value: p.Value}
	default:
		return kv.Command{}, fmt.Errorf("%w: unknown type %q (built-in: set, delete, cas, create)", ErrInvalidCommand, cmd.Type)
	}
	if _, err := kc.AppendBinary(nil); err != nil {
		return kv.Command{}, fmt.Errorf("%w: %s: %v", ErrInvalidCommand, cmd.Type, err)
	}
	return kc, nil
}

// Read returns the value of key, linearizable unless an option says
// otherwise. A missing key is ErrKeyNotFound.
func (s *Service) Read(ctx context.Context, key string, opts ...ReadOption) (_ []byte, err error) {
	c := Linearizable
	for _, o := range opts {
		o(&c)
	}
	ctx, end := s.operation(ctx, "read", attribute.Int("consensus.consistency", int(c)))
	defer func() { end(err) }()
	level := node.ReadLinearizable
	switch c {
	case Linearizable:
	case Lease:
		level = node.ReadLease
	case Stale:
		level = node.ReadStale
	default:
		return nil, fmt.Errorf("%w: unknown read consistency %d", ErrInvalidCommand, c)
	}
	q := kv.Command{Op: kv.OpGet, Key: key}
	if _, err := q.AppendBinary(nil); err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrInvalidCommand, err)
	}
	r, err := s.running()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res, err := r.Read(ctx, level, kv.EncodeCommand(q))
	s.record("read", start, err)
	if err != nil {
		return nil, s.requestError("read", err)
	}
	kr, _ := res.(kv.Result)
	if !kr.Found {
		return nil, fmt.Errorf("consensus: read %q: %w", key, ErrKeyNotFound)
	}
	return kr.Value, nil
}

// notLeader returns the not-leader error for a known leader (0: none).
func (s *Service) notLeader(lead uint64) *NotLeaderError {
	return &NotLeaderError{LeaderID: lead, LeaderAddress: s.addressOf(lead)}
}

// addressOf returns node id's base URL for clients: its app_urls entry, or
// its consensus HTTP API ("" if unknown).
func (s *Service) addressOf(id uint64) string {
	if id == 0 {
		return ""
	}
	if u := s.appURL(id); u != "" {
		return u
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return s.srv.APIURL(id)
	}
	return ""
}

// appURL returns node id's app_urls entry ("" if none). It takes no lock:
// the admin API calls it while Stop may hold the service's.
func (s *Service) appURL(id uint64) string {
	if m := s.appURLs.Load(); m != nil {
		return (*m)[id]
	}
	return ""
}

// barrierKey is read by ReadBarrier; its value does not matter.
const barrierKey = "\x00consensus/read-barrier"

// ReadBarrier returns once this node's state reflects every write
// acknowledged before the call (a linearizable read point, confirmed by a
// quorum). It works on any node.
func (s *Service) ReadBarrier(ctx context.Context) error {
	if _, err := s.Read(ctx, barrierKey); err != nil && !errors.Is(err, ErrKeyNotFound) {
		return err
	}
	return nil
}

// LeaderURL returns the leader's base URL: its app_urls entry, else its
// consensus HTTP API (the peer's api_port, or bind port + 100); "" when no
// leader is known.
func (s *Service) LeaderURL() string {
	lead := s.LeaderID()
	if lead == 0 {
		return ""
	}
	return s.notLeader(lead).LeaderAddress
}

// requestError maps the node's errors to the service's.
func (s *Service) requestError(op string, err error) error {
	var nl *node.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return fmt.Errorf("consensus: %s: %w", op, &NotLeaderError{LeaderID: nl.LeaderID, LeaderAddress: nl.Address})
	case errors.Is(err, node.ErrDropped):
		return fmt.Errorf("consensus: %s: %w: %w", op, ErrNoQuorum, err)
	case errors.Is(err, node.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("consensus: %s: %w: %w", op, ErrTimeout, err)
	case errors.Is(err, node.ErrStopped), errors.Is(err, runner.ErrStopped):
		return fmt.Errorf("consensus: %s: %w: %w", op, ErrNotStarted, err)
	case errors.Is(err, node.ErrDiverged):
		return fmt.Errorf("consensus: %s: %w", op, err) // wraps ErrDiverged
	}
	return fmt.Errorf("consensus: %s: %w", op, err)
}
