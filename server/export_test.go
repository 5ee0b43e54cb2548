package server

import (
	"context"

	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
)

// WireMaxInFlight exposes the per-connection in-flight bound to the
// external tests.
const WireMaxInFlight = wireMaxInFlight

// WireConnState reports, for one of the server's client-protocol
// connections, its requests in flight and whether its reader waits for
// room; ok is false while there is no connection.
func (s *Server) WireConnState() (inflight int, waiting, ok bool) {
	s.wire.mu.Lock()
	var wc *wireConn
	for x := range s.wire.conns {
		wc = x
	}
	s.wire.mu.Unlock()
	if wc == nil {
		return 0, false, false
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.inflight, wc.wantSpace, true
}

// TamperState writes key = value into the node's key-value store behind
// the log's back, on the node's goroutine: a replica whose state silently
// diverged, for the cross-replica verification tests.
func (s *Server) TamperState(ctx context.Context, key, value string) error {
	return s.run.Do(ctx, func(*node.Node) {
		s.sm.kv.Apply(s.sm.kv.Applied(), kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: key, Value: []byte(value)}))
	})
}
