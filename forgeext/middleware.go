package forgeext

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xraph/forge"
)

// HTTP middleware for Forge routes: route writes to the leader, tag
// responses with the cluster's view, and make reads linearizable.
//
// Forge applies the middleware given to Router.Use (on the app's router or
// on a group) to the routes registered through that router after the call,
// so call Use before registering the routes; forge.WithMiddleware applies
// middleware to one route, forge.WithGroupMiddleware to a group. Build the
// middleware from Extension.Service, which exists from NewExtension on, so
// routes can be set up before the app starts (the *Service methods panic
// on a nil receiver). Redirects and leader hints point at the leader's
// app_urls entry when one is configured, else at its consensus HTTP API.
//
// Every error the middleware answers itself has a JSON body with
// Content-Type application/json and an "error" field; the not-leader
// answers also carry "leader_id" (0: no leader known) and "leader_address"
// ("" when unknown).

// Response headers set by AddLeaderHeader.
const (
	// HeaderLeader carries the leader's node ID as this node knows it, "0"
	// when it knows none.
	HeaderLeader = "X-Consensus-Leader"
	// HeaderTerm carries this node's current term.
	HeaderTerm = "X-Consensus-Term"
	// HeaderRole carries "leader" or "follower".
	HeaderRole = "X-Consensus-Role"
	// HeaderLeaderName is the leader's name ("" when none is known).
	HeaderLeaderName = "X-Consensus-Leader-Name"
)

// DefaultBarrierTimeout bounds ConsistencyMiddleware's read barrier unless
// WithBarrierTimeout says otherwise.
const DefaultBarrierTimeout = 5 * time.Second

// clusterView is what the middleware needs of a node; *Service has it, and
// tests use a fake.
type clusterView interface {
	IsLeader() bool
	LeaderID() uint64
	GetLeader() string
	GetTerm() uint64
	LeaderURL() string
	ReadBarrier(ctx context.Context) error
}

var _ clusterView = (*Service)(nil)

// middlewareConfig is what the options set.
type middlewareConfig struct {
	redirect       bool
	allMethods     bool
	barrierTimeout time.Duration
}

// MiddlewareOption changes how a middleware behaves. A middleware ignores
// the options that are not about it.
type MiddlewareOption func(*middlewareConfig)

// WithRedirect makes RequireLeader answer a request it refuses with a 307
// Temporary Redirect to the same path and query on the leader when the
// leader's URL is known (a 503 still when it is not). A 307 keeps the method
// and body. ReadOnlyRouting redirects by default.
func WithRedirect() MiddlewareOption {
	return func(c *middlewareConfig) { c.redirect = true }
}

// AllMethods makes RequireLeader (or ReadOnlyRouting) require the leader for
// every method, reads included, not only for writes.
func AllMethods() MiddlewareOption {
	return func(c *middlewareConfig) { c.allMethods = true }
}

// WithBarrierTimeout bounds ConsistencyMiddleware's read barrier by d
// (DefaultBarrierTimeout by default) on top of the request's own context.
// d <= 0 leaves only the request's context to bound it.
func WithBarrierTimeout(d time.Duration) MiddlewareOption {
	return func(c *middlewareConfig) { c.barrierTimeout = d }
}

