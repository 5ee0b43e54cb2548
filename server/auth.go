package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/internal/lograte"
)

// Failed authentication is limited per remote IP address: after
// AuthMaxFailures wrong tokens within AuthFailureWindow, the address is
// refused for AuthFailureWindow (HTTP 429; client-protocol connections
// closed), right tokens included.
const (
	AuthMaxFailures   = 10
	AuthFailureWindow = time.Minute
	// authMaxTracked bounds the addresses the limiter remembers: beyond
	// it, expired entries are dropped, then arbitrary ones.
	authMaxTracked = 4096
)

// access is what a token may do on the data plane, each level including
// the ones before it.
type access uint8

const (
	accessNone   access = iota
	accessStatus        // GET /status (viewer, operator)
	accessRead          // + GET /kv, client-protocol Get (reader)
	accessWrite         // + PUT and DELETE /kv, Put and Delete (writer, admin)
)

// roleAccess maps a security.tokens role to its data-plane access.
func roleAccess(role string) access {
	switch role {
	case "writer", "admin":
		return accessWrite
	case "reader":
		return accessRead
	case "viewer", "operator":
		return accessStatus
	}
	return accessNone
}

func (a access) String() string {
	switch a {
	case accessStatus:
		return "status"
	case accessRead:
		return "reader"
	case accessWrite:
		return "writer"
	}
	return "none"
}

// tokenSum is a configured token's digest (tokens are compared by digest,
// in constant time, and never kept in clear) and its role.
type tokenSum struct {
	sum  [sha256.Size]byte
	role string
}

// dataAuth authenticates the data plane: the HTTP API's /kv and /status
// and the client protocol. It never logs a token.
type dataAuth struct {
	tokens []tokenSum
	// required: a reader or writer token is configured, so every request
	// needs a token.
	required bool
	limit    *authLimiter
	log      *slog.Logger
	warns    lograte.Limiter // failed authentications logged at Warn
}

func newDataAuth(sec SecurityConfig, limit *authLimiter, log *slog.Logger) *dataAuth {
	d := &dataAuth{required: sec.DataTokens(), limit: limit, log: log}
	for _, t := range sec.Tokens {
		d.tokens = append(d.tokens, tokenSum{sum: sha256.Sum256([]byte(t.Token)), role: t.Role})
	}
	return d
}

// lookup returns the role of a presented token ("" and false if it is not
// configured). Every configured token is compared, in constant time.
func (d *dataAuth) lookup(tok []byte) (role string, ok bool) {
	sum := sha256.Sum256(tok)
	for _, t := range d.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			role, ok = t.role, true
		}
	}
	return role, ok
}

// failed records a wrong token from ip, logs it (never the token) and
// reports whether ip is now refused.
func (d *dataAuth) failed(ip, proto string) bool {
	blocked := d.limit.fail(ip, time.Now())
	if ok, suppressed := d.warns.Allow(time.Now()); ok {
		d.log.Warn("data plane: authentication failed: invalid token", "remote", ip, "proto", proto,
			"suppressed", suppressed)
	} else {
		d.log.Debug("data plane: authentication failed: invalid token", "remote", ip, "proto", proto)
	}
	if blocked {
		d.log.Warn("data plane: too many failed authentications; refusing the address",
			"remote", ip, "failures", AuthMaxFailures, "for", AuthFailureWindow)
	}
	return blocked
}

// authorizeHTTP checks r for a route needing need and answers it (401,
// 403, 429) if it may not go on.
func (d *dataAuth) authorizeHTTP(w http.ResponseWriter, r *http.Request, need access) bool {
	ip := remoteIP(r.RemoteAddr)
	if wait, blocked := d.limit.blocked(ip, time.Now()); blocked {
		refuseBlocked(w, wait)
		return false
	}
	if !d.required {
		return true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="data"`)
		httpError(w, http.StatusUnauthorized, "missing bearer token: this node's data plane (/kv, /status) "+
			"needs a token (Authorization: Bearer <token>, role reader or writer)")
		return false
	}
	role, ok := d.lookup([]byte(tok))
	if !ok {
		if d.failed(ip, "http") {
			refuseBlocked(w, AuthFailureWindow)
			return false
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="data", error="invalid_token"`)
		httpError(w, http.StatusUnauthorized, "invalid bearer token")
		return false
	}
	if roleAccess(role) < need {
		httpError(w, http.StatusForbidden, fmt.Sprintf("role %q may not do this: it needs role %s", role, needRoles(need)))
		return false
	}
	return true
}

// needRoles names the roles that grant need.
func needRoles(need access) string {
	switch need {
	case accessWrite:
		return "writer (or admin)"
	case accessRead:
		return "reader, writer or admin"
	}
	return "reader, writer, viewer, operator or admin"
}

