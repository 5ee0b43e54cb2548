package core

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Tests of CompactKeep (compaction that keeps a tail of the log behind the
// snapshot), of restoring persisted state whose entries overlap the
// snapshot, and of LeaseRead.

// keepCluster returns a three-voter cluster led by 1 in which node 3 missed
// the last `missed` of `total` proposals (all committed on 1 and 2).
func keepCluster(t *testing.T, total, missed int) *cluster {
	t.Helper()
	c := steadyLeader(t, []uint64{1, 2, 3}, nil)
	for i := range total {
		if i == total-missed {
			c.partition(3)
		}
		c.propose(1, fmt.Sprint("v", i))
		c.deliver()
	}
	c.heal()
	return c
}

// snapsTo returns a drop function that records the snapshots sent to id
// and drops nothing.
func snapsTo(id uint64, sent *[]Message) func(Message) bool {
	return func(m Message) bool {
		if m.Type == MsgSnap && m.To == id {
			*sent = append(*sent, m)
		}
		return false
	}
}

// TestCompactKeep: CompactKeep(index, data, keep) makes a snapshot at index
// while the log still starts keep entries before it; a second compaction
// at or below the snapshot index is refused, and one beyond what is
// applied too.
func TestCompactKeep(t *testing.T) {
	c := keepCluster(t, 10, 0)
	n := c.nodes[1]
	st := n.BasicStatus()
	if st.Applied != 12 || st.LastIndex != 12 {
		t.Fatalf("setup: status %+v, want applied and last index 12", st)
	}
	term := st.Term
	if err := n.CompactKeep(10, []byte("state@10"), 3); err != nil {
		t.Fatal(err)
	}
	st = n.BasicStatus()
	if st.FirstIndex != 10-3+1 || st.LastIndex != 12 {
		t.Fatalf("after CompactKeep(10, keep 3): first %d last %d, want first 8 last 12", st.FirstIndex, st.LastIndex)
	}
	s := n.Snapshot()
	if s == nil || s.Meta.Index != 10 || s.Meta.Term != term || string(s.Data) != "state@10" ||
		!confEqual(s.Meta.Config, ConfState{Voters: []uint64{1, 2, 3}}) {
		t.Fatalf("snapshot %+v, want index 10 term %d with the voters", s, term)
	}
	if n.HasReady() {
		t.Fatalf("compaction made a Ready: %+v", n.Ready())
	}

	for _, idx := range []uint64{9, 10} {
		if err := n.CompactKeep(idx, nil, 0); !errors.Is(err, ErrCompacted) {
			t.Fatalf("CompactKeep(%d) after a snapshot at 10: %v, want ErrCompacted", idx, err)
		}
	}
	if err := n.CompactKeep(13, nil, 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("CompactKeep beyond applied: %v, want ErrUnavailable", err)
	}
	if s2 := n.Snapshot(); s2 != s || n.BasicStatus() != st {
		t.Fatal("refused compaction changed the node")
	}

	// keep larger than the log: the snapshot moves, the log stays.
	if err := n.CompactKeep(12, []byte("state@12"), 100); err != nil {
		t.Fatal(err)
	}
	if st := n.BasicStatus(); st.FirstIndex != 8 || n.Snapshot().Meta.Index != 12 {
		t.Fatalf("CompactKeep(12, keep 100): first %d, snapshot %d; want first 8, snapshot 12", st.FirstIndex, n.Snapshot().Meta.Index)
	}
	// keep 0 is Compact.
	c.propose(1, "x")
	c.deliver()
	if err := n.CompactKeep(13, []byte("state@13"), 0); err != nil {
		t.Fatal(err)
	}
	if st := n.BasicStatus(); st.FirstIndex != 14 {
		t.Fatalf("CompactKeep(13, keep 0): first %d, want 14", st.FirstIndex)
	}
}

// TestCompactKeepCatchUp: after CompactKeep a follower whose next index
// lies in the kept range catches up from the log, without a snapshot; one
// further behind receives the snapshot. Both converge.
func TestCompactKeepCatchUp(t *testing.T) {
	for _, tc := range []struct {
		keep     uint64
		wantSnap bool
	}{
		{keep: 5, wantSnap: false}, // node 3 has up to 7; the log keeps 8..12 and more
		{keep: 6, wantSnap: false}, // the log keeps 7..12
		{keep: 4, wantSnap: true},  // the log keeps 9..12: index 8 is gone
		{keep: 2, wantSnap: true},  // the log keeps 11..12 only
	} {
		t.Run(fmt.Sprintf("keep=%d", tc.keep), func(t *testing.T) {
			c := keepCluster(t, 10, 5) // node 3 has indexes 1..7
			if st := c.nodes[3].BasicStatus(); st.LastIndex != 7 {
				t.Fatalf("setup: node 3 ends at %d, want 7", st.LastIndex)
			}
			c.partition(3)
			n := c.nodes[1]
			if err := n.CompactKeep(12, []byte("state"), tc.keep); err != nil {
				t.Fatal(err)
			}
			if st := n.BasicStatus(); st.FirstIndex != 12-tc.keep+1 {
				t.Fatalf("first index %d, want %d", st.FirstIndex, 12-tc.keep+1)
			}
			var snaps []Message
			c.drop = snapsTo(3, &snaps)
			c.tick(3)
			if got := len(snaps) > 0; got != tc.wantSnap {
				t.Fatalf("snapshot sent to node 3: %t, want %t (%d snapshots)", got, tc.wantSnap, len(snaps))
			}
			c.propose(1, "after")
			c.deliver()
			c.checkSameLogs(t, 1, 2, 3)
			want := []string{"v5", "v6", "v7", "v8", "v9", "after"}
			if tc.wantSnap {
				want = want[len(want)-1:] // the rest came in the snapshot
			}
			if got := c.data(3); !slices.Equal(got[len(got)-len(want):], want) {
				t.Fatalf("node 3 applied %v, want it to end with %v", got, want)
			}
			if st := c.nodes[3].BasicStatus(); st.Applied != n.BasicStatus().Commit {
				t.Fatalf("node 3 applied %d, leader committed %d", st.Applied, n.BasicStatus().Commit)
			}
		})
	}
}

// TestRestoreEntriesBehindSnapshot: a node restored from a snapshot at 10
// with stored entries from 8 (kept by CompactKeep) skips 8..10 and works:
// it hands out the committed entries after the snapshot, campaigns and
// commits.
func TestRestoreEntriesBehindSnapshot(t *testing.T) {
	snap := &Snapshot{Meta: SnapshotMeta{Index: 10, Term: 2, Config: ConfState{Voters: []uint64{1}}}, Data: []byte("s")}
	ents := func(from, to uint64) []Entry {
		var out []Entry
		for i := from; i <= to; i++ {
			term := uint64(2)
			if i > 12 {
				term = 3
			}
			out = append(out, Entry{Index: i, Term: term, Data: []byte(fmt.Sprint("e", i))})
		}
		return out
	}

	t.Run("entries after the snapshot", func(t *testing.T) {
		n, err := New(Config{ID: 1}, Persisted{HardState: HardState{Term: 3, Vote: 1, Commit: 12}, Snapshot: snap, Entries: ents(8, 13)})
		if err != nil {
			t.Fatal(err)
		}
		st := n.BasicStatus()
		if st.FirstIndex != 11 || st.LastIndex != 13 || st.Commit != 12 || st.Applied != 10 || st.Term != 3 {
			t.Fatalf("status %+v, want first 11, last 13, commit 12, applied 10, term 3", st)
		}
		if s := n.Snapshot(); s != snap {
			t.Fatalf("snapshot %+v", s)
		}
		rd := takeReady(t, n)
		if len(rd.Entries) != 0 || rd.Snapshot != nil {
			t.Fatalf("restored node asked to persist %v / %v", rd.Entries, rd.Snapshot)
		}
		if got := entriesData(rd.CommittedEntries); !slices.Equal(got, []string{"e11", "e12"}) {
			t.Fatalf("handed out %v, want [e11 e12]", got)
		}
		if err := n.Campaign(); err != nil {
			t.Fatal(err)
		}
		rd = takeReady(t, n) // the new leader's empty entry, persisted
		if len(rd.Entries) != 1 || rd.Entries[0].Index != 14 || rd.Entries[0].Term != 4 {
			t.Fatalf("leader's first Ready entries %+v, want the empty entry 14 in term 4", rd.Entries)
		}
		if err := n.Propose([]byte("p")); err != nil {
			t.Fatal(err)
		}
		var applied []Entry
		for range 5 {
			if !n.HasReady() {
				break
			}
			applied = append(applied, takeReady(t, n).CommittedEntries...)
		}
		if got := entriesData(applied); !slices.Equal(got, []string{"e13", "p"}) {
			t.Fatalf("applied %v, want [e13 p]", got)
		}
		if st := n.BasicStatus(); st.Commit != 15 || st.FirstIndex != 11 {
			t.Fatalf("status %+v, want commit 15, first index 11", st)
		}
	})

	t.Run("entries all covered", func(t *testing.T) {
		n, err := New(Config{ID: 1}, Persisted{HardState: HardState{Term: 2, Commit: 10}, Snapshot: snap, Entries: ents(8, 10)})
		if err != nil {
			t.Fatal(err)
		}
		if st := n.BasicStatus(); st.FirstIndex != 11 || st.LastIndex != 10 || st.Commit != 10 {
			t.Fatalf("status %+v, want an empty log after 10", st)
		}
		if err := n.Campaign(); err != nil {
			t.Fatal(err)
		}
		for n.HasReady() {
			takeReady(t, n)
		}
		if st := n.BasicStatus(); st.Role != Leader || st.Commit != 11 {
			t.Fatalf("status %+v, want leader with commit 11", st)
		}
	})

	t.Run("kept entries after a restart in a cluster", func(t *testing.T) {
		c := keepCluster(t, 8, 0) // indexes 1..10
		n2 := c.nodes[2]
		if err := n2.CompactKeep(9, []byte("state@9"), 4); err != nil {
			t.Fatal(err)
		}
		st := c.stores[2]
		p := st.persisted()
		p.Snapshot = n2.Snapshot()
		// The host deletes stored entries up to index-keep.
		p.Entries = slices.DeleteFunc(p.Entries, func(e Entry) bool { return e.Index <= 9-4 })
		if p.Entries[0].Index != 6 {
			t.Fatalf("setup: stored entries from %d", p.Entries[0].Index)
		}
		before := n2.BasicStatus()
		c.crash(2)
		c.load(2, p)
		after := c.nodes[2].BasicStatus()
		if after.FirstIndex != 10 || after.LastIndex != before.LastIndex || after.Commit != before.Commit || after.Term != before.Term {
			t.Fatalf("restarted node 2: %+v, was %+v", after, before)
		}
		c.process()
		if got := c.data(2); !slices.Equal(got, []string{"v7"}) {
			t.Fatalf("restarted node 2 re-applied %v, want [v7] (index 10 only)", got)
		}
		c.propose(1, "after")
		c.deliver()
		c.checkSameLogs(t, 1, 2, 3)
		if got := c.data(2); !slices.Equal(got, []string{"v7", "after"}) {
			t.Fatalf("node 2 applied %v", got)
		}
		// Node 2 can lead with a log that starts after its snapshot.
		c.campaign(2)
		c.propose(2, "from 2")
		c.deliver()
		c.checkSameLogs(t, 1, 2, 3)
	})
}

// entriesData returns the data of the non-empty normal entries.
func entriesData(ents []Entry) []string {
	var out []string
	for _, e := range ents {
		if e.Type == EntryNormal && len(e.Data) > 0 {
			out = append(out, string(e.Data))
		}
	}
	return out
}

// TestLeaseRead: LeaseRead needs CheckQuorum; on a follower it is refused
// with a NotLeaderError; on a leader that heard from a quorum in the
// current window it answers in the next Ready without a heartbeat round,
// and otherwise it falls back to one.
func TestLeaseRead(t *testing.T) {
	t.Run("needs CheckQuorum", func(t *testing.T) {
		c := steadyLeader(t, []uint64{1, 2, 3}, nil)
		n := c.nodes[1]
		before := n.Status()
		err := n.LeaseRead([]byte("r"))
		if !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("LeaseRead without CheckQuorum: %v, want ErrInvalidConfig", err)
		}
		if n.HasReady() || !statusEqual(before, n.Status()) {
			t.Fatal("refused LeaseRead changed the node")
		}
	})

	t.Run("follower", func(t *testing.T) {
		c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = true })
		err := c.nodes[2].LeaseRead([]byte("r"))
		var nl *NotLeaderError
		if !errors.As(err, &nl) || nl.Leader != 1 || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("LeaseRead on a follower: %v, want NotLeaderError naming 1", err)
		}
		if c.nodes[2].HasReady() {
			t.Fatal("refused LeaseRead made a Ready (forwarded?)")
		}
	})

	t.Run("leader with lease", func(t *testing.T) {
		c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = true })
		c.propose(1, "a")
		c.deliver()
		n := c.nodes[1]
		commit := n.BasicStatus().Commit
		if err := n.LeaseRead([]byte("r1")); err != nil {
			t.Fatal(err)
		}
		if !n.HasReady() {
			t.Fatal("no Ready after a lease read")
		}
		rd := c.handleReady(1)
		if len(rd.ReadStates) != 1 || rd.ReadStates[0].Index != commit || !bytes.Equal(rd.ReadStates[0].Context, []byte("r1")) {
			t.Fatalf("read states %+v, want one at %d for r1", rd.ReadStates, commit)
		}
		if hb := msgsOf(rd.Messages, MsgHeartbeat); len(hb) != 0 {
			t.Fatalf("lease read sent heartbeats %+v", hb)
		}
	})

	t.Run("leader without lease", func(t *testing.T) {
		c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = true })
		c.propose(1, "a")
		c.deliver()
		// The followers fall silent for a whole check window: the lease
		// lapses (but the leader, ticked only to the window's end, leads).
		c.partition(1)
		for range 10 {
			c.nodes[1].Tick()
			c.deliver()
		}
		n := c.nodes[1]
		if st := n.BasicStatus(); st.Role != Leader {
			t.Fatalf("setup: node 1 is %v", st.Role)
		}
		if err := n.LeaseRead([]byte("r2")); err != nil {
			t.Fatal(err)
		}
		rd := c.handleReady(1)
		if len(rd.ReadStates) != 0 {
			t.Fatalf("read answered without a lease or a round: %+v", rd.ReadStates)
		}
		if len(msgsOf(rd.Messages, MsgHeartbeat)) == 0 {
			t.Fatal("no heartbeat round for a read without a lease")
		}
		c.heal()
		c.deliver()
		if rs := c.reads[1]; len(rs) != 1 || !bytes.Equal(rs[0].Context, []byte("r2")) {
			t.Fatalf("read states after the round %+v, want r2", rs)
		}
	})

	t.Run("new leader waits for its first commit", func(t *testing.T) {
		c := newCluster(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = true })
		if err := c.nodes[1].Campaign(); err != nil {
			t.Fatal(err)
		}
		// Deliver until node 1 leads, but not its first append.
		for range 10 {
			if c.nodes[1].BasicStatus().Role == Leader {
				break
			}
			c.process()
			q := c.queue
			c.queue = nil
			for _, m := range q {
				_ = c.nodes[m.To].Step(m)
			}
		}
		n := c.nodes[1]
		if n.BasicStatus().Role != Leader {
			t.Fatal("setup: node 1 does not lead")
		}
		if err := n.LeaseRead([]byte("r3")); err != nil {
			t.Fatal(err)
		}
		c.process()
		if len(c.reads[1]) != 0 {
			t.Fatalf("new leader answered %+v before committing an entry of its term", c.reads[1])
		}
		c.deliver()
		if rs := c.reads[1]; len(rs) != 1 || rs[0].Index < 2 {
			t.Fatalf("read states %+v, want one at or after the leader's first entry (2)", rs)
		}
	})
}

