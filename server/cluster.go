package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/forge-consensus/consensus/nodename"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/runner"
)

// The Server is the admin API's Cluster: membership, leadership, snapshots,
// status and health. Changes are made on the leader; elsewhere they fail
// with an *admin.NotLeaderError naming it.
var _ admin.Cluster = (*Server)(nil)

// hintURL is the base URL the admin API names for node id: Config.HintURL's
// answer, else the node's HTTP API ("" if unknown).
func (s *Server) hintURL(id uint64) string {
	if id == 0 {
		return ""
	}
	if s.cfg.HintURL != nil {
		if u := s.cfg.HintURL(id); u != "" {
			return u
		}
	}
	return s.apiURL(id)
}

// roleName names a node's role for the admin API.
func roleName(r core.Role, learner bool) string {
	switch {
	case r == core.Leader:
		return "leader"
	case learner:
		return "learner"
	case r == core.Follower:
		return "follower"
	}
	return "candidate"
}

// membership returns the voters and learners of a configuration (joint
// configurations included), sorted.
func membership(cs core.ConfState) (voters, learners []uint64) {
	voters = slices.Concat(cs.Voters, cs.VotersOutgoing)
	slices.Sort(voters)
	voters = slices.Compact(voters)
	for _, id := range slices.Concat(cs.Learners, cs.LearnersNext) {
		if !slices.Contains(voters, id) {
			learners = append(learners, id)
		}
	}
	slices.Sort(learners)
	return voters, slices.Compact(learners)
}

// NodeName returns how to show member id: its name (a configured peer, or
// a member added with one), else its ID in decimal.
func (s *Server) NodeName(id uint64) string { return s.dir.name(id) }

// Info returns the cluster as this node sees it. On the leader, a node is
// active if it was heard from within the last election timeout. A follower
// reports the leader's view of that (see adoptLeaderView), or, when it
// cannot ask the leader, knows only itself and the leader to be active.
func (s *Server) Info(ctx context.Context) (info admin.ClusterInfo) {
	self := s.cfg.NodeID.ID()
	info = admin.ClusterInfo{ID: s.cfg.ClusterID, NodeID: self, NodeName: string(s.cfg.NodeID)}
	defer func() { info.LeaderName = s.dir.name(info.Leader) }()
	st, err := s.run.CoreStatus(ctx)
	if err != nil {
		bs := s.run.Status()
		info.Leader, info.Term, info.Role = bs.Lead, bs.Term, "stopped"
		info.CommitIndex, info.LastApplied = bs.Commit, bs.Applied
		return info
	}
	info.Leader, info.Term, info.CommitIndex, info.LastApplied = st.Lead, st.Term, st.Commit, st.Applied
	info.LeaderAddress = s.hintURL(st.Lead)
	voters, learners := membership(st.Config)
	progress := map[uint64]core.PeerProgress{}
	for _, p := range st.Progress {
		progress[p.ID] = p
	}
	activeVoters := 0
	for _, id := range slices.Concat(voters, learners) {
		learner := slices.Contains(learners, id)
		ns := admin.NodeStatus{ID: id, Name: s.dir.name(id), Voter: !learner}
		if m, ok := s.dir.get(id); ok {
			ns.Address = m.raftAddr()
		}
		switch {
		case id == self:
			ns.Role, ns.Active = roleName(st.Role, learner), true
			ns.MatchIndex = st.LastIndex
		case id == st.Lead:
			ns.Role, ns.Active = "leader", true
		default:
			ns.Role = roleName(core.Follower, learner)
		}
		if p, ok := progress[id]; ok && st.Role == core.Leader {
			ns.MatchIndex = p.Match
			ns.Active = id == self || p.RecentActive
		}
		if st.Role == core.Leader && ns.MatchIndex < st.Commit {
			ns.Lag = st.Commit - ns.MatchIndex
		}
		if learner {
			ns.Promotion = s.promotion(st, id)
		}
		if ns.Active {
			info.ActiveNodes++
			if ns.Voter {
				activeVoters++
			}
		}
		info.Nodes = append(info.Nodes, ns)
	}
	info.TotalNodes = len(info.Nodes)
	info.RemovedNodes = s.dir.removedIDs()
	info.Role = roleName(st.Role, slices.Contains(learners, self))
	info.Diverged = divergedNodes(s.run.Alarms())
	switch {
	case st.Role == core.Leader:
		info.HasQuorum = activeVoters > len(voters)/2
		info.ActiveFrom = "leader"
	case st.Lead != 0 && st.Lead != self:
		info.HasQuorum = true
		s.adoptLeaderView(ctx, &info)
	default:
		info.ActiveFrom = "self"
	}
	return info
}

