// Package tcp is a transport.Transport over TCP, plaintext or TLS.
//
// Each node listens on one address. To send to a peer it keeps one
// long-lived outbound connection, dialed on demand and reused for every
// message; the connection carries traffic one way only (a peer's replies
// come on the peer's own connection to us). A connection starts with a
// handshake (see handshake.go) naming the dialer, the node it means to
// reach and the protocol version; then the dialer writes messages as
// length-prefixed CRC-32C frames (transport.AppendFrame), one message per
// frame, encoded with the core codec.
//
// Send never blocks: it appends messages to the peer's bounded queue and
// wakes the peer's writer goroutine, which drains the whole queue at once
// and writes it through a bufio.Writer (many frames per flush), with a
// deadline on every write. A failed dial, handshake or write drops the
// messages in hand, reports the peer unreachable and retries after an
// exponential back-off with jitter; consecutive failures open the peer's
// circuit breaker, and while it is open Send drops the peer's messages
// without dialing, until a single probe dial after BackoffMax closes it
// again.
//
// Inbound connections are served by one goroutine each, which reads
// frames, validates them with transport.CheckInbound and calls Deliver in
// arrival order.
//
// # Limits
//
// Inbound connections are admitted by a transport.ConnLimiter
// (Config.MaxInboundConns, MaxInboundConnsPerIP, MaxHandshakes: a
// connection counts as in its handshake until its hello is accepted) and
// closed at once over a limit. The TLS handshake and the hello must finish
// within DialTimeout; then the connection may idle for IdleTimeout between
// frames, and a started frame must keep arriving (FrameTimeout without a
// byte) and end within transport.FrameDeadline. Payload buffers grow with
// the bytes received. A dialer closes its connection after IdleTimeout/2
// without traffic, before the listener would.
//
// # TLS
//
// Without options the transport speaks plaintext: only for tests and
// trusted networks, since the hello's From is then taken on trust. With
// WithTLS every connection runs a TLS handshake (TLS 1.2 at least) before
// the protocol handshake, both within DialTimeout. The dialer verifies the
// listener's certificate against TLSConfig.CAFile and TLSConfig.ServerName
// (the dialled host when empty). A listener counts a failed TLS handshake
// (a plaintext client, an untrusted or missing client certificate) in
// Stats.Rejected and logs it at Warn with its cause, at most once a second
// (the rest at Debug).
//
// With TLSConfig.MutualTLS both sides present certificates signed by
// CAFile, and nodes are authenticated by the rule of
// transport.NodeIdentity: a listener answers a hello whose From is not
// named by the client certificate with statusUnauthenticated and closes
// the connection, and, as on every connection, refuses messages whose
// From is not the hello's (transport.CheckInbound). A dialer checks, once
// the listener has acknowledged its hello and before writing any message,
// that the listener's certificate names the peer it meant to reach, and
// fails the dial otherwise. Both sides of a cluster must agree on TLS: a
// plaintext dialer and a TLS listener, or the reverse, fail the handshake.
package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/forge-consensus/consensus/internal/lograte"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// Transport is a transport.Transport over TCP. Create it with New.
type Transport struct {
	cfg  transport.Config
	log  *slog.Logger
	ln   net.Listener
	addr string

	// TLS: nil configurations mean plaintext.
	tlsServer, tlsClient *tls.Config
	mutual               bool            // mutual TLS: nodes are authenticated
	tlsWarn              lograte.Limiter // refused inbound connections
	limits               *transport.ConnLimiter

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	closed atomic.Bool
	wg     sync.WaitGroup // every goroutine the transport started

	// peers and blocks are replaced, never modified, under mu, so that
	// Send and the readers look them up without locking.
	peers  atomic.Pointer[peerMap]
	blocks atomic.Pointer[blockSet]

	mu      sync.Mutex // guards the fields below and the replacement of peers and blocks
	inbound map[net.Conn]struct{}

	counters transport.Counters
}

var _ transport.Transport = (*Transport)(nil)

type peerMap map[uint64]*peer

// blockSet is the state of the Block fault switch.
type blockSet struct {
	all bool
	ids map[uint64]bool
}

func (b *blockSet) has(id uint64) bool { return b != nil && (b.all || b.ids[id]) }

// Option is an optional setting of New.
type Option func(*options)

type options struct {
	tls *transport.TLSConfig
}

// WithTLS makes the transport speak TLS, and with c.MutualTLS authenticate
// nodes by their certificates (see the package documentation). New loads
// the files c names and fails if it cannot. A nil c means plaintext.
func WithTLS(c *transport.TLSConfig) Option {
	return func(o *options) { o.tls = c }
}

