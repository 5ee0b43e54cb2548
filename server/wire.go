package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"github.com/forge-consensus/consensus/internal/lograte"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/runner"
	"github.com/forge-consensus/consensus/wire"
)

// Limits of a client-protocol connection.
const (
	// wireReadBuffer is the size of a connection's read buffer.
	wireReadBuffer = 64 << 10
	// wireMaxInFlight bounds the requests of one connection that were read
	// and whose responses are not written yet: beyond it the connection's
	// reader stops reading until responses drain.
	wireMaxInFlight = 16384
	// wireMinChunk is the fewest requests the reader hands to the node at
	// once when a frame has more than fit in flight: it waits for that much
	// room rather than trickle requests one by one.
	wireMinChunk = 1024
	// wireMaxOutbox bounds the bytes of responses waiting for the writer
	// beyond which the reader stops handing requests to the node (responses
	// of requests already handed over still come in).
	wireMaxOutbox = 4 << 20
	// wireKeepBatch is the largest response buffer a connection keeps for
	// reuse; a larger one (after a burst of large values) is dropped.
	wireKeepBatch = 1 << 20
	// wireKeepFrame is the largest frame buffer a connection keeps for
	// reuse; the memory of a larger frame is counted against
	// api.max_read_memory while the frame is read and handled.
	wireKeepFrame = 64 << 10
)

// wireLimits are a client-protocol server's limits (from api.*).
type wireLimits struct {
	readTimeout time.Duration // to receive a frame once it started
	idleTimeout time.Duration // between frames, with nothing in flight
	inflight    *gate         // requests in flight over all connections
	readMemory  *gate         // bytes of large frames being read
}

// setLimits sets the server's limits; call it before serve. Without it the
// server has none beyond the per-connection ones.
func (ws *wireServer) setLimits(l APILimits) {
	ws.limits = wireLimits{readTimeout: l.ReadTimeout, idleTimeout: l.IdleTimeout,
		inflight: newGate(int64(l.MaxInFlight)), readMemory: newGate(l.MaxReadMemory)}
}

// badFrame logs a connection closed for a bad frame: at Warn at most once
// a second (with the number held back since), at Debug otherwise.
func (ws *wireServer) badFrame(msg, remote string, err error) {
	if ok, suppressed := ws.badFrames.Allow(time.Now()); ok {
		ws.log.Warn(msg, "remote", remote, "err", err, "suppressed", suppressed)
		return
	}
	ws.log.Debug(msg, "remote", remote, "err", err)
}

// wireServer serves the binary client protocol (package wire) of one node.
//
// Each connection has a reader goroutine and a writer goroutine. The reader
// reads a frame, decodes all its requests and hands them to the node's
// goroutine in one runner.Submit; their futures' OnResolve callbacks, which
// run on the node's goroutine, append the encoded responses to the
// connection's outbox, and the first of them queues a wake-up of the writer
// behind the node's current work, so that every entry the node applies
// meanwhile is answered in the same write; the writer swaps the outbox out
// and writes all it holds with one write. Requests and responses are
// therefore batched on every hop with no goroutine per request.
//
// A connection has at most wireMaxInFlight requests in flight (read, not yet
// answered on the socket): beyond that its reader stops reading, so a client
// that sends without reading cannot grow the server's memory without bound.
// A frame that cannot be parsed closes the connection, unanswered and with
// none of its requests carried out.
//
// Writes are answered StatusNotLeader by a node that is not the leader (the
// client follows the hint rather than have a follower forward the write);
// reads at every level are answered by any node that can (linearizable
// reads on a follower take a read point from the leader). A Delete answers
// "1" if the key existed and "0" if not. The server is otherwise stateless:
// sessions (ClientID, Seq) are kept by the key-value store.
type wireServer struct {
	ln   net.Listener
	run  *runner.Runner
	log  *slog.Logger
	addr func(id uint64) string // a node's client-protocol address ("" if unknown)
	// observe, if set, is told of every request's outcome (on the node's
	// goroutine).
	observe func(op string, d time.Duration, err error)
	// badFrames limits the warnings of bad frames: a client that sends
	// garbage in a loop cannot flood the log.
	badFrames lograte.Limiter
	// auth, if set, authenticates connections (Auth requests; see package
	// wire).
	auth *dataAuth
	// slowClients limits the warnings of connections cut off for sending a
	// frame too slowly.
	slowClients lograte.Limiter
	limits      wireLimits

	start   sync.Once
	stop    sync.Once
	quit    chan struct{} // closed by close
	wg      sync.WaitGroup
	closeEr error

	mu     sync.Mutex
	conns  map[*wireConn]struct{}
	closed bool
}