// divergedNodes describes divergence alarms for the admin API.
func divergedNodes(as []node.Alarm) []admin.DivergedNode {
	var out []admin.DivergedNode
	for _, a := range as {
		d := admin.DivergedNode{ID: a.Node, Index: a.Index, Hash: fmt.Sprintf("%#016x", a.Hash), Message: a.String()}
		if a.Decided {
			d.MajorityHash = fmt.Sprintf("%#016x", a.Want)
		}
		out = append(out, d)
	}
	return out
}

// Health is healthy when the node runs, knows a leader and that leader has
// a quorum, the node's storage has space for writes, and no replica is known to have diverged (cross-replica
// verification); degraded when all that holds but some member is not
// active.
func (s *Server) Health(ctx context.Context) admin.HealthStatus {
	info := s.Info(ctx)
	running := s.run.Err() == nil && info.Role != "stopped"
	alarms := s.run.Alarms()
	checks := []admin.Check{
		{Name: "running", Healthy: running},
		{Name: "leader", Healthy: info.Leader != 0},
		{Name: "quorum", Healthy: info.HasQuorum},
		{Name: "replicas", Healthy: len(alarms) == 0},
	}
	if len(alarms) > 0 {
		msgs := make([]string, len(alarms))
		for i, a := range alarms {
			msgs[i] = a.String()
			if a.Node == s.cfg.NodeID.ID() {
				msgs[i] += " (this node: it serves no reads until repaired)"
			}
		}
		checks[3].Message = "replica state diverged: " + strings.Join(msgs, "; ")
	}
	if !running {
		checks[0].Message = "the node has stopped"
	}
	if info.Leader == 0 {
		checks[1].Message = "no leader is known"
	}
	if !info.HasQuorum {
		checks[2].Message = "no quorum of voters is reachable"
	}
	space := s.spaceCheck()
	checks = append(checks, space)
	if dc, ok := s.discoveryCheck(); ok {
		checks = append(checks, dc)
	}
	h := admin.HealthStatus{Leader: info.Leader, LeaderName: info.LeaderName, HasQuorum: info.HasQuorum, ActiveNodes: info.ActiveNodes,
		TotalNodes: info.TotalNodes, ActiveFrom: info.ActiveFrom, Checks: checks,
		Healthy: running && info.Leader != 0 && info.HasQuorum && space.Healthy && len(alarms) == 0}
	switch {
	case !h.Healthy:
		h.Status = "unhealthy"
	case info.ActiveNodes < info.TotalNodes && info.ActiveFrom == "leader":
		h.Status = "degraded"
	default:
		h.Status = "healthy"
	}
	return h
}

// onLeader returns the core's status if this node is the leader, else an
// *admin.NotLeaderError.
func (s *Server) onLeader(ctx context.Context) (core.Status, error) {
	st, err := s.run.CoreStatus(ctx)
	if err != nil {
		return st, s.clusterError(err)
	}
	if st.Role != core.Leader {
		return st, &admin.NotLeaderError{LeaderID: st.Lead, LeaderAddress: s.hintURL(st.Lead)}
	}
	return st, nil
}

// clusterError maps the node's errors to the admin API's.
func (s *Server) clusterError(err error) error {
	var nl *node.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return &admin.NotLeaderError{LeaderID: nl.LeaderID, LeaderAddress: s.hintURL(nl.LeaderID)}
	case errors.Is(err, core.ErrConfChangePending):
		return fmt.Errorf("%w: another membership change is in progress, retry once it is applied: %w", admin.ErrConflict, err)
	case errors.Is(err, node.ErrTimeout):
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	case errors.Is(err, node.ErrDropped), errors.Is(err, node.ErrStopped), errors.Is(err, runner.ErrStopped):
		return fmt.Errorf("%w: %w", admin.ErrNoQuorum, err)
	}
	return err
}

// AddNode adds a node reachable at address:port (its API and client
// ports are port + 100 and + 200), learner-first: it joins as a learner
// and the leader promotes it to voter once it has caught up. Start the
// new node with join: true.
func (s *Server) AddNode(ctx context.Context, id uint64, address string, port int) error {
	return s.AddMember(ctx, admin.NewMember{ID: id, Address: address, Port: port})
}

