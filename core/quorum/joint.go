package quorum

// Joint is a joint configuration, in force while the cluster moves from the
// Outgoing voters to the Incoming ones: every decision needs a quorum of
// each half. Outgoing is empty when the configuration is not joint, and then
// Incoming alone decides.
type Joint struct {
	Incoming, Outgoing Majority
}

// IsJoint reports whether j is a joint configuration, that is whether
// Outgoing is non-empty.
func (j Joint) IsJoint() bool {
	return len(j.Outgoing) > 0
}

// Contains reports whether id is a voter in either half of j.
func (j Joint) Contains(id uint64) bool {
	return j.Incoming.Contains(id) || j.Outgoing.Contains(id)
}

// IDs appends to dst the voters of both halves of j, in ascending order and
// each once, and returns the extended slice. Existing elements of dst are
// left alone.
func (j Joint) IDs(dst []uint64) []uint64 {
	a, b := j.Incoming, j.Outgoing
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			dst = append(dst, a[0])
			a = a[1:]
		case b[0] < a[0]:
			dst = append(dst, b[0])
			b = b[1:]
		default:
			dst = append(dst, a[0])
			a, b = a[1:], b[1:]
		}
	}
	dst = append(dst, a...)
	return append(dst, b...)
}

// CommittedIndex returns the largest index acknowledged by a quorum of each
// half of j, that is the smaller of the two halves' committed indexes. See
// Majority.CommittedIndex for the meaning of acked. An empty half does not
// constrain the result; if both halves are empty the result is
// math.MaxUint64.
//
// CommittedIndex does not allocate when each half has at most 7 voters.
func (j Joint) CommittedIndex(acked func(id uint64) (uint64, bool)) uint64 {
	return min(j.Incoming.CommittedIndex(acked), j.Outgoing.CommittedIndex(acked))
}

// VoteResult tallies an election in j. See Majority.VoteResult for the
// meaning of votes. The election is won when both halves have won, lost
// when either half has lost, and pending otherwise. An empty half wins
// every election, so a non-joint configuration is decided by Incoming.
func (j Joint) VoteResult(votes func(id uint64) (granted, voted bool)) VoteResult {
	in := j.Incoming.VoteResult(votes)
	out := j.Outgoing.VoteResult(votes)
	switch {
	case in == VoteLost || out == VoteLost:
		return VoteLost
	case in == VoteWon && out == VoteWon:
		return VoteWon
	}
	return VotePending
}

// String returns Incoming in the form of Majority.String, followed for a
// joint configuration by "&&" and Outgoing, such as "(1 2 4)&&(1 2 3)".
func (j Joint) String() string {
	b := make([]byte, 0, 4+(len(j.Incoming)+len(j.Outgoing))*4)
	b = j.Incoming.appendString(b)
	if j.IsJoint() {
		b = append(b, '&', '&')
		b = j.Outgoing.appendString(b)
	}
	return string(b)
}
