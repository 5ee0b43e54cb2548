package forgeext

import (
	"context"
	"errors"
	"fmt"
	"github.com/forge-consensus/consensus/nodename"
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
	// ErrInvalidRequest: a node name, address or port is invalid.
	ErrInvalidRequest = admin.ErrInvalidRequest
	// ErrNotCaughtUp: a learner cannot be promoted yet (PromoteNode).
	ErrNotCaughtUp = admin.ErrNotCaughtUp
)

// ClusterStatus is the cluster as this node sees it in full (the admin
// API's GET /status body): every member with its role, activity and lag.
type ClusterStatus = admin.ClusterInfo

// NodeStatus is one member in ClusterStatus.
type NodeStatus = admin.NodeStatus

// HealthReport is this node's health and the checks behind it in full
// (the admin API's GET /health body).
type HealthReport = admin.HealthStatus

// ClusterInfo is the cluster as this node sees it (GetClusterInfo).
type ClusterInfo struct {
	// ID is the cluster's ID (cluster_id).
	ID string
	// NodeID is this node's name.
	NodeID string
	// Leader is the leader's name ("" when this node knows none).
	Leader string
	// Role is this node's role: "leader", "follower", "candidate",
	// "learner", or "stopped".
	Role string
	// Term, CommitIndex and LastApplied are this node's.
	Term, CommitIndex, LastApplied uint64
	// TotalNodes counts the members; ActiveNodes those heard from lately
	// (on the leader; elsewhere this node and its leader).
	TotalNodes, ActiveNodes int
	// HasQuorum reports whether a quorum is reachable, as far as this
	// node can tell.
	HasQuorum bool
	// Nodes are the members' names.
	Nodes []string
}

// HealthStatus is this node's health (GetHealthStatus).
type HealthStatus struct {
	// Status is "healthy", "degraded" (a member is not active) or
	// "unhealthy" (stopped, no leader, no quorum, or a diverged replica).
	Status string
	// Leader reports whether this node is the leader.
	Leader    bool
	HasQuorum bool
	// ActiveNodes and TotalNodes are as in ClusterInfo.
	ActiveNodes, TotalNodes int
	// Details are the checks behind Status.
	Details []HealthDetail
}

// HealthDetail is one named health check.
type HealthDetail struct {
	Name    string
	Healthy bool
	Message string
}

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

// AddNode adds the node named id ("node-4", "us-east-1a", or a number)
// reachable at address:port (its peer port; its admin and client ports
// are port + 100 and + 200), learner-first: it joins as a learner and the
// leader promotes it to voter once it has caught up (raft.learner_promote_lag),
// so a node that is slow to start or catch up never counts in a quorum.
// It returns once the learner is added; WaitForVoter waits for the
// promotion. Start the new node with join: true. Only the leader adds
// nodes; adding a learner again marks it for that promotion.
func (s *Service) AddNode(ctx context.Context, id, address string, port int) error {
	return s.addMember(ctx, "add_node", id, address, port, false)
}

// AddLearner adds a learner named id: a member that receives the log but
// does not vote, and stays a learner until promoted (PromoteNode), or
// demotes a voter to one.
func (s *Service) AddLearner(ctx context.Context, id, address string, port int) error {
	return s.addMember(ctx, "add_learner", id, address, port, true)
}

// PromoteNode promotes the learner named id to voter now if it has caught
// up with the leader (etcd's member promote), and returns once the change
// is applied; a learner that is behind is an error wrapping
// ErrNotCaughtUp that says why. Promoting a voter does nothing.
func (s *Service) PromoteNode(ctx context.Context, id string) error {
	nid, err := nodename.ID(id)
	if err != nil {
		return fmt.Errorf("consensus: promote: %w: %w", ErrInvalidRequest, err)
	}
	return s.member(ctx, "promote", func(srv *server.Server) error { return srv.PromoteMember(ctx, nid) })
}

// WaitForVoter returns once this node sees the member named id as a voter
// (AddNode's learner promoted), or, when ctx ends first, an error wrapping
// ErrTimeout that says how far the promotion is.
func (s *Service) WaitForVoter(ctx context.Context, id string) error {
	nid, err := nodename.ID(id)
	if err != nil {
		return fmt.Errorf("consensus: wait_for_voter: %w: %w", ErrInvalidRequest, err)
	}
	srv, err := s.server()
	if err != nil {
		return err
	}
	t := time.NewTicker(srv.Config().Raft.HeartbeatInterval)
	defer t.Stop()
	for {
		// The last look must still work once ctx has ended, to say why.
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		nodes := srv.Info(ictx).Nodes
		cancel()
		state := "not a member"
		for _, n := range nodes {
			if n.ID != nid {
				continue
			}
			if n.Voter {
				return nil
			}
			state = "a learner: " + n.Promotion
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consensus: wait_for_voter: node %s is %s: %w: %w", id, state, ErrTimeout, ctx.Err())
		case <-t.C:
		}
	}
}

