package quorum

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestJointIsJointContains(t *testing.T) {
	j := Joint{Incoming: NewMajority(1, 2, 4), Outgoing: NewMajority(1, 2, 3)}
	if !j.IsJoint() {
		t.Error("IsJoint() = false for a joint configuration")
	}
	for id, want := range map[uint64]bool{0: false, 1: true, 2: true, 3: true, 4: true, 5: false} {
		if got := j.Contains(id); got != want {
			t.Errorf("%v.Contains(%d) = %t, want %t", j, id, got, want)
		}
	}
	simple := Joint{Incoming: NewMajority(1, 2, 3)}
	if simple.IsJoint() {
		t.Error("IsJoint() = true with empty Outgoing")
	}
	if (Joint{Incoming: NewMajority(1), Outgoing: Majority{}}).IsJoint() {
		t.Error("IsJoint() = true with non-nil empty Outgoing")
	}
	if (Joint{}).Contains(0) {
		t.Error("empty Joint contains 0")
	}
}

func TestJointIDs(t *testing.T) {
	for _, tt := range []struct {
		in, out []uint64
		dst     []uint64
		want    []uint64
	}{
		{nil, nil, nil, nil},
		{[]uint64{1, 2, 3}, nil, nil, []uint64{1, 2, 3}},
		{nil, []uint64{1, 2, 3}, nil, []uint64{1, 2, 3}},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, nil, []uint64{1, 2, 3, 4}},
		{[]uint64{5, 6}, []uint64{1, 2}, nil, []uint64{1, 2, 5, 6}},
		{[]uint64{1, 3, 5, 7}, []uint64{2, 3, 4, 7, 8}, nil, []uint64{1, 2, 3, 4, 5, 7, 8}},
		{[]uint64{1, 2}, []uint64{2, 3}, []uint64{9, 0}, []uint64{9, 0, 1, 2, 3}},
	} {
		j := Joint{Incoming: NewMajority(tt.in...), Outgoing: NewMajority(tt.out...)}
		got := j.IDs(slices.Clone(tt.dst))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%v.IDs(%v) = %v, want %v", j, tt.dst, got, tt.want)
		}
	}

	// With enough capacity IDs does not allocate.
	j := Joint{Incoming: NewMajority(1, 2, 4, 5, 6), Outgoing: NewMajority(1, 2, 3, 7)}
	buf := make([]uint64, 0, 16)
	if a := testing.AllocsPerRun(100, func() { buf = j.IDs(buf[:0]) }); a != 0 {
		t.Errorf("IDs allocates %v times per run", a)
	}
}

func TestJointString(t *testing.T) {
	for _, tt := range []struct {
		j    Joint
		want string
	}{
		{Joint{}, "()"},
		{Joint{Incoming: NewMajority(1, 2, 3)}, "(1 2 3)"},
		{Joint{Incoming: NewMajority(1, 2, 4), Outgoing: NewMajority(1, 2, 3)}, "(1 2 4)&&(1 2 3)"},
		{Joint{Outgoing: NewMajority(1)}, "()&&(1)"},
	} {
		if got := tt.j.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestJointCommittedIndex(t *testing.T) {
	for i, tt := range []struct {
		in, out []uint64
		acked   map[uint64]uint64
		want    uint64
	}{
		{nil, nil, nil, math.MaxUint64},
		{[]uint64{1, 2, 3}, nil, map[uint64]uint64{1: 5, 2: 4, 3: 3}, 4},
		{nil, []uint64{1, 2, 3}, map[uint64]uint64{1: 5, 2: 4, 3: 3}, 4},
		// Old config (1 2 3) is at 4; new config (1 2 4) only at 3 because 4 lags.
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]uint64{1: 5, 2: 3, 3: 4, 4: 1}, 3},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]uint64{1: 5, 2: 3, 3: 1, 4: 4}, 3},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]uint64{1: 5, 2: 5, 3: 1, 4: 1}, 5},
		{[]uint64{4, 5, 6}, []uint64{1, 2, 3}, map[uint64]uint64{1: 9, 2: 9, 3: 9}, 0},
		{[]uint64{4, 5, 6}, []uint64{1, 2, 3}, map[uint64]uint64{1: 9, 2: 9, 5: 7, 6: 8}, 7},
		{[]uint64{1}, []uint64{1, 2, 3}, map[uint64]uint64{1: 9}, 0},
		{[]uint64{1}, []uint64{1, 2, 3}, map[uint64]uint64{1: 9, 3: 2}, 2},
	} {
		j := Joint{Incoming: NewMajority(tt.in...), Outgoing: NewMajority(tt.out...)}
		if got := j.CommittedIndex(ackMap(tt.acked)); got != tt.want {
			t.Errorf("#%d: %v.CommittedIndex(%v) = %d, want %d", i, j, tt.acked, got, tt.want)
		}
	}
}

