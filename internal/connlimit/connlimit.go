// Package connlimit caps the connections a listener holds: in all, and
// from any one remote IP address. A connection over a cap is closed as soon
// as it is accepted, with a warning that is rate-limited (package lograte)
// so that a flood of connections cannot flood the log. It can also give
// every write on an accepted connection a deadline, so that a peer that
// stops reading cannot hold a writer (and its buffers) for ever.
package connlimit

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/internal/lograte"
)

// Config configures a Listener.
type Config struct {
	// Max is the most connections open at once (0: no cap).
	Max int
	// MaxPerIP is the most connections open at once from one remote IP
	// address (0: no cap). Loopback addresses count like any other.
	MaxPerIP int
	// WriteTimeout, if positive, bounds every Write on an accepted
	// connection: each one must finish within it (it sets the write
	// deadline before writing), or fails with a time-out.
	WriteTimeout time.Duration
	// Name names the listener in logs ("client protocol", "http api").
	Name string
	// Logger receives the rate-limited warnings of refused connections
	// (nil: slog.Default()).
	Logger *slog.Logger
}

// Listener is a net.Listener that enforces a Config. Its Accept returns
// only connections under the caps; the count of a connection is released
// when it is closed.
type Listener struct {
	net.Listener
	cfg     Config
	log     *slog.Logger
	refused lograte.Limiter

	mu    sync.Mutex
	open  int
	perIP map[string]int
}

// New wraps ln. Config's zero caps mean no cap.
func New(ln net.Listener, cfg Config) *Listener {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Listener{Listener: ln, cfg: cfg, log: log, perIP: make(map[string]int)}
}

// Accept waits for a connection under the caps and returns it; those over
// a cap are closed at once (and logged, rate-limited). Errors are those of
// the wrapped listener.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(nc)
		if why := l.admit(ip); why != "" {
			_ = nc.Close()
			l.logRefused(nc, why)
			continue
		}
		return &conn{Conn: nc, l: l, ip: ip}, nil
	}
}

// admit counts a connection from ip and returns "", or returns which cap
// it would exceed.
func (l *Listener) admit(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Max > 0 && l.open >= l.cfg.Max {
		return "max"
	}
	if l.cfg.MaxPerIP > 0 && l.perIP[ip] >= l.cfg.MaxPerIP {
		return "max_per_ip"
	}
	l.open++
	l.perIP[ip]++
	return ""
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

func (l *Listener) logRefused(nc net.Conn, why string) {
	limit := l.cfg.Max
	if why == "max_per_ip" {
		limit = l.cfg.MaxPerIP
	}
	remote := nc.RemoteAddr().String()
	if ok, suppressed := l.refused.Allow(time.Now()); ok {
		l.log.Warn(l.cfg.Name+": too many connections; closing a new one", "remote", remote,
			"cap", why, "limit", limit, "suppressed", suppressed)
		return
	}
	l.log.Debug(l.cfg.Name+": too many connections; closing a new one", "remote", remote, "cap", why, "limit", limit)
}

// Open returns the number of connections open (accepted and not closed).
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// OpenFrom returns the number of connections open from ip (as
// net.IP.String prints it).
func (l *Listener) OpenFrom(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[ip]
}

// remoteIP returns the remote IP address of a connection (its whole
// address if it has no IP).
func remoteIP(nc net.Conn) string {
	a := nc.RemoteAddr()
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if a == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// conn is an accepted connection, counted until closed.
type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

// Write writes b within the listener's WriteTimeout, if it has one.
func (c *conn) Write(b []byte) (int, error) {
	if d := c.l.cfg.WriteTimeout; d > 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(d)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// Close closes the connection and releases its count (once).
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// CloseWrite shuts down the writing side, if the connection can.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// NetConn returns the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }
