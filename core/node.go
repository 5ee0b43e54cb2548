package core

import (
	"fmt"

	"github.com/forge-consensus/consensus/core/tracker"
)

// Node is a Raft node as a pure state machine. It is not safe for
// concurrent use: one goroutine drives it. Every method either changes the
// node and returns nil, or returns an error and changes nothing.
type Node struct {
	r *raft
}

// New returns a node restored from what it had persisted (st), or a new
// node when st is empty: with cfg.Voters it founds a cluster, without it
// waits to be contacted by the leader of a cluster that added it.
func New(cfg Config, st Persisted) (*Node, error) {
	r, err := newRaft(cfg, st)
	if err != nil {
		return nil, err
	}
	return &Node{r: r}, nil
}

// Tick advances the node's logical clock by one tick: followers count
// toward an election, leaders toward a heartbeat and the quorum check.
func (n *Node) Tick() { n.r.tick() }

// Step feeds a message received from the network into the node. A
// malformed message, one addressed to another node, or a response from a
// node outside the configuration returns an error and changes nothing.
// Messages from an older term are ignored (nil error): they are a normal
// effect of a network.
func (n *Node) Step(m Message) error {
	if err := validateMessage(&m); err != nil {
		return err
	}
	if m.To != n.r.id {
		return fmt.Errorf("%w: message for %d delivered to %d", ErrInvalidMessage, m.To, n.r.id)
	}
	return n.r.step(m)
}

// Propose proposes data to be appended to the log. On a follower the
// proposal is forwarded to the leader, unless forwarding is disabled or no
// leader is known, in which case a *NotLeaderError names the leader. A
// leader refuses proposals during a leadership transfer
// (ErrTransferInProgress) and while a pending membership change removes or
// demotes it (ErrProposalDropped), so that its successor holds its whole
// log. A nil error does not mean the entry will commit: watch
// CommittedEntries.
func (n *Node) Propose(data []byte) error { return n.r.proposeData(data) }

// ProposeConfChange proposes a membership change. A change is refused while
// another is not yet committed, and when it is impossible in the current
// configuration.
func (n *Node) ProposeConfChange(cc ConfChange) error {
	if err := validateConfChange(&cc); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfChange, err)
	}
	return n.r.propose([]Entry{{Type: EntryConfChange, Data: EncodeConfChange(cc)}})
}

// ReadIndex requests a linearizable read point, identified by ctx. The
// answer comes in Ready.ReadStates (possibly never, if leadership is lost:
// callers time out). On a follower the request is forwarded to the leader.
// A new leader answers only once an entry of its term has committed.
func (n *Node) ReadIndex(ctx []byte) error {
	r := n.r
	switch r.role {
	case Leader:
		r.handleRead(None, ctx)
		return nil
	case Follower:
		return r.forward(Message{Type: MsgReadIndex, Context: ctx})
	}
	return &NotLeaderError{Leader: r.lead}
}

// LeaseRead requests a read point on the leader's lease, without a
// confirmation round while a quorum was heard from within the current
// CheckQuorum window. It needs CheckQuorum and is sound only while clock
// drift is bounded and the process is not paused (a paused leader still
// believes its lease). Not on the leader it returns a *NotLeaderError; when
// the lease does not hold it falls back to a confirmation round. The answer
// comes in Ready.ReadStates like ReadIndex's.
func (n *Node) LeaseRead(ctx []byte) error { return n.r.leaseRead(ctx) }

// TransferLeadership starts handing leadership to the voter to: the leader
// stops accepting proposals, brings to up to date, then tells it to
// campaign at once. The transfer is abandoned after
// Config.TransferTimeoutTicks. On a follower the request is forwarded.
func (n *Node) TransferLeadership(to uint64) error { return n.r.transferLeadership(to) }

// StepDown transfers leadership to the most up-to-date other voter.
func (n *Node) StepDown() error {
	r := n.r
	if r.role != Leader {
		return &NotLeaderError{Leader: r.lead}
	}
	p := r.bestVoter()
	if p == nil {
		return fmt.Errorf("%w: no other voter", ErrInvalidTransferTarget)
	}
	return r.transferLeadership(p.id)
}

