package server

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// TestPromoteMarkTravels: a learner added learner-first keeps its
// promotion mark through a snapshot (FCM v4), so a leader that learnt the
// membership from one carries on; a promotion clears it; an explicit
// learner has none; an FCM v3 snapshot (no flags) still restores, without
// marks; unknown flags are refused.
func TestPromoteMarkTravels(t *testing.T) {
	m := newMachine()
	joining := memberOf(4, "", "10.0.0.4", 7004, 0, 0)
	joining.Promote = true
	m.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: 4}},
		Context: encodeMember(joining)})
	staying := memberOf(5, "", "10.0.0.5", 7005, 0, 0)
	m.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: 5}},
		Context: encodeMember(staying)})
	// A voter's context cannot mark it.
	voter := memberOf(6, "", "10.0.0.6", 7006, 0, 0)
	voter.Promote = true
	m.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddVoter, NodeID: 6}},
		Context: encodeMember(voter)})
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := newMachine()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[uint64]bool{4: true, 5: false, 6: false} {
		if got, ok := r.dir.get(id); !ok || got.Promote != want {
			t.Errorf("member %d after restore: %+v, promote want %v", id, got, want)
		}
	}
	// The promotion (AddVoter) clears the mark.
	promoted := joining
	promoted.Promote = false
	r.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddVoter, NodeID: 4}},
		Context: encodeMember(promoted)})
	if got, _ := r.dir.get(4); got.Promote {
		t.Fatalf("member 4 still marked after its promotion: %+v", got)
	}

	// FCM v3: the same members without flags.
	v3 := []byte(machineMagic3)
	v3 = binary.AppendUvarint(v3, 1)
	v3 = binary.AppendUvarint(v3, 4)
	v3 = binary.AppendUvarint(v3, 0) // no name
	v3 = binary.AppendUvarint(v3, uint64(len("10.0.0.4")))
	v3 = append(v3, "10.0.0.4"...)
	v3 = binary.AppendUvarint(v3, 7004)
	v3 = binary.AppendUvarint(v3, 7104)
	v3 = binary.AppendUvarint(v3, 7204)
	v3 = binary.AppendUvarint(v3, 0) // removed
	v3 = binary.AppendUvarint(v3, 0) // application state
	store, _ := newStore().Snapshot()
	o := newMachine()
	if err := o.Restore(append(v3, store...)); err != nil {
		t.Fatalf("FCM v3 snapshot: %v", err)
	}
	if got, ok := o.dir.get(4); !ok || got.Address != "10.0.0.4" || got.Promote {
		t.Fatalf("FCM v3 member: %+v %v", got, ok)
	}
	// Flags this version does not know are refused.
	i := bytes.Index(snap, []byte("10.0.0.4")) + len("10.0.0.4")
	bad := bytes.Clone(snap)
	_, n1 := binary.Uvarint(bad[i:])
	_, n2 := binary.Uvarint(bad[i+n1:])
	_, n3 := binary.Uvarint(bad[i+n1+n2:])
	bad[i+n1+n2+n3] = 0x02
	if err := newMachine().Restore(bad); err == nil || !strings.Contains(err.Error(), "flags") {
		t.Fatalf("a snapshot with unknown member flags: %v", err)
	}
}

// TestCaughtUp: the leader promotes a learner only when it hears from it,
// replicates to it and it is within raft.learner_promote_lag of the last
// index; each refusal says why.
func TestCaughtUp(t *testing.T) {
	s := &Server{cfg: Config{Raft: RaftConfig{LearnerPromoteLag: 100}}, dir: newDirectory(nil)}
	st := core.Status{BasicStatus: core.BasicStatus{Role: core.Leader, LastIndex: 1000}}
	for _, tc := range []struct {
		p    core.PeerProgress
		ok   bool
		want string
	}{
		{core.PeerProgress{ID: 4, Match: 950, State: core.ProgressReplicate, RecentActive: true}, true, ""},
		{core.PeerProgress{ID: 4, Match: 900, State: core.ProgressReplicate, RecentActive: true}, true, ""},
		{core.PeerProgress{ID: 4, Match: 899, State: core.ProgressReplicate, RecentActive: true}, false,
			"101 entries behind the leader's last index 1000 (promoted within 100: raft.learner_promote_lag)"},
		{core.PeerProgress{ID: 4, Match: 999, State: core.ProgressReplicate}, false, "not heard from"},
		{core.PeerProgress{ID: 4, Match: 999, State: core.ProgressProbe, RecentActive: true}, false, "finding where its log ends"},
		{core.PeerProgress{ID: 4, State: core.ProgressReplicate, RecentActive: true}, false, "match index 0"},
		{core.PeerProgress{ID: 5, Match: 999, State: core.ProgressReplicate, RecentActive: true}, false, "no replication progress"},
	} {
		st.Progress = []core.PeerProgress{tc.p}
		ok, why := s.caughtUp(st, 4)
		if ok != tc.ok || !strings.Contains(why, tc.want) {
			t.Errorf("%+v: caught up %v (%q), want %v (%q)", tc.p, ok, why, tc.ok, tc.want)
		}
	}
}
