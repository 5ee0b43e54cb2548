package tcp

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
)

// readBufferSize is the size of an inbound connection's bufio.Reader.
const readBufferSize = 64 << 10

// acceptLoop accepts inbound connections until the listener closes.
func (t *Transport) acceptLoop() {
	var delay time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as
			// net/http does, instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-t.ctx.Done():
				return
			}
		}
		delay = 0
		adm, err := t.limits.Admit(c.RemoteAddr())
		if err != nil {
			_ = c.Close()
			t.counters.Rejected.Add(1)
			t.refused(c.RemoteAddr().String(), "connection refused", err)
			continue
		}
		t.mu.Lock()
		if t.closed.Load() {
			t.mu.Unlock()
			_ = c.Close()
			adm.Release()
			return
		}
		t.inbound[c] = struct{}{}
		t.wg.Go(func() { t.serve(c, adm) })
		t.mu.Unlock()
	}
}

// serve runs an inbound connection: the TLS handshake if TLS is on, the
// protocol handshake, then messages until the connection ends or breaks
// the protocol.
func (t *Transport) serve(c net.Conn, adm *transport.Admission) {
	defer func() {
		_ = c.Close()
		adm.Release()
		t.mu.Lock()
		delete(t.inbound, c)
		t.mu.Unlock()
	}()
	remote := c.RemoteAddr().String()
	log := t.log.With("remote", remote)
	// One deadline covers the TLS handshake and the hello.
	if err := c.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		log.Debug("connection dropped", "err", fmt.Errorf("tcp: set handshake deadline: %w", err))
		return
	}
	conn := net.Conn(c)
	var cert *x509.Certificate
	if t.tlsServer != nil {
		sc := &sniffConn{Conn: c}
		tc := tls.Server(sc, t.tlsServer)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			if !sc.read {
				log.Debug("connection closed before its TLS handshake")
				return
			}
			if !t.closed.Load() {
				t.counters.Rejected.Add(1)
				t.refused(remote, "connection refused: TLS handshake failed", transport.ExplainTLSError(err))
			}
			return
		}
		conn = tc
		cert = transport.VerifiedLeaf(tc.ConnectionState())
	}
	dr := &deadlineReader{c: conn}
	br := bufio.NewReaderSize(dr, readBufferSize)
	from, err := t.acceptHandshake(conn, br, cert)
	if err != nil {
		if errors.Is(err, io.EOF) {
			log.Debug("connection closed before its handshake")
			return
		}
		t.counters.Rejected.Add(1)
		switch {
		case t.closed.Load():
		case errors.Is(err, errUnauthenticated):
			t.refused(remote, "connection refused: sender not authenticated", err)
		default:
			log.Debug("connection rejected", "err", err)
		}
		return
	}
	adm.Authenticated()
	log = log.With("peer", from)
	log.Debug("inbound connection")
	if err := t.readMessages(dr, br, from, log); err != nil && !t.closed.Load() {
		if errors.Is(err, errFrameTimeout) {
			t.counters.Rejected.Add(1)
			t.refused(remote, "connection closed: frame not complete in time", err)
			return
		}
		log.Debug("inbound connection ended", "err", err)
	}
}

// sniffConn records whether anything was read from a connection, to tell a
// connection closed before its TLS handshake from a failed handshake.
type sniffConn struct {
	net.Conn
	read bool
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.read = true
	}
	return n, err
}

// refused logs a refused inbound connection at Warn, rate-limited by
// t.tlsWarn; the warnings held back are logged at Debug.
func (t *Transport) refused(remote, msg string, err error) {
	if ok, suppressed := t.tlsWarn.Allow(time.Now()); ok {
		t.log.Warn(msg, "remote", remote, "err", err, "suppressed", suppressed)
		return
	}
	t.log.Debug(msg, "remote", remote, "err", err)
}

// acceptHandshake reads the hello (within the deadline serve set) and
// answers it. cert is the verified client certificate under TLS (nil if
// none). It returns the authenticated peer ID, or io.EOF if the
// connection closed without a byte.
func (t *Transport) acceptHandshake(c net.Conn, br *bufio.Reader, cert *x509.Certificate) (uint64, error) {
	payload, err := transport.ReadFrame(br, maxHandshakeBytes)
	if err != nil {
		if err == io.EOF {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("%w: read hello: %w", errHandshake, err)
	}
	h, err := parseHello(payload)
	if err != nil {
		return 0, err
	}
	status := statusOK
	switch {
	case h.version != ProtocolVersion:
		status = statusBadVersion
	case h.cluster != 0 && t.cfg.ClusterID != 0 && h.cluster != t.cfg.ClusterID:
		status = statusWrongCluster
	case h.to != t.cfg.ID:
		status = statusWrongNode
	case h.from == 0 || h.from == t.cfg.ID:
		status = statusBadSender
	case t.mutual && !transport.CertHasIdentity(cert, h.from):
		status = statusUnauthenticated
	}
	frame := transport.AppendFrame(nil, appendAck(nil, ack{version: ProtocolVersion, status: status, id: t.cfg.ID}))
	if _, err := c.Write(frame); err != nil {
		return 0, fmt.Errorf("%w: write ack to node %d: %w", errHandshake, h.from, err)
	}
	if status == statusUnauthenticated {
		var cn string
		var dns []string
		if cert != nil {
			cn, dns = cert.Subject.CommonName, cert.DNSNames
		}
		return 0, fmt.Errorf("%w: %w: hello from node %d, client certificate of %q (DNS names %v) is not %s",
			errHandshake, errUnauthenticated, h.from, cn, dns, transport.NodeIdentity(h.from))
	}
	if status != statusOK {
		return 0, fmt.Errorf("%w: hello from node %d to node %d, version %d: %s",
			errHandshake, h.from, h.to, h.version, statusText(status))
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return 0, fmt.Errorf("tcp: clear handshake deadline: %w", err)
	}
	return h.from, nil
}

// errFrameTimeout is matched by the error of a connection closed because
// a started frame stalled or did not arrive within its deadline.
var errFrameTimeout = errors.New("tcp: frame not complete in time")

// deadlineReader reads from an inbound connection after the handshake
// under a read deadline renewed on every read: IdleTimeout between frames;
// within a started frame FrameTimeout without a byte (a stall), and at
// most until the frame's end (transport.FrameDeadline from its header).
// Before arm it sets none (the handshake has its own).
type deadlineReader struct {
	c            net.Conn
	armed        bool
	idle, stall  time.Duration
	inFrame      bool
	frameEnd     time.Time
	frameSize    int
	frameAllowed time.Duration
}

func (r *deadlineReader) arm(idle, stall time.Duration) { r.armed, r.idle, r.stall = true, idle, stall }

// startFrame puts the reader under the deadlines of a frame of size bytes.
func (r *deadlineReader) startFrame(size int) {
	r.inFrame, r.frameSize = true, size
	r.frameAllowed = transport.FrameDeadline(r.stall, size)
	r.frameEnd = time.Now().Add(r.frameAllowed)
}

// endFrame goes back to the idle deadline.
func (r *deadlineReader) endFrame() { r.inFrame = false }

func (r *deadlineReader) Read(p []byte) (int, error) {
	if r.armed {
		now := time.Now()
		d := now.Add(r.idle)
		if r.inFrame {
			d = now.Add(r.stall)
			if r.frameEnd.Before(d) {
				d = r.frameEnd
			}
		}
		if err := r.c.SetReadDeadline(d); err != nil {
			return 0, fmt.Errorf("tcp: set read deadline: %w", err)
		}
	}
	return r.c.Read(p)
}

// readMessages reads message frames from peer from until the connection
// ends, delivering the valid ones, under the deadlines of dr.
func (t *Transport) readMessages(dr *deadlineReader, br *bufio.Reader, from uint64, log *slog.Logger) error {
	fr := transport.NewFrameReader(br, t.cfg.MaxMessageBytes)
	dr.arm(t.cfg.IdleTimeout, t.cfg.FrameTimeout)
	fr.OnHeader(func(size int) error {
		if br.Buffered() < size {
			dr.startFrame(size)
		}
		return nil
	})
	timedOut := func(err error) error {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if dr.inFrame {
			return fmt.Errorf("%w: frame of %d bytes from node %d: no byte for %v or not complete within %v",
				errFrameTimeout, dr.frameSize, from, t.cfg.FrameTimeout, dr.frameAllowed)
		}
		return fmt.Errorf("tcp: connection of node %d idle for %v: %w", from, t.cfg.IdleTimeout, err)
	}
	for {
		payload, err := fr.Next()
		if terr := timedOut(err); terr != nil {
			return terr
		}
		if !errors.Is(err, transport.ErrFrameTooLarge) {
			dr.endFrame()
		}
		switch {
		case err == nil:
		case errors.Is(err, transport.ErrFrameTooLarge):
			// The framing is intact: skip the payload and go on.
			t.counters.Rejected.Add(1)
			log.Debug("message rejected", "err", err)
			if err := fr.Discard(); err != nil {
				if terr := timedOut(err); terr != nil {
					return terr
				}
				return fmt.Errorf("tcp: read from node %d: %w", from, err)
			}
			dr.endFrame()
			continue
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, transport.ErrFrameChecksum):
			// The stream cannot be trusted any more.
			t.counters.Rejected.Add(1)
			return fmt.Errorf("tcp: read from node %d: %w", from, err)
		default:
			return fmt.Errorf("tcp: read from node %d: %w", from, err)
		}
		m, err := transport.CheckInbound(payload, t.cfg.ID, from, t.cfg.MaxMessageBytes)
		if err != nil {
			t.counters.Rejected.Add(1)
			log.Debug("message rejected", "err", err)
			continue
		}
		if t.blocked(from) {
			t.counters.Dropped.Add(1)
			continue
		}
		t.counters.Received.Add(1)
		t.cfg.Deliver(m)
	}
}
