// Package transport is the contract every production network transport of
// the consensus library implements, with the helpers implementations share:
// configuration, length-prefixed CRC-32C frames, inbound validation, a
// reconnect back-off and a per-peer circuit breaker.
//
// A Transport carries core.Messages between nodes. It is a node.Transport:
// Send never blocks and may lose messages (the protocol retries), so every
// failure (a full queue, an unreachable peer, a broken connection, a fault
// switch) drops messages and counts them in Stats instead of returning an
// error. Received messages are validated (see CheckInbound) and handed to
// Config.Deliver.
//
// Conformance is checked by the transporttest subpackage: every
// implementation runs transporttest.Run in its tests.
package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Transport is a production node.Transport: it sends to peers by address and
// hands received messages to Config.Deliver.
//
// All methods are safe for concurrent use.
type Transport interface {
	// Send queues each message for the peer named by its To field and
	// returns without blocking. Messages are read-only: Send and the
	// goroutines behind it never modify them (they may keep references
	// until the message is written). Messages are dropped, and counted in
	// Stats.Dropped, when the peer's queue is full, its address is unknown,
	// it is blocked, its circuit breaker is open, To is this node, or the
	// transport is closed. Send does not check From: receivers reject a
	// message whose From is not the sender's authenticated ID.
	node.Transport

	// Addr returns the address the transport listens on (host:port), with
	// the port resolved when Config.ListenAddr asked for port 0.
	Addr() string

	// SetPeer adds peer id at addr, or changes its address (a membership
	// change or a move). Changing the address closes the connection to the
	// old one; messages queued for the peer are sent to the new address.
	// SetPeer with this node's own ID is ignored.
	SetPeer(id uint64, addr string)

	// RemovePeer forgets peer id: its connection is closed and queued
	// messages are dropped. Later sends to id are dropped until SetPeer.
	// Messages from id are still accepted (a removed node may still talk).
	RemovePeer(id uint64)

	// Block is a fault switch: while peer id is blocked, every message to
	// it and from it is dropped (counted in Stats.Dropped). Block(0, true)
	// blocks every peer; Block(0, false) clears every block, including
	// blocks of single peers. Blocking a peer unknown to SetPeer is allowed
	// and takes effect when it appears.
	Block(id uint64, blocked bool)

	// Stats returns the counters accumulated since the transport started.
	Stats() Stats

	// Close stops listening and sending, closes every connection and
	// waits for the transport's goroutines: Deliver and Unreachable are
	// not called after Close returns. Close is idempotent (later calls
	// return nil); other methods may be called after Close and do nothing
	// (Send drops). Close must not be called from Deliver or Unreachable.
	Close() error
}

// Stats are a transport's counters, in messages unless stated otherwise.
type Stats struct {
	// Sent counts messages written to the network.
	Sent uint64
	// Received counts valid messages handed to Deliver.
	Received uint64
	// Dropped counts messages lost on purpose or by failure: on the send
	// side (queue full, unknown peer, blocked peer, open breaker, failed
	// write, removed peer, closed transport, too large to send) and
	// inbound messages from a blocked peer.
	Dropped uint64
	// Rejected counts inbound frames, messages and connections refused as
	// malformed, oversize, misaddressed or unauthenticated (a failed
	// handshake, a From that is not the connection's peer, a To that is
	// not this node).
	Rejected uint64
	// Reconnects counts outbound connections established to a peer that
	// had been connected before.
	Reconnects uint64
}

// Defaults of Config fields left zero.
const (
	DefaultMaxMessageBytes = 64 << 20
	DefaultQueueSize       = 4096
	DefaultDialTimeout     = 2 * time.Second
	DefaultWriteTimeout    = 5 * time.Second
	DefaultBackoffMin      = 50 * time.Millisecond
	DefaultBackoffMax      = 2 * time.Second
	DefaultBreakerFailures = 5
)

// MaxFrameLimit is the largest value Config.MaxMessageBytes may take (and
// the largest payload a frame can carry).
const MaxFrameLimit = 1 << 30

