package quorum

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// ackMap adapts a map of acknowledged indexes to the acked callback.
func ackMap(m map[uint64]uint64) func(uint64) (uint64, bool) {
	return func(id uint64) (uint64, bool) {
		v, ok := m[id]
		return v, ok
	}
}

// voteMap adapts a map of votes (true = granted, false = rejected; absent =
// not voted) to the votes callback.
func voteMap(m map[uint64]bool) func(uint64) (bool, bool) {
	return func(id uint64) (bool, bool) {
		g, ok := m[id]
		return g, ok
	}
}

func TestVoteResultString(t *testing.T) {
	for _, tt := range []struct {
		r    VoteResult
		want string
	}{
		{VotePending, "VotePending"},
		{VoteLost, "VoteLost"},
		{VoteWon, "VoteWon"},
		{0, "VoteResult(0)"},
		{17, "VoteResult(17)"},
	} {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("VoteResult(%d).String() = %q, want %q", uint8(tt.r), got, tt.want)
		}
	}
	if VotePending == 0 {
		t.Error("VotePending must not be the zero value")
	}
}

func TestNewMajority(t *testing.T) {
	for _, tt := range []struct {
		in   []uint64
		want Majority
	}{
		{nil, nil},
		{[]uint64{}, nil},
		{[]uint64{1}, Majority{1}},
		{[]uint64{3, 1, 2}, Majority{1, 2, 3}},
		{[]uint64{3, 3, 1, 2, 1, 3}, Majority{1, 2, 3}},
		{[]uint64{0, 5, 0}, Majority{0, 5}},
		{[]uint64{math.MaxUint64, 1}, Majority{1, math.MaxUint64}},
	} {
		got := NewMajority(tt.in...)
		if !slices.Equal(got, tt.want) {
			t.Errorf("NewMajority(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}

	// The result is a copy: neither side sees the other's changes.
	in := []uint64{2, 1}
	c := NewMajority(in...)
	in[0] = 9
	if !slices.Equal(c, Majority{1, 2}) {
		t.Errorf("NewMajority aliases its input: %v", c)
	}
	in = []uint64{1, 2, 3}
	c = NewMajority(in...)
	c[0] = 7
	if in[0] != 1 {
		t.Errorf("NewMajority modified its input: %v", in)
	}
}

func TestMajorityContains(t *testing.T) {
	c := NewMajority(1, 3, 5, 7)
	for id := uint64(0); id <= 8; id++ {
		want := id%2 == 1
		if got := c.Contains(id); got != want {
			t.Errorf("%v.Contains(%d) = %t, want %t", c, id, got, want)
		}
	}
	if Majority(nil).Contains(0) {
		t.Error("empty Majority contains 0")
	}
	if !NewMajority(0).Contains(0) {
		t.Error("(0) does not contain 0")
	}
}

func TestMajorityString(t *testing.T) {
	for _, tt := range []struct {
		c    Majority
		want string
	}{
		{nil, "()"},
		{Majority{}, "()"},
		{Majority{1}, "(1)"},
		{Majority{1, 2, 3}, "(1 2 3)"},
		{Majority{0, math.MaxUint64}, "(0 18446744073709551615)"},
	} {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestMajorityCommittedIndex(t *testing.T) {
	for i, tt := range []struct {
		ids   []uint64
		acked map[uint64]uint64
		want  uint64
	}{
		{nil, nil, math.MaxUint64},
		{nil, map[uint64]uint64{1: 5}, math.MaxUint64},
		{[]uint64{1}, nil, 0},
		{[]uint64{1}, map[uint64]uint64{1: 0}, 0},
		{[]uint64{1}, map[uint64]uint64{1: 12}, 12},
		{[]uint64{1}, map[uint64]uint64{2: 12}, 0},
		{[]uint64{1, 2}, map[uint64]uint64{1: 12}, 0},
		{[]uint64{1, 2}, map[uint64]uint64{1: 12, 2: 5}, 5},
		{[]uint64{1, 2, 3}, map[uint64]uint64{1: 12}, 0},
		{[]uint64{1, 2, 3}, map[uint64]uint64{1: 12, 2: 5}, 5},
		{[]uint64{1, 2, 3}, map[uint64]uint64{1: 12, 2: 5, 3: 6}, 6},
		{[]uint64{1, 2, 3}, map[uint64]uint64{1: 5, 2: 5, 3: 5}, 5},
		{[]uint64{1, 2, 3}, map[uint64]uint64{1: 100, 4: 100, 5: 100}, 0},
		{[]uint64{1, 2, 3, 4}, map[uint64]uint64{1: 9, 2: 8, 3: 7}, 7},
		{[]uint64{1, 2, 3, 4}, map[uint64]uint64{1: 9, 2: 8, 3: 7, 4: 10}, 8},
		{[]uint64{1, 2, 3, 4, 5}, map[uint64]uint64{1: 1, 2: 2, 3: 3, 4: 4, 5: 5}, 3},
		{[]uint64{1, 2, 3, 4, 5}, map[uint64]uint64{1: 5, 2: 4, 3: 3, 4: 2, 5: 1}, 3},
		{[]uint64{1, 2, 3, 4, 5}, map[uint64]uint64{1: 5, 2: 5}, 0},
		{[]uint64{1, 2, 3, 4, 5}, map[uint64]uint64{1: 5, 2: 5, 3: 1}, 1},
		{[]uint64{1, 2, 3, 4, 5, 6, 7}, map[uint64]uint64{1: 7, 2: 6, 3: 5, 4: 4, 5: 3, 6: 2, 7: 1}, 4},
		{[]uint64{1, 2, 3, 4, 5, 6, 7, 8, 9}, map[uint64]uint64{1: 9, 2: 8, 3: 7, 4: 6, 5: 5, 6: 4, 7: 3, 8: 2, 9: 1}, 5},
		{[]uint64{1, 2, 3}, map[uint64]uint64{1: math.MaxUint64, 2: math.MaxUint64}, math.MaxUint64},
		{[]uint64{0, 1, 2}, map[uint64]uint64{0: 4, 1: 4}, 4},
	} {
		c := NewMajority(tt.ids...)
		if got := c.CommittedIndex(ackMap(tt.acked)); got != tt.want {
			t.Errorf("#%d: %v.CommittedIndex(%v) = %d, want %d", i, c, tt.acked, got, tt.want)
		}
	}
}

func TestMajorityVoteResult(t *testing.T) {
	const y, n = true, false
	for i, tt := range []struct {
		ids   []uint64
		votes map[uint64]bool
		want  VoteResult
	}{
		{nil, nil, VoteWon},
		{nil, map[uint64]bool{1: n}, VoteWon},
		{[]uint64{1}, nil, VotePending},
		{[]uint64{1}, map[uint64]bool{1: y}, VoteWon},
		{[]uint64{1}, map[uint64]bool{1: n}, VoteLost},
		{[]uint64{1}, map[uint64]bool{2: y}, VotePending},
		{[]uint64{1, 2}, map[uint64]bool{1: y}, VotePending},
		{[]uint64{1, 2}, map[uint64]bool{1: y, 2: y}, VoteWon},
		{[]uint64{1, 2}, map[uint64]bool{1: y, 2: n}, VoteLost},
		{[]uint64{1, 2}, map[uint64]bool{1: n}, VoteLost},
		{[]uint64{1, 2, 3}, nil, VotePending},
		{[]uint64{1, 2, 3}, map[uint64]bool{1: y}, VotePending},
		{[]uint64{1, 2, 3}, map[uint64]bool{1: y, 2: n}, VotePending},
		{[]uint64{1, 2, 3}, map[uint64]bool{1: y, 2: y}, VoteWon},
		{[]uint64{1, 2, 3}, map[uint64]bool{1: n, 2: n}, VoteLost},
		{[]uint64{1, 2, 3}, map[uint64]bool{1: y, 2: n, 3: n}, VoteLost},
		{[]uint64{1, 2, 3}, map[uint64]bool{1: y, 4: y, 5: y}, VotePending},
		{[]uint64{1, 2, 3, 4}, map[uint64]bool{1: y, 2: y}, VotePending},
		{[]uint64{1, 2, 3, 4}, map[uint64]bool{1: y, 2: y, 3: y}, VoteWon},
		{[]uint64{1, 2, 3, 4}, map[uint64]bool{1: n, 2: n}, VoteLost},
		{[]uint64{1, 2, 3, 4}, map[uint64]bool{1: n}, VotePending},
		{[]uint64{1, 2, 3, 4, 5}, map[uint64]bool{1: y, 2: y, 3: n, 4: n}, VotePending},
		{[]uint64{1, 2, 3, 4, 5}, map[uint64]bool{1: y, 2: n, 3: n, 4: n}, VoteLost},
		{[]uint64{1, 2, 3, 4, 5}, map[uint64]bool{1: y, 2: y, 3: y, 4: n, 5: n}, VoteWon},
	} {
		c := NewMajority(tt.ids...)
		if got := c.VoteResult(voteMap(tt.votes)); got != tt.want {
			t.Errorf("#%d: %v.VoteResult(%v) = %v, want %v", i, c, tt.votes, got, tt.want)
		}
	}
}

// randomIDs returns between 0 and maxN IDs drawn from [0, 16), possibly
// with duplicates (which NewMajority removes).
func randomIDs(r *rand.Rand, maxN int) []uint64 {
	ids := make([]uint64, r.IntN(maxN+1))
	for i := range ids {
		ids[i] = r.Uint64N(16)
	}
	return ids
}

// randomAcks acknowledges, for some of the IDs in [0, 16), an index drawn
// from a small range so that ties are common. Some voters are left without
// acknowledgement and some acknowledge 0 explicitly.
func randomAcks(r *rand.Rand) map[uint64]uint64 {
	m := make(map[uint64]uint64)
	hi := 1 + r.Uint64N(10)
	for id := uint64(0); id < 16; id++ {
		if r.IntN(4) != 0 {
			m[id] = r.Uint64N(hi)
		}
	}
	return m
}

// randomVotes records, for some of the IDs in [0, 16), a granted or
// rejected vote.
func randomVotes(r *rand.Rand) map[uint64]bool {
	m := make(map[uint64]bool)
	for id := uint64(0); id < 16; id++ {
		switch r.IntN(3) {
		case 0:
			m[id] = true
		case 1:
			m[id] = false
		}
	}
	return m
}

// isMajority reports whether k of n voters form a majority (strictly more
// than half).
func isMajority(k, n int) bool {
	return 2*k > n
}

// refCommitted is the brute-force committed index of the configurations in
// cs, all of which must agree: the largest i such that, in every
// non-empty configuration, the voters with acked >= i (unacknowledged
// counting as 0) form a majority. With no non-empty configuration it is
// math.MaxUint64.
func refCommitted(acks map[uint64]uint64, cs ...[]uint64) uint64 {
	var ids []uint64
	for _, c := range cs {
		ids = append(ids, c...)
	}
	if len(ids) == 0 {
		return math.MaxUint64
	}
	// The answer is 0 or one of the acknowledged indexes.
	candidates := []uint64{0}
	for _, id := range ids {
		candidates = append(candidates, acks[id])
	}
	var best uint64
	for _, i := range candidates {
		ok := true
		for _, c := range cs {
			if len(c) == 0 {
				continue
			}
			k := 0
			for _, id := range c {
				if acks[id] >= i {
					k++
				}
			}
			ok = ok && isMajority(k, len(c))
		}
		if ok && i > best {
			best = i
		}
	}
	return best
}

// refVote is the brute-force outcome of an election in the configurations
// cs, which must all be won: it tries every way the missing votes (among
// the union of cs) could be cast. Won if every completion wins, Lost if
// none does, Pending otherwise. An empty configuration wins every election.
func refVote(votes map[uint64]bool, cs ...[]uint64) VoteResult {
	var union []uint64
	for _, c := range cs {
		union = append(union, c...)
	}
	slices.Sort(union)
	union = slices.Compact(union)
	var missing []uint64
	for _, id := range union {
		if _, ok := votes[id]; !ok {
			missing = append(missing, id)
		}
	}
	wins, losses := 0, 0
	for mask := 0; mask < 1<<len(missing); mask++ {
		complete := make(map[uint64]bool, len(union))
		for _, id := range union {
			if g, ok := votes[id]; ok {
				complete[id] = g
			}
		}
		for b, id := range missing {
			complete[id] = mask&(1<<b) != 0
		}
		won := true
		for _, c := range cs {
			if len(c) == 0 {
				continue
			}
			k := 0
			for _, id := range c {
				if complete[id] {
					k++
				}
			}
			won = won && isMajority(k, len(c))
		}
		if won {
			wins++
		} else {
			losses++
		}
	}
	switch {
	case losses == 0:
		return VoteWon
	case wins == 0:
		return VoteLost
	}
	return VotePending
}

func TestMajorityCommittedIndexProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[int]bool)
	for range 20000 {
		c := NewMajority(randomIDs(r, 9)...)
		seen[len(c)] = true
		acks := randomAcks(r)
		got := c.CommittedIndex(ackMap(acks))
		if want := refCommitted(acks, c); got != want {
			t.Fatalf("%v.CommittedIndex(%v) = %d, want %d", c, acks, got, want)
		}
	}
	for n := 0; n <= 9; n++ {
		if !seen[n] {
			t.Errorf("no configuration of %d voters was tried", n)
		}
	}
}

func TestMajorityVoteResultProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	seen := make(map[VoteResult]int)
	for range 20000 {
		c := NewMajority(randomIDs(r, 9)...)
		votes := randomVotes(r)
		got := c.VoteResult(voteMap(votes))
		if want := refVote(votes, c); got != want {
			t.Fatalf("%v.VoteResult(%v) = %v, want %v", c, votes, got, want)
		}
		seen[got]++
	}
	for _, v := range []VoteResult{VotePending, VoteLost, VoteWon} {
		if seen[v] == 0 {
			t.Errorf("no election ended %v", v)
		}
	}
}

func TestCommittedIndexLargeConfig(t *testing.T) {
	// Beyond the stack buffer the result must be the same.
	ids := make([]uint64, 51)
	acks := make(map[uint64]uint64)
	for i := range ids {
		ids[i] = uint64(i + 1)
		acks[uint64(i+1)] = uint64(100 - i)
	}
	c := NewMajority(ids...)
	// 26 voters form a quorum; the 26 largest indexes are 100..75.
	if got := c.CommittedIndex(ackMap(acks)); got != 75 {
		t.Errorf("CommittedIndex = %d, want 75", got)
	}
}

func TestMajorityAllocs(t *testing.T) {
	acked := func(id uint64) (uint64, bool) { return 100 - id, id%3 != 0 }
	votes := func(id uint64) (bool, bool) { return id%2 == 0, id%5 != 0 }
	for n := 0; n <= stackVoters; n++ {
		ids := make([]uint64, n)
		for i := range ids {
			ids[i] = uint64(i + 1)
		}
		c := NewMajority(ids...)
		var sink uint64
		if a := testing.AllocsPerRun(100, func() { sink += c.CommittedIndex(acked) }); a != 0 {
			t.Errorf("%d voters: CommittedIndex allocates %v times per run", n, a)
		}
		var res VoteResult
		if a := testing.AllocsPerRun(100, func() { res = c.VoteResult(votes) }); a != 0 {
			t.Errorf("%d voters: VoteResult allocates %v times per run", n, a)
		}
		if a := testing.AllocsPerRun(100, func() { _ = c.Contains(3) }); a != 0 {
			t.Errorf("%d voters: Contains allocates %v times per run", n, a)
		}
		_, _ = sink, res
	}
}
