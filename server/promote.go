package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/core"
)

// The learner-first flow (etcd's): add-node adds a learner marked
// Member.Promote; whichever node leads promotes it to voter once it has
// caught up. The mark travels with the member (membership change context,
// snapshots), so a new leader carries on where the old one stopped.

// promoteLag is raft.learner_promote_lag, or its default.
func (s *Server) promoteLag() uint64 {
	if s.cfg.Raft.LearnerPromoteLag == 0 {
		return DefaultLearnerPromoteLag
	}
	return s.cfg.Raft.LearnerPromoteLag
}

// caughtUp reports whether learner id has caught up with the leader whose
// status is st: the leader hears from it, replicates to it (no probe, no
// snapshot in flight) and its match index is within raft.learner_promote_lag
// of the leader's last index. If not, it says why.
//
// The leader clears its "heard from" mark every election timeout and sets
// it again on the next answer, so a learner that answers every heartbeat
// still looks unheard for about one heartbeat interval after each clear:
// the promotion loop watches the log position over time and asks for the
// mark only at the moment it promotes; PromoteMember looks again for a few
// heartbeats.
func (s *Server) caughtUp(st core.Status, id uint64) (bool, string) {
	i := slices.IndexFunc(st.Progress, func(p core.PeerProgress) bool { return p.ID == id })
	if i < 0 {
		return false, "the leader has no replication progress for it"
	}
	if !st.Progress[i].RecentActive {
		return false, "the leader has not heard from it within an election timeout (is it running, with join: true?)"
	}
	return s.inStep(st, st.Progress[i])
}

// inStep reports whether the leader replicates to learner p (no probe,
// no snapshot in flight) and its log is within raft.learner_promote_lag
// of the leader's last index, and if not, why.
func (s *Server) inStep(st core.Status, p core.PeerProgress) (bool, string) {
	behind := uint64(0)
	if st.LastIndex > p.Match {
		behind = st.LastIndex - p.Match
	}
	switch {
	case p.Match == 0 || p.State != core.ProgressReplicate:
		return false, fmt.Sprintf("the leader is still finding where its log ends (replication %s, match index %d)",
			p.State, p.Match)
	case behind > s.promoteLag():
		return false, fmt.Sprintf("%d entries behind the leader's last index %d (promoted within %d: raft.learner_promote_lag)",
			behind, st.LastIndex, s.promoteLag())
	}
	return true, ""
}

// promotion describes, for the admin API's NodeStatus.Promotion, whether
// and when learner id becomes a voter, as this node (with status st) sees
// it.
func (s *Server) promotion(st core.Status, id uint64) string {
	m, ok := s.dir.get(id)
	if !ok || !m.Promote {
		return "manual: added as a learner, it stays one until promoted (POST /promote, consensusctl promote)"
	}
	if st.Role != core.Leader {
		return fmt.Sprintf("pending: the leader promotes it once it is within %d entries of the leader's log "+
			"(raft.learner_promote_lag)", s.promoteLag())
	}
	if ok, why := s.caughtUp(st, id); !ok {
		return "pending: " + why
	}
	return "pending: caught up; promoted once it has stayed caught up for an election timeout"
}

// PromoteMember promotes learner id to voter now if it has caught up with
// the leader (raft.learner_promote_lag), and returns once the change is
// applied: etcd's member promote. It returns nil if id is a voter already,
// an error wrapping admin.ErrNotCaughtUp saying why if the learner is not
// caught up, and admin.ErrUnknownNode if id is no member.
func (s *Server) PromoteMember(ctx context.Context, id uint64) error {
	st, err := s.onLeader(ctx)
	if err != nil {
		return err
	}
	_, learners := membership(st.Config)
	switch {
	case slices.Contains(st.Config.Voters, id):
		return nil
	case !slices.Contains(learners, id):
		return fmt.Errorf("%w: node %s is not a member", admin.ErrUnknownNode, s.dir.name(id))
	case st.Config.Joint():
		return fmt.Errorf("%w: a joint configuration is in force; retry once it is left", admin.ErrConflict)
	}
	ok, why := s.caughtUp(st, id)
	// Not heard from may be the moment after the leader cleared its mark:
	// look again for a few heartbeats.
	t := time.NewTicker(s.cfg.Raft.HeartbeatInterval / 2)
	defer t.Stop()
	for tries := 0; !ok && tries < 6 && strings.HasPrefix(why, "the leader has not heard"); tries++ {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: node %s: %s", admin.ErrNotCaughtUp, s.dir.name(id), why)
		case <-t.C:
		}
		if st, err = s.onLeader(ctx); err != nil {
			return err
		}
		ok, why = s.caughtUp(st, id)
	}
	if !ok {
		return fmt.Errorf("%w: node %s: %s", admin.ErrNotCaughtUp, s.dir.name(id), why)
	}
	return s.promote(ctx, id)
}

