package forgeext

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/server"
)

// Membership and leadership errors (the admin API's, so errors.Is works
// with either name).
var (
	// ErrUnknownNode: the node is not a member.
	ErrUnknownNode = admin.ErrUnknownNode
	// ErrConflict: the change is impossible as asked (removing the last
	// voter, transferring to a learner, adding a member twice).
	ErrConflict = admin.ErrConflict
)

// ClusterInfo is the cluster as this node sees it (the admin API's GET
// /status body).
type ClusterInfo = admin.ClusterInfo

// NodeStatus is one member in ClusterInfo.
type NodeStatus = admin.NodeStatus

// HealthStatus is this node's health and the checks behind it (the admin
// API's GET /health body).
type HealthStatus = admin.HealthStatus

// server returns the running node, or ErrNotStarted.
func (s *Service) server() (*server.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil, ErrNotStarted
	}
	return s.srv, nil
}

// clusterError maps the admin API's errors to the service's: a not-leader
// error keeps its hint.
func (s *Service) clusterError(op string, err error) error {
	var nl *admin.NotLeaderError
	if errors.As(err, &nl) {
		return fmt.Errorf("consensus: %s: %w", op, s.notLeader(nl.LeaderID))
	}
	if errors.Is(err, admin.ErrNoQuorum) {
		return fmt.Errorf("consensus: %s: %w: %w", op, ErrNoQuorum, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("consensus: %s: %w: %w", op, ErrTimeout, err)
	}
	return fmt.Errorf("consensus: %s: %w", op, err)
}

// observe records an operation in the node's metrics.
func (s *Service) observe(srv *server.Server, op string, start time.Time, err error) {
	srv.Metrics().ObserveOperation(op, time.Since(start), err)
}

// member runs a membership or leadership operation on the node, timing it.
func (s *Service) member(ctx context.Context, op string, fn func(*server.Server) error) (err error) {
	ctx, end := s.operation(ctx, op)
	defer func() { end(err) }()
	srv, err := s.server()
	if err != nil {
		return err
	}
	start := time.Now()
	err = fn(srv)
	s.observe(srv, op, start, err)
	if err != nil {
		return s.clusterError(op, err)
	}
	return nil
}

// AddNode adds a voter reachable at address:port (its peer port; its
// admin and client ports are port + 100 and + 200). Start the new node
// with join: true. Only the leader adds nodes.
func (s *Service) AddNode(ctx context.Context, id uint64, address string, port int) error {
	return s.member(ctx, "add_node", func(srv *server.Server) error { return srv.AddNode(ctx, id, address, port) })
}

// AddLearner adds a learner: a member that receives the log but does not
// vote (promote it later with AddNode).
func (s *Service) AddLearner(ctx context.Context, id uint64, address string, port int) error {
	return s.member(ctx, "add_learner", func(srv *server.Server) error { return srv.AddLearner(ctx, id, address, port) })
}

// RemoveNode removes a voter or learner. The last voter cannot be removed.
func (s *Service) RemoveNode(ctx context.Context, id uint64) error {
	return s.member(ctx, "remove_node", func(srv *server.Server) error { return srv.RemoveNode(ctx, id) })
}

// TransferLeadership hands leadership to the voter target and returns once
// it leads.
func (s *Service) TransferLeadership(ctx context.Context, target uint64) error {
	return s.member(ctx, "transfer_leadership", func(srv *server.Server) error { return srv.TransferLeadership(ctx, target) })
}

// StepDown hands leadership to the most up-to-date voter and returns once
// another node leads.
func (s *Service) StepDown(ctx context.Context) error {
	return s.member(ctx, "step_down", func(srv *server.Server) error { return srv.StepDown(ctx) })
}

// Snapshot snapshots the state on this node and compacts its log; it
// returns the snapshot's index once the snapshot is durable.
func (s *Service) Snapshot(ctx context.Context) (uint64, error) {
	var idx uint64
	err := s.member(ctx, "snapshot", func(srv *server.Server) error {
		var err error
		idx, err = srv.Snapshot(ctx)
		return err
	})
	return idx, err
}

// GetClusterInfo returns the cluster as this node sees it: members, roles,
// leader, term, indexes, activity and whether a quorum is reachable.
func (s *Service) GetClusterInfo(ctx context.Context) (ClusterInfo, error) {
	srv, err := s.server()
	if err != nil {
		return ClusterInfo{}, err
	}
	return srv.Info(ctx), nil
}

// GetHealthStatus returns this node's health: "healthy", "degraded" (a
// member is not active) or "unhealthy" (stopped, no leader or no quorum),
// with the checks behind it.
func (s *Service) GetHealthStatus(ctx context.Context) HealthStatus {
	srv, err := s.server()
	if err != nil {
		return HealthStatus{Status: "unhealthy", Checks: []admin.Check{{Name: "running", Message: err.Error()}}}
	}
	return srv.Health(ctx)
}

// HealthCheck returns nil when the node is healthy (or degraded) and an
// error saying why otherwise.
func (s *Service) HealthCheck(ctx context.Context) error {
	h := s.GetHealthStatus(ctx)
	if h.Healthy {
		return nil
	}
	for _, c := range h.Checks {
		if !c.Healthy {
			return fmt.Errorf("consensus: unhealthy: %s: %s: %w", c.Name, c.Message, ErrNoQuorum)
		}
	}
	return fmt.Errorf("consensus: unhealthy: %w", ErrNoQuorum)
}