func (s *Service) addMember(ctx context.Context, op, id, address string, port int, learner bool) error {
	nid, err := nodename.ID(id)
	if err != nil {
		return fmt.Errorf("consensus: %s: %w: %w", op, ErrInvalidRequest, err)
	}
	return s.member(ctx, op, func(srv *server.Server) error {
		if learner {
			return srv.AddNamedLearner(ctx, nid, id, address, port) // demotes a voter too
		}
		return srv.AddMember(ctx, admin.NewMember{ID: nid, Name: id, Address: address, Port: port})
	})
}

// RemoveNode removes the voter or learner named id. The last voter cannot
// be removed.
func (s *Service) RemoveNode(ctx context.Context, id string) error {
	nid, err := nodename.ID(id)
	if err != nil {
		return fmt.Errorf("consensus: remove_node: %w: %w", ErrInvalidRequest, err)
	}
	return s.member(ctx, "remove_node", func(srv *server.Server) error { return srv.RemoveNode(ctx, nid) })
}

// TransferLeadership hands leadership to the voter named target and
// returns once it leads.
func (s *Service) TransferLeadership(ctx context.Context, target string) error {
	nid, err := nodename.ID(target)
	if err != nil {
		return fmt.Errorf("consensus: transfer_leadership: %w: %w", ErrInvalidRequest, err)
	}
	return s.member(ctx, "transfer_leadership", func(srv *server.Server) error { return srv.TransferLeadership(ctx, nid) })
}

// StepDown hands leadership to the most up-to-date voter and returns once
// another node leads.
func (s *Service) StepDown(ctx context.Context) error {
	return s.member(ctx, "step_down", func(srv *server.Server) error { return srv.StepDown(ctx) })
}

// Snapshot snapshots the state on this node and compacts its log, and
// returns once the snapshot is durable. TakeSnapshot also returns its
// index.
func (s *Service) Snapshot(ctx context.Context) error {
	_, err := s.TakeSnapshot(ctx)
	return err
}

// TakeSnapshot is Snapshot, returning the snapshot's log index.
func (s *Service) TakeSnapshot(ctx context.Context) (uint64, error) {
	var idx uint64
	err := s.member(ctx, "snapshot", func(srv *server.Server) error {
		var err error
		idx, err = srv.Snapshot(ctx)
		return err
	})
	return idx, err
}

// GetClusterInfo returns the cluster as this node sees it: its ID, the
// leader, the members and whether a quorum is reachable. It asks this
// node only and waits at most a second; ClusterStatus has every member's
// role, activity and lag.
func (s *Service) GetClusterInfo() ClusterInfo {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := s.ClusterStatus(ctx)
	if err != nil {
		return ClusterInfo{ID: s.Config().ClusterID, NodeID: s.NodeName(), Role: "stopped"}
	}
	info := ClusterInfo{ID: st.ID, NodeID: st.NodeName, Leader: st.LeaderName, Role: st.Role, Term: st.Term,
		CommitIndex: st.CommitIndex, LastApplied: st.LastApplied, TotalNodes: st.TotalNodes,
		ActiveNodes: st.ActiveNodes, HasQuorum: st.HasQuorum}
	for _, n := range st.Nodes {
		info.Nodes = append(info.Nodes, n.Name)
	}
	return info
}

// ClusterStatus returns the cluster as this node sees it in full:
// members, roles, leader, term, indexes, activity and whether a quorum is
// reachable.
func (s *Service) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	srv, err := s.server()
	if err != nil {
		return ClusterStatus{}, err
	}
	return srv.Info(ctx), nil
}

// GetHealthStatus returns this node's health: "healthy", "degraded" (a
// member is not active) or "unhealthy" (stopped, no leader or no quorum),
// with the checks behind it.
func (s *Service) GetHealthStatus(ctx context.Context) HealthStatus {
	r := s.HealthReport(ctx)
	h := HealthStatus{Status: r.Status, Leader: s.IsLeader(), HasQuorum: r.HasQuorum, ActiveNodes: r.ActiveNodes,
		TotalNodes: r.TotalNodes}
	for _, c := range r.Checks {
		h.Details = append(h.Details, HealthDetail{Name: c.Name, Healthy: c.Healthy, Message: c.Message})
	}
	return h
}

// HealthReport is GetHealthStatus in full, as the admin API's GET /health
// answers it.
func (s *Service) HealthReport(ctx context.Context) HealthReport {
	srv, err := s.server()
	if err != nil {
		return HealthReport{Status: "unhealthy", Checks: []admin.Check{{Name: "running", Message: err.Error()}}}
	}
	return srv.Health(ctx)
}

// HealthCheck returns nil when the node is healthy (or degraded) and an
// error saying why otherwise.
func (s *Service) HealthCheck(ctx context.Context) error {
	h := s.HealthReport(ctx)
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
