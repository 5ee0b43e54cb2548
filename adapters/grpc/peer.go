package grpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
	grpcpeer "google.golang.org/grpc/peer"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// maxBatchMessages bounds how many queued messages a sender takes at once.
const maxBatchMessages = 1024

// peer is the sending side of one remote node: a queue drained by one
// goroutine (runPeer) that keeps a stream open to the peer's address.
type peer struct {
	id      uint64
	queue   chan core.Message
	breaker *transport.Breaker
	ctx     context.Context // canceled when the peer is removed or the transport closes
	cancel  context.CancelCauseFunc
	wake    chan struct{} // address changed: cut a back-off short

	// Guarded by Transport.mu.
	addr         string
	streamCancel context.CancelCauseFunc // of the open stream, if any

	// Owned by the peer's goroutine.
	connAddr  string
	cc        *grpc.ClientConn
	connected bool      // a stream was established before (Stats.Reconnects)
	down      bool      // failing since the last stream: warned once for this outage
	openUntil time.Time // when the open breaker turns half-open
	scratch   []byte    // one message's encoding
	frame     []byte    // the batch frame being built
}

func (t *Transport) newPeer(id uint64, addr string) *peer {
	ctx, cancel := context.WithCancelCause(t.ctx)
	return &peer{
		id:      id,
		queue:   make(chan core.Message, t.cfg.QueueSize),
		breaker: transport.NewBreaker(t.cfg.BreakerFailures, t.cfg.BackoffMax),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		addr:    addr,
	}
}

// runPeer is the peer's sender goroutine. It connects when there is
// something to send, writes batches until the stream fails, and reconnects
// with back-off under the circuit breaker.
func (t *Transport) runPeer(p *peer) {
	defer t.wg.Done()
	var pending []core.Message // taken from the queue, not yet written
	defer func() {
		if p.cc != nil {
			t.releaseConn(p.connAddr)
		}
		t.counters.Dropped.Add(uint64(len(pending)))
		t.dropQueued(p)
	}()
	bo := transport.Backoff{Min: t.cfg.BackoffMin, Max: t.cfg.BackoffMax}
	for {
		if len(pending) == 0 {
			select {
			case <-p.ctx.Done():
				return
			case m := <-p.queue:
				pending = append(pending, m)
			}
		}
		if !p.breaker.Allow(time.Now()) {
			// Open: what waits is stale by the time the peer is back.
			t.counters.Dropped.Add(uint64(len(pending)))
			clear(pending)
			pending = pending[:0]
			t.dropQueued(p)
			if !t.sleep(p, max(time.Until(p.openUntil), t.cfg.BackoffMin)) {
				return
			}
			continue
		}
		st, err := t.openStream(p)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			if errors.Is(err, errAddrChanged) {
				continue
			}
			t.dropConn(p)
			t.peerFailed(p, "connect", err)
			if !t.sleep(p, bo.Next()) {
				return
			}
			continue
		}
		p.breaker.Success()
		bo.Reset()
		if p.connected {
			t.counters.Reconnects.Add(1)
		}
		p.connected = true
		if p.down {
			t.log.Info("grpc transport: peer reachable again", "peer", p.id, "addr", p.connAddr)
			p.down = false
		}
		t.log.Debug("grpc transport: stream open", "peer", p.id, "addr", p.connAddr)

		pending, err = t.pump(p, st, pending)
		st.close()
		if p.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errAddrChanged) {
			continue
		}
		if p.cc != nil && p.cc.GetState() != connectivity.Ready {
			t.dropConn(p)
		}
		t.peerFailed(p, "stream", err)
		if !t.sleep(p, bo.Next()) {
			return
		}
	}
}

// dropConn gives up p's client connection after a failure, so that the
// next attempt, when the transport's back-off and breaker allow it, dials
// afresh. A gRPC ClientConn that failed to connect keeps failing every
// stream with its cached error until its own reconnect back-off, which
// runs independently of ours, has passed: after a heal the peer would
// stay unreachable for up to both back-offs together (issue 13: 4.25 s
// without a leader with a 2 s back-off maximum). A fresh ClientConn makes
// its first connection attempt for the stream that needs it and answers
// with that attempt's outcome.
func (t *Transport) dropConn(p *peer) {
	if p.cc == nil {
		return
	}
	t.releaseConn(p.connAddr)
	p.cc, p.connAddr = nil, ""
}

