package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/admin"
)

// Only the leader knows which members are active (it hears from every one
// of them); a follower hears from the leader alone. So that every node's
// /status and /health tell the same story, a follower takes the active
// flags, match indexes and lags from the leader's own /status (the admin
// API on the leader's HTTP API), asked at most once a second, and says so
// ("active_from": "leader"). When the leader cannot be asked, it falls back
// to what it knows itself ("active_from": "self": itself and the leader).

const (
	// leaderViewTTL is how long a follower reuses the leader's answer.
	leaderViewTTL = time.Second
	// leaderViewTimeout bounds one request to the leader.
	leaderViewTimeout = 500 * time.Millisecond
)

// leaderView caches the leader's view of the cluster for a follower.
type leaderView struct {
	mu     sync.Mutex
	client *http.Client
	leader uint64
	term   uint64
	at     time.Time
	info   admin.ClusterInfo
	err    error
}

// leaderInfo returns the leader's /status for (leader, term), from the cache if it
// is fresh, else asked from the leader.
func (s *Server) leaderInfo(ctx context.Context, leader, term uint64) (admin.ClusterInfo, error) {
	v := &s.lview
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.leader == leader && v.term == term && time.Since(v.at) < leaderViewTTL {
		return v.info, v.err
	}
	v.leader, v.term, v.at = leader, term, time.Now()
	v.info, v.err = s.askLeader(ctx, leader, term)
	return v.info, v.err
}

// askLeader asks the leader's admin API for its /status.
func (s *Server) askLeader(ctx context.Context, leader, term uint64) (admin.ClusterInfo, error) {
	var info admin.ClusterInfo
	if s.cfg.AdminAPI.Enabled != nil && !*s.cfg.AdminAPI.Enabled {
		return info, fmt.Errorf("the admin API is disabled")
	}
	base := s.apiURL(leader)
	if base == "" {
		return info, fmt.Errorf("the leader's API address is unknown")
	}
	prefix := s.cfg.AdminAPI.PathPrefix
	if prefix == "" {
		prefix = "/consensus"
	}
	ctx, cancel := context.WithTimeout(ctx, leaderViewTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+prefix+"/status", nil)
	if err != nil {
		return info, fmt.Errorf("ask the leader: %w", err)
	}
	if tok := s.viewerToken(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if s.lview.client == nil {
		c, err := s.peerHTTPClient()
		if err != nil {
			return info, fmt.Errorf("ask the leader: %w", err)
		}
		s.lview.client = c
	}
	resp, err := s.lview.client.Do(req)
	if err != nil {
		return info, fmt.Errorf("ask the leader: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return info, fmt.Errorf("ask the leader: %s", resp.Status)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&info); err != nil {
		return info, fmt.Errorf("ask the leader: %w", err)
	}
	if info.Role != "leader" || info.NodeID != leader || info.Term != term {
		return info, fmt.Errorf("ask the leader: node %d answered as %s in term %d", info.NodeID, info.Role, info.Term)
	}
	return info, nil
}

// peerHTTPClient returns a client for another member's HTTP API (see
// peerClient).
func (s *Server) peerHTTPClient() (*http.Client, error) {
	return peerClient(s.cfg, s.apiTLS, leaderViewTimeout)
}

// viewerToken returns a configured admin token that may read /status, ""
// if none is configured (then /status is open).
func (s *Server) viewerToken() string {
	for _, t := range s.cfg.Security.Tokens {
		if slices.Contains([]string{string(admin.RoleViewer), string(admin.RoleOperator), string(admin.RoleAdmin)}, t.Role) {
			return t.Token
		}
	}
	return ""
}

// adoptLeaderView replaces a follower's own view of which members are
// active with the leader's, when the leader can be asked.
func (s *Server) adoptLeaderView(ctx context.Context, info *admin.ClusterInfo) {
	lv, err := s.leaderInfo(ctx, info.Leader, info.Term)
	if err != nil {
		info.ActiveFrom = "self"
		return
	}
	byID := make(map[uint64]admin.NodeStatus, len(lv.Nodes))
	for _, n := range lv.Nodes {
		byID[n.ID] = n
	}
	info.ActiveNodes = 0
	for i := range info.Nodes {
		n := &info.Nodes[i]
		if l, ok := byID[n.ID]; ok {
			n.Active, n.MatchIndex, n.Lag = l.Active, l.MatchIndex, l.Lag
		}
		if n.Active {
			info.ActiveNodes++
		}
	}
	info.HasQuorum = lv.HasQuorum
	info.ActiveFrom = "leader"
}
