package sim

import (
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// confLog returns entries 1..n of term 1, membership changes at the
// indexes in confs.
func confLog(n uint64, confs ...uint64) []core.Entry {
	es := make([]core.Entry, n)
	for i := range es {
		es[i] = core.Entry{Index: uint64(i + 1), Term: 1, Data: []byte{byte(i)}}
		for _, c := range confs {
			if c == es[i].Index {
				es[i].Type = core.EntryConfChange
			}
		}
	}
	return es
}

// store writes ents (and commit) to node id and makes them durable.
func store(c *Checker, id uint64, ents []core.Entry, commit uint64) {
	u := &node.Update{Entries: ents, HardState: core.HardState{Term: 1, Vote: 1, Commit: commit}, Sync: true}
	c.Write(0, id, u)
	c.Durable(0, id, u)
}

func TestCheckCommitQuorum(t *testing.T) {
	joint := core.ConfState{Voters: []uint64{1, 2, 4}, VotersOutgoing: []uint64{1, 2, 3}}
	simple := core.ConfState{Voters: []uint64{1, 2, 4}}
	for _, tt := range []struct {
		name          string
		durable       []uint64 // nodes holding entries 1..5 durably (the others hold 1..2)
		confAt        []uint64 // membership changes in the leader's log
		old, index    uint64
		before, after *core.ConfState
		bad           bool
	}{
		// Joint (1 2 4)&&(1 2 3): 1 and 4 are a quorum of the incoming
		// half only.
		{"joint-incoming-only", []uint64{1, 4}, nil, 2, 5, &joint, nil, true},
		{"joint-both-halves", []uint64{1, 2}, nil, 2, 5, &joint, nil, false},
		{"joint-all", []uint64{1, 2, 3, 4}, nil, 2, 5, &joint, nil, false},
		{"simple-quorum", []uint64{1, 4}, nil, 2, 5, &simple, nil, false},
		{"simple-minority", []uint64{1}, nil, 2, 5, &simple, nil, true},
		// Leaving the joint configuration at index 3, below index 5: the
		// leader counted again under (1 2 4) alone.
		{"left-below", []uint64{1, 4}, []uint64{3}, 2, 5, &joint, &simple, false},
		// The leave itself at index 5 must be committed by both halves.
		{"leave-entry-one-half", []uint64{1, 4}, []uint64{5}, 2, 5, &joint, &simple, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChecker([]uint64{1, 2, 3, 4})
			for id := uint64(1); id <= 4; id++ {
				n := uint64(2)
				for _, d := range tt.durable {
					if d == id {
						n = 5
					}
				}
				store(c, id, confLog(n, tt.confAt...), 0)
			}
			if v := c.Err(); v != nil {
				t.Fatalf("setup: %v", v)
			}
			c.LeaderCommit(7, 1, tt.old, tt.index, tt.before, tt.after)
			v := c.Err()
			switch {
			case tt.bad && (v == nil || v.Check != CheckCommitQuorum):
				t.Fatalf("not flagged: %v", v)
			case !tt.bad && v != nil:
				t.Fatalf("flagged a valid commit: %v", v)
			}
			if v != nil {
				t.Log(v)
			}
			c.Skip(CheckCommitQuorum)
		})
	}
	// A skipped check reports nothing.
	c := NewChecker([]uint64{1, 2, 3, 4})
	c.Skip(CheckCommitQuorum)
	store(c, 1, confLog(5), 0)
	c.LeaderCommit(7, 1, 2, 5, &joint, nil)
	if v := c.Err(); v != nil {
		t.Fatalf("skipped check reported %v", v)
	}
}

func TestCheckSingleConfChange(t *testing.T) {
	leader := func(commit uint64) core.BasicStatus {
		return core.BasicStatus{ID: 1, Role: core.Leader, Term: 1, Commit: commit, Applied: commit, LastIndex: 8}
	}
	for _, tt := range []struct {
		name     string
		confs    []uint64
		commit   uint64 // the leader's commit index
		other    uint64 // another node's reported commit index
		role     core.Role
		bad      bool
		truncate bool // a later write replaces the log from index 6
	}{
		{"one-pending", []uint64{3, 6}, 4, 0, core.Leader, false, false},
		{"two-pending", []uint64{5, 6}, 4, 0, core.Leader, true, false},
		// The first is committed, as another node reported: a new leader
		// that has not learnt it yet inherits it.
		{"first-committed-elsewhere", []uint64{5, 6}, 4, 5, core.Leader, false, false},
		{"follower", []uint64{5, 6}, 4, 0, core.Follower, false, false},
		{"second-truncated", []uint64{5, 6}, 4, 0, core.Leader, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChecker([]uint64{1, 2, 3})
			store(c, 1, confLog(8, tt.confs...), tt.commit)
			if tt.truncate {
				u := &node.Update{Entries: []core.Entry{{Index: 6, Term: 2}}, HardState: core.HardState{Term: 2, Commit: tt.commit}, Sync: true}
				c.Write(0, 1, u)
				c.Durable(0, 1, u)
			}
			if tt.other > 0 {
				c.Status(0, 2, core.BasicStatus{ID: 2, Role: core.Follower, Term: 1, Commit: tt.other, LastIndex: 8})
			}
			st := leader(tt.commit)
			st.Role = tt.role
			if tt.truncate {
				st.Term, st.LastIndex = 2, 6
			}
			c.Status(3, 1, st)
			v := c.Err()
			switch {
			case tt.bad && (v == nil || v.Check != CheckSingleConfChange):
				t.Fatalf("not flagged: %v", v)
			case !tt.bad && v != nil:
				t.Fatalf("flagged: %v", v)
			}
			if v != nil && !strings.Contains(v.Detail, "2 uncommitted membership changes") {
				t.Errorf("detail: %s", v.Detail)
			}
		})
	}
}

func TestConfIdxFollowsTheLog(t *testing.T) {
	c := NewChecker([]uint64{1})
	store(c, 1, confLog(10, 2, 5, 9), 0)
	n := c.node(1)
	if !c.ConfChangeIn(1, 4, 5) || c.ConfChangeIn(1, 5, 8) || !c.ConfChangeIn(1, 8, 9) {
		t.Fatalf("ConfChangeIn wrong for %v", n.confIdx)
	}
	// A write from index 5 replaces the changes at 5 and 9.
	store(c, 1, []core.Entry{{Index: 5, Term: 2}}, 0)
	if got := n.confIdx; len(got) != 1 || got[0] != 2 {
		t.Fatalf("after truncation: %v", got)
	}
	// A compaction drops what it covers; a snapshot drops everything.
	c.Write(0, 1, &node.Update{LocalSnapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 3, Term: 1}}, CompactTo: 3})
	if len(n.confIdx) != 0 {
		t.Fatalf("after compaction: %v", n.confIdx)
	}
	store(c, 1, []core.Entry{{Index: 6, Term: 2, Type: core.EntryConfChange}}, 0)
	c.Write(0, 1, &node.Update{Snapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 20, Term: 3}}})
	if len(n.confIdx) != 0 {
		t.Fatalf("after a snapshot: %v", n.confIdx)
	}
}
