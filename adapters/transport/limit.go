package transport

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Inbound connection limits.
//
// A cluster has few peers, each with one or two connections to a node, so
// the defaults leave room for restarts and moves and little more. A
// connection counts against the limits from its accept to its close, and
// against MaxHandshakes until it has passed the handshake (the TLS
// handshake, then the transport's hello): a flood of strangers fills that
// pool, not the whole table, and cannot lock authenticated peers out.

// Defaults of the inbound limits of Config.
const (
	DefaultMaxInboundConns      = 64
	DefaultMaxInboundConnsPerIP = 16
	DefaultMaxHandshakes        = 16
	DefaultFrameTimeout         = 10 * time.Second
	DefaultIdleTimeout          = 2 * time.Minute
)

// FrameTimeoutPerMiB is added to Config.FrameTimeout for every MiB a frame
// announces: a started frame of n MiB must be complete within
// FrameTimeout + n seconds (a 64 MiB snapshot gets 74 s by default).
const FrameTimeoutPerMiB = time.Second

// FrameDeadline returns how long a started frame announcing size bytes may
// take to arrive under base (Config.FrameTimeout).
func FrameDeadline(base time.Duration, size int) time.Duration {
	return base + time.Duration(size>>20)*FrameTimeoutPerMiB
}

// ErrConnLimit is matched by the errors of ConnLimiter.Admit.
var ErrConnLimit = errors.New("transport: inbound connection limit reached")

// ConnLimiter counts inbound connections against the limits of a Config:
// in total, per remote IP, and before their handshake. It is safe for
// concurrent use.
type ConnLimiter struct {
	total, perIP, handshakes int

	mu      sync.Mutex
	n       int
	pending int
	byIP    map[string]int
}

// NewConnLimiter returns a limiter of at most total connections, perIP
// from one IP address and handshakes not yet through their handshake.
func NewConnLimiter(total, perIP, handshakes int) *ConnLimiter {
	return &ConnLimiter{total: total, perIP: perIP, handshakes: handshakes, byIP: map[string]int{}}
}

// Admission is one admitted connection's place in a ConnLimiter.
type Admission struct {
	l       *ConnLimiter
	ip      string
	pending bool
	done    bool
}

// Admit takes a place for a connection from remote, or returns an error
// matching ErrConnLimit that names the limit reached. The connection must
// be closed at once when it fails.
func (l *ConnLimiter) Admit(remote net.Addr) (*Admission, error) {
	ip := remote.String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.n >= l.total:
		return nil, fmt.Errorf("%w: %d connections (transport.max_inbound_conns)", ErrConnLimit, l.total)
	case l.byIP[ip] >= l.perIP:
		return nil, fmt.Errorf("%w: %d connections from %s (transport.max_inbound_conns_per_ip)", ErrConnLimit, l.perIP, ip)
	case l.pending >= l.handshakes:
		return nil, fmt.Errorf("%w: %d connections in their handshake (transport.max_handshakes)", ErrConnLimit, l.handshakes)
	}
	l.n++
	l.pending++
	l.byIP[ip]++
	return &Admission{l: l, ip: ip, pending: true}, nil
}

// Authenticated records that the connection passed its handshake: it no
// longer counts against the handshake limit. Later calls do nothing.
func (a *Admission) Authenticated() {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if a.pending && !a.done {
		a.pending = false
		a.l.pending--
	}
}

// Release gives the place back when the connection closes. Later calls do
// nothing.
func (a *Admission) Release() {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if a.done {
		return
	}
	a.done = true
	a.l.n--
	if a.pending {
		a.l.pending--
	}
	if a.l.byIP[a.ip]--; a.l.byIP[a.ip] <= 0 {
		delete(a.l.byIP, a.ip)
	}
}

// Counts returns the connections admitted and, of them, those still in
// their handshake.
func (l *ConnLimiter) Counts() (conns, handshaking int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.pending
}

// LimitListener wraps ln so that Accept admits each connection through l:
// a connection over a limit is closed at once and reported to refused
// (which must not block), and Accept goes on to the next. The connections
// it returns release their place when closed; call Authenticated on them
// (see AuthenticatedConn) when their handshake is through.
func LimitListener(ln net.Listener, l *ConnLimiter, refused func(remote net.Addr, err error)) net.Listener {
	return &limitListener{Listener: ln, l: l, refused: refused}
}

type limitListener struct {
	net.Listener
	l       *ConnLimiter
	refused func(net.Addr, error)
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a, err := ll.l.Admit(c.RemoteAddr())
		if err != nil {
			_ = c.Close()
			if ll.refused != nil {
				ll.refused(c.RemoteAddr(), err)
			}
			continue
		}
		return &LimitedConn{Conn: c, adm: a}, nil
	}
}

// LimitedConn is a connection admitted by a LimitListener.
type LimitedConn struct {
	net.Conn
	adm  *Admission
	once sync.Once
}

// Authenticated records that the connection passed its handshake.
func (c *LimitedConn) Authenticated() { c.adm.Authenticated() }

// Close closes the connection and gives its place back.
func (c *LimitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.adm.Release)
	return err
}

// AuthenticatedConn calls Authenticated on c if it is a LimitedConn (or
// wraps one through a NetConn method, as a *tls.Conn does).
func AuthenticatedConn(c net.Conn) {
	for c != nil {
		if lc, ok := c.(*LimitedConn); ok {
			lc.Authenticated()
			return
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		c = u.NetConn()
	}
}