// AddMember adds a node at the addresses of m (the admin API's POST
// /add-node). Without m.Learner it joins learner-first: a learner the
// leader promotes to voter once it has caught up (raft.learner_promote_lag).
// With m.Learner it stays a learner until promoted (PromoteMember).
// Adding a learner that is to stay one without m.Learner marks it for
// promotion; adding a joining learner again at the same addresses changes
// nothing (nil), at others is a conflict; adding a voter is a conflict
// (AddLearner demotes).
func (s *Server) AddMember(ctx context.Context, m admin.NewMember) error {
	mem := memberOf(m.ID, m.Name, m.Address, m.Port, m.APIPort, m.ClientPort)
	mem.Promote = !m.Learner
	return s.addLearner(ctx, mem)
}

// AddLearner adds a learner (a non-voting member that receives the log),
// or demotes a voter to one. It stays a learner until promoted.
func (s *Server) AddLearner(ctx context.Context, id uint64, address string, port int) error {
	return s.AddNamedLearner(ctx, id, "", address, port)
}

// AddNamedLearner is AddLearner for a member with a name (package
// nodename; "" for none), which must stand for id.
func (s *Server) AddNamedLearner(ctx context.Context, id uint64, name, address string, port int) error {
	m := memberOf(id, name, address, port, 0, 0)
	if err := s.checkMember(m); err != nil {
		return err
	}
	return s.confChange(ctx, core.ConfChange{
		Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: m.ID}},
		Context: encodeMember(m),
	})
}

// checkMember refuses a member that cannot be added: an ID that is not a
// node's (0, or a hashed name's without the name), an address that is not
// a host, a port out of range, another member's address, or a name that
// does not stand for the ID or collides with a member's.
func (s *Server) checkMember(m Member) error {
	switch {
	case m.ID == 0:
		return fmt.Errorf("%w: node_id is required and must be non-zero", admin.ErrInvalidRequest)
	case m.Name == "" && !nodename.Numeric(m.ID):
		return fmt.Errorf("%w: node_id %d: a numeric ID must be from 1 to 2^63-1 (larger IDs are names' hashes)",
			admin.ErrInvalidRequest, m.ID)
	case m.Port <= 0 || m.Port > 65535:
		return fmt.Errorf("%w: port must be in 1..65535, got %d", admin.ErrInvalidRequest, m.Port)
	case m.APIPort <= 0 || m.APIPort > 65535:
		return fmt.Errorf("%w: api_port must be in 1..65535, got %d", admin.ErrInvalidRequest, m.APIPort)
	case m.ClientPort <= 0 || m.ClientPort > 65535:
		return fmt.Errorf("%w: client_port must be in 1..65535, got %d", admin.ErrInvalidRequest, m.ClientPort)
	}
	if err := admin.CheckHost(m.Address); err != nil {
		return fmt.Errorf("%w: address %q: %v", admin.ErrInvalidRequest, clipString(m.Address), err)
	}
	if slices.Contains(s.dir.removedIDs(), m.ID) {
		return fmt.Errorf("%w: node_id: node %s was a member and has been removed: an ID is never reused (a message "+
			"from its old incarnation could count for the new one); give the node a new name", admin.ErrConflict, s.dir.name(m.ID))
	}
	for _, o := range s.dir.all() {
		if o.ID != m.ID && sameHost(o.Address, m.Address) && o.Port == m.Port {
			return fmt.Errorf("%w: address %s is node %s's address", admin.ErrConflict, o.raftAddr(), s.dir.name(o.ID))
		}
	}
	if m.Name != "" {
		if id, err := nodename.ID(m.Name); err != nil || id != m.ID {
			return fmt.Errorf("%w: node_id: node %d is not named %q", admin.ErrInvalidRequest, m.ID, m.Name)
		}
		// Numeric names of one ID ("4", "node-4") are the same member; two
		// hashed names of one ID are two members that cannot both exist.
		if known := s.dir.name(m.ID); !nodename.Numeric(m.ID) && known != m.Name && known != nodename.String(m.ID) {
			return fmt.Errorf("%w: node_id: %w", admin.ErrConflict, nodename.Collision(m.Name, known, m.ID))
		}
	}
	return nil
}