// peerFailed records a failure to reach p: the breaker counts it, the host
// hears that p is unreachable.
func (t *Transport) peerFailed(p *peer, op string, err error) {
	now := time.Now()
	if p.breaker.Failure(now) {
		p.openUntil = now.Add(t.cfg.BackoffMax)
		// The breaker opens again every back-off while the peer stays
		// down: warn once per outage.
		if !p.down {
			t.log.Warn("grpc transport: circuit breaker open", "peer", p.id, "addr", p.connAddr, "op", op, "err", err, "for", t.cfg.BackoffMax)
		} else {
			t.log.Debug("grpc transport: circuit breaker open again", "peer", p.id, "addr", p.connAddr, "op", op, "err", err)
		}
		p.down = true
	} else {
		t.log.Debug("grpc transport: peer unreachable", "peer", p.id, "addr", p.connAddr, "op", op, "err", err)
	}
	if t.cfg.Unreachable != nil && !t.closing.Load() {
		t.cfg.Unreachable(p.id)
	}
}

// sleep waits d, or until p's address changes; it reports false when p
// stopped.
func (t *Transport) sleep(p *peer, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-p.wake:
		return true
	case <-timer.C:
		return true
	}
}

// dropQueued empties p's queue, counting the messages dropped.
func (t *Transport) dropQueued(p *peer) {
	for {
		select {
		case <-p.queue:
			t.counters.Dropped.Add(1)
		default:
			return
		}
	}
}

// outStream is an open, greeted stream to a peer.
type outStream struct {
	cs     grpc.ClientStream
	ctx    context.Context
	cancel context.CancelCauseFunc
	watch  *time.Timer // write watchdog
	t      *Transport
}

// openStream connects to p's current address, opens the stream and
// exchanges the hello, all within DialTimeout.
func (t *Transport) openStream(p *peer) (*outStream, error) {
	t.mu.RLock()
	addr := p.addr
	t.mu.RUnlock()
	if p.cc == nil || p.connAddr != addr {
		if p.cc != nil {
			t.releaseConn(p.connAddr)
			p.cc, p.connAddr = nil, ""
		}
		cc, err := t.acquireConn(addr)
		if err != nil {
			return nil, err
		}
		p.cc, p.connAddr = cc, addr
	}

	ctx, cancel := context.WithCancelCause(p.ctx)
	t.mu.Lock()
	if p.addr != addr {
		t.mu.Unlock()
		cancel(errAddrChanged)
		return nil, errAddrChanged
	}
	p.streamCancel = cancel
	t.mu.Unlock()

	fail := func(what string, err error) (*outStream, error) {
		err = causeErr(ctx, fmt.Sprintf("grpc transport: %s to node %d at %s", what, p.id, addr), err)
		cancel(err)
		return nil, err
	}
	timer := time.AfterFunc(t.cfg.DialTimeout, func() { cancel(errDialTimeout) })
	defer timer.Stop()

	opts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
	if t.compressor != "" {
		opts = append(opts, grpc.UseCompressor(t.compressor))
	}
	cs, err := p.cc.NewStream(ctx, clientStreamDesc(), streamMethod, opts...)
	if err != nil {
		return fail("open stream", err)
	}
	if err := cs.SendMsg(appendHello(nil, hello{from: t.cfg.ID, to: p.id, cluster: t.cfg.ClusterID})); err != nil {
		return fail("send hello", err)
	}
	var ack []byte
	if err := cs.RecvMsg(&ack); err != nil {
		return fail("receive hello ack", err)
	}
	id, err := parseHelloAck(ack)
	if err != nil {
		return fail("parse hello ack", err)
	}
	if id != p.id {
		return fail("hello", fmt.Errorf("%w: answered by node %d", transport.ErrWrongRecipient, id))
	}
	if t.tls != nil && t.tls.mutual {
		var info credentials.AuthInfo
		if pr, ok := grpcpeer.FromContext(cs.Context()); ok {
			info = pr.AuthInfo
		}
		if !certHasIdentity(leafCert(info), p.id) {
			return fail("authenticate", fmt.Errorf("%w: server certificate is not %s's", ErrUnauthenticated, NodeIdentity(p.id)))
		}
	}
	if !timer.Stop() {
		return fail("hello", errDialTimeout)
	}

	st := &outStream{cs: cs, ctx: ctx, cancel: cancel, t: t}
	st.watch = time.AfterFunc(time.Hour, func() { cancel(errWriteTimeout) })
	st.watch.Stop()
	// The server sends nothing after the ack: a receive returns when the
	// stream ends, which ends the stream here too.
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		var f []byte
		err := cs.RecvMsg(&f)
		if err == nil {
			err = fmt.Errorf("%w: unexpected frame from the server", errFrame)
		}
		cancel(fmt.Errorf("stream closed by node %d: %w", p.id, err))
	}()
	return st, nil
}

// close ends the stream.
func (st *outStream) close() {
	st.watch.Stop()
	st.cancel(errStopped)
}

