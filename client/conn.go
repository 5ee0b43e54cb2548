package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/wire"
)

// Buffer sizes and timing of a connection.
const (
	readBuffer = 64 << 10
	// sweepInterval is how often a connection fails the calls whose
	// deadline passed: deadlines are kept to within it.
	sweepInterval = 10 * time.Millisecond
	// keepBatch is the largest request buffer a connection keeps for reuse.
	keepBatch = 1 << 20
)

// endpoint is one node: its address and current connection.
type endpoint struct {
	c     *Client
	addr  string
	cur   atomic.Pointer[conn]
	dials atomic.Uint64 // dials started

	mu      sync.Mutex // serialises dialling
	dialErr error      // why the last dial failed (nil if it worked)
}

// conn returns a working connection to the node, dialling if there is
// none (one dial at a time; concurrent callers wait for it, and share its
// failure rather than dial again one after the other).
func (ep *endpoint) conn(ctx context.Context, deadline time.Time) (*conn, error) {
	if cn := ep.cur.Load(); cn != nil && !cn.broken.Load() {
		return cn, nil
	}
	seen := ep.dials.Load()
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if cn := ep.cur.Load(); cn != nil && !cn.broken.Load() {
		return cn, nil
	}
	if ep.dials.Load() != seen && ep.dialErr != nil {
		return nil, ep.dialErr // it failed while we waited
	}
	ep.dials.Add(1)
	c := ep.c
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := c.dialer.DialContext(ctx, "tcp", ep.addr)
	if err != nil {
		ep.dialErr = fmt.Errorf("dial %s: %w", ep.addr, err)
		return nil, ep.dialErr
	}
	nc, br, err := ep.open(ctx, nc, deadline)
	if err != nil {
		_ = nc.Close()
		ep.dialErr = err
		return nil, err
	}
	ep.dialErr = nil
	cn := &conn{ep: ep, nc: nc, br: br, out: &wire.Batch{}, pending: make(map[uint64]*call),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.mu.Lock()
	if c.closed { // Close ran during the dial
		c.mu.Unlock()
		_ = nc.Close()
		return nil, ErrClosed
	}
	c.wg.Add(3)
	c.mu.Unlock()
	go cn.readLoop()
	go cn.writeLoop()
	go cn.sweepLoop()
	ep.cur.Store(cn)
	c.log.Debug("client: connected", "addr", ep.addr)
	return cn, nil
}

// open sets up a new connection before requests go over it: the TLS
// handshake (Config.TLS) and authentication (Config.Token), by the
// deadline. It returns the connection to use and its reader.
func (ep *endpoint) open(ctx context.Context, nc net.Conn, deadline time.Time) (net.Conn, *bufio.Reader, error) {
	cfg := ep.c.cfg
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(ep.addr)
		}
		t := tls.Client(nc, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return nc, nil, fmt.Errorf("dial %s: TLS handshake: %w", ep.addr, err)
		}
		nc = t
	}
	br := bufio.NewReaderSize(nc, readBuffer)
	if cfg.Token == "" {
		return nc, br, nil
	}
	_ = nc.SetDeadline(deadline)
	defer func() { _ = nc.SetDeadline(time.Time{}) }()
	auth := wire.Request{Op: wire.OpAuth, Value: []byte(cfg.Token)}
	if _, err := nc.Write(wire.AppendFrame(nil, wire.AppendRequest(nil, &auth))); err != nil {
		return nc, nil, fmt.Errorf("authenticate to %s: %w", ep.addr, err)
	}
	p, err := wire.ReadFrame(br, nil)
	if err != nil {
		return nc, nil, fmt.Errorf("authenticate to %s: %w", ep.addr, err)
	}
	r, rest, err := wire.DecodeResponse(p)
	if err == nil && (len(rest) > 0 || r.ID != 0) {
		err = errors.New("unexpected response")
	}
	if err != nil {
		return nc, nil, fmt.Errorf("authenticate to %s: %w", ep.addr, err)
	}
	switch r.Status {
	case wire.StatusOK:
		return nc, br, nil
	case wire.StatusBadRequest:
		// A node older than Auth: it needs no token.
		ep.c.log.Debug("client: the node does not know Auth requests; going on without", "addr", ep.addr)
		return nc, br, nil
	case wire.StatusUnauthorized:
		return nc, nil, fmt.Errorf("authenticate to %s: %w: %s", ep.addr, ErrUnauthorized, r.Value)
	case wire.StatusForbidden:
		return nc, nil, fmt.Errorf("authenticate to %s: %w: %s", ep.addr, ErrForbidden, r.Value)
	}
	return nc, nil, fmt.Errorf("authenticate to %s: %s: %s", ep.addr, r.Status, r.Value)
}

// call is one caller's request in flight. Calls are pooled; ch is empty
// whenever a call is not in flight.
type call struct {
	ch       chan struct{} // capacity 1: the outcome is in
	op       wire.Op
	deadline time.Time // when the connection gives up on it

	// The outcome, written by the connection before it signals ch.
	err        error // the connection broke, or errTimeout
	status     wire.Status
	value      []byte // a Get's value (a copy)
	existed    bool   // a Delete's key existed
	leaderAddr string
	msg        string // an error status's message
}

// conn is a connection to one node, with its writer, reader and deadline
// sweeper goroutines.
type conn struct {
	ep     *endpoint
	nc     net.Conn
	br     *bufio.Reader // reads nc
	broken atomic.Bool
	once   sync.Once
	done   chan struct{} // closed when the connection fails

	mu       sync.Mutex
	out      *wire.Batch // requests for the writer
	pending  map[uint64]*call
	nextID   uint64
	signaled bool  // the writer was woken and has not taken out yet
	err      error // why the connection failed
	wake     chan struct{}
}