func TestJointVoteResult(t *testing.T) {
	const y, n = true, false
	for i, tt := range []struct {
		in, out []uint64
		votes   map[uint64]bool
		want    VoteResult
	}{
		{nil, nil, nil, VoteWon},
		{[]uint64{1, 2, 3}, nil, map[uint64]bool{1: y, 2: y}, VoteWon},
		{[]uint64{1, 2, 3}, nil, map[uint64]bool{1: y}, VotePending},
		{[]uint64{1, 2, 3}, nil, map[uint64]bool{1: n, 2: n}, VoteLost},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]bool{1: y, 2: y}, VoteWon},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]bool{1: y, 4: y}, VotePending},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]bool{1: y, 4: y, 3: y}, VoteWon},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]bool{1: y, 4: y, 2: n, 3: n}, VoteLost},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]bool{3: n, 2: n}, VoteLost},
		{[]uint64{1, 2, 4}, []uint64{1, 2, 3}, map[uint64]bool{4: n, 2: n}, VoteLost},
		// One half won, the other lost: lost.
		{[]uint64{4, 5, 6}, []uint64{1, 2, 3}, map[uint64]bool{1: y, 2: y, 4: n, 5: n}, VoteLost},
		// One half won, the other pending: pending.
		{[]uint64{4, 5, 6}, []uint64{1, 2, 3}, map[uint64]bool{1: y, 2: y, 4: y}, VotePending},
	} {
		j := Joint{Incoming: NewMajority(tt.in...), Outgoing: NewMajority(tt.out...)}
		if got := j.VoteResult(voteMap(tt.votes)); got != tt.want {
			t.Errorf("#%d: %v.VoteResult(%v) = %v, want %v", i, j, tt.votes, got, tt.want)
		}
	}
}

func TestJointProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	seen := make(map[VoteResult]int)
	for range 10000 {
		j := Joint{Incoming: NewMajority(randomIDs(r, 9)...), Outgoing: NewMajority(randomIDs(r, 9)...)}
		acks := randomAcks(r)
		got := j.CommittedIndex(ackMap(acks))
		if want := refCommitted(acks, j.Incoming, j.Outgoing); got != want {
			t.Fatalf("%v.CommittedIndex(%v) = %d, want %d", j, acks, got, want)
		}
		if want := min(j.Incoming.CommittedIndex(ackMap(acks)), j.Outgoing.CommittedIndex(ackMap(acks))); got != want {
			t.Fatalf("%v.CommittedIndex(%v) = %d, not the min of the halves %d", j, acks, got, want)
		}

		votes := randomVotes(r)
		gotVote := j.VoteResult(voteMap(votes))
		if want := refVote(votes, j.Incoming, j.Outgoing); gotVote != want {
			t.Fatalf("%v.VoteResult(%v) = %v, want %v", j, votes, gotVote, want)
		}
		seen[gotVote]++

		ids := j.IDs(nil)
		want := NewMajority(append(slices.Clone(j.Incoming), j.Outgoing...)...)
		if !slices.Equal(ids, want) {
			t.Fatalf("%v.IDs() = %v, want %v", j, ids, want)
		}
		for id := uint64(0); id < 16; id++ {
			if got, want := j.Contains(id), slices.Contains(ids, id); got != want {
				t.Fatalf("%v.Contains(%d) = %t, want %t", j, id, got, want)
			}
		}
	}
	for _, v := range []VoteResult{VotePending, VoteLost, VoteWon} {
		if seen[v] == 0 {
			t.Errorf("no joint election ended %v", v)
		}
	}
}

func TestJointAllocs(t *testing.T) {
	j := Joint{Incoming: NewMajority(1, 2, 3, 4, 5, 6, 7), Outgoing: NewMajority(3, 4, 5, 6, 7, 8, 9)}
	acked := func(id uint64) (uint64, bool) { return 100 - id, id%3 != 0 }
	votes := func(id uint64) (bool, bool) { return id%2 == 0, id%5 != 0 }
	var sink uint64
	if a := testing.AllocsPerRun(100, func() { sink += j.CommittedIndex(acked) }); a != 0 {
		t.Errorf("CommittedIndex allocates %v times per run", a)
	}
	var res VoteResult
	if a := testing.AllocsPerRun(100, func() { res = j.VoteResult(votes) }); a != 0 {
		t.Errorf("VoteResult allocates %v times per run", a)
	}
	if a := testing.AllocsPerRun(100, func() { _ = j.Contains(8) }); a != 0 {
		t.Errorf("Contains allocates %v times per run", a)
	}
	_, _ = sink, res
}