// addLearner adds m as a learner; m.Promote says whether the leader
// promotes it once it has caught up.
func (s *Server) addLearner(ctx context.Context, m Member) error {
	if err := s.checkMember(m); err != nil {
		return err
	}
	st, err := s.onLeader(ctx)
	if err != nil {
		return err
	}
	voters, learners := membership(st.Config)
	known, _ := s.dir.get(m.ID)
	switch {
	case slices.Contains(voters, m.ID):
		return fmt.Errorf("%w: node_id: node %s is a voter already", admin.ErrConflict, s.dir.name(m.ID))
	case slices.Contains(learners, m.ID) && known.Promote && m.Promote:
		if sameAddresses(known, m) {
			return nil // joining already, as asked: a retry (of a wait that timed out) waits again
		}
		return fmt.Errorf("%w: node_id: node %s is joining already, at %s", admin.ErrConflict, s.dir.name(m.ID), known.raftAddr())
	case slices.Contains(learners, m.ID) && !m.Promote:
		return fmt.Errorf("%w: node_id: node %s is a learner already", admin.ErrConflict, s.dir.name(m.ID))
	}
	return s.confChange(ctx, core.ConfChange{
		Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: m.ID}},
		Context: encodeMember(m),
	})
}

// sameAddresses reports whether a and b are the same member at the same
// addresses.
func sameAddresses(a, b Member) bool {
	return a.ID == b.ID && sameHost(a.Address, b.Address) && a.Port == b.Port && a.APIPort == b.APIPort &&
		a.ClientPort == b.ClientPort
}

// sameHost reports whether two hosts are the same: equal IP addresses
// however written ("::1", "0:0::1"), or names equal but for case.
func sameHost(a, b string) bool {
	if ia, ib := net.ParseIP(a), net.ParseIP(b); ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}

// RemoveNode removes a voter or learner. The last voter cannot be removed.
func (s *Server) RemoveNode(ctx context.Context, id uint64) error {
	st, err := s.onLeader(ctx)
	if err != nil {
		return err
	}
	voters, learners := membership(st.Config)
	switch {
	case !slices.Contains(voters, id) && !slices.Contains(learners, id):
		return fmt.Errorf("%w: node %d is not a member", admin.ErrUnknownNode, id)
	case len(voters) == 1 && voters[0] == id:
		return fmt.Errorf("%w: node %d is the last voter", admin.ErrConflict, id)
	}
	return s.confChange(ctx, core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.RemoveNode, NodeID: id}}})
}

func (s *Server) confChange(ctx context.Context, cc core.ConfChange) error {
	if _, err := s.run.ProposeConfChange(ctx, cc); err != nil {
		return fmt.Errorf("membership change: %w", s.clusterError(err))
	}
	return nil
}

// TransferLeadership hands leadership to the voter target and waits until
// it has taken over (or ctx ends).
func (s *Server) TransferLeadership(ctx context.Context, target uint64) error {
	st, err := s.onLeader(ctx)
	if err != nil {
		return err
	}
	voters, learners := membership(st.Config)
	switch {
	case target == st.ID:
		return nil
	case slices.Contains(learners, target):
		return fmt.Errorf("%w: node %d is a learner", admin.ErrConflict, target)
	case !slices.Contains(voters, target):
		return fmt.Errorf("%w: node %d is not a member", admin.ErrUnknownNode, target)
	}
	if err := s.run.TransferLeadership(ctx, target); err != nil {
		return fmt.Errorf("transfer leadership: %w", s.clusterError(err))
	}
	return s.awaitLeader(ctx, func(lead uint64) bool { return lead == target })
}

// StepDown hands leadership to the most up-to-date voter and waits until
// another node leads (or ctx ends).
func (s *Server) StepDown(ctx context.Context) error {
	st, err := s.onLeader(ctx)
	if err != nil {
		return err
	}
	if err := s.run.StepDown(ctx); err != nil {
		return fmt.Errorf("step down: %w", s.clusterError(err))
	}
	return s.awaitLeader(ctx, func(lead uint64) bool { return lead != 0 && lead != st.ID })
}

// awaitLeader polls this node's view of the leader until ok accepts it,
// for at most ctx or two election timeouts.
func (s *Server) awaitLeader(ctx context.Context, ok func(lead uint64) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.Raft.ElectionTimeoutMax)
	defer cancel()
	t := time.NewTicker(s.cfg.Raft.HeartbeatInterval / 4)
	defer t.Stop()
	for {
		if lead := s.run.Status().Lead; ok(lead) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("leadership did not move: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Snapshot snapshots the state machine on this node and compacts its log;
// it returns the snapshot's index once the snapshot is durable.
func (s *Server) Snapshot(ctx context.Context) (uint64, error) {
	idx, err := s.run.TakeSnapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", s.clusterError(err))
	}
	return idx, nil
}

func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
