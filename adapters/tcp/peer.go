package tcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// writeBufferSize is the size of an outbound connection's bufio.Writer:
// frames are gathered up to this size per write.
const writeBufferSize = 64 << 10

// peer is the sending side of one peer: a bounded queue drained by a
// writer goroutine (run) that owns the connection.
type peer struct {
	t       *Transport
	id      uint64
	breaker *transport.Breaker
	ctx     context.Context // canceled by stop
	cancel  context.CancelFunc
	wake    chan struct{} // capacity 1: the queue is not empty
	// frame is where a message too large for the writer's free buffer is
	// encoded, kept for the next one (the sending goroutine's only).
	frame []byte

	mu      sync.Mutex
	addr    string
	gen     uint64 // incremented when addr changes
	queue   []core.Message
	stopped bool // no more messages are queued
}

func newPeer(t *Transport, id uint64, addr string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:       t,
		id:      id,
		breaker: transport.NewBreaker(t.cfg.BreakerFailures, t.cfg.BackoffMax),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		addr:    addr,
	}
}

// enqueue appends msgs to the queue, dropping what does not fit.
func (p *peer) enqueue(msgs []core.Message) {
	p.mu.Lock()
	n := 0
	if !p.stopped {
		n = min(len(msgs), p.t.cfg.QueueSize-len(p.queue))
		p.queue = append(p.queue, msgs[:n]...)
	}
	p.mu.Unlock()
	if drop := len(msgs) - n; drop > 0 {
		p.t.counters.Dropped.Add(uint64(drop))
	}
	if n > 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// setAddr changes the peer's address; the writer moves to it before its
// next write.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == addr {
		return
	}
	p.addr = addr
	p.gen++
	p.breaker.Reset()
}

// stop makes the writer exit; what is queued is dropped.
func (p *peer) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
}

// take swaps the queue with spare (emptied) and returns what was queued,
// with the current address and its generation.
func (p *peer) take(spare []core.Message) (batch []core.Message, addr string, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	batch, p.queue = p.queue, spare[:0]
	return batch, p.addr, p.gen
}

// outConn is an established outbound connection.
type outConn struct {
	c    net.Conn // the TLS connection, or raw
	raw  net.Conn // the TCP connection: closing it ends c without writing
	bw   *bufio.Writer
	gen  uint64      // the peer address generation it was dialed for
	dead atomic.Bool // the listener hung up (seen by the watcher)
}

// deadlineWriter sets a write deadline before every write to the
// connection.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(b []byte) (int, error) {
	if err := w.c.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, fmt.Errorf("tcp: set write deadline: %w", err)
	}
	return w.c.Write(b)
}