func newWireServer(ln net.Listener, run *runner.Runner, addr func(uint64) string, log *slog.Logger) *wireServer {
	return &wireServer{ln: ln, run: run, addr: addr, log: log, quit: make(chan struct{}),
		conns: make(map[*wireConn]struct{})}
}

// serve starts accepting connections (once); it returns at once.
func (ws *wireServer) serve() {
	ws.start.Do(func() {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		if ws.closed {
			return
		}
		ws.wg.Add(2)
		go ws.acceptLoop()
		go func() { // a node that stops (or fails) drops its clients
			defer ws.wg.Done()
			select {
			case <-ws.run.Done():
				ws.log.Warn("client protocol: node stopped; closing connections")
				go ws.close()
			case <-ws.quit:
			}
		}()
	})
}

func (ws *wireServer) acceptLoop() {
	defer ws.wg.Done()
	var delay time.Duration
	for {
		nc, err := ws.ln.Accept()
		if err != nil {
			select {
			case <-ws.quit:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure (out of file descriptors, ...): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			ws.log.Warn("client protocol: accept", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ws.quit:
				return
			}
			continue
		}
		delay = 0
		c := &wireConn{ws: ws, nc: nc, out: &wire.Batch{}, done: make(chan struct{}),
			wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
		c.kick = func(*node.Node) { c.wakeWriter() }
		ws.mu.Lock()
		if ws.closed {
			ws.mu.Unlock()
			_ = nc.Close()
			return
		}
		ws.conns[c] = struct{}{}
		ws.wg.Add(2)
		ws.mu.Unlock()
		go c.readLoop()
		go c.writeLoop()
	}
}

// close stops accepting, closes every connection and waits for their
// goroutines. It is idempotent.
func (ws *wireServer) close() error {
	ws.stop.Do(func() {
		ws.mu.Lock()
		ws.closed = true
		close(ws.quit)
		conns := make([]*wireConn, 0, len(ws.conns))
		for c := range ws.conns {
			conns = append(conns, c)
		}
		ws.mu.Unlock()
		if err := ws.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			ws.closeEr = err
		}
		for _, c := range conns {
			c.close()
		}
	})
	ws.wg.Wait()
	return ws.closeEr
}

// wireConn is one client connection.
type wireConn struct {
	ws   *wireServer
	nc   net.Conn
	once sync.Once
	done chan struct{} // closed when the connection closes

	reserved int64 // bytes of api.max_read_memory the reader holds (reader only)

	mu        sync.Mutex
	out       *wire.Batch // responses for the writer
	inflight  int         // requests read whose responses are not written
	signaled  bool        // the writer was woken and has not taken out yet
	wantSpace bool        // the reader waits for inflight to drop
	closed    bool
	wake      chan struct{}    // capacity 1: wakes the writer
	space     chan struct{}    // capacity 1: wakes the reader
	kick      func(*node.Node) // wakes the writer, from the node's queue

	// Authentication, read and written by the reader goroutine only.
	authSent bool   // the client sent an Auth request
	role     string // the role of its last Auth's token ("" if none or wrong)
}

// wireOp is a request on its way to the node: a copy of what the node
// needs, so that the reader can reuse its buffer.
type wireOp struct {
	id    uint64
	op    wire.Op
	level node.ReadLevel
	cmd   []byte // the encoded kv.Command
}

// close closes the connection once; responses still to come are dropped.
func (c *wireConn) close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.out = nil
		if g := c.ws.limits.inflight; g != nil {
			g.give(int64(c.inflight)) // their answers will be dropped
		}
		c.mu.Unlock()
		close(c.done)
		_ = c.nc.Close()
		c.ws.mu.Lock()
		delete(c.ws.conns, c)
		c.ws.mu.Unlock()
	})
}

