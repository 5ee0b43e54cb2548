package grpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/internal/lograte"
)

// Options are the gRPC-specific settings of a Transport.
type Options struct {
	// TLS enables TLS (and with TLS.MutualTLS, node authentication). Nil
	// means plaintext: only for tests and trusted networks.
	TLS *TLSConfig
	// Compression is "" (none) or "gzip". Receivers decompress whatever
	// their peers send, so nodes may differ.
	Compression string
	// CompressionLevel is the gzip level, 1 (fastest) to 9 (smallest); 0
	// means the default, 6.
	CompressionLevel int
	// ChunkBytes is the largest frame payload sent: batches of messages are
	// cut at this size, and a larger message travels in chunks of it (0:
	// DefaultChunkBytes; at least MinChunkBytes, at most MaxChunkBytes).
	// A receiver accepts frames up to max(its ChunkBytes, 4 MiB), so peers
	// should use the same value, or one no larger than 4 MiB.
	ChunkBytes int
}

// Limits of Options.ChunkBytes.
const (
	DefaultChunkBytes = 1 << 20
	MinChunkBytes     = 1 << 10
	MaxChunkBytes     = 64 << 20
)

// recvFrameFloor is the smallest frame payload a receiver accepts, whatever
// its own ChunkBytes.
const recvFrameFloor = 4 << 20

// Service and method names of the hand-written service.
const (
	serviceName  = "forge.consensus.Raft"
	streamName   = "Stream"
	streamMethod = "/" + serviceName + "/" + streamName
)

// keepalive settings: a silent connection is probed after keepaliveTime
// and closed if the probe is not answered within keepaliveTimeout.
const (
	keepaliveTime    = 20 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Causes of a stream's end, seen through context.Cause.
var (
	errAddrChanged  = errors.New("peer address changed")
	errDialTimeout  = errors.New("dial and hello timed out")
	errWriteTimeout = errors.New("write timed out")
	errStopped      = errors.New("peer removed or transport closed")
)

// Transport is the gRPC transport. It implements transport.Transport; all
// methods are safe for concurrent use.
type Transport struct {
	cfg        transport.Config
	log        *slog.Logger
	tls        *tlsCreds // nil: plaintext
	compressor string    // "" : none
	chunk      int       // Options.ChunkBytes resolved

	lis    net.Listener
	server *grpc.Server
	limits *transport.ConnLimiter
	warn   lograte.Limiter // refused connections and streams

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the transport starts

	mu       sync.RWMutex
	closed   bool
	peers    map[uint64]*peer
	conns    map[string]*pooledConn // client connections by address
	blocked  map[uint64]bool
	blockAll bool

	closing atomic.Bool // set by Close: no more Deliver or Unreachable

	counters transport.Counters
}

var _ transport.Transport = (*Transport)(nil)

// pooledConn is a client connection shared by the peers at one address.
type pooledConn struct {
	cc   *grpc.ClientConn
	refs int
}

// New starts a transport listening on cfg.ListenAddr. Peers are added
// with SetPeer.
func New(cfg transport.Config, opts Options) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("grpc transport: %w", err)
	}
	cfg = cfg.WithDefaults()
	t := &Transport{
		cfg:     cfg,
		log:     cfg.Logger.With("transport", "grpc", "node", cfg.ID),
		chunk:   opts.ChunkBytes,
		peers:   map[uint64]*peer{},
		conns:   map[string]*pooledConn{},
		blocked: map[uint64]bool{},
	}
	if t.chunk == 0 {
		t.chunk = DefaultChunkBytes
	}
	if t.chunk < MinChunkBytes || t.chunk > MaxChunkBytes {
		return nil, fmt.Errorf("grpc transport: ChunkBytes %d outside [%d, %d]", opts.ChunkBytes, MinChunkBytes, MaxChunkBytes)
	}
	switch strings.ToLower(opts.Compression) {
	case "":
		if opts.CompressionLevel != 0 {
			return nil, errors.New("grpc transport: CompressionLevel set without Compression")
		}
	case "gzip":
		name, err := compressorName(opts.CompressionLevel)
		if err != nil {
			return nil, err
		}
		t.compressor = name
	default:
		return nil, fmt.Errorf("grpc transport: unknown compression %q (want \"\" or \"gzip\")", opts.Compression)
	}
	if opts.TLS != nil {
		creds, err := loadTLS(opts.TLS)
		if err != nil {
			return nil, err
		}
		t.tls = creds
	}

	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("grpc transport: listen on %s: %w", cfg.ListenAddr, err)
	}
	t.limits = transport.NewConnLimiter(cfg.MaxInboundConns, cfg.MaxInboundConnsPerIP, cfg.MaxHandshakes)
	t.lis = transport.LimitListener(lis, t.limits, func(remote net.Addr, err error) {
		t.counters.Rejected.Add(1)
		t.refused("grpc transport: connection refused", "remote", remote.String(), "err", err)
	})
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.server = grpc.NewServer(t.serverOptions()...)
	t.server.RegisterService(serviceDesc(), t)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.server.Serve(t.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.log.Error("grpc transport: serve stopped", "err", err)
		}
	}()
	t.log.Info("grpc transport listening", "addr", t.Addr(), "tls", t.tls != nil,
		"mtls", t.tls != nil && t.tls.mutual, "compression", t.compressor)
	return t, nil
}