// TestLeaseReadDuringTransfer: a leader that sent MsgTimeoutNow has handed
// its lease away — the transferee campaigns with Force, which overrides the
// followers' leases, and may commit writes at once. A lease read on the old
// leader must then not be answered from its lease: here the new leader
// commits w while the old one hears nothing, and the old leader's read
// point must not lie before w.
func TestLeaseReadDuringTransfer(t *testing.T) {
	for _, viaReadIndex := range []bool{false, true} {
		t.Run(fmt.Sprintf("ReadIndex in ReadLease mode=%t", viaReadIndex), func(t *testing.T) {
			c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) {
				cfg.CheckQuorum = true
				if viaReadIndex {
					cfg.ReadMode = ReadLease
				}
			})
			c.propose(1, "a")
			c.deliver()
			n1 := c.nodes[1]
			if err := n1.TransferLeadership(2); err != nil {
				t.Fatal(err)
			}
			// From now on node 1 hears nothing (its messages still go out).
			c.drop = func(m Message) bool { return m.To == 1 }
			c.deliver()
			if st := c.nodes[2].BasicStatus(); st.Role != Leader {
				t.Fatalf("setup: node 2 is %v after the transfer", st.Role)
			}
			c.propose(2, "w")
			c.deliver()
			wIndex := c.nodes[2].BasicStatus().LastIndex
			if c.nodes[3].BasicStatus().Commit < wIndex {
				t.Fatal("setup: w not committed")
			}
			if st := n1.BasicStatus(); st.Role != Leader {
				t.Fatalf("setup: node 1 is %v, want it still believing it leads", st.Role)
			}
			var err error
			if viaReadIndex {
				err = n1.ReadIndex([]byte("stale?"))
			} else {
				err = n1.LeaseRead([]byte("stale?"))
			}
			if err != nil {
				return // refusing is fine
			}
			c.deliver()
			for _, rs := range c.reads[1] {
				if rs.Index < wIndex {
					t.Fatalf("old leader answered a read at %d after the new leader committed w at %d: a stale read", rs.Index, wIndex)
				}
			}
		})
	}
}