func (c *wireConn) readLoop() {
	defer c.ws.wg.Done()
	defer c.close()
	defer c.giveReadMemory()
	br := bufio.NewReaderSize(c.nc, wireReadBuffer)
	var buf []byte
	var reqs []wire.Request
	for {
		p, err := c.readFrame(br, buf)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
				c.ws.log.Debug("client protocol: connection closed", "remote", c.nc.RemoteAddr().String())
			case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrChecksum):
				c.ws.badFrame("client protocol: bad frame; closing the connection", c.nc.RemoteAddr().String(), err)
			case errors.Is(err, errIdle):
				c.ws.log.Debug("client protocol: idle connection closed", "remote", c.nc.RemoteAddr().String())
			case errors.Is(err, errReadBudget), errors.As(err, &ne) && ne.Timeout():
				c.ws.slowClient(c.nc.RemoteAddr().String(), err)
			default:
				c.ws.log.Debug("client protocol: read", "remote", c.nc.RemoteAddr().String(), "err", err)
			}
			return
		}
		buf = p
		// Decode the whole frame before acting on any of it: a malformed
		// frame changes nothing.
		reqs = reqs[:0]
		for rest := p; len(rest) > 0; {
			r, next, err := wire.DecodeRequest(rest)
			if err != nil && !errors.Is(err, wire.ErrInvalidRequest) {
				c.ws.badFrame("client protocol: malformed frame; closing the connection", c.nc.RemoteAddr().String(), err)
				return
			}
			reqs = append(reqs, r)
			rest = next
		}
		if len(reqs) == 0 {
			c.ws.badFrame("client protocol: empty frame; closing the connection", c.nc.RemoteAddr().String(), nil)
			return
		}
		for i := 0; i < len(reqs); {
			k := c.acquire(len(reqs) - i)
			if k == 0 {
				return // closed
			}
			c.submit(reqs[i : i+k])
			i += k
		}
		clear(reqs) // drop the references into buf

		// A large frame's buffer goes, with its room in the read memory.
		if cap(buf) > wireKeepFrame {
			buf = nil
			c.giveReadMemory()
		}
	}
}

// errIdle is why a connection that sent nothing for api.idle_timeout, with
// no request in flight, is closed.
var errIdle = errors.New("idle")

// readFrame reads the next frame within the server's limits: the
// connection may stay idle (with nothing in flight) for the idle timeout;
// once a frame's first byte came, the whole frame must come within the
// read timeout; and a frame larger than wireKeepFrame takes room in the
// server's read memory as its bytes arrive, waiting (within the read
// timeout) while there is none.
func (c *wireConn) readFrame(br *bufio.Reader, buf []byte) ([]byte, error) {
	lim := c.ws.limits
	for lim.idleTimeout > 0 && br.Buffered() == 0 {
		if err := c.nc.SetReadDeadline(time.Now().Add(lim.idleTimeout)); err != nil {
			return nil, err
		}
		_, err := br.Peek(1)
		if err == nil {
			break
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, err
		}
		c.mu.Lock()
		busy := c.inflight > 0
		c.mu.Unlock()
		if !busy {
			return nil, errIdle
		}
		// Quiet while it waits for answers: not idle.
	}
	var deadline time.Time
	if lim.readTimeout > 0 {
		deadline = time.Now().Add(lim.readTimeout)
	}
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	if lim.readMemory == nil {
		return wire.ReadFrame(br, buf)
	}
	return wire.ReadFrameGrow(br, buf, func(newCap int) error {
		need := int64(max(0, newCap-wireKeepFrame)) - c.reserved
		if need <= 0 {
			return nil
		}
		if err := lim.readMemory.take(need, deadline, c.done); err != nil {
			return err
		}
		c.reserved += need
		return nil
	})
}