// serverOptions returns the options of the transport's gRPC server.
func (t *Transport) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(max(t.chunk, recvFrameFloor) + frameHeaderMax),
		grpc.ConnectionTimeout(t.cfg.DialTimeout),
		grpc.WaitForHandlers(true),
		// A connection without a stream (a peer keeps one open) for
		// IdleTimeout is closed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout,
			MaxConnectionIdle: t.cfg.IdleTimeout}),
		// A client pinging more often than every keepaliveTime/2 is
		// cut off (GOAWAY "too_many_pings").
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2, PermitWithoutStream: true}),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		// A peer needs one stream per connection; a few more cover a
		// stream being replaced.
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
	}
	creds := insecure.NewCredentials()
	if t.tls != nil {
		creds = t.tls.server
	}
	return append(opts, grpc.Creds(handshakeWatch{TransportCredentials: creds, t: t}))
}

// Limits of the server's connections besides transport.Config's.
const (
	maxStreamsPerConn  = 8
	maxHeaderListBytes = 16 << 10
)

// refused logs a refused connection or stream at Warn, at most once a
// second (the rest at Debug, counted in the next warning).
func (t *Transport) refused(msg string, args ...any) {
	if ok, suppressed := t.warn.Allow(time.Now()); ok {
		t.log.Warn(msg, append(args, "suppressed", suppressed)...)
		return
	}
	t.log.Debug(msg, args...)
}

// dialOptions returns the options of the transport's client connections.
func (t *Transport) dialOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if t.tls != nil {
		creds = handshakeWatch{TransportCredentials: t.tls.client, t: t}
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithNoProxy(),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  t.cfg.BackoffMin,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   t.cfg.BackoffMax,
			},
			MinConnectTimeout: t.cfg.DialTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
}

// Flow-control windows. A peer has one long-lived stream, so the stream's
// window is most of the connection's. Fixed windows large enough for a
// burst of batches keep HTTP/2 flow control (window updates, the
// bandwidth-delay pings of a dynamic window) off the replication path.
const (
	streamWindow = 8 << 20
	connWindow   = 16 << 20
)

// serviceDesc describes the hand-written service: one bidirectional
// streaming method.
func serviceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: serviceName,
		HandlerType: (*streamServer)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    streamName,
			Handler:       func(srv any, ss grpc.ServerStream) error { return srv.(streamServer).serveStream(ss) },
			ServerStreams: true,
			ClientStreams: true,
		}},
		Metadata: "forge/consensus/adapters/grpc",
	}
}

// clientStreamDesc is the client side of the streaming method.
func clientStreamDesc() *grpc.StreamDesc {
	return &grpc.StreamDesc{StreamName: streamName, ServerStreams: true, ClientStreams: true}
}

// streamServer is the service implementation's interface.
type streamServer interface {
	serveStream(ss grpc.ServerStream) error
}

// Addr returns the address the transport listens on.
func (t *Transport) Addr() string { return t.lis.Addr().String() }

// Stats returns the transport's counters.
func (t *Transport) Stats() transport.Stats {
	return t.counters.Stats()
}

// Send queues each message for its peer and returns without blocking. See
// transport.Transport for when messages are dropped.
func (t *Transport) Send(msgs []core.Message) {
	if len(msgs) == 0 {
		return
	}
	now := time.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i := range msgs {
		m := &msgs[i]
		p := t.peers[m.To]
		switch {
		case t.closed || p == nil || m.To == t.cfg.ID || t.isBlockedLocked(m.To):
			t.counters.Dropped.Add(1)
			continue
		case p.breaker.State(now) == transport.BreakerOpen:
			t.counters.Dropped.Add(1)
			continue
		}
		select {
		case p.queue <- *m:
		default:
			t.counters.Dropped.Add(1)
		}
	}
}