// New starts a transport listening on cfg.ListenAddr. Zero optional fields
// of cfg take the defaults of transport.Config.
func New(cfg transport.Config, opts ...Option) (*Transport, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tcp: new transport: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var tlsServer, tlsClient *tls.Config
	if o.tls != nil {
		var err error
		if tlsServer, tlsClient, err = o.tls.Load(); err != nil {
			return nil, fmt.Errorf("tcp: new transport: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("tcp: listen on %q: %w", cfg.ListenAddr, err)
	}
	t := &Transport{
		cfg:     cfg,
		ln:      ln,
		addr:    ln.Addr().String(),
		ctx:     ctx,
		cancel:  cancel,
		inbound: make(map[net.Conn]struct{}),
		limits:  transport.NewConnLimiter(cfg.MaxInboundConns, cfg.MaxInboundConnsPerIP, cfg.MaxHandshakes),

		tlsServer: tlsServer,
		tlsClient: tlsClient,
		mutual:    o.tls != nil && o.tls.MutualTLS,
	}
	t.log = cfg.Logger.With("transport", "tcp", "node", cfg.ID, "addr", t.addr)
	t.peers.Store(&peerMap{})
	t.blocks.Store(&blockSet{})
	t.wg.Go(t.acceptLoop)
	t.log.Debug("transport listening", "tls", t.tlsServer != nil, "mtls", t.mutual)
	return t, nil
}

// Addr returns the address the transport listens on.
func (t *Transport) Addr() string { return t.addr }

// Send queues each message for the peer its To names, without blocking.
// Messages are dropped (and counted) when they cannot be queued; see
// transport.Transport.
func (t *Transport) Send(msgs []core.Message) {
	if len(msgs) == 0 {
		return
	}
	if t.closed.Load() {
		t.counters.Dropped.Add(uint64(len(msgs)))
		return
	}
	peers := *t.peers.Load()
	blocks := t.blocks.Load()
	var now time.Time
	for i := 0; i < len(msgs); {
		// A run of messages to the same peer is queued at once.
		to := msgs[i].To
		j := i + 1
		for j < len(msgs) && msgs[j].To == to {
			j++
		}
		run := msgs[i:j]
		i = j
		p := peers[to]
		if p == nil || blocks.has(to) {
			t.counters.Dropped.Add(uint64(len(run)))
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		if p.breaker.State(now) == transport.BreakerOpen {
			t.counters.Dropped.Add(uint64(len(run)))
			continue
		}
		p.enqueue(run)
	}
}

// SetPeer adds peer id at addr or changes its address.
func (t *Transport) SetPeer(id uint64, addr string) {
	if id == t.cfg.ID || id == core.None {
		t.log.Debug("SetPeer ignored", "peer", id, "peer_addr", addr)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return
	}
	old := *t.peers.Load()
	if p := old[id]; p != nil {
		p.setAddr(addr)
		return
	}
	p := newPeer(t, id, addr)
	peers := make(peerMap, len(old)+1)
	for k, v := range old {
		peers[k] = v
	}
	peers[id] = p
	t.peers.Store(&peers)
	t.wg.Go(p.run)
	t.log.Debug("peer added", "peer", id, "peer_addr", addr)
}

// RemovePeer forgets peer id, closing its connection and dropping what is
// queued for it.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.peers.Load()
	p := old[id]
	if p == nil {
		return
	}
	peers := make(peerMap, len(old))
	for k, v := range old {
		if k != id {
			peers[k] = v
		}
	}
	t.peers.Store(&peers)
	p.stop()
	t.log.Debug("peer removed", "peer", id)
}

// Block switches the fault switch for peer id (0: every peer).
func (t *Transport) Block(id uint64, blocked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.blocks.Load()
	next := &blockSet{all: old.all, ids: make(map[uint64]bool, len(old.ids)+1)}
	for k, v := range old.ids {
		next.ids[k] = v
	}
	switch {
	case id == core.None && blocked:
		next.all = true
	case id == core.None:
		next = &blockSet{}
	case blocked:
		next.ids[id] = true
	default:
		delete(next.ids, id)
	}
	t.blocks.Store(next)
	t.log.Debug("block switched", "peer", id, "blocked", blocked)
}

// blocked reports whether traffic with peer id is cut by Block.
func (t *Transport) blocked(id uint64) bool { return t.blocks.Load().has(id) }

// Stats returns the transport's counters.
func (t *Transport) Stats() transport.Stats {
	return t.counters.Stats()
}

// Close stops listening and sending, closes every connection and waits for
// the transport's goroutines. It is idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed.Load() {
		t.mu.Unlock()
		return nil
	}
	t.closed.Store(true)
	t.cancel()
	err := t.ln.Close()
	for c := range t.inbound {
		_ = c.Close()
	}
	for _, p := range *t.peers.Load() {
		p.stop()
	}
	t.mu.Unlock()
	t.wg.Wait()
	t.log.Debug("transport closed")
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("tcp: close listener %s: %w", t.addr, err)
	}
	return nil
}

// unreachable reports peer id unreachable to the host, if it asked.
func (t *Transport) unreachable(id uint64) {
	if f := t.cfg.Unreachable; f != nil && !t.closed.Load() {
		f(id)
	}
}