// giveReadMemory gives back the read memory the reader holds.
func (c *wireConn) giveReadMemory() {
	if c.reserved > 0 {
		c.ws.limits.readMemory.give(c.reserved)
		c.reserved = 0
	}
}

// slowClient logs a connection closed for sending a frame too slowly: at
// Warn at most once a second (with the number held back since), at Debug
// otherwise.
func (ws *wireServer) slowClient(remote string, err error) {
	const msg = "client protocol: frame not received within api.read_timeout; closing the connection"
	if ok, suppressed := ws.slowClients.Allow(time.Now()); ok {
		ws.log.Warn(msg, "remote", remote, "err", err, "suppressed", suppressed)
		return
	}
	ws.log.Debug(msg, "remote", remote, "err", err)
}

// acquire waits until up to n more requests may be in flight (and the
// outbox is not too large), counts them and returns how many (0 if the
// connection closed).
func (c *wireConn) acquire(n int) int {
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return 0
		}
		free := wireMaxInFlight - c.inflight
		var global <-chan struct{} // closed when the server has room again
		if k := min(n, free); k >= min(n, wireMinChunk) && c.out.Size() <= wireMaxOutbox {
			if g := c.ws.limits.inflight; g != nil {
				var got int64
				if got, global = g.takeUpTo(int64(k), wireMinChunk); got > 0 {
					k = int(got)
				}
			}
			if global == nil {
				c.inflight += k
				c.mu.Unlock()
				return k
			}
		}
		c.wantSpace = true
		c.mu.Unlock()
		select {
		case <-c.space:
		case <-global:
		case <-c.done:
		}
		c.mu.Lock()
	}
}

// submit hands requests (counted in flight) to the node. Invalid ones are
// answered at once.
func (c *wireConn) submit(reqs []wire.Request) {
	ops := make([]wireOp, 0, len(reqs))
	// Every command of the batch is encoded into one buffer (a command
	// keeps referring to the old array if appending moves it).
	size := 0
	for i := range reqs {
		size += len(reqs[i].Key) + len(reqs[i].Value) + 3*binary.MaxVarintLen64 + 4
	}
	enc := make([]byte, 0, size)
	encode := func(cmd kv.Command) []byte {
		start := len(enc)
		enc, _ = cmd.AppendBinary(enc) // an invalid command is refused when applied, as by kv.EncodeCommand
		return enc[start:len(enc):len(enc)]
	}
	for i := range reqs {
		r := &reqs[i]
		if err := r.Check(); err != nil {
			c.respond(&wire.Response{ID: r.ID, Status: wire.StatusBadRequest, Value: []byte(err.Error())})
			continue
		}
		if r.Op == wire.OpAuth {
			c.respond(c.authenticate(r))
			continue
		}
		if refusal := c.authorize(r); refusal != nil {
			c.respond(refusal)
			continue
		}
		o := wireOp{id: r.ID, op: r.Op}
		switch r.Op {
		case wire.OpGet:
			o.level = readLevel(r.Consistency)
			o.cmd = encode(kv.Command{Op: kv.OpGet, Key: string(r.Key)})
		case wire.OpPut:
			o.cmd = encode(kv.Command{Op: kv.OpSet, Key: string(r.Key), Value: r.Value,
				ClientID: r.ClientID, Seq: r.Seq})
		case wire.OpDelete:
			o.cmd = encode(kv.Command{Op: kv.OpDelete, Key: string(r.Key),
				ClientID: r.ClientID, Seq: r.Seq})
		}
		ops = append(ops, o)
	}
	if len(ops) == 0 {
		return
	}
	if err := c.ws.run.Submit(func(n *node.Node) { c.start(n, ops) }); err != nil {
		// The function will never run: nothing was applied.
		for i := range ops {
			c.respond(&wire.Response{ID: ops[i].id, Status: wire.StatusDropped, Value: []byte(err.Error())})
		}
	}
}