// SetPeer adds peer id at addr or moves it to addr.
func (t *Transport) SetPeer(id uint64, addr string) {
	if id == core.None || id == t.cfg.ID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	p := t.peers[id]
	if p == nil {
		p = t.newPeer(id, addr)
		t.peers[id] = p
		t.wg.Add(1)
		go t.runPeer(p)
		return
	}
	if p.addr == addr {
		return
	}
	t.log.Info("grpc transport: peer moved", "peer", id, "from", p.addr, "to", addr)
	p.addr = addr
	p.breaker.Reset()
	if p.streamCancel != nil {
		p.streamCancel(errAddrChanged)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// RemovePeer forgets peer id, closing its stream and dropping its queue.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.cancel(errStopped)
	}
}

// Block switches the fault of peer id (0: every peer) on or off.
func (t *Transport) Block(id uint64, blocked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case id == core.None:
		t.blockAll = blocked
		if !blocked {
			clear(t.blocked)
		}
	case blocked:
		t.blocked[id] = true
	default:
		delete(t.blocked, id)
	}
}

func (t *Transport) isBlocked(id uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.isBlockedLocked(id)
}

func (t *Transport) isBlockedLocked(id uint64) bool {
	return t.blockAll || t.blocked[id]
}

// Close stops the server and every sender, closes every connection and
// waits for the transport's goroutines.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.closing.Store(true)

	t.cancel()
	t.server.Stop() // closes the listener and inbound streams; waits for handlers
	t.wg.Wait()

	t.mu.Lock()
	conns := t.conns
	t.conns = map[string]*pooledConn{}
	t.mu.Unlock()
	var errs []error
	for addr, pc := range conns {
		if err := pc.cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("grpc transport: close connection to %s: %w", addr, err))
		}
	}
	t.log.Info("grpc transport closed")
	return errors.Join(errs...)
}

// acquireConn returns the pooled client connection to addr, creating it
// (lazily: gRPC connects on the first stream) if needed.
func (t *Transport) acquireConn(addr string) (*grpc.ClientConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errStopped
	}
	if pc := t.conns[addr]; pc != nil {
		pc.refs++
		return pc.cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, t.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("grpc transport: client for %s: %w", addr, err)
	}
	t.conns[addr] = &pooledConn{cc: cc, refs: 1}
	return cc, nil
}

// releaseConn gives back a reference taken by acquireConn and closes the
// connection when it was the last.
func (t *Transport) releaseConn(addr string) {
	t.mu.Lock()
	pc := t.conns[addr]
	if pc == nil {
		t.mu.Unlock()
		return
	}
	pc.refs--
	if pc.refs > 0 {
		t.mu.Unlock()
		return
	}
	delete(t.conns, addr)
	t.mu.Unlock()
	if err := pc.cc.Close(); err != nil {
		t.log.Debug("grpc transport: close connection", "addr", addr, "err", err)
	}
}

// handshakeWatch counts and logs failed server-side TLS handshakes (no
// client certificate, a certificate of another CA, plain TCP probes).
type handshakeWatch struct {
	credentials.TransportCredentials
	t *Transport
}

// ServerHandshake runs the TLS handshake and counts its failure in
// Stats.Rejected.
func (h handshakeWatch) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(c)
	if err != nil {
		h.t.counters.Rejected.Add(1)
		err = transport.ExplainTLSError(err)
		h.t.refused("grpc transport: refused connection: TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return nil, nil, fmt.Errorf("grpc transport: server handshake with %s: %w", c.RemoteAddr(), err)
	}
	// Past its handshake, the connection leaves the handshake pool.
	transport.AuthenticatedConn(c)
	return conn, info, nil
}

// Clone returns a copy watching the same transport.
func (h handshakeWatch) Clone() credentials.TransportCredentials {
	return handshakeWatch{TransportCredentials: h.TransportCredentials.Clone(), t: h.t}
}

// ClientHandshake runs the client side of the handshake and explains a
// TLS failure (transport.ExplainTLSError).
func (h handshakeWatch) ClientHandshake(ctx context.Context, authority string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ClientHandshake(ctx, authority, c)
	if err != nil {
		return nil, nil, transport.ExplainTLSError(err)
	}
	return conn, info, nil
}