// Config is the configuration common to implementations. Zero values of
// optional fields mean the documented defaults (see WithDefaults).
type Config struct {
	// ID is this node's ID (required, not 0).
	ID uint64
	// ClusterID identifies the cluster (a hash of its cluster_id; 0: none).
	// It travels in each connection's handshake, and a listener refuses a
	// peer whose ClusterID differs from its own (when both are set), so
	// that nodes of two clusters never exchange messages, even with the
	// same node IDs at reused addresses (a cluster restored from a backup
	// beside the old one, say).
	ClusterID uint64
	// ListenAddr is the address to listen on, e.g. "127.0.0.1:0"
	// (required).
	ListenAddr string
	// Deliver is called from transport goroutines for every valid message
	// addressed to ID (required). Calls for messages from one connection
	// are sequential and in arrival order; calls for different connections
	// may be concurrent. It must not block long and must treat the message
	// as its own (it does not alias transport buffers).
	Deliver func(m core.Message)
	// Unreachable, if set, is called from a transport goroutine (never
	// from within Send) when peer id cannot be reached: a dial, handshake
	// or write failed. A host forwards it to node.Node.ReportUnreachable.
	Unreachable func(id uint64)
	// MaxMessageBytes is the largest encoded message accepted or sent
	// (0: DefaultMaxMessageBytes; at most MaxFrameLimit). Larger inbound
	// messages are rejected; larger outbound messages are dropped.
	MaxMessageBytes int
	// QueueSize is the number of messages each peer's send queue holds
	// (0: DefaultQueueSize); Send drops what does not fit.
	QueueSize int
	// DialTimeout bounds a dial with its handshake (0: DefaultDialTimeout).
	DialTimeout time.Duration
	// WriteTimeout bounds each write to a connection (0:
	// DefaultWriteTimeout).
	WriteTimeout time.Duration
	// BackoffMin and BackoffMax bound the exponential back-off, with
	// jitter, between reconnect attempts to a peer (0: DefaultBackoffMin,
	// DefaultBackoffMax).
	BackoffMin, BackoffMax time.Duration
	// BreakerFailures is the number of consecutive failures (dials,
	// handshakes, writes) that open a peer's circuit breaker (0:
	// DefaultBreakerFailures). While open, messages to the peer are dropped
	// without dialing; after BackoffMax it goes half-open and one probe
	// dial decides whether it closes or opens again.
	BreakerFailures int
	// MaxInboundConns caps the concurrent inbound connections (0:
	// DefaultMaxInboundConns); MaxInboundConnsPerIP caps those from one IP
	// address (0: DefaultMaxInboundConnsPerIP); MaxHandshakes caps those
	// not yet through their handshake (0: DefaultMaxHandshakes). A
	// connection over a limit is closed at once and counted in
	// Stats.Rejected. See ConnLimiter.
	MaxInboundConns, MaxInboundConnsPerIP, MaxHandshakes int
	// FrameTimeout bounds the arrival of a started inbound frame (tcp) or
	// chunked message (grpc): once its header has arrived, no byte of it
	// for FrameTimeout, or the whole not there within FrameTimeout plus
	// FrameTimeoutPerMiB for every MiB it announces, closes the
	// connection (grpc: the stream) and counts in Stats.Rejected (0:
	// DefaultFrameTimeout). Payload buffers grow with the bytes received,
	// never to the size announced. The handshake is bounded by
	// DialTimeout.
	FrameTimeout time.Duration
	// IdleTimeout closes an inbound connection on which nothing arrived
	// for that long (0: DefaultIdleTimeout). Dialers close their own
	// connections after IdleTimeout/2 without traffic, before the
	// listener would, so an idle close never loses a message.
	IdleTimeout time.Duration
	// Logger receives the transport's logs (nil: discarded).
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with zero optional fields set to their
// defaults.
func (c Config) WithDefaults() Config {
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
		if c.BackoffMin > c.BackoffMax {
			c.BackoffMax = c.BackoffMin
		}
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.MaxInboundConns == 0 {
		c.MaxInboundConns = DefaultMaxInboundConns
	}
	if c.MaxInboundConnsPerIP == 0 {
		c.MaxInboundConnsPerIP = DefaultMaxInboundConnsPerIP
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ErrInvalidConfig is matched (errors.Is) by every error Validate returns.
var ErrInvalidConfig = errors.New("transport: invalid config")

// Validate reports the first problem with c, naming the field. Zero values
// of optional fields are valid (they mean the defaults).
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c == nil:
		return fmt.Errorf("%w: nil config", ErrInvalidConfig)
	case c.ID == core.None:
		return bad("ID", "must not be 0")
	case c.ListenAddr == "":
		return bad("ListenAddr", "must be set (e.g. \"127.0.0.1:0\")")
	case c.Deliver == nil:
		return bad("Deliver", "must be set")
	case c.MaxMessageBytes < 0 || c.MaxMessageBytes > MaxFrameLimit:
		return bad("MaxMessageBytes", "%d is outside [0, %d]", c.MaxMessageBytes, MaxFrameLimit)
	case c.QueueSize < 0:
		return bad("QueueSize", "%d is negative", c.QueueSize)
	case c.DialTimeout < 0:
		return bad("DialTimeout", "%v is negative", c.DialTimeout)
	case c.WriteTimeout < 0:
		return bad("WriteTimeout", "%v is negative", c.WriteTimeout)
	case c.BackoffMin < 0:
		return bad("BackoffMin", "%v is negative", c.BackoffMin)
	case c.BackoffMax < 0:
		return bad("BackoffMax", "%v is negative", c.BackoffMax)
	case c.BackoffMax != 0 && c.BackoffMin > c.BackoffMax:
		return bad("BackoffMin", "%v is above BackoffMax %v", c.BackoffMin, c.BackoffMax)
	case c.BreakerFailures < 0:
		return bad("BreakerFailures", "%d is negative", c.BreakerFailures)
	case c.MaxInboundConns < 0:
		return bad("MaxInboundConns", "%d is negative", c.MaxInboundConns)
	case c.MaxInboundConnsPerIP < 0:
		return bad("MaxInboundConnsPerIP", "%d is negative", c.MaxInboundConnsPerIP)
	case c.MaxHandshakes < 0:
		return bad("MaxHandshakes", "%d is negative", c.MaxHandshakes)
	case c.FrameTimeout < 0:
		return bad("FrameTimeout", "%v is negative", c.FrameTimeout)
	case c.IdleTimeout < 0:
		return bad("IdleTimeout", "%v is negative", c.IdleTimeout)
	}
	return nil
}

// Counters are the atomic counters behind Stats, for implementations to
// embed: each field counts what the Stats field of the same name does.
type Counters struct {
	Sent, Received, Dropped, Rejected, Reconnects atomic.Uint64
}

// Stats returns the counters' current values.
func (c *Counters) Stats() Stats {
	return Stats{
		Sent:       c.Sent.Load(),
		Received:   c.Received.Load(),
		Dropped:    c.Dropped.Load(),
		Rejected:   c.Rejected.Load(),
		Reconnects: c.Reconnects.Load(),
	}
}