// run is the peer's writer goroutine.
func (p *peer) run() {
	t := p.t
	log := t.log.With("peer", p.id)
	backoff := transport.Backoff{Min: t.cfg.BackoffMin, Max: t.cfg.BackoffMax}
	var (
		conn      *outConn
		spare     []core.Message
		connected bool // a connection was established before
		failing   bool // the last attempt failed (logged once per outage)
	)
	defer func() {
		if conn != nil {
			_ = conn.raw.Close()
		}
		p.mu.Lock()
		p.stopped = true
		n := len(p.queue)
		p.queue = nil
		p.mu.Unlock()
		t.counters.Dropped.Add(uint64(n))
	}()

	// fail records a failed attempt that lost n messages and waits out the
	// back-off. It returns false if the peer stopped meanwhile.
	fail := func(n int, what string, err error) bool {
		t.counters.Dropped.Add(uint64(n))
		opened := p.breaker.Failure(time.Now())
		wasFailing := failing
		if !failing {
			log.Warn("peer unreachable", "op", what, "err", err, "dropped", n)
			failing = true
		} else {
			log.Debug("peer still unreachable", "op", what, "err", err, "dropped", n)
		}
		// The breaker opens again every back-off while the peer stays
		// down: say so once per outage.
		switch {
		case opened && !wasFailing:
			log.Info("circuit breaker open", "for", t.cfg.BackoffMax)
		case opened:
			log.Debug("circuit breaker open again", "for", t.cfg.BackoffMax)
		}
		t.unreachable(p.id)
		timer := time.NewTimer(backoff.Next())
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-p.ctx.Done():
			return false
		}
	}

	// An idle connection is closed before the listener's IdleTimeout
	// would close it under a write, losing what was written.
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	for {
		var idleC <-chan time.Time
		if conn != nil {
			idle.Reset(t.cfg.IdleTimeout / 2)
			idleC = idle.C
		}
		select {
		case <-p.ctx.Done():
			return
		case <-idleC:
			_ = conn.raw.Close()
			conn = nil
			log.Debug("idle connection closed", "after", t.cfg.IdleTimeout/2)
			continue
		case <-p.wake:
			idle.Stop()
		}
		for {
			if p.ctx.Err() != nil {
				return
			}
			batch, addr, gen := p.take(spare)
			if len(batch) == 0 {
				spare = batch
				break
			}
			if t.blocked(p.id) {
				t.counters.Dropped.Add(uint64(len(batch)))
				spare = clearBatch(batch)
				continue
			}
			if conn != nil && (conn.gen != gen || conn.dead.Load()) {
				_ = conn.raw.Close()
				conn = nil
			}
			if conn == nil {
				if !p.breaker.Allow(time.Now()) {
					t.counters.Dropped.Add(uint64(len(batch)))
					spare = clearBatch(batch)
					continue
				}
				c, raw, err := p.dial(addr)
				if err != nil {
					spare = clearBatch(batch)
					if !fail(len(batch), "dial", err) {
						return
					}
					continue
				}
				oc := &outConn{c: c, raw: raw, gen: gen, bw: bufio.NewWriterSize(deadlineWriter{c, t.cfg.WriteTimeout}, writeBufferSize)}
				conn = oc
				t.wg.Go(func() { watch(oc) })
				p.breaker.Success()
				backoff.Reset()
				if connected {
					t.counters.Reconnects.Add(1)
				}
				if failing {
					log.Info("peer reachable again")
				}
				connected, failing = true, false
				log.Debug("connected", "peer_addr", addr)
			}
			n, err := p.write(conn, batch)
			spare = clearBatch(batch)
			if err != nil {
				_ = conn.raw.Close()
				conn = nil
				if !fail(n, "write", err) {
					return
				}
			}
		}
	}
}

// maxKeptFrame bounds the frame buffer a peer keeps for large messages;
// larger ones (snapshots) are encoded into a buffer of their own.
const maxKeptFrame = 4 << 20

// clearBatch drops the references a written batch holds and returns it
// for reuse.
func clearBatch(batch []core.Message) []core.Message {
	clear(batch)
	return batch[:0]
}

// watch reads from an outbound connection, on which the listener writes
// nothing after the handshake, to notice at once when it hangs up.
func watch(conn *outConn) {
	_, _ = io.Copy(io.Discard, conn.c)
	conn.dead.Store(true)
	_ = conn.raw.Close()
}

// write writes batch to conn and flushes it. It counts what was sent or
// dropped for being too large, and returns the number of messages lost to
// an error.
func (p *peer) write(conn *outConn, batch []core.Message) (lost int, err error) {
	t := p.t
	var tooLarge int
	for i := range batch {
		buf := conn.bw.AvailableBuffer()
		if need := transport.FrameHeaderSize + batch[i].EncodedSize(); cap(buf) < need && need <= maxKeptFrame {
			if cap(p.frame) < need {
				p.frame = make([]byte, 0, max(need, 2*cap(p.frame)))
			}
			buf = p.frame[:0]
		}
		buf, size, err := transport.AppendMessageFrame(buf, &batch[i])
		if err == nil && size > t.cfg.MaxMessageBytes {
			err = fmt.Errorf("%w: %v of %d bytes, limit %d", transport.ErrMessageTooLarge, batch[i].Type, size, t.cfg.MaxMessageBytes)
		}
		if err != nil {
			tooLarge++
			t.log.Warn("message not sent", "peer", p.id, "err", err)
			continue
		}
		if _, err := conn.bw.Write(buf); err != nil {
			t.counters.Dropped.Add(uint64(tooLarge))
			return len(batch) - tooLarge, fmt.Errorf("tcp: write to peer %d: %w", p.id, err)
		}
	}
	t.counters.Dropped.Add(uint64(tooLarge))
	if err := conn.bw.Flush(); err != nil {
		return len(batch) - tooLarge, fmt.Errorf("tcp: flush to peer %d: %w", p.id, err)
	}
	t.counters.Sent.Add(uint64(len(batch) - tooLarge))
	return 0, nil
}