// authenticate answers an Auth request and sets the connection's role
// from it. Too many wrong tokens from one address close the connection
// (and, for a while, refuse its new ones).
func (c *wireConn) authenticate(r *wire.Request) *wire.Response {
	c.authSent = true
	a := c.ws.auth
	if a == nil || !a.required {
		c.role = "writer"
		return &wire.Response{ID: r.ID} // no token needed: it is not even looked at
	}
	ip := remoteIP(c.nc.RemoteAddr().String())
	if _, blocked := a.limit.blocked(ip, time.Now()); blocked {
		c.role = ""
		c.close()
		return &wire.Response{ID: r.ID, Status: wire.StatusUnauthorized}
	}
	role, ok := a.lookup(r.Value)
	if !ok {
		c.role = ""
		if a.failed(ip, "wire") {
			c.close()
		}
		return &wire.Response{ID: r.ID, Status: wire.StatusUnauthorized, Value: []byte("invalid token")}
	}
	c.role = role
	if roleAccess(role) < accessRead {
		return &wire.Response{ID: r.ID, Status: wire.StatusForbidden,
			Value: []byte("role " + role + " has no access to the data plane: it needs role reader, writer or admin")}
	}
	return &wire.Response{ID: r.ID, Value: []byte(roleAccess(role).String())}
}

// authorize returns the refusal of a request the connection's role may not
// make, or nil.
func (c *wireConn) authorize(r *wire.Request) *wire.Response {
	a := c.ws.auth
	if a == nil || !a.required {
		return nil
	}
	need := accessRead
	if r.Op != wire.OpGet {
		need = accessWrite
	}
	switch {
	case roleAccess(c.role) >= need:
		return nil
	case !c.authSent: // perhaps a client older than Auth: a status it knows
		return &wire.Response{ID: r.ID, Status: wire.StatusRefused,
			Value: []byte("unauthorized: this node needs a token: send an Auth request first (client.Config.Token)")}
	case c.role == "":
		return &wire.Response{ID: r.ID, Status: wire.StatusUnauthorized,
			Value: []byte("unauthorized: no valid token on this connection")}
	}
	return &wire.Response{ID: r.ID, Status: wire.StatusForbidden,
		Value: []byte("forbidden: role " + c.role + " may not do this: it needs role " + needRoles(need))}
}

func readLevel(c wire.Consistency) node.ReadLevel {
	switch c {
	case wire.Lease:
		return node.ReadLease
	case wire.Stale:
		return node.ReadStale
	}
	return node.ReadLinearizable
}

// start runs on the node's goroutine: it starts every request and arranges
// for its answer.
func (c *wireConn) start(n *node.Node, ops []wireOp) {
	st := n.Status()
	t0 := time.Now()
	for i := range ops {
		o := &ops[i]
		var f *node.Future
		switch o.op {
		case wire.OpGet:
			f = n.Read(o.level, o.cmd)
		default:
			if st.Role != core.Leader {
				c.respondLater(c.notLeader(o.id, st.Lead))
				continue
			}
			f = n.Propose(o.cmd)
		}
		id, op := o.id, o.op
		f.OnResolve(func(f *node.Future) {
			if obs := c.ws.observe; obs != nil {
				name := "apply"
				if op == wire.OpGet {
					name = "read"
				}
				_, err := f.Result()
				obs(name, time.Since(t0), err)
			}
			c.resolved(id, op, f)
		})
	}
}

