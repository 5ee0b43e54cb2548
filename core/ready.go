package core

// Persisted is what a node had made durable before a restart: the latest
// snapshot (nil if none), the hard state, and the log entries that follow
// the snapshot, in order and contiguous.
type Persisted struct {
	HardState HardState
	Snapshot  *Snapshot
	Entries   []Entry
}

// IsEmpty reports whether nothing was persisted.
func (p *Persisted) IsEmpty() bool {
	return p.HardState.IsEmpty() && p.Snapshot.IsEmpty() && len(p.Entries) == 0
}

// Ready is a batch of work for the host. Handle it in this order, then call
// Advance:
//
//  1. If Snapshot is not nil, persist it and restore the state machine from it.
//  2. Persist Entries: first delete any stored entries with an index at or
//     above Entries[0].Index, then append Entries.
//  3. Persist HardState if it is not empty.
//  4. If MustSync, fsync steps 1–3. Nothing below may happen before then
//     (but see the package documentation: a leader's appends and
//     heartbeats in the durable term may leave during the write).
//  5. Send Messages (in any order; the network may reorder them anyway).
//  6. Apply CommittedEntries in order. An entry of type EntryConfChange has
//     already taken effect in the core; the host only updates its own
//     address book from the ConfChange (see DecodeConfChange).
//  7. Serve each ReadState once the applied index reaches its Index.
//
// The slices in a Ready share memory with the node's log: treat every byte
// of them as read-only. They stay valid after Advance.
type Ready struct {
	// SoftState is non-nil when the leader or role changed.
	SoftState *SoftState
	// HardState is non-empty when term, vote or commit changed.
	HardState HardState
	// Snapshot is a snapshot received from the leader, to persist and install.
	Snapshot *Snapshot
	// Entries are log entries to persist.
	Entries []Entry
	// MustSync says whether steps 1–3 need an fsync before step 5: it is
	// true when Snapshot, Entries, or a term or vote change is present. A
	// commit index alone can be learnt again and needs no sync, except
	// when CommittedEntries hold a membership change above the last synced
	// commit index: then HardState is set (even if unchanged) and synced,
	// so that a node never restarts below a change it applied.
	MustSync bool
	// Messages go out only after the state above is durable (a leader's
	// appends and heartbeats excepted: see the package documentation).
	Messages []Message
	// CommittedEntries are ready to apply, in order.
	CommittedEntries []Entry
	// ReadStates answer ReadIndex requests.
	ReadStates []ReadState
}

// IsEmpty reports whether rd carries no work at all.
func (rd *Ready) IsEmpty() bool {
	return rd.SoftState == nil && rd.HardState.IsEmpty() && rd.Snapshot == nil &&
		len(rd.Entries) == 0 && len(rd.Messages) == 0 && len(rd.CommittedEntries) == 0 &&
		len(rd.ReadStates) == 0
}

// ProgressState is the replication state of a follower as seen by the leader.
type ProgressState uint8

// Replication states: Probe sends one append at a time until the follower's
// match is found; Replicate streams appends optimistically; Snapshot waits
// for a snapshot to be installed.
const (
	ProgressProbe ProgressState = iota
	ProgressReplicate
	ProgressSnapshot
)

// String returns the name of the state.
func (s ProgressState) String() string {
	switch s {
	case ProgressProbe:
		return "probe"
	case ProgressReplicate:
		return "replicate"
	case ProgressSnapshot:
		return "snapshot"
	}
	return "unknown"
}

// PeerProgress is the leader's view of one peer's replication.
type PeerProgress struct {
	ID              uint64
	Match           uint64
	Next            uint64
	State           ProgressState
	Learner         bool
	RecentActive    bool
	Inflight        int
	PendingSnapshot uint64
}

// BasicStatus is the node's state, cheap to read (no allocation).
type BasicStatus struct {
	ID             uint64
	Role           Role
	Term           uint64
	Vote           uint64
	Lead           uint64
	Commit         uint64
	Applied        uint64
	FirstIndex     uint64
	LastIndex      uint64
	LeadTransferee uint64
	// Lease reads (LeaseRead, or ReadIndex in ReadMode ReadLease) on this
	// node since it started: LeaseReads were answered on the lease, without
	// a confirmation round, the last one at read index LeaseReadIndex in
	// term LeaseReadTerm; LeaseReadRounds fell back to a confirmation
	// round because the lease did not hold. For observers such as the
	// simulator's lease check.
	LeaseReads      uint64
	LeaseReadRounds uint64
	LeaseReadIndex  uint64
	LeaseReadTerm   uint64
}

// Status is BasicStatus plus the configuration and, on a leader, the
// progress of every peer sorted by ID.
type Status struct {
	BasicStatus
	Config   ConfState
	Progress []PeerProgress
}
