// Package client is a client of the replicated key-value store that speaks
// the binary client protocol (package wire) to the nodes of a cluster.
//
// A Client is safe for concurrent use, and meant to be shared: it keeps one
// connection per node, over which every request to that node is pipelined.
// Each connection has one writer goroutine, which sends every request queued
// since its last write in one write, and one reader goroutine, which hands
// each response to the caller waiting for it. Many concurrent callers thus
// cost a few system calls between them.
//
// # Routing
//
// Requests go to the node believed to be the leader, at first Config.Addrs[0].
// A node that is not the leader answers with the leader's address when it
// knows it, and the Client switches to it; otherwise the Client tries the
// next address, backing off briefly (a few milliseconds, growing, bounded)
// while no leader is known.
//
// # Exactly-once writes
//
// Every Put and Delete runs in a session of the key-value store (see
// package kv): the Client keeps a free list of sessions, each a random
// ClientID and its own sequence number. A write takes a free session (or
// makes a new one), numbers itself with the session's next Seq, and until it
// has an answer, its context is done or Config.RequestTimeout has passed, it
// retries, with the same ClientID and Seq, whenever the outcome is unknown or
// the write certainly failed (a node that is not the leader, a dropped
// request, a timed-out request, a lost connection); the store applies it at
// most once. The session then returns to the free list: a session has at
// most one write in flight. A write that gives up without knowing whether it
// was applied returns an error matching ErrUnknownOutcome.
//
// # Authentication and TLS
//
// With Config.Token set, every connection starts with an Auth request (see
// package wire) and is used only once the node accepted the token; a node
// that needs no token accepts any, and a node older than Auth (which
// answers it BadRequest) is used without. A wrong token fails calls with
// ErrUnauthorized, a role that may not do a call (a reader's Put) with
// ErrForbidden; neither is retried. A node with tokens answers a client
// without one ErrRefused, saying a token is needed. With Config.TLS set,
// connections are TLS (nodes with api.tls).
package client

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/wire"
)

// Errors matched with errors.Is. Errors of a Client wrap one of them, and
// also context.Canceled or context.DeadlineExceeded when the caller's
// context ended the request.
var (
	// ErrClosed means the Client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrUnknownOutcome means a write gave up (time-out, cancelled context)
	// without knowing whether it was applied.
	ErrUnknownOutcome = errors.New("client: outcome unknown")
	// ErrUnavailable means a request gave up (time-out, cancelled context)
	// without an answer, and a write certainly was not applied.
	ErrUnavailable = errors.New("client: no answer")
	// ErrRefused means a node refused the request, which was not applied
	// (for instance lease reads on a cluster without them); the error says
	// why.
	ErrRefused = errors.New("client: refused")
	// ErrBadRequest means the request is invalid (an empty or too long key,
	// a too long value).
	ErrBadRequest = errors.New("client: bad request")
	// ErrNoSpace means the node is out of storage space and refused the
	// write, which certainly was not applied; the error says where and how
	// much is free. Reads still work; writes succeed again once the
	// operator frees space.
	ErrNoSpace = errors.New("client: no space left on device")
	// ErrUnauthorized means the node needs a token and Config.Token is
	// wrong (or missing); nothing was applied. Retrying will not help.
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden means Config.Token is valid but its role may not do
	// this (a reader's Put); nothing was applied.
	ErrForbidden = errors.New("client: forbidden")
)

// errTimeout is the cause of a request that ran out of RequestTimeout.
var errTimeout = errors.New("request timeout")

// Consistency is the consistency of a Get.
type Consistency uint8

// Consistency levels.
const (
	// Linearizable reads see every write acknowledged before they began.
	Linearizable Consistency = Consistency(wire.Linearizable)
	// Lease reads are answered by the leader on its lease, without a
	// confirmation round (needs raft.lease_reads on the nodes).
	Lease Consistency = Consistency(wire.Lease)
	// Stale reads return the answering node's state, however old.
	Stale Consistency = Consistency(wire.Stale)
)

// Config configures a Client.
type Config struct {
	// Addrs are the client-protocol host:port addresses of the nodes
	// (api.client_addr); at least one.
	Addrs []string
	// DialTimeout bounds connecting to a node (0: 2s).
	DialTimeout time.Duration
	// RequestTimeout bounds one call, retries included (0: 10s).
	RequestTimeout time.Duration
	// Logger receives connection failures and leader changes at debug
	// level (optional).
	Logger *slog.Logger
	// Token, if set, is presented on every connection (an Auth request of
	// package wire) to a node that needs one (security.tokens with role
	// reader or writer); a node that needs none ignores it. It is never
	// logged.
	Token string
	// TLS, if set, connects over TLS (api.tls on the nodes); set RootCAs
	// to the nodes' CA, and Certificates for api.mtls. ServerName, if
	// empty, is each address's host.
	TLS *tls.Config
}