func refuseBlocked(w http.ResponseWriter, wait time.Duration) {
	secs := max(1, int((wait+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	httpError(w, http.StatusTooManyRequests, fmt.Sprintf(
		"too many failed authentication attempts from this address; retry in %ds", secs))
}

// remoteIP is the IP address of a host:port remote address (the address
// itself if it has no port).
func remoteIP(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// authLimiter counts failed authentications per remote IP address; it is
// shared by the HTTP API, the admin API and the client protocol.
type authLimiter struct {
	max    int
	window time.Duration

	mu    sync.Mutex
	addrs map[string]*authFailures
}

type authFailures struct {
	n     int       // failures since first
	first time.Time // start of the counting window
	until time.Time // refused until then (zero: not refused)
}

func newAuthLimiter() *authLimiter {
	return &authLimiter{max: AuthMaxFailures, window: AuthFailureWindow, addrs: map[string]*authFailures{}}
}

// blocked reports whether ip is refused at now, and for how much longer.
func (l *authLimiter) blocked(ip string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[ip]
	if f == nil || !now.Before(f.until) {
		return 0, false
	}
	return f.until.Sub(now), true
}

// fail counts a failure from ip at now and reports whether ip is refused.
func (l *authLimiter) fail(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.addrs[ip]
	if f == nil {
		if len(l.addrs) >= authMaxTracked {
			l.evictLocked(now)
		}
		f = &authFailures{first: now}
		l.addrs[ip] = f
	}
	if now.Before(f.until) {
		return true
	}
	if now.Sub(f.first) >= l.window {
		f.n, f.first = 0, now
	}
	f.n++
	if f.n >= l.max {
		f.until, f.n, f.first = now.Add(l.window), 0, now
		return true
	}
	return false
}

// evictLocked drops expired entries, then, if none expired, arbitrary ones
// until there is room.
func (l *authLimiter) evictLocked(now time.Time) {
	for ip, f := range l.addrs {
		if !now.Before(f.until) && now.Sub(f.first) >= l.window {
			delete(l.addrs, ip)
		}
	}
	for ip := range l.addrs {
		if len(l.addrs) < authMaxTracked {
			break
		}
		delete(l.addrs, ip)
	}
}

// blockingListener closes, as soon as they are accepted, the connections
// of addresses the limiter refuses.
type blockingListener struct {
	net.Listener
	limit *authLimiter
	log   *slog.Logger
}

func (l blockingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr().String())
		if _, blocked := l.limit.blocked(ip, time.Now()); !blocked {
			return c, nil
		}
		l.log.Debug("client protocol: refused a connection: too many failed authentications", "remote", ip)
		_ = c.Close()
	}
}

// apiTLSConfig returns the TLS configuration of the HTTP API and the client
// protocol (api.tls, api.mtls), or nil when they are plaintext.
func apiTLSConfig(c Config) (*tls.Config, error) {
	if !c.API.TLS && !c.API.MTLS {
		return nil, nil
	}
	sec := c.Security
	pair, err := tls.LoadX509KeyPair(sec.CertFile, sec.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("api.tls: security.cert_file %s, security.key_file %s: %w", sec.CertFile, sec.KeyFile, err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if c.API.MTLS {
		pem, err := os.ReadFile(sec.CAFile)
		if err != nil {
			return nil, fmt.Errorf("api.mtls: security.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("api.mtls: security.ca_file %s: no PEM certificate in it", sec.CAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// limitAuthFailures wraps the admin API: an address the limiter refuses
// gets 429, and a request with a bearer token answered 401 (a wrong token)
// counts as a failure of its address.
func limitAuthFailures(h http.Handler, limit *authLimiter, log *slog.Logger) http.Handler {
	return &authFailureLimit{h: h, limit: limit, log: log}
}

type authFailureLimit struct {
	h     http.Handler
	limit *authLimiter
	log   *slog.Logger
	warns lograte.Limiter
}

func (a *authFailureLimit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r.RemoteAddr)
	if wait, blocked := a.limit.blocked(ip, time.Now()); blocked {
		refuseBlocked(w, wait)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	a.h.ServeHTTP(sw, r)
	if sw.status != http.StatusUnauthorized || r.Header.Get("Authorization") == "" {
		return
	}
	blocked := a.limit.fail(ip, time.Now())
	if ok, suppressed := a.warns.Allow(time.Now()); ok {
		a.log.Warn("admin API: authentication failed: invalid token", "remote", ip, "suppressed", suppressed)
	}
	if blocked {
		a.log.Warn("admin API: too many failed authentications; refusing the address",
			"remote", ip, "failures", AuthMaxFailures, "for", AuthFailureWindow)
	}
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