// send queues req on the connection under a new ID, which it returns. The
// connection fails the call with errTimeout once cl.deadline passes.
func (cn *conn) send(cl *call, req *wire.Request) (uint64, error) {
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return 0, err
	}
	cn.nextID++
	id := cn.nextID
	req.ID = id
	cn.pending[id] = cl
	cn.out.AppendRequest(req)
	wake := !cn.signaled
	cn.signaled = true
	cn.mu.Unlock()
	if wake {
		select {
		case cn.wake <- struct{}{}:
		default:
		}
	}
	return id, nil
}

// wait waits for the outcome of call id (which may be errTimeout). If ctx
// ends first it returns ctx's error and the call is forgotten (a late
// response is dropped), unless its outcome came in meanwhile.
func (cn *conn) wait(ctx context.Context, cl *call, id uint64) error {
	done := ctx.Done()
	if done == nil {
		<-cl.ch
		return nil
	}
	select {
	case <-cl.ch:
		return nil
	case <-done:
	}
	cn.mu.Lock()
	_, pending := cn.pending[id]
	delete(cn.pending, id)
	cn.mu.Unlock()
	if pending {
		return ctx.Err()
	}
	<-cl.ch // the outcome is being delivered: take it
	return nil
}

// sweepLoop fails the calls whose deadline passed, every sweepInterval:
// one ticker per connection rather than a timer per call.
func (cn *conn) sweepLoop() {
	defer cn.ep.c.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	var expired []*call
	for {
		select {
		case <-t.C:
		case <-cn.done:
			return
		}
		now := time.Now()
		cn.mu.Lock()
		for id, cl := range cn.pending {
			if !now.Before(cl.deadline) {
				delete(cn.pending, id)
				expired = append(expired, cl)
			}
		}
		cn.mu.Unlock()
		for _, cl := range expired {
			cl.err = errTimeout
			cl.ch <- struct{}{}
		}
		clear(expired)
		expired = expired[:0]
	}
}

// fail breaks the connection (once): every pending call fails with a
// retryable error.
func (cn *conn) fail(err error) {
	cn.once.Do(func() {
		cn.broken.Store(true)
		if !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("connection to %s lost: %w", cn.ep.addr, err)
			cn.ep.c.log.Debug("client: connection lost", "addr", cn.ep.addr, "err", err)
		}
		cn.mu.Lock()
		cn.err = err
		pending := cn.pending
		cn.pending = nil
		cn.out = nil
		cn.mu.Unlock()
		close(cn.done)
		_ = cn.nc.Close()
		for _, cl := range pending {
			cl.err = err
			cl.ch <- struct{}{}
		}
	})
}

func (cn *conn) writeLoop() {
	defer cn.ep.c.wg.Done()
	spare := &wire.Batch{}
	for {
		select {
		case <-cn.wake:
		case <-cn.done:
			return
		}
		// Let the callers that are ready to run queue their requests
		// first: one write then carries many of them.
		for n, i := -1, 0; i < 4; i++ {
			cn.mu.Lock()
			if cn.err != nil { // fail has run: cn.out is nil
				cn.mu.Unlock()
				return
			}
			m := cn.out.Len()
			cn.mu.Unlock()
			if m == n {
				break
			}
			n = m
			runtime.Gosched()
		}
		cn.mu.Lock()
		if cn.err != nil {
			cn.mu.Unlock()
			return
		}
		b := cn.out
		cn.out, cn.signaled = spare, false
		cn.mu.Unlock()
		if b.Len() == 0 {
			spare = b
			continue
		}
		if _, err := cn.nc.Write(b.Bytes()); err != nil {
			cn.fail(err)
			return
		}
		if b.Size() > keepBatch {
			b = &wire.Batch{}
		}
		b.Reset()
		spare = b
	}
}

func (cn *conn) readLoop() {
	defer cn.ep.c.wg.Done()
	br := cn.br
	var buf []byte
	var resps []wire.Response
	var calls []*call
	for {
		p, err := wire.ReadFrame(br, buf)
		if err != nil {
			cn.fail(err)
			return
		}
		buf = p
		resps = resps[:0]
		for rest := p; len(rest) > 0; {
			r, next, err := wire.DecodeResponse(rest)
			if err != nil {
				cn.fail(err)
				return
			}
			resps = append(resps, r)
			rest = next
		}
		calls = calls[:0]
		cn.mu.Lock()
		for i := range resps {
			cl := cn.pending[resps[i].ID]
			if cl != nil {
				delete(cn.pending, resps[i].ID)
			}
			calls = append(calls, cl)
		}
		cn.mu.Unlock()
		for i, cl := range calls {
			if cl != nil { // nil: abandoned (timed out)
				deliver(cl, &resps[i])
			}
		}
		clear(resps)
		clear(calls)
	}
}

// deliver copies what the caller needs out of r (which aliases the read
// buffer) into cl and signals it.
func deliver(cl *call, r *wire.Response) {
	cl.err, cl.status, cl.existed, cl.value, cl.leaderAddr, cl.msg = nil, r.Status, false, nil, r.LeaderAddr, ""
	switch {
	case r.Status == wire.StatusOK && cl.op == wire.OpGet:
		cl.value = append([]byte{}, r.Value...)
	case r.Status == wire.StatusOK && cl.op == wire.OpDelete:
		cl.existed = len(r.Value) == 1 && r.Value[0] == '1'
	case r.Status != wire.StatusOK && r.Status != wire.StatusNotFound && len(r.Value) > 0:
		cl.msg = string(r.Value)
	}
	cl.ch <- struct{}{}
}