// Client is a connection to a cluster. See the package documentation.
type Client struct {
	cfg    Config
	log    *slog.Logger
	dialer net.Dialer
	leader atomic.Pointer[endpoint] // where requests go
	calls  sync.Pool                // of *call
	wg     sync.WaitGroup           // connection goroutines

	mu     sync.Mutex
	eps    []*endpoint // the configured nodes, then nodes learned from hints
	byAddr map[string]*endpoint
	closed bool

	sessMu   sync.Mutex
	sessions []*session // free
}

// session is a key-value store session: a random ClientID and the Seq of
// its last write.
type session struct {
	id  uint64
	seq uint64
}

// New returns a Client of the nodes at cfg.Addrs. It connects lazily, on
// first use.
func New(cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("client: %w: no addresses", ErrBadRequest)
	}
	if len(cfg.Token) > wire.MaxTokenLen {
		return nil, fmt.Errorf("client: %w: token longer than %d bytes", ErrBadRequest, wire.MaxTokenLen)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	c := &Client{cfg: cfg, log: cfg.Logger, byAddr: make(map[string]*endpoint)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.dialer.Timeout = cfg.DialTimeout
	c.calls.New = func() any { return &call{ch: make(chan struct{}, 1)} }
	for _, a := range cfg.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("client: address %q: %w", a, err)
		}
		c.endpointLocked(a)
	}
	c.leader.Store(c.eps[0])
	return c, nil
}

// Close closes every connection; calls in progress and later calls fail
// with ErrClosed. It waits for the Client's goroutines to end.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	eps := append([]*endpoint(nil), c.eps...)
	c.mu.Unlock()
	for _, ep := range eps {
		ep.mu.Lock() // no dial in progress
		if cn := ep.cur.Load(); cn != nil {
			cn.fail(ErrClosed)
		}
		ep.mu.Unlock()
	}
	c.wg.Wait()
	return nil
}

// Get reads key at consistency level cl. found is false (and err nil) if
// the key is absent. Gets are retried freely until ctx is done or
// Config.RequestTimeout passes.
func (c *Client) Get(ctx context.Context, key string, cl Consistency) (value []byte, found bool, err error) {
	req := wire.Request{Op: wire.OpGet, Consistency: wire.Consistency(cl), Key: []byte(key)}
	a, err := c.do(ctx, &req)
	if err != nil {
		return nil, false, fmt.Errorf("client: get %q: %w", key, err)
	}
	return a.value, a.status == wire.StatusOK, nil
}

// Put writes value to key, exactly once (see the package documentation).
func (c *Client) Put(ctx context.Context, key string, value []byte) error {
	s := c.session()
	defer c.release(s)
	s.seq++
	req := wire.Request{Op: wire.OpPut, ClientID: s.id, Seq: s.seq, Key: []byte(key), Value: value}
	if _, err := c.do(ctx, &req); err != nil {
		return fmt.Errorf("client: put %q: %w", key, err)
	}
	return nil
}

// Delete removes key, exactly once (see the package documentation), and
// reports whether it existed.
func (c *Client) Delete(ctx context.Context, key string) (existed bool, err error) {
	s := c.session()
	defer c.release(s)
	s.seq++
	req := wire.Request{Op: wire.OpDelete, ClientID: s.id, Seq: s.seq, Key: []byte(key)}
	a, err := c.do(ctx, &req)
	if err != nil {
		return false, fmt.Errorf("client: delete %q: %w", key, err)
	}
	return a.existed, nil
}

// session takes a free session, or makes one.
func (c *Client) session() *session {
	c.sessMu.Lock()
	if n := len(c.sessions); n > 0 {
		s := c.sessions[n-1]
		c.sessions = c.sessions[:n-1]
		c.sessMu.Unlock()
		return s
	}
	c.sessMu.Unlock()
	var b [8]byte
	for {
		_, _ = crand.Read(b[:]) // never fails (crypto/rand panics rather)
		if id := binary.LittleEndian.Uint64(b[:]) >> 1; id != 0 {
			return &session{id: id}
		}
	}
}

// release returns a session to the free list.
func (c *Client) release(s *session) {
	c.sessMu.Lock()
	c.sessions = append(c.sessions, s)
	c.sessMu.Unlock()
}

// answer is what a request came back with.
type answer struct {
	status  wire.Status // StatusOK or StatusNotFound
	value   []byte      // a Get's value (a copy)
	existed bool        // a Delete's key existed
}

