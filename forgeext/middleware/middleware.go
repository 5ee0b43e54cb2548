// Package middleware is the Forge HTTP middleware of the consensus
// extension, in the shape the extension's documentation gives it:
//
//	checker, _ := forge.Resolve[*consensus.LeadershipChecker](app.Container(), "consensus:leadership")
//	mw := middleware.NewLeadershipMiddleware(checker, app.Logger())
//	router.Use(mw.AddLeaderHeader())
//	router.POST("/api/users", mw.RequireLeader()(createUser))
//	router.GET("/api/users/:id", mw.ConsistencyMiddleware(middleware.ConsistencyStrong)(getUser))
//
// where consensus is package forgeext. Each middleware is the Service's
// own (forgeext.Service.RequireLeader and the rest), which documents the
// answers: a write on a follower gets 503 with the leader's address (or a
// redirect with ReadOnlyRouting), and the headers X-Consensus-Leader,
// X-Consensus-Leader-Name, X-Consensus-Term and X-Consensus-Role.
package middleware

import (
	"github.com/xraph/forge"

	consensus "github.com/forge-consensus/consensus/forgeext"
)

// Consistency is how fresh the state a handler reads must be.
type Consistency int

// Consistency levels.
const (
	// ConsistencyStrong (linearizable): before the handler runs, the node
	// confirms with a quorum that the state reflects every write
	// acknowledged before the request, on any node.
	ConsistencyStrong Consistency = iota
	// ConsistencyLease: the leader answers from its lease, without a
	// round trip (raft.lease_reads, bounded clock drift); other nodes
	// redirect or refuse.
	ConsistencyLease
	// ConsistencyEventual: the handler runs at once on any node, with
	// state that may be behind.
	ConsistencyEventual
)

// String names the level.
func (c Consistency) String() string {
	switch c {
	case ConsistencyStrong:
		return "strong"
	case ConsistencyLease:
		return "lease"
	case ConsistencyEventual:
		return "eventual"
	}
	return "unknown"
}

// LeadershipMiddleware makes the middleware for one node.
type LeadershipMiddleware struct {
	checker *consensus.LeadershipChecker
	log     forge.Logger // nil: none
	opts    []consensus.MiddlewareOption
}

// NewLeadershipMiddleware returns the middleware of the node checker
// belongs to (resolve it as "consensus:leadership"). logger, if not nil,
// receives a Debug line for each request a middleware refuses or
// redirects. opts apply to every middleware (consensus.WithRedirect,
// consensus.AllMethods, consensus.WithBarrierTimeout).
func NewLeadershipMiddleware(checker *consensus.LeadershipChecker, logger forge.Logger, opts ...consensus.MiddlewareOption) *LeadershipMiddleware {
	return &LeadershipMiddleware{checker: checker, log: logger, opts: opts}
}

// RequireLeader lets writes (POST, PUT, PATCH, DELETE) through on the
// leader only; elsewhere they get 503 with the leader's address. Reads
// pass.
func (m *LeadershipMiddleware) RequireLeader() forge.Middleware {
	return m.logged("require leader", m.checker.Service().RequireLeader(m.opts...))
}

// AddLeaderHeader adds the leader's ID and name, the term and this node's
// role to every response.
func (m *LeadershipMiddleware) AddLeaderHeader() forge.Middleware {
	return m.checker.Service().AddLeaderHeader()
}

// ReadOnlyRouting serves reads on any node and redirects writes to the
// leader (307 to the same path on the leader's app).
func (m *LeadershipMiddleware) ReadOnlyRouting() forge.Middleware {
	return m.logged("read-only routing", m.checker.Service().ReadOnlyRouting(m.opts...))
}

// ConsistencyMiddleware makes the handler see state at least as fresh as
// level asks.
func (m *LeadershipMiddleware) ConsistencyMiddleware(level Consistency) forge.Middleware {
	var c consensus.ReadConsistency
	switch level {
	case ConsistencyLease:
		c = consensus.Lease
	case ConsistencyEventual:
		c = consensus.Stale
	default:
		c = consensus.Linearizable
	}
	return m.logged("consistency "+level.String(), m.checker.Service().ConsistencyMiddleware(c, m.opts...))
}

// logged wraps mw so that a request it answers itself (not passing it on)
// is logged at Debug.
func (m *LeadershipMiddleware) logged(what string, mw forge.Middleware) forge.Middleware {
	if m.log == nil {
		return mw
	}
	return func(next forge.Handler) forge.Handler {
		return func(ctx forge.Context) error {
			called := false
			err := mw(func(c forge.Context) error {
				called = true
				return next(c)
			})(ctx)
			if !called {
				m.log.Debugf("consensus middleware (%s) answered %s %s itself; leader %q", what,
					ctx.Request().Method, ctx.Request().URL.Path, m.checker.GetLeader())
			}
			return err
		}
	}
}