// Campaign starts an election now (a pre-vote round first when PreVote is
// on). It fails on a node that is not a voter.
func (n *Node) Campaign() error {
	r := n.r
	if !r.promotable() {
		return fmt.Errorf("%w: node %d", ErrNotVoter, r.id)
	}
	r.hup(false)
	return nil
}

// TakeCommitted returns the entries that are committed and durable here but
// not yet handed out, so that the host can apply them while a Ready's write
// is outstanding instead of waiting for the next Ready: an entry committed
// during one write need not wait for that write, which has nothing to do
// with it. applied is the last index the host has applied; unless it has
// applied everything handed out so far (so that order is kept), or while a
// snapshot waits to be restored, TakeCommitted returns nothing. It stops
// before a membership change, which a Ready hands out together with the
// commit index covering it, to be persisted and synced first. The host
// must apply the returned entries, in order, before its next call into
// the node: they count as applied from now on.
func (n *Node) TakeCommitted(applied uint64) []Entry { return n.r.takeCommitted(applied) }

// Compact records data as a snapshot of the application state at index,
// which must be applied, and discards the log up to it. The snapshot is
// what the leader sends to followers too far behind. The host deletes the
// same entries from its storage after saving the snapshot.
func (n *Node) Compact(index uint64, data []byte) error { return n.r.compact(index, data, 0) }

// CompactKeep is Compact that keeps the keep entries at or below index in
// the log, so that a follower slightly behind still catches up from the log
// instead of a snapshot. The host saves the snapshot and deletes stored
// entries up to index-keep. On a restart, stored entries the snapshot covers
// are skipped.
func (n *Node) CompactKeep(index uint64, data []byte, keep uint64) error {
	return n.r.compact(index, data, keep)
}

// Snapshot returns the latest snapshot (from Compact, from the leader, or
// restored at start), or nil.
func (n *Node) Snapshot() *Snapshot { return n.r.snapshot }

// ReportUnreachable tells the leader that a message to id could not be
// delivered; replication to it falls back to probing.
func (n *Node) ReportUnreachable(id uint64) {
	r := n.r
	if r.role != Leader {
		return
	}
	if p := r.peer(id); p != nil && p.id != r.id && p.pr.State == tracker.StateReplicate {
		p.pr.BecomeProbe()
	}
}

// ReportSnapshot tells the leader whether a snapshot sent to id was
// delivered. On failure the leader retries later; on success it waits for
// the follower's acknowledgement.
func (n *Node) ReportSnapshot(id uint64, ok bool) {
	r := n.r
	if r.role != Leader {
		return
	}
	p := r.peer(id)
	if p == nil || p.id == r.id || p.pr.State != tracker.StateSnapshot {
		return
	}
	if !ok {
		// Probe from the follower's known match, not past the snapshot.
		p.pr.PendingSnapshot = 0
	}
	p.pr.BecomeProbe()
	// Wait for a heartbeat response (or the acknowledgement) before
	// probing again.
	p.pr.MsgAppProbesPaused = true
}

// HasReady reports whether Ready would return work. It is false while a
// Ready is outstanding (not yet advanced).
func (n *Node) HasReady() bool { return n.r.hasReady() }

// Ready returns the work pending for the host (see Ready for the order in
// which to carry it out). It returns an empty Ready while the previous one
// is not yet advanced.
func (n *Node) Ready() Ready { return n.r.ready() }

// Advance acknowledges that the last Ready has been fully handled: state
// persisted (and synced when MustSync), messages sent, entries applied. It
// returns ErrNoReady when there is no outstanding Ready.
func (n *Node) Advance() error { return n.r.advance() }

// BasicStatus returns the node's state without allocating.
func (n *Node) BasicStatus() BasicStatus { return n.r.basicStatus() }

// Status returns the node's full status, with per-peer progress on a leader.
func (n *Node) Status() Status { return n.r.status() }
