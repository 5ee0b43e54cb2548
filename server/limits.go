package server

import (
	"errors"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/internal/connlimit"
	"github.com/forge-consensus/consensus/internal/lograte"
)

// errReadBudget is why a client-protocol frame was not read: the node's
// memory for frames being read (api.max_read_memory) stayed taken until
// the frame's deadline (api.read_timeout).
var errReadBudget = errors.New("no room to read the frame within api.read_timeout (api.max_read_memory is taken)")

// gate is a counted resource shared by the connections of a listener
// (bytes of frames being read, requests in flight): take waits for room,
// give returns it.
type gate struct {
	mu      sync.Mutex
	free    int64
	changed chan struct{} // closed (and replaced) whenever room is given back
}

func newGate(n int64) *gate { return &gate{free: n, changed: make(chan struct{})} }

// take takes n, waiting for room until deadline (zero: no deadline) or
// until done closes.
func (g *gate) take(n int64, deadline time.Time, done <-chan struct{}) error {
	var timeout <-chan time.Time
	for {
		g.mu.Lock()
		if n <= g.free {
			g.free -= n
			g.mu.Unlock()
			return nil
		}
		ch := g.changed
		g.mu.Unlock()
		if timeout == nil && !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-timeout:
			return errReadBudget
		case <-done:
			return net.ErrClosed
		}
	}
}

// takeUpTo takes between min(want, least) and want, as much as is free,
// without waiting; it returns how much it took (0: not enough room) and,
// if 0, a channel closed when room is given back.
func (g *gate) takeUpTo(want, least int64) (int64, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if k := min(want, g.free); k >= min(want, least) && k > 0 {
		g.free -= k
		return k, nil
	}
	return 0, g.changed
}

// give returns n.
func (g *gate) give(n int64) {
	if n == 0 {
		return
	}
	g.mu.Lock()
	g.free += n
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// limitListener wraps a listener of the node's API with the connection caps
// and write deadline of api.*.
func limitListener(ln net.Listener, l APILimits, name string, log *slog.Logger) *connlimit.Listener {
	return connlimit.New(ln, connlimit.Config{
		Max: l.MaxConnections, MaxPerIP: l.MaxConnectionsPerIP, WriteTimeout: l.WriteTimeout,
		Name: name, Logger: log,
	})
}

// inFlightLimit answers 503, with Retry-After, the HTTP requests beyond max
// in progress at once (api.max_inflight); the warnings of it are
// rate-limited.
type inFlightLimit struct {
	next  http.Handler
	slots chan struct{}
	log   *slog.Logger
	warn  lograte.Limiter
}

func newInFlightLimit(next http.Handler, max int, log *slog.Logger) *inFlightLimit {
	return &inFlightLimit{next: next, slots: make(chan struct{}, max), log: log}
}

func (h *inFlightLimit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.slots <- struct{}{}:
	default:
		if ok, suppressed := h.warn.Allow(time.Now()); ok {
			h.log.Warn("http api: too many requests in progress (api.max_inflight); answering 503",
				"limit", cap(h.slots), "remote", r.RemoteAddr, "suppressed", suppressed)
		}
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "too many requests in progress; retry later")
		return
	}
	defer func() { <-h.slots }()
	h.next.ServeHTTP(w, r)
}

// httpServer builds the HTTP API's server with the timeouts of api.*:
// ReadTimeout bounds a request's header and body (a trickled body is cut
// off), IdleTimeout a kept-alive connection between requests; writes are
// bounded by the listener (limitListener), each on its own, so that a slow
// handler (a write waiting for its commit) is not cut off.
func httpServer(h http.Handler, l APILimits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           newInFlightLimit(h, l.MaxInFlight, log),
		ReadHeaderTimeout: min(5*time.Second, l.ReadTimeout),
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
		ErrorLog:          stdlog.New(&httpErrorLog{log: log}, "", 0),
	}
}

// httpErrorLog takes net/http's own error lines (a refused TLS handshake:
// "http: TLS handshake error from ADDR: ... certificate signed by unknown
// authority", a bad request line) into the node's log: at most one Warn a
// second, with a count of those held back, the rest at Debug. Without it
// they went to the standard library's logger, unthrottled.
type httpErrorLog struct {
	log   *slog.Logger
	warns lograte.Limiter
}

func (h *httpErrorLog) Write(p []byte) (int, error) {
	msg := "http API: " + strings.TrimSpace(strings.TrimPrefix(string(p), "http: "))
	if ok, held := h.warns.Allow(time.Now()); ok {
		h.log.Warn(msg, "held_back", held)
	} else {
		h.log.Debug(msg)
	}
	return len(p), nil
}
