package tcp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
		t.mu.Lock()
		if t.closed.Load() {
			t.mu.Unlock()
			_ = c.Close()
			return
		}
		t.inbound[c] = struct{}{}
		t.wg.Go(func() { t.serve(c) })
		t.mu.Unlock()
	}
}

// serve runs an inbound connection: the handshake, then messages until the
// connection ends or breaks the protocol.
func (t *Transport) serve(c net.Conn) {
	defer func() {
		_ = c.Close()
		t.mu.Lock()
		delete(t.inbound, c)
		t.mu.Unlock()
	}()
	log := t.log.With("remote", c.RemoteAddr().String())
	br := bufio.NewReaderSize(c, readBufferSize)
	from, err := t.acceptHandshake(c, br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			log.Debug("connection closed before its handshake")
			return
		}
		t.counters.Rejected.Add(1)
		if !t.closed.Load() {
			log.Debug("connection rejected", "err", err)
		}
		return
	}
	log = log.With("peer", from)
	log.Debug("inbound connection")
	if err := t.readMessages(br, from, log); err != nil && !t.closed.Load() {
		log.Debug("inbound connection ended", "err", err)
	}
}

// acceptHandshake reads the hello within DialTimeout and answers it. It
// returns the authenticated peer ID, or io.EOF if the connection closed
// without a byte.
func (t *Transport) acceptHandshake(c net.Conn, br *bufio.Reader) (uint64, error) {
	if err := c.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		return 0, fmt.Errorf("tcp: set handshake deadline: %w", err)
	}
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
	case h.to != t.cfg.ID:
		status = statusWrongNode
	case h.from == 0 || h.from == t.cfg.ID:
		status = statusBadSender
	}
	frame := transport.AppendFrame(nil, appendAck(nil, ack{version: ProtocolVersion, status: status, id: t.cfg.ID}))
	if _, err := c.Write(frame); err != nil {
		return 0, fmt.Errorf("%w: write ack to node %d: %w", errHandshake, h.from, err)
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

// readMessages reads message frames from peer from until the connection
// ends, delivering the valid ones.
func (t *Transport) readMessages(br *bufio.Reader, from uint64, log *slog.Logger) error {
	fr := transport.NewFrameReader(br, t.cfg.MaxMessageBytes)
	for {
		payload, err := fr.Next()
		switch {
		case err == nil:
		case errors.Is(err, transport.ErrFrameTooLarge):
			// The framing is intact: skip the payload and go on.
			t.counters.Rejected.Add(1)
			log.Debug("message rejected", "err", err)
			if err := fr.Discard(); err != nil {
				return fmt.Errorf("tcp: read from node %d: %w", from, err)
			}
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
