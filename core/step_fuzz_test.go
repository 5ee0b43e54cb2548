package core

import (
	"testing"
)

// fuzzCluster returns a 3-node cluster with node 1 leading in term 2 and a
// few committed entries, plus the fuzz target node's committed prefix.
func fuzzCluster(t testing.TB) *cluster {
	c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.PreVote = true; cfg.CheckQuorum = true })
	c.deliver()
	c.campaign(1)
	for _, d := range []string{"x", "y", "z"} {
		if err := c.nodes[1].Propose([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	c.deliver()
	return c
}

// FuzzStep feeds decoded byte strings as messages to a leader and to a
// follower. Step must never panic, and whatever it accepts must leave the
// committed log prefix untouched and the node's invariants intact.
func FuzzStep(f *testing.F) {
	seeds := []Message{
		{Type: MsgApp, From: 1, To: 2, Term: 2, Index: 4, LogTerm: 2, Commit: 5,
			Entries: []Entry{{Term: 2, Index: 5, Data: []byte("a")}}},
		{Type: MsgAppResp, From: 2, To: 1, Term: 2, Index: 3},
		{Type: MsgAppResp, From: 2, To: 1, Term: 2, Index: 3, Reject: true, RejectHint: 1, LogTerm: 1},
		{Type: MsgVote, From: 3, To: 2, Term: 3, Index: 9, LogTerm: 3},
		{Type: MsgPreVote, From: 3, To: 1, Term: 3, Index: 1, LogTerm: 1},
		{Type: MsgHeartbeat, From: 1, To: 2, Term: 2, Commit: 4},
		{Type: MsgHeartbeatResp, From: 3, To: 1, Term: 2, Index: 1},
		{Type: MsgSnap, From: 1, To: 2, Term: 2, Snapshot: &Snapshot{Meta: SnapshotMeta{Index: 9, Term: 2,
			Config: ConfState{Voters: []uint64{1, 2, 3}}}, Data: []byte("s")}},
		{Type: MsgProp, From: 2, To: 1, Entries: []Entry{{Data: []byte("p")}}},
		{Type: MsgReadIndex, From: 2, To: 1, Context: []byte("r")},
		{Type: MsgTimeoutNow, From: 1, To: 2, Term: 2},
		{Type: MsgTransferLeader, From: 3, To: 1, Index: 2},
	}
	for i := range seeds {
		b, err := seeds[i].MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMessage(data)
		if err != nil {
			return
		}
		c := fuzzCluster(t)
		for _, to := range []uint64{1, 2} {
			n := c.nodes[to]
			before := n.BasicStatus()
			prefix := append([]Entry(nil), n.r.log.entries[:before.Commit-n.r.log.offset]...)
			m.To = to
			if m.From == to {
				m.From = 3
			}
			err := n.Step(m)
			after := n.BasicStatus()
			if err != nil && after != before {
				t.Fatalf("Step returned %v but changed the node: %+v -> %+v", err, before, after)
			}
			if after.Commit < before.Commit || after.Commit > after.LastIndex {
				t.Fatalf("commit moved from %d to %d (last %d)", before.Commit, after.Commit, after.LastIndex)
			}
			if after.Term < before.Term {
				t.Fatalf("term moved back from %d to %d", before.Term, after.Term)
			}
			if n.r.log.offset == 0 {
				for i, e := range prefix {
					got := n.r.log.entries[i]
					if got.Term != e.Term || got.Index != e.Index || string(got.Data) != string(e.Data) {
						t.Fatalf("committed entry %d changed: %+v -> %+v", e.Index, e, got)
					}
				}
			}
			// The node must still work: drain its output.
			for n.HasReady() {
				rd := n.Ready()
				c.stores[to].save(&rd)
				if err := n.Advance(); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
