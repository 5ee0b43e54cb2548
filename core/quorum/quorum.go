// Package quorum implements the quorum arithmetic of Raft: which log index
// a configuration of voters has committed and whether an election has been
// won, for both simple majority configurations and joint configurations.
//
// The package is a pure function of its inputs. Acknowledgements and votes
// are supplied through callbacks, so callers can keep them in whatever
// structure they like; results never depend on map iteration order because
// voters are always visited in ascending ID order.
package quorum

import (
	"math"
	"slices"
	"strconv"
)

// VoteResult is the outcome of an election as far as the votes received tell.
type VoteResult uint8

const (
	// VotePending means the election is not decided yet: the missing votes
	// could still swing it either way.
	VotePending VoteResult = iota + 1
	// VoteLost means the election cannot be won even if every missing vote
	// is granted.
	VoteLost
	// VoteWon means the election is won whatever the missing votes turn out
	// to be.
	VoteWon
)

// String returns the name of the vote result, such as "VoteWon".
func (r VoteResult) String() string {
	switch r {
	case VotePending:
		return "VotePending"
	case VoteLost:
		return "VoteLost"
	case VoteWon:
		return "VoteWon"
	}
	return "VoteResult(" + strconv.FormatUint(uint64(r), 10) + ")"
}

// Majority is a set of voter IDs, sorted ascending, without duplicates.
// The empty set is allowed. A Majority built other than by NewMajority must
// keep that invariant; the methods rely on it.
//
// A decision requires the agreement of a quorum of len(c)/2+1 voters.
type Majority []uint64

// stackVoters is the largest configuration CommittedIndex handles without
// allocating.
const stackVoters = 7

// NewMajority returns a sorted, deduplicated copy of ids. Zero IDs are kept;
// validating IDs is the caller's job. It returns nil if ids is empty.
func NewMajority(ids ...uint64) Majority {
	if len(ids) == 0 {
		return nil
	}
	c := make(Majority, len(ids))
	copy(c, ids)
	slices.Sort(c)
	return slices.Compact(c)
}

// Contains reports whether id is a voter of c.
func (c Majority) Contains(id uint64) bool {
	_, found := slices.BinarySearch(c, id)
	return found
}

// quorum returns the number of voters needed for a decision in c.
func (c Majority) quorum() int {
	return len(c)/2 + 1
}

// CommittedIndex returns the largest index acknowledged by a quorum of c.
// acked(id) returns the index acknowledged by voter id and whether id has
// acknowledged anything at all; a voter that has not counts as having
// acknowledged index 0.
//
// For an empty configuration CommittedIndex returns math.MaxUint64, so that
// a joint configuration with an empty half is governed by the other half.
//
// CommittedIndex does not allocate for configurations of up to 7 voters.
func (c Majority) CommittedIndex(acked func(id uint64) (uint64, bool)) uint64 {
	n := len(c)
	if n == 0 {
		return math.MaxUint64
	}
	var stk [stackVoters]uint64
	var idx []uint64
	if n <= len(stk) {
		idx = stk[:n]
	} else {
		idx = make([]uint64, n)
	}
	for i, id := range c {
		if v, ok := acked(id); ok {
			idx[i] = v
		}
	}
	if n <= len(stk) {
		// Insertion sort: cheap for a handful of voters and keeps the
		// slice on the stack.
		for i := 1; i < n; i++ {
			for j := i; j > 0 && idx[j] < idx[j-1]; j-- {
				idx[j], idx[j-1] = idx[j-1], idx[j]
			}
		}
	} else {
		slices.Sort(idx)
	}
	// idx is ascending. The element at position n-q is acknowledged (at
	// least) by itself and the q-1 voters after it, i.e. by a quorum, and
	// no larger index is.
	return idx[n-c.quorum()]
}

// VoteResult tallies an election in c. votes(id) returns whether voter id
// granted its vote and whether it has voted at all.
//
// The election is won once a quorum has granted its votes, lost once the
// granted votes together with the missing ones can no longer reach a quorum,
// and pending otherwise. An empty configuration wins every election.
func (c Majority) VoteResult(votes func(id uint64) (granted, voted bool)) VoteResult {
	if len(c) == 0 {
		return VoteWon
	}
	var granted, missing int
	for _, id := range c {
		g, v := votes(id)
		switch {
		case !v:
			missing++
		case g:
			granted++
		}
	}
	q := c.quorum()
	switch {
	case granted >= q:
		return VoteWon
	case granted+missing < q:
		return VoteLost
	}
	return VotePending
}

// String returns the voters of c in parentheses, separated by spaces, such
// as "(1 2 3)". The empty configuration is "()".
func (c Majority) String() string {
	return string(c.appendString(make([]byte, 0, 2+len(c)*4)))
}

// appendString appends the String form of c to b.
func (c Majority) appendString(b []byte) []byte {
	b = append(b, '(')
	for i, id := range c {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendUint(b, id, 10)
	}
	return append(b, ')')
}