// promote proposes learner id's promotion, carrying its addresses (no
// longer marked Promote), and waits until it is applied.
func (s *Server) promote(ctx context.Context, id uint64) error {
	cc := core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddVoter, NodeID: id}}}
	if m, ok := s.dir.get(id); ok {
		m.Promote = false
		cc.Context = encodeMember(m)
	}
	return s.confChange(ctx, cc)
}

// startPromoter starts the loop that promotes caught-up learners while
// this node leads; Close stops it.
func (s *Server) startPromoter() {
	ctx, cancel := context.WithCancel(context.Background())
	s.promoteStop, s.promoteDone = cancel, make(chan struct{})
	go s.promoteLearners(ctx)
}

// promoteLearners runs every heartbeat interval: while this node leads, it
// promotes the learner promotionWatch.due names, one change at a time. A
// learner that never catches up stays a learner (NodeStatus.Promotion says
// why) until an operator removes it.
func (s *Server) promoteLearners(ctx context.Context) {
	defer close(s.promoteDone)
	t := time.NewTicker(s.cfg.Raft.HeartbeatInterval)
	defer t.Stop()
	w := promotionWatch{since: map[uint64]time.Time{}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, s.cfg.Raft.ElectionTimeoutMax)
		st, err := s.run.CoreStatus(sctx)
		cancel()
		if err != nil {
			st = core.Status{} // not known to lead: forget
		}
		id := w.due(s, st, time.Now())
		if id == 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.API.RequestTimeout)
		start := time.Now()
		err = s.promote(pctx, id)
		cancel()
		s.metrics.ObserveOperation("promote", time.Since(start), err)
		switch {
		case err == nil:
			s.log.Info("learner caught up and promoted to voter", "member", s.dir.name(id))
		case ctx.Err() == nil:
			s.log.Info("learner not promoted; retrying once it is caught up again", "member", s.dir.name(id), "err", err)
		}
	}
}

// promotionWatch follows, on the leader, how long each learner marked
// Promote has been in step (inStep).
type promotionWatch struct {
	term  uint64
	since map[uint64]time.Time // in step without a break since, in this term
}

// due returns the learner to promote now, given this node's status st at
// now, or 0: the first, by ID, marked Promote that has been in step for an
// election timeout without a break, in this term, and was heard from
// lately at this moment. Never while this node does not lead or in a joint
// configuration. The learner's clock starts again when it is chosen (a
// failed promotion waits another election timeout).
func (w *promotionWatch) due(s *Server, st core.Status, now time.Time) uint64 {
	if st.Role != core.Leader || st.Config.Joint() || st.Term != w.term {
		clear(w.since)
		w.term = st.Term
		return 0
	}
	var chosen uint64
	for _, id := range st.Config.Learners {
		m, known := s.dir.get(id)
		i := slices.IndexFunc(st.Progress, func(p core.PeerProgress) bool { return p.ID == id })
		if !known || !m.Promote || i < 0 {
			delete(w.since, id)
			continue
		}
		if ok, _ := s.inStep(st, st.Progress[i]); !ok {
			delete(w.since, id)
			continue
		}
		first, seen := w.since[id]
		if !seen {
			w.since[id] = now
		}
		if chosen == 0 && seen && now.Sub(first) >= s.cfg.Raft.ElectionTimeoutMin && st.Progress[i].RecentActive {
			chosen = id
		}
	}
	delete(w.since, chosen)
	return chosen
}
