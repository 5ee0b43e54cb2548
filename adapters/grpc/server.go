package grpc

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// ErrUnauthenticated is matched (errors.Is) by the errors of streams whose
// peer could not be authenticated as the node it claims to be.
var ErrUnauthenticated = errors.New("grpc transport: peer not authenticated")

// serveStream serves one inbound stream: the hello, then frames of
// messages until the client ends the stream. A refused stream or a
// malformed frame ends it with an error status, counted in Stats.Rejected.
func (t *Transport) serveStream(ss grpc.ServerStream) error {
	remote := "unknown"
	var info credentials.AuthInfo
	if pr, ok := grpcpeer.FromContext(ss.Context()); ok {
		remote = pr.Addr.String()
		info = pr.AuthInfo
	}
	h, err := t.recvHello(ss)
	if err != nil {
		t.counters.Rejected.Add(1)
		t.log.Warn("grpc transport: refused stream: bad hello", "remote", remote, "err", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := t.authenticate(h, info); err != nil {
		t.counters.Rejected.Add(1)
		t.log.Warn("grpc transport: refused stream", "remote", remote, "claimed", h.from, "err", err)
		code := codes.PermissionDenied
		if errors.Is(err, transport.ErrWrongRecipient) || errors.Is(err, transport.ErrWrongCluster) {
			code = codes.FailedPrecondition
		}
		return status.Error(code, err.Error())
	}
	if err := ss.SendMsg(appendHelloAck(nil, t.cfg.ID)); err != nil {
		return fmt.Errorf("grpc transport: send hello ack to node %d: %w", h.from, err)
	}
	t.log.Debug("grpc transport: inbound stream", "peer", h.from, "remote", remote)

	// The frames are received by a helper so that the handler can end
	// the stream when a chunked message stalls (a receive cannot be
	// given a deadline; returning from the handler ends it).
	in := &inbound{t: t, from: h.from, stalled: make(chan error, 1)}
	done := make(chan error, 1)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		done <- in.receive(ss, remote)
	}()
	select {
	case err := <-done:
		in.stopWatch()
		return err
	case err := <-in.stalled:
		t.counters.Rejected.Add(1)
		t.refused("grpc transport: closing stream: chunked message not complete in time", "remote", remote, "peer", h.from, "err", err)
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
}

// receive receives and handles frames until the stream ends or a frame
// is refused.
func (in *inbound) receive(ss grpc.ServerStream, remote string) error {
	t := in.t
	for {
		var f []byte
		if err := ss.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			t.log.Debug("grpc transport: inbound stream ended", "peer", in.from, "err", err)
			return fmt.Errorf("grpc transport: receive from node %d: %w", in.from, err)
		}
		if err := in.frame(f); err != nil {
			t.counters.Rejected.Add(1)
			t.log.Warn("grpc transport: refused frame; closing stream", "peer", in.from, "remote", remote, "err", err)
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
}

// errChunkTimeout is matched by the error of a stream ended because a
// chunked message stalled or did not arrive within its deadline.
var errChunkTimeout = errors.New("grpc transport: chunked message not complete in time")

// watch puts a started chunked message of total bytes under its
// deadlines: FrameTimeout without a chunk, and transport.FrameDeadline in
// all; each chunk calls it again to push the stall deadline.
func (in *inbound) watch(total uint64) {
	t := in.t
	now := time.Now()
	if in.asm.got == 0 { // a new message: a new timer
		in.stopWatch()
		in.end = now.Add(transport.FrameDeadline(t.cfg.FrameTimeout, int(min(total, 1<<40))))
		in.timer = time.AfterFunc(time.Hour, func() {
			select {
			case in.stalled <- fmt.Errorf("%w: %d of %d bytes from node %d after %v", errChunkTimeout,
				in.progress.Load(), total, in.from, time.Since(now).Round(time.Millisecond)):
			default:
			}
		})
	}
	in.timer.Reset(min(t.cfg.FrameTimeout, in.end.Sub(now)))
}

// stopWatch stops the deadline of a chunked message.
func (in *inbound) stopWatch() {
	if in.timer != nil {
		in.timer.Stop()
	}
}

// recvHello receives the first frame within DialTimeout.
func (t *Transport) recvHello(ss grpc.ServerStream) (hello, error) {
	type result struct {
		f   []byte
		err error
	}
	got := make(chan result, 1)
	// A receive cannot be given a deadline: a helper receives while the
	// handler waits, and returning from the handler ends the receive.
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		var f []byte
		err := ss.RecvMsg(&f)
		got <- result{f, err}
	}()
	timer := time.NewTimer(t.cfg.DialTimeout)
	defer timer.Stop()
	select {
	case r := <-got:
		if r.err != nil {
			return hello{}, fmt.Errorf("receive hello: %w", r.err)
		}
		return parseHello(r.f)
	case <-timer.C:
		return hello{}, fmt.Errorf("no hello within %v", t.cfg.DialTimeout)
	}
}

// authenticate checks a hello: it must be meant for this node, and under
// mutual TLS the client certificate must name the claimed node.
func (t *Transport) authenticate(h hello, info credentials.AuthInfo) error {
	switch {
	case h.to != t.cfg.ID:
		return fmt.Errorf("%w: stream for node %d reached node %d", transport.ErrWrongRecipient, h.to, t.cfg.ID)
	case h.from == core.None || h.from == t.cfg.ID:
		return fmt.Errorf("%w: hello claims node %d", ErrUnauthenticated, h.from)
	case h.cluster != 0 && t.cfg.ClusterID != 0 && h.cluster != t.cfg.ClusterID:
		return fmt.Errorf("%w: node %d is of cluster %016x, this node of %016x (cluster_id)",
			transport.ErrWrongCluster, h.from, h.cluster, t.cfg.ClusterID)
	}
	if t.tls == nil || !t.tls.mutual {
		return nil // the claim is trusted: use mutual TLS in production
	}
	cert := leafCert(info)
	if cert == nil {
		return fmt.Errorf("%w: no verified client certificate", ErrUnauthenticated)
	}
	if !certHasIdentity(cert, h.from) {
		return fmt.Errorf("%w: certificate of %q (DNS names %v) is not %s", ErrUnauthenticated,
			cert.Subject.CommonName, cert.DNSNames, NodeIdentity(h.from))
	}
	return nil
}

// inbound is the receiving state of one stream from an authenticated peer.
type inbound struct {
	t    *Transport
	from uint64
	asm  reassembly

	// The deadlines of a chunked message being received (see watch).
	end      time.Time
	timer    *time.Timer
	progress atomic.Uint64 // bytes of it received, for the timer's message
	stalled  chan error    // the timer fired
}

// reassembly is a chunked message being received. Its buffer grows with
// the bytes received (append's doubling), never to the size announced.
type reassembly struct {
	active     bool
	skip       bool // an oversize message: its chunks are dropped
	total, got uint64
	buf        []byte
}

// frame handles one received frame. Its error (a malformed frame or a
// broken chunk sequence) ends the stream; a bad message in a good frame is
// rejected alone.
func (in *inbound) frame(f []byte) error {
	if len(f) == 0 {
		return fmt.Errorf("%w: empty frame", errFrame)
	}
	switch f[0] {
	case frameBatch:
		if in.asm.active {
			return fmt.Errorf("%w: batch inside a chunked message", errFrame)
		}
		return parseBatch(f, in.message)
	case frameChunk:
		c, err := parseChunk(f)
		if err != nil {
			return err
		}
		return in.chunk(c)
	}
	return fmt.Errorf("%w: unexpected frame kind %d", errFrame, f[0])
}

// chunk appends a chunk to the message being reassembled, checking the
// announced size against MaxMessageBytes before allocating it.
func (in *inbound) chunk(c chunk) error {
	t, a := in.t, &in.asm
	if c.offset == 0 {
		if a.active {
			return fmt.Errorf("%w: new chunked message before the previous one ended at %d of %d", errFrame, a.got, a.total)
		}
		*a = reassembly{active: true, total: c.total}
		if c.total > uint64(t.cfg.MaxMessageBytes) {
			a.skip = true
			t.counters.Rejected.Add(1)
			t.log.Warn("grpc transport: refused message: too large", "peer", in.from,
				"bytes", c.total, "limit", t.cfg.MaxMessageBytes)
		}
	} else if !a.active || c.total != a.total || c.offset != a.got {
		return fmt.Errorf("%w: chunk at %d of %d does not continue the message (at %d of %d)",
			errFrame, c.offset, c.total, a.got, a.total)
	}
	in.watch(c.total)
	if !a.skip {
		a.buf = append(a.buf, c.data...)
	}
	a.got += uint64(len(c.data))
	in.progress.Store(a.got)
	if a.got == a.total {
		in.stopWatch()
		buf, skip := a.buf, a.skip
		*a = reassembly{}
		if !skip {
			in.message(buf)
		}
	}
	return nil
}

// message validates one encoded message and delivers it, or counts it as
// dropped (blocked peer) or rejected.
func (in *inbound) message(payload []byte) {
	t := in.t
	if t.closing.Load() {
		return
	}
	if t.isBlocked(in.from) {
		t.counters.Dropped.Add(1)
		return
	}
	m, err := transport.CheckInbound(payload, t.cfg.ID, in.from, t.cfg.MaxMessageBytes)
	if err != nil {
		t.counters.Rejected.Add(1)
		t.log.Warn("grpc transport: refused message", "peer", in.from, "err", err)
		return
	}
	t.cfg.Deliver(m)
	t.counters.Received.Add(1)
}