// dial connects to addr and runs the TLS handshake, if TLS is on, and the
// protocol handshake, all within DialTimeout. It returns the connection to
// write to (TLS or raw) and the raw TCP connection.
func (p *peer) dial(addr string) (c, raw net.Conn, err error) {
	t := p.t
	ctx, cancel := context.WithTimeout(p.ctx, t.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("tcp: dial peer %d at %s: %w", p.id, addr, err)
	}
	c = raw
	var tc *tls.Conn
	if t.tlsClient != nil {
		if tc, err = p.tlsHandshake(ctx, raw, addr); err != nil {
			_ = raw.Close()
			return nil, nil, fmt.Errorf("tcp: TLS handshake with peer %d at %s: %w", p.id, addr, transport.ExplainTLSError(err))
		}
		c = tc
	}
	if err := p.handshake(ctx, c); err != nil {
		_ = raw.Close()
		return nil, nil, fmt.Errorf("tcp: handshake with peer %d at %s: %w", p.id, addr, err)
	}
	if t.mutual {
		// Checked once the listener has answered the hello (so that a
		// listener reached by mistake counts the refusal), and before
		// any message is written.
		if leaf := transport.VerifiedLeaf(tc.ConnectionState()); !transport.CertHasIdentity(leaf, p.id) {
			_ = raw.Close()
			var cn string
			var dns []string
			if leaf != nil {
				cn, dns = leaf.Subject.CommonName, leaf.DNSNames
			}
			return nil, nil, fmt.Errorf("tcp: handshake with peer %d at %s: %w: server certificate of %q (DNS names %v) is not %s",
				p.id, addr, errUnauthenticated, cn, dns, transport.NodeIdentity(p.id))
		}
	}
	return c, raw, nil
}

// tlsHandshake runs the client side of the TLS handshake on raw within
// ctx, verifying the server certificate against the configured server
// name, or the host of addr.
func (p *peer) tlsHandshake(ctx context.Context, raw net.Conn, addr string) (*tls.Conn, error) {
	cfg := p.t.tlsClient
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// handshake sends the hello on c and waits for the ack.
func (p *peer) handshake(ctx context.Context, c net.Conn) error {
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	// Interrupt the handshake if the peer stops (removed, or the
	// transport closing); the deadline covers the timeout.
	stop := context.AfterFunc(p.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	frame := transport.AppendFrame(nil, appendHello(nil, hello{version: ProtocolVersion, from: p.t.cfg.ID, to: p.id,
		cluster: p.t.cfg.ClusterID}))
	if _, err := c.Write(frame); err != nil {
		return fmt.Errorf("write hello: %w", err)
	}
	payload, err := transport.ReadFrame(c, maxHandshakeBytes)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: connection closed before the ack", errHandshake)
		}
		return fmt.Errorf("read ack: %w", err)
	}
	a, err := parseAck(payload)
	if err != nil {
		return err
	}
	if a.status != statusOK {
		return fmt.Errorf("%w: refused by node %d (protocol version %d): %s", errHandshake, a.id, a.version, statusText(a.status))
	}
	if a.id != p.id {
		return fmt.Errorf("%w: reached node %d, not %d", errHandshake, a.id, p.id)
	}
	if !stop() {
		return fmt.Errorf("%w: %w", errHandshake, context.Cause(p.ctx))
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear deadline: %w", err)
	}
	return nil
}
