// Package server assembles a production node from a Config — storage,
// network transport, the runner that drives node.Node on a real clock —
// and serves its key-value HTTP API. cmd/consensusd is a thin main around
// it.
package server
