package server

import (
	"context"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/metrics"
)

// Metrics returns the node's Prometheus metrics (package metrics), served
// by the admin API at /metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// startWatch starts watching leadership for the election metrics.
func (s *Server) startWatch() {
	s.watchStop, s.watchDone = make(chan struct{}), make(chan struct{})
	go s.watchLeadership()
}

// watchLeadership records, every heartbeat interval, when this node sees a
// new leader after none (or another): an election, with how long the
// cluster was leaderless as seen from here.
func (s *Server) watchLeadership() {
	t := time.NewTicker(s.cfg.Raft.HeartbeatInterval)
	defer t.Stop()
	var lead, term uint64
	lost := time.Now()
	for {
		select {
		case <-s.watchStop:
			close(s.watchDone)
			return
		case now := <-t.C:
			st := s.run.Status()
			switch {
			case st.Lead == 0 && lead != 0:
				lost = now
			case st.Lead != 0 && (st.Lead != lead || st.Term != term):
				s.metrics.LeaderElected(now.Sub(lost))
				lost = now
			}
			lead, term = st.Lead, st.Term
		}
	}
}

// metricsSource reads the node's state for a scrape.
type metricsSource struct{ s *Server }

// Snapshot implements metrics.Source.
func (ms metricsSource) Snapshot() metrics.State {
	s := ms.s
	st := metrics.State{NodeID: s.cfg.NodeID.ID(), NodeName: string(s.cfg.NodeID)}
	if s.run == nil { // New reads the node ID before the node runs
		return st
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info := s.Info(ctx)
	cs, err := s.run.CoreStatus(ctx)
	if err != nil {
		b := s.run.Status()
		cs = core.Status{BasicStatus: b}
	}
	st.Term, st.Leader, st.IsLeader = cs.Term, cs.Lead, cs.Role == core.Leader
	st.HasQuorum, st.ClusterSize, st.HealthyNodes = info.HasQuorum, info.TotalNodes, info.ActiveNodes
	st.CommitIndex, st.LastApplied = cs.Commit, cs.Applied
	if cs.LastIndex >= cs.FirstIndex && cs.FirstIndex > 0 {
		st.LogEntries = cs.LastIndex - cs.FirstIndex + 1
	}
	if s.logSize != nil {
		st.LogBytes = s.logSize.LogBytes()
	}
	if st.IsLeader {
		for _, n := range info.Nodes {
			if n.ID != st.NodeID {
				st.Peers = append(st.Peers, metrics.PeerState{ID: n.ID, Name: n.Name, MatchIndex: n.MatchIndex, Active: n.Active})
			}
		}
	}
	ts := s.tr.Stats()
	st.TransportErrors = map[string]uint64{"dropped": ts.Dropped, "rejected": ts.Rejected, "reconnects": ts.Reconnects}
	return st
}