func (c *wireConn) notLeader(id, leader uint64) *wire.Response {
	r := &wire.Response{ID: id, Status: wire.StatusNotLeader, LeaderID: leader}
	if leader != 0 {
		r.LeaderAddr = c.ws.addr(leader)
	}
	return r
}

// resolved answers a request whose future resolved (on the node's
// goroutine; it must not block).
func (c *wireConn) resolved(id uint64, op wire.Op, f *node.Future) {
	res, err := f.Result()
	if err != nil {
		c.respondLater(c.failure(id, err))
		return
	}
	r := wire.Response{ID: id}
	kr, _ := res.(kv.Result)
	switch {
	case kr.Status != kv.StatusOK:
		r.Status, r.Value = wire.StatusRefused, []byte(kr.Status.String())
	case op == wire.OpGet && !kr.Found:
		r.Status = wire.StatusNotFound
	case op == wire.OpGet:
		r.Value = kr.Value // copied into the outbox by respond
	case op == wire.OpDelete && kr.Found:
		r.Value = []byte{'1'}
	case op == wire.OpDelete:
		r.Value = []byte{'0'}
	}
	c.respondLater(&r)
}

// failure maps a request's error to its response.
func (c *wireConn) failure(id uint64, err error) *wire.Response {
	var nl *node.NotLeaderError
	if errors.As(err, &nl) {
		return c.notLeader(id, nl.LeaderID)
	}
	r := &wire.Response{ID: id, Status: wire.StatusUnknown, Value: []byte(err.Error())}
	switch {
	case errors.Is(err, node.ErrNoSpace):
		r.Status = wire.StatusNoSpace
	case errors.Is(err, node.ErrDropped):
		r.Status = wire.StatusDropped
	case errors.Is(err, node.ErrLeaseReadsDisabled), errors.Is(err, kv.ErrNotReadOnly),
		errors.Is(err, node.ErrDiverged):
		r.Status = wire.StatusRefused
	}
	// Otherwise (node.ErrTimeout, node.ErrStopped, node.ErrStorage, ...):
	// the outcome is unknown.
	return r
}

// respond queues a response for the writer and wakes it. It never blocks
// for long.
func (c *wireConn) respond(r *wire.Response) {
	if c.queue(r) {
		c.wakeWriter()
	}
}

// respondLater queues a response, on the node's goroutine, and has the
// writer woken once the node has run what is queued for it now: every
// response the node produces meanwhile (all the entries it applies, say)
// then goes out in the same write.
func (c *wireConn) respondLater(r *wire.Response) {
	if c.queue(r) && c.ws.run.Submit(c.kick) != nil {
		c.wakeWriter() // the runner stopped
	}
}

// queue appends a response to the outbox and reports whether the writer
// needs waking (it was not woken since it last took the outbox).
func (c *wireConn) queue(r *wire.Response) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.out.AppendResponse(r)
	wake := !c.signaled
	c.signaled = true
	return wake
}

func (c *wireConn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *wireConn) writeLoop() {
	defer c.ws.wg.Done()
	defer c.close()
	spare := &wire.Batch{}
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		b := c.out
		c.out, c.signaled = spare, false
		c.mu.Unlock()
		n := b.Len()
		if n == 0 {
			spare = b
			continue
		}
		if _, err := c.nc.Write(b.Bytes()); err != nil {
			c.ws.log.Debug("client protocol: write", "remote", c.nc.RemoteAddr().String(), "err", err)
			return
		}
		if b.Size() > wireKeepBatch {
			b = &wire.Batch{}
		}
		b.Reset()
		spare = b
		c.mu.Lock()
		if c.closed { // close gave back what was in flight
			c.mu.Unlock()
			return
		}
		c.inflight -= n
		if g := c.ws.limits.inflight; g != nil {
			g.give(int64(n))
		}
		wake := c.wantSpace
		c.wantSpace = false
		c.mu.Unlock()
		if wake {
			select {
			case c.space <- struct{}{}:
			default:
			}
		}
	}
}