// do sends req until it has an answer, retrying as the package
// documentation says, and returns the answer or why it gave up.
func (c *Client) do(ctx context.Context, req *wire.Request) (answer, error) {
	if err := req.Check(); err != nil {
		return answer{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	write := req.Op != wire.OpGet
	deadline := time.Now().Add(c.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	cl := c.calls.Get().(*call)
	defer c.calls.Put(cl)
	cl.op, cl.deadline = req.Op, deadline
	var (
		unknown bool  // a write attempt may have been applied
		last    error // why the last attempt failed
		pause   int   // consecutive attempts that call for a back-off
		hops    int   // NotLeader answers
	)
	for {
		if pause > 0 {
			if err := c.backoff(ctx, pause, deadline); err != nil {
				return answer{}, c.giveUp(err, last, unknown)
			}
		}
		if err := ctx.Err(); err != nil {
			return answer{}, c.giveUp(err, last, unknown)
		}
		ep := c.leader.Load()
		cn, err := ep.conn(ctx, deadline)
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) {
			return answer{}, err
		}
		if err != nil {
			last = err
			c.rotate(ep)
			pause++
			continue
		}
		id, err := cn.send(cl, req)
		if err != nil { // broken before sending: nothing happened
			last = err
			pause++
			continue
		}
		if err := cn.wait(ctx, cl, id); err != nil {
			return answer{}, c.giveUp(err, last, unknown || write)
		}
		if cl.err == errTimeout {
			return answer{}, c.giveUp(errTimeout, last, unknown || write)
		}
		if cl.err != nil { // the connection broke after sending
			last, unknown = cl.err, unknown || write
			if errors.Is(cl.err, ErrClosed) {
				return answer{}, c.giveUp(cl.err, nil, unknown)
			}
			c.rotate(ep)
			pause++
			continue
		}
		switch cl.status {
		case wire.StatusOK, wire.StatusNotFound:
			a := answer{status: cl.status, value: cl.value, existed: cl.existed}
			cl.value = nil
			return a, nil
		case wire.StatusRefused:
			return answer{}, fmt.Errorf("%w: %s", ErrRefused, cl.msg)
		case wire.StatusBadRequest:
			return answer{}, fmt.Errorf("%w: %s", ErrBadRequest, cl.msg)
		case wire.StatusNoSpace:
			return answer{}, fmt.Errorf("%w: %s", ErrNoSpace, cl.msg)
		case wire.StatusUnauthorized:
			return answer{}, fmt.Errorf("%w: %s", ErrUnauthorized, cl.msg)
		case wire.StatusForbidden:
			return answer{}, fmt.Errorf("%w: %s", ErrForbidden, cl.msg)
		case wire.StatusNotLeader:
			last = fmt.Errorf("node at %s is not the leader", ep.addr)
			hops++
			// Follow a hint at once the first time; stale hints that send
			// requests around in circles (during an election) back off.
			if c.follow(ep, cl.leaderAddr) && hops == 1 {
				pause = 0
			} else {
				pause++
			}
		case wire.StatusUnknown:
			last, unknown = fmt.Errorf("outcome unknown at %s: %s", ep.addr, cl.msg), unknown || write
			pause++
		default: // StatusDropped, StatusOverloaded
			last = fmt.Errorf("%s at %s: %s", cl.status, ep.addr, cl.msg)
			pause++
		}
	}
}

// giveUp builds the error of a request that gave up for cause (a time-out,
// the context, ErrClosed) after the failure last.
func (c *Client) giveUp(cause, last error, unknown bool) error {
	kind := ErrUnavailable
	if unknown {
		kind = ErrUnknownOutcome
	}
	if last != nil {
		return fmt.Errorf("%w: %w (last: %v)", kind, cause, last)
	}
	return fmt.Errorf("%w: %w", kind, cause)
}

// backoff sleeps before the n-th consecutive retry: a few milliseconds,
// doubling, at most 50, with jitter. It returns the cause if ctx or the
// deadline ends first.
func (c *Client) backoff(ctx context.Context, n int, deadline time.Time) error {
	d := min(time.Millisecond<<min(n, 6), 50*time.Millisecond)
	d = d/2 + rand.N(d/2+1)
	if rest := time.Until(deadline); rest < d {
		if rest <= 0 {
			return errTimeout
		}
		d = rest
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		if time.Now().Before(deadline) {
			return nil
		}
		return errTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// follow moves requests to the leader named by a NotLeader answer from ep
// and reports whether it did; without a usable hint it rotates to the next
// node.
func (c *Client) follow(ep *endpoint, hint string) bool {
	if hint == "" {
		c.rotate(ep)
		return false
	}
	c.mu.Lock()
	to := c.endpointLocked(hint)
	c.mu.Unlock()
	if to == ep {
		return false
	}
	if c.leader.CompareAndSwap(ep, to) {
		c.log.Debug("client: following the leader", "from", ep.addr, "to", to.addr)
	}
	return true
}

// rotate moves requests from ep (if they still go there) to the next node.
func (c *Client) rotate(ep *endpoint) {
	c.mu.Lock()
	next := c.eps[0]
	for i, e := range c.eps {
		if e == ep {
			next = c.eps[(i+1)%len(c.eps)]
		}
	}
	c.mu.Unlock()
	if c.leader.CompareAndSwap(ep, next) {
		c.log.Debug("client: trying another node", "from", ep.addr, "to", next.addr)
	}
}

// endpointLocked returns the endpoint of addr, adding it if new. c.mu is
// held.
func (c *Client) endpointLocked(addr string) *endpoint {
	if ep := c.byAddr[addr]; ep != nil {
		return ep
	}
	ep := &endpoint{c: c, addr: addr}
	c.eps = append(c.eps, ep)
	c.byAddr[addr] = ep
	return ep
}
