package core

// Bug is a classic Raft bug that can be planted, to prove that the
// simulator finds it. Bugs exist only in builds with the simbugs build tag;
// other builds refuse a Config that asks for one.
type Bug uint64

// Plantable bugs. The core's are acted on by the core, the host loop's by
// package node (they share Config.TestBugs), the simulated storage's by
// package sim.
const (
	// BugVoteNotPersisted grants votes without ever persisting them: after
	// a crash the node may vote again in the same term.
	BugVoteNotPersisted Bug = 1 << iota
	// BugCommitOldTerm commits entries of earlier terms by counting
	// replicas (Raft §5.4.2, Figure 8).
	BugCommitOldTerm
	// BugKeepVoteOnNewTerm forgets to reset the vote when the term moves.
	BugKeepVoteOnNewTerm
	// BugApplyUncommitted hands out entries to apply once they are
	// persisted locally, before they are committed.
	BugApplyUncommitted
	// BugReadLocal (node) serves linearizable reads from local state.
	BugReadLocal
	// BugAckBeforeDurable (node) sends a Ready's messages before its
	// writes are durable.
	BugAckBeforeDurable
	// BugStorageIgnoresChecksums (sim storage) serves damaged records
	// instead of refusing to load them: a flipped entry as read, the log
	// cut at a lost or unreadable record, a zeroed vote.
	BugStorageIgnoresChecksums
	// BugTrustDamagedHardState (sim storage) recovers from a damaged or
	// lost hard state by taking the one stored before it.
	BugTrustDamagedHardState
	// BugDivergentApply (sim: the application) makes node 1's state
	// machine apply one command wrong, silently: the first write at or
	// after index 64 goes to another key.
	BugDivergentApply
	// BugJointCommitOneHalf computes the commit index from the incoming
	// voters alone while a joint configuration is in force, as a joint
	// quorum that forgot its outgoing half would.
	BugJointCommitOneHalf
	// BugSecondConfChange accepts a membership change while another is
	// still uncommitted (the pending-change guard is gone).
	BugSecondConfChange
	// BugApplyConfUnsynced hands out a membership change to apply from a
	// commit index that is written but not synced (a commit-only hard
	// state is not synced): a crash can restart the node below a change it
	// applied.
	BugApplyConfUnsynced
	// BugLeaseAfterTransfer lets the leader trust its lease while a
	// leadership transfer is under way and after its MsgTimeoutNow went
	// out, although the transferee's forced campaign overrides the
	// followers' leader stickiness on which the lease rests.
	BugLeaseAfterTransfer
	// BugLeaseReadNoCheck answers a lease read on a leader that has
	// committed in its term without checking the lease at all.
	BugLeaseReadNoCheck
	// BugCommitBeyondVerified makes a follower take the leader's commit
	// index up to its own last index instead of the last index the append
	// verified, and the leader's heartbeats carry its full commit index
	// instead of capping it at what the follower is known to match: a
	// follower with a stale tail from an earlier term commits that tail
	// (a bug etcd raft once had).
	BugCommitBeyondVerified
	// BugPreVoteRaisesTerm makes a pre-vote round move the node to the
	// term it campaigns for, as a real campaign does, and persist it: a
	// node that cannot win (say, cut off from the others) raises its term
	// on every round and disrupts the cluster when it comes back, which
	// is what pre-vote exists to prevent.
	BugPreVoteRaisesTerm
	bugEnd
)

// AllBugs is every plantable bug.
const AllBugs = bugEnd - 1

// String names the bug.
func (b Bug) String() string {
	switch b {
	case BugVoteNotPersisted:
		return "vote-not-persisted"
	case BugCommitOldTerm:
		return "commit-old-term"
	case BugKeepVoteOnNewTerm:
		return "keep-vote-on-new-term"
	case BugApplyUncommitted:
		return "apply-uncommitted"
	case BugReadLocal:
		return "read-local"
	case BugAckBeforeDurable:
		return "ack-before-durable"
	case BugStorageIgnoresChecksums:
		return "storage-ignores-checksums"
	case BugTrustDamagedHardState:
		return "trust-damaged-hard-state"
	case BugDivergentApply:
		return "divergent-apply"
	case BugJointCommitOneHalf:
		return "joint-commit-one-half"
	case BugSecondConfChange:
		return "second-conf-change"
	case BugApplyConfUnsynced:
		return "apply-conf-unsynced"
	case BugLeaseAfterTransfer:
		return "lease-after-transfer"
	case BugLeaseReadNoCheck:
		return "lease-read-no-check"
	case BugCommitBeyondVerified:
		return "commit-beyond-verified"
	case BugPreVoteRaisesTerm:
		return "prevote-raises-term"
	}
	return "bug?"
}

// In reports whether the planted-bug set bugs includes b. It is always
// false in builds without the simbugs tag.
func (b Bug) In(bugs uint64) bool { return BugsEnabled && bugs&uint64(b) != 0 }