func newMiddlewareConfig(opts []MiddlewareOption) middlewareConfig {
	c := middlewareConfig{barrierTimeout: DefaultBarrierTimeout}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// RequireLeader returns middleware that lets a write (any method but GET,
// HEAD and OPTIONS) through only on the leader. On another node it answers
// 503 Service Unavailable with Retry-After: 1 and the body
// {"error":"not the leader","leader_id":N,"leader_address":"..."}, or with
// WithRedirect a 307 to the leader (see WithRedirect). Reads pass through,
// unless AllMethods is given.
func (s *Service) RequireLeader(opts ...MiddlewareOption) forge.Middleware {
	return requireLeader(s.view(), opts...)
}

// ReadOnlyRouting returns middleware that serves reads (GET, HEAD,
// OPTIONS) on any node and sends writes to the leader: on a follower, a 307
// to the leader when its URL is known, else a 503 as RequireLeader's. It is
// RequireLeader with WithRedirect, and takes the same options.
func (s *Service) ReadOnlyRouting(opts ...MiddlewareOption) forge.Middleware {
	return readOnlyRouting(s.view(), opts...)
}

// AddLeaderHeader returns middleware that sets, on every response (the
// inner handlers' errors included, since it sets them before calling
// them), X-Consensus-Leader (the leader's ID, "0" when none is known),
// X-Consensus-Term and X-Consensus-Role ("leader", or "follower" for any
// other node, a candidate or a stopped service included).
func (s *Service) AddLeaderHeader() forge.Middleware {
	return addLeaderHeader(s.view())
}

// ConsistencyMiddleware returns middleware that makes the reads of the
// routes it wraps as fresh as level says:
//
//   - Linearizable: before a GET or HEAD request's handler runs, it waits
//     for Service.ReadBarrier (bounded by the request's context and by
//     WithBarrierTimeout), so the handler sees every write acknowledged
//     before the request. If the barrier fails it answers instead of the
//     handler: 503 when there is no quorum or the service is not running,
//     503 with the leader hint (as RequireLeader's) for a not-leader error,
//     504 Gateway Timeout when the barrier timed out, and 503 for anything
//     else. Other methods pass straight through.
//   - Stale: everything passes straight through; handlers read the local
//     state, possibly old.
//   - Lease: everything passes straight through too. A lease read is only
//     valid on the leader and only at the moment of the read, so it is the
//     handler's own business: call Service.Read with
//     WithConsistency(Lease).
//
// Any other level is a programming error: ConsistencyMiddleware panics.
func (s *Service) ConsistencyMiddleware(level ReadConsistency, opts ...MiddlewareOption) forge.Middleware {
	return consistencyMiddleware(s.view(), level, opts...)
}

// view returns s for the middleware. A nil *Service is a setup error (the
// extension creates its service in Register, which Forge calls from
// app.Start), reported when the middleware is built rather than on every
// request.
func (s *Service) view() clusterView {
	if s == nil {
		panic("forgeext: middleware of a nil *Service (Extension.Service is nil until the app starts)")
	}
	return s
}

// isRead reports whether the method only reads.
func isRead(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

func requireLeader(n clusterView, opts ...MiddlewareOption) forge.Middleware {
	cfg := newMiddlewareConfig(opts)
	return func(next forge.Handler) forge.Handler {
		return func(ctx forge.Context) error {
			r := ctx.Request()
			if (!cfg.allMethods && isRead(r.Method)) || n.IsLeader() {
				return next(ctx)
			}
			lead, addr := n.LeaderID(), n.LeaderURL()
			if cfg.redirect && addr != "" {
				return redirectToLeader(ctx, lead, addr)
			}
			return notLeader(ctx, lead, addr)
		}
	}
}

func readOnlyRouting(n clusterView, opts ...MiddlewareOption) forge.Middleware {
	return requireLeader(n, append([]MiddlewareOption{WithRedirect()}, opts...)...)
}

func addLeaderHeader(n clusterView) forge.Middleware {
	return func(next forge.Handler) forge.Handler {
		return func(ctx forge.Context) error {
			role := "follower"
			if n.IsLeader() {
				role = "leader"
			}
			h := ctx.Response().Header()
			h.Set(HeaderLeader, strconv.FormatUint(n.LeaderID(), 10))
			h.Set(HeaderLeaderName, n.GetLeader())
			h.Set(HeaderTerm, strconv.FormatUint(n.GetTerm(), 10))
			h.Set(HeaderRole, role)
			return next(ctx)
		}
	}
}

func consistencyMiddleware(n clusterView, level ReadConsistency, opts ...MiddlewareOption) forge.Middleware {
	switch level {
	case Linearizable:
	case Stale, Lease:
		return func(next forge.Handler) forge.Handler { return next }
	default:
		panic(fmt.Sprintf("forgeext: ConsistencyMiddleware: unknown read consistency %d", level))
	}
	cfg := newMiddlewareConfig(opts)
	return func(next forge.Handler) forge.Handler {
		return func(ctx forge.Context) error {
			r := ctx.Request()
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				return next(ctx)
			}
			bctx := r.Context()
			if cfg.barrierTimeout > 0 {
				var cancel context.CancelFunc
				bctx, cancel = context.WithTimeout(bctx, cfg.barrierTimeout)
				defer cancel()
			}
			if err := n.ReadBarrier(bctx); err != nil {
				return barrierFailed(ctx, err)
			}
			return next(ctx)
		}
	}
}

// errorBody is the JSON body of the middleware's error answers.
type errorBody struct {
	Error string `json:"error"`
}

// notLeaderBody is the JSON body of a not-leader answer.
type notLeaderBody struct {
	Error         string `json:"error"`
	LeaderID      uint64 `json:"leader_id"`
	LeaderAddress string `json:"leader_address"`
}

const notLeaderMessage = "not the leader"

// notLeader answers 503 with the leader hint.
func notLeader(ctx forge.Context, lead uint64, addr string) error {
	ctx.Response().Header().Set("Retry-After", "1")
	return writeJSON(ctx, http.StatusServiceUnavailable,
		notLeaderBody{Error: notLeaderMessage, LeaderID: lead, LeaderAddress: addr})
}

// redirectToLeader answers 307 to the same path and query on the leader,
// with the leader hint as the body.
func redirectToLeader(ctx forge.Context, lead uint64, addr string) error {
	ctx.Response().Header().Set("Location", strings.TrimRight(addr, "/")+ctx.Request().URL.RequestURI())
	return writeJSON(ctx, http.StatusTemporaryRedirect,
		notLeaderBody{Error: notLeaderMessage, LeaderID: lead, LeaderAddress: addr})
}

// barrierFailed answers a failed read barrier.
func barrierFailed(ctx forge.Context, err error) error {
	var nl *NotLeaderError
	switch {
	case errors.As(err, &nl):
		return notLeader(ctx, nl.LeaderID, nl.LeaderAddress)
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return writeJSON(ctx, http.StatusGatewayTimeout, errorBody{Error: "read barrier timed out"})
	case errors.Is(err, ErrNoQuorum):
		ctx.Response().Header().Set("Retry-After", "1")
		return writeJSON(ctx, http.StatusServiceUnavailable, errorBody{Error: "no quorum"})
	case errors.Is(err, ErrNotStarted):
		return writeJSON(ctx, http.StatusServiceUnavailable, errorBody{Error: "consensus service not running"})
	default:
		return writeJSON(ctx, http.StatusServiceUnavailable, errorBody{Error: "read barrier failed"})
	}
}

// writeJSON writes the answer, with the write's error in context.
func writeJSON(ctx forge.Context, code int, body any) error {
	if err := ctx.JSON(code, body); err != nil {
		return fmt.Errorf("consensus middleware: write %d response: %w", code, err)
	}
	return nil
}