// write sends one frame, copied into a pooled buffer that gRPC frees once
// written, under the write watchdog.
func (st *outStream) write(frame []byte) error {
	pool := mem.DefaultBufferPool()
	buf := pool.Get(len(frame))
	copy(*buf, frame)
	st.watch.Reset(st.t.cfg.WriteTimeout)
	err := st.cs.SendMsg(mem.NewBuffer(buf, pool))
	if !st.watch.Stop() && err == nil {
		err = errWriteTimeout
	}
	if err != nil {
		return causeErr(st.ctx, "grpc transport: write", err)
	}
	return nil
}

// pump writes p's messages to st until the stream fails or p stops. It
// returns pending emptied, for reuse: what was taken from the queue has
// been written or counted as dropped.
func (t *Transport) pump(p *peer, st *outStream, pending []core.Message) ([]core.Message, error) {
	for {
		if len(pending) == 0 {
			select {
			case <-p.ctx.Done():
				return pending, errStopped
			case <-st.ctx.Done():
				return pending, causeErr(st.ctx, "grpc transport: stream", st.ctx.Err())
			case m := <-p.queue:
				pending = append(pending, m)
			}
		}
	more:
		for len(pending) < maxBatchMessages {
			select {
			case m := <-p.queue:
				pending = append(pending, m)
			default:
				break more
			}
		}
		var err error
		if t.isBlocked(p.id) {
			t.counters.Dropped.Add(uint64(len(pending)))
		} else {
			err = t.writeMessages(p, st, pending)
		}
		clear(pending)
		pending = pending[:0]
		if cap(p.scratch) > 4*t.chunk {
			p.scratch = nil
		}
		if err != nil {
			return pending, err
		}
	}
}

// writeMessages encodes msgs into batch frames of at most ChunkBytes,
// sending a larger message alone in chunks. Messages that cannot be
// encoded or exceed MaxMessageBytes are dropped; on a write error the
// unwritten rest is dropped.
func (t *Transport) writeMessages(p *peer, st *outStream, msgs []core.Message) error {
	frame := append(p.frame[:0], frameBatch)
	inFrame := 0
	flush := func() error {
		if inFrame == 0 {
			return nil
		}
		err := st.write(frame)
		if err != nil {
			t.counters.Dropped.Add(uint64(inFrame))
		} else {
			t.counters.Sent.Add(uint64(inFrame))
		}
		frame, inFrame = frame[:1], 0
		return err
	}
	defer func() { p.frame = frame[:0] }()
	for i := range msgs {
		enc, err := msgs[i].AppendBinary(p.scratch[:0])
		if cap(enc) <= maxKeptScratch {
			p.scratch = enc
		} else {
			// A snapshot's encoding is not kept for the peer's lifetime.
			p.scratch = nil
		}
		switch {
		case err != nil:
			t.counters.Dropped.Add(1)
			t.log.Warn("grpc transport: cannot encode message", "peer", p.id, "type", msgs[i].Type, "err", err)
			continue
		case len(enc) > t.cfg.MaxMessageBytes:
			t.counters.Dropped.Add(1)
			t.log.Warn("grpc transport: message too large to send", "peer", p.id, "type", msgs[i].Type,
				"bytes", len(enc), "limit", t.cfg.MaxMessageBytes)
			continue
		}
		if len(enc) > t.chunk {
			if err := flush(); err != nil {
				t.counters.Dropped.Add(uint64(len(msgs) - i))
				return err
			}
			if err := t.writeChunked(st, enc); err != nil {
				t.counters.Dropped.Add(uint64(len(msgs) - i))
				return err
			}
			t.counters.Sent.Add(1)
			continue
		}
		if inFrame > 0 && len(frame)+batchEntrySize(len(enc)) > 1+t.chunk {
			if err := flush(); err != nil {
				t.counters.Dropped.Add(uint64(len(msgs) - i))
				return err
			}
		}
		frame = binary.AppendUvarint(frame, uint64(len(enc)))
		frame = append(frame, enc...)
		inFrame++
	}
	return flush()
}

// writeChunked sends one large encoded message as chunk frames.
func (t *Transport) writeChunked(st *outStream, enc []byte) error {
	var frame []byte
	total := uint64(len(enc))
	for off := 0; off < len(enc); off += t.chunk {
		end := min(off+t.chunk, len(enc))
		frame = appendChunk(frame[:0], chunk{total: total, offset: uint64(off), data: enc[off:end]})
		if err := st.write(frame); err != nil {
			return fmt.Errorf("chunk at %d of %d: %w", off, total, err)
		}
	}
	return nil
}

// causeErr wraps err with what and, when ctx was canceled with a cause,
// that cause (so errors.Is finds errAddrChanged and the timeouts).
func causeErr(ctx context.Context, what string, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%s: %w (%w)", what, cause, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// maxKeptScratch bounds the encoding buffer a peer keeps between sends;
// a larger message (a snapshot) gets a buffer of its own.
const maxKeptScratch = 4 << 20
