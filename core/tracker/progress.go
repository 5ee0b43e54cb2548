// Package tracker keeps the leader's view of each follower: how far its log
// is known to match, what to send next, and the flow control that bounds
// how much may be in flight to it.
//
// The types here are plain state machines with no clock, goroutines or I/O;
// the Raft logic drives them message by message.
package tracker

import (
	"strconv"
	"strings"
)

// State is a follower's replication state as the leader sees it.
type State uint8

const (
	// StateProbe sends one append at a time until the match index is known.
	StateProbe State = iota
	// StateReplicate streams appends optimistically (pipelining), bounded
	// by Inflights.
	StateReplicate
	// StateSnapshot has a snapshot in flight; nothing is sent until it
	// resolves.
	StateSnapshot
)

// String returns the name of the state, such as "StateProbe".
func (s State) String() string {
	switch s {
	case StateProbe:
		return "StateProbe"
	case StateReplicate:
		return "StateReplicate"
	case StateSnapshot:
		return "StateSnapshot"
	}
	return "State(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// Progress is the leader's view of one follower. Use NewProgress to make
// one; the methods expect Inflights to be non-nil.
type Progress struct {
	// Match is the highest index known to be replicated on the follower.
	// Next is the index of the next entry to send it.
	Match, Next uint64
	// State is the replication state.
	State State
	// PendingSnapshot is, in StateSnapshot, the index of the snapshot
	// being sent; it is 0 in the other states.
	PendingSnapshot uint64
	// RecentActive reports whether the leader heard from the follower
	// recently (for CheckQuorum); the leader resets it every election
	// timeout.
	RecentActive bool
	// MsgAppProbesPaused is set in StateProbe once an append has been sent
	// and not yet answered; it is cleared by a heartbeat response or any
	// append response.
	MsgAppProbesPaused bool
	// IsLearner reports whether the follower is a learner (non-voter).
	IsLearner bool
	// Inflights holds the appends in flight in StateReplicate.
	Inflights *Inflights
}

// NewProgress returns the progress of a follower in StateProbe with Match 0
// and the given Next, whose Inflights allow maxInflight messages and
// maxInflightBytes bytes (0 for no byte limit). It panics if maxInflight is
// not positive.
func NewProgress(next uint64, maxInflight int, maxInflightBytes uint64, learner bool) *Progress {
	return &Progress{
		Next:      next,
		State:     StateProbe,
		IsLearner: learner,
		Inflights: NewInflights(maxInflight, maxInflightBytes),
	}
}

// resetState moves p to state, clearing the probe pause, the pending
// snapshot and the messages in flight.
func (p *Progress) resetState(state State) {
	p.State = state
	p.MsgAppProbesPaused = false
	p.PendingSnapshot = 0
	p.Inflights.Reset()
}

// BecomeProbe moves p to StateProbe. Next becomes Match+1, or, when leaving
// StateSnapshot, the larger of Match+1 and PendingSnapshot+1 (the follower
// is expected to have applied the snapshot). The probe pause, the pending
// snapshot and the messages in flight are cleared.
func (p *Progress) BecomeProbe() {
	next := p.Match + 1
	if p.State == StateSnapshot {
		next = max(next, p.PendingSnapshot+1)
	}
	p.resetState(StateProbe)
	p.Next = next
}

// BecomeReplicate moves p to StateReplicate with Next = Match+1 and no
// messages in flight.
func (p *Progress) BecomeReplicate() {
	p.resetState(StateReplicate)
	p.Next = p.Match + 1
}

// BecomeSnapshot moves p to StateSnapshot for a snapshot at snapIndex:
// PendingSnapshot becomes snapIndex, Next becomes snapIndex+1 and the
// messages in flight are cleared.
func (p *Progress) BecomeSnapshot(snapIndex uint64) {
	p.resetState(StateSnapshot)
	p.PendingSnapshot = snapIndex
	p.Next = snapIndex + 1
}

// SentEntries updates p after the leader sent an append carrying n entries,
// the last of them at lastIndex, with bytes entry bytes.
//
// In StateReplicate a non-empty append advances Next to lastIndex+1 and is
// recorded in Inflights (which must not be Full; see IsPaused). In
// StateProbe any append, even an empty one, pauses probing until the
// follower answers; Next is unchanged since a probe is resent from Next.
// In StateSnapshot SentEntries does nothing.
func (p *Progress) SentEntries(n int, lastIndex, bytes uint64) {
	switch p.State {
	case StateReplicate:
		if n > 0 {
			p.Next = lastIndex + 1
			p.Inflights.Add(lastIndex, bytes)
		}
	case StateProbe:
		p.MsgAppProbesPaused = true
	}
}

// MaybeUpdate records that the follower acknowledged index n and reports
// whether Match advanced. Whatever the answer, it clears the probe pause,
// raises Next to at least n+1 and frees the messages in flight up to n.
func (p *Progress) MaybeUpdate(n uint64) bool {
	updated := false
	if n > p.Match {
		p.Match = n
		updated = true
	}
	p.Next = max(p.Next, n+1)
	p.MsgAppProbesPaused = false
	p.Inflights.FreeLE(n)
	return updated
}

// MaybeDecrTo handles the follower's rejection of an append whose preceding
// entry was at index rejected; matchHint is the follower's hint, the largest
// index at which its log may still match the leader's. It reports false,
// changing nothing, if the rejection is stale: in StateReplicate when
// rejected <= Match, in StateProbe when rejected != Next-1.
//
// In StateReplicate Next becomes Match+1; the caller is then expected to
// move p to StateProbe. In StateProbe Next becomes
// max(min(rejected, matchHint+1), Match+1) and probing is unpaused. In
// StateSnapshot it reports false.
func (p *Progress) MaybeDecrTo(rejected, matchHint uint64) bool {
	switch p.State {
	case StateReplicate:
		if rejected <= p.Match {
			return false
		}
		p.Next = p.Match + 1
		return true
	case StateProbe:
		if rejected != p.Next-1 {
			return false
		}
		// max(min(rejected, matchHint+1), Match+1), without overflowing
		// on a nonsensical hint.
		next := rejected
		if matchHint < rejected {
			next = matchHint + 1
		}
		p.Next = max(next, p.Match+1)
		p.MsgAppProbesPaused = false
		return true
	}
	return false
}

// IsPaused reports whether the leader must not send appends to the follower
// now: in StateProbe while a probe is unanswered, in StateReplicate while
// Inflights is Full, and always in StateSnapshot.
func (p *Progress) IsPaused() bool {
	switch p.State {
	case StateProbe:
		return p.MsgAppProbesPaused
	case StateReplicate:
		return p.Inflights.Full()
	}
	return true
}

// String returns a one-line summary of p for logs and tests, such as
// "StateReplicate match=5 next=9 inflight=3 inflightBytes=120".
func (p *Progress) String() string {
	var b strings.Builder
	b.WriteString(p.State.String())
	b.WriteString(" match=")
	b.WriteString(strconv.FormatUint(p.Match, 10))
	b.WriteString(" next=")
	b.WriteString(strconv.FormatUint(p.Next, 10))
	if p.IsLearner {
		b.WriteString(" learner")
	}
	if p.State == StateSnapshot {
		b.WriteString(" pendingSnap=")
		b.WriteString(strconv.FormatUint(p.PendingSnapshot, 10))
	}
	if p.MsgAppProbesPaused {
		b.WriteString(" paused")
	}
	if p.RecentActive {
		b.WriteString(" active")
	}
	if p.Inflights != nil && p.Inflights.Count() > 0 {
		b.WriteString(" inflight=")
		b.WriteString(strconv.Itoa(p.Inflights.Count()))
		b.WriteString(" inflightBytes=")
		b.WriteString(strconv.FormatUint(p.Inflights.Bytes(), 10))
		if p.Inflights.Full() {
			b.WriteString("[full]")
		}
	}
	return b.String()
}
