// Package discovery finds the nodes that may form, or already form, a
// cluster: static configuration, DNS (A/AAAA and SRV), etcd, Consul and
// Kubernetes. It speaks in candidates (a name, when the mechanism knows
// it, and the address of the node's Raft transport); package
// discovery/bootstrap decides from what the candidates answer whether a
// node forms a cluster with them, joins an existing one, or waits.
//
// Discovery never changes membership itself: it finds candidates, and a
// member that moved to a new address is found again; adding and removing
// members goes through Raft.
package discovery

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
)

// Candidate is a node discovery found.
type Candidate struct {
	// Name is the node's name (node_id) when the mechanism knows it (a
	// static peer, an SRV target's first label, a pod name, a registered
	// service); "" when it knows only an address (a DNS A record), in
	// which case the node's answer to a probe names it.
	Name string
	// Host is the node's IP address or host name.
	Host string
	// Port is the port of the node's Raft transport.
	Port int
}

// Addr returns host:port of the candidate's Raft transport.
func (c Candidate) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// String returns "name@host:port" (or "host:port" without a name).
func (c Candidate) String() string {
	if c.Name == "" {
		return c.Addr()
	}
	return c.Name + "@" + c.Addr()
}

// Source finds candidates. Implementations are safe for concurrent use.
type Source interface {
	// Kind names the mechanism ("static", "dns", "etcd", "consul",
	// "kubernetes"), for logs, health and metrics.
	Kind() string
	// Lookup returns the current candidates, sorted (see Sort) and
	// without duplicates. An error says the mechanism could not be
	// asked; an empty list without an error says it has no candidates.
	Lookup(ctx context.Context) ([]Candidate, error)
}

// Registrar is a Source this node also registers itself with (etcd,
// Consul): Register announces self and keeps the registration alive
// until ctx ends or the returned stop function is called, which also
// withdraws it. Errors of the keep-alive after Register returned are
// reported through the Source's next Lookup.
type Registrar interface {
	Source
	Register(ctx context.Context, self Candidate) (stop func(), err error)
}

// Watcher is a Source that can say when its candidates may have
// changed (etcd watch, Kubernetes watch, Consul blocking query), so a
// node need not wait for its refresh interval. The channel receives a
// value after a change and is closed when ctx ends.
type Watcher interface {
	Source
	Changes(ctx context.Context) <-chan struct{}
}

// Sort orders candidates by name, then host, then port, and removes
// exact duplicates: every node sees the same list in the same order,
// whatever order the mechanism answered in.
func Sort(cs []Candidate) []Candidate {
	slices.SortFunc(cs, func(a, b Candidate) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Host, b.Host); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return slices.Compact(cs)
}

// Static is the static mechanism: a fixed list (the peers list).
type Static struct {
	candidates []Candidate
}

// NewStatic returns a Source that always answers cs. Each candidate
// needs a host and a port in 1..65535.
func NewStatic(cs []Candidate) (*Static, error) {
	out := make([]Candidate, 0, len(cs))
	for i, c := range cs {
		if c.Host == "" {
			return nil, fmt.Errorf("discovery: static candidate %d (%q): no host", i, c.Name)
		}
		if c.Port < 1 || c.Port > 65535 {
			return nil, fmt.Errorf("discovery: static candidate %d (%q): port %d is not in 1..65535", i, c.Name, c.Port)
		}
		out = append(out, c)
	}
	return &Static{candidates: Sort(out)}, nil
}

// Kind returns "static".
func (s *Static) Kind() string { return "static" }

// Lookup returns the list.
func (s *Static) Lookup(ctx context.Context) ([]Candidate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("discovery: static: %w", err)
	}
	return slices.Clone(s.candidates), nil
}
