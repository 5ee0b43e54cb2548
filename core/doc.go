// Package core is the Raft consensus protocol as a pure, deterministic
// state machine: no goroutines, no clock, no I/O, no global randomness.
//
// A host drives a Node with three kinds of input — Tick (logical time),
// Step (a message from a peer) and requests (Propose, ProposeConfChange,
// ReadIndex, TransferLeadership, StepDown, Campaign, Compact) — and carries
// out its output, a Ready batch, which it acknowledges with Advance. The
// same inputs in the same order, with the same Config (including its Seed),
// produce the same outputs, byte for byte.
//
// # The host loop
//
//	for {
//		// feed inputs: n.Tick(), n.Step(m), n.Propose(data), ...
//		if !n.HasReady() {
//			continue
//		}
//		rd := n.Ready()
//		// 1. persist rd.Snapshot (replacing the whole stored log), rd.Entries
//		//    (after deleting stored entries at or above rd.Entries[0].Index)
//		//    and rd.HardState; fsync if rd.MustSync.
//		// 2. send rd.Messages.
//		// 3. restore the state machine from rd.Snapshot if present, then apply
//		//    rd.CommittedEntries in order.
//		// 4. answer reads in rd.ReadStates once applied ≥ their Index.
//		n.Advance()
//	}
//
// # The contract
//
// Persistence before messages. No message of a Ready may leave before that
// Ready's Snapshot, Entries and HardState are durable (fsynced when
// MustSync is set). This one rule covers every case in the Raft paper: a
// vote is durable before it is granted, a term before it is claimed, an
// entry before it is acknowledged, and the leader's own entries before they
// count toward a commit (the leader counts itself only after Advance).
// Messages of a Ready may be sent in any order and may be lost: the
// protocol retries.
//
// One exception, as the Raft thesis (§10.2.1) allows: a leader may send its
// MsgApp and MsgHeartbeat messages whose Term equals the durable term
// before the Ready's write completes, so that it writes its log while its
// followers write theirs. This is safe provided the host takes the next
// Ready only after this one's write completed: the leader counts its own
// entries toward a commit only after Advance, and a commit index it learns
// from acknowledgements during the write goes out only in a later Ready,
// so no message ever announces a commit index beyond the sender's durable
// log. Package node does this.
//
// Committed entries. An entry in CommittedEntries is committed: stored by a
// quorum and never to be lost or changed. Apply entries in order, each
// exactly once; after a restart, set Config.Applied to what the state
// machine had applied (its snapshot index if it keeps no more) and the node
// hands out only what follows. Entries of type EntryConfChange have already
// taken effect in the core when handed out; the host reads their Context
// (for instance a new member's address).
//
// Snapshots. Compact(index, data) records data as the application state at
// index (which must be applied) and drops the log up to it; the host then
// saves the snapshot and deletes the same prefix from its storage. A
// follower too far behind receives the leader's latest snapshot: it comes
// in Ready.Snapshot, replacing the log entirely, and the host must persist
// it before anything else and restore its state machine from it. The host
// reports the fate of a snapshot it could not deliver with ReportSnapshot;
// the leader also retries on its own after an election timeout.
//
// Applying early. While a Ready's write is outstanding, TakeCommitted hands
// out the entries that became committed meanwhile and are durable here, so
// that a proposer need not wait for an unrelated write to hear back; the
// next Ready does not hand them out again. It stops before a membership
// change: the host applies that from a Ready, whose HardState carries the
// commit index that covers it with MustSync set (a commit-only HardState is
// otherwise not synced), so a change a node applied is never above the
// commit index it restarts with, even after a power loss.
//
// Advance. Advance promises the node that everything in the last Ready was
// done: persisted (and synced), sent, applied. Until then HasReady is false
// and Ready returns nothing new, so a host cannot take two batches at once.
// Inputs may still be fed between Ready and Advance. Slices in a Ready
// share memory with the node's log and must be treated as read-only; they
// stay valid after Advance.
//
// # Protocol features
//
// Leader election with randomized timeouts (drawn from a generator seeded
// by Config.Seed), PreVote, and CheckQuorum with leader stickiness: a
// follower that heard from a leader within the election timeout ignores
// vote requests unless they come from a leadership transfer.
//
// Log replication batches every proposal made between two Readys into one
// append per follower, pipelines appends to followers in the Replicate
// state (bounded by MaxInflightMsgs and MaxInflightBytes, each message by
// MaxSizePerMsg), backs off past a whole conflicting term at once using the
// follower's hint, commits only entries of the leader's term by counting
// (Raft §5.4.2), bounds uncommitted bytes (MaxUncommittedBytes), and
// forwards proposals from followers to the leader (or refuses them with a
// NotLeaderError when DisableProposalForwarding is set).
//
// Membership changes use joint consensus: a change of more than one voter
// (or any change with a joint transition) enters a joint configuration,
// left automatically once committed or explicitly with an empty
// ConfChange. Learners receive the log but do not vote; AddVoter promotes
// them. A change takes effect on each node when it learns the change is
// committed, and a leader accepts no new change before the previous one is
// committed. A leader removed from the configuration steps down after the
// change commits, handing over to the most up-to-date voter. Since a node
// may then be the only one that knows the change committed, every
// (pre-)vote answer carries the voter's commit index, which a candidate
// holding the entry there takes (Log Matching), and a node that cannot
// campaign asks the voters for theirs with a pre-vote once no leader spoke
// for an election timeout.
//
// Leadership transfer catches the target up and tells it to campaign at
// once; it is abandoned after TransferTimeoutTicks. StepDown transfers to
// the most up-to-date voter.
//
// Linearizable reads: ReadIndex confirms leadership with a heartbeat round
// to a quorum (ReadSafe) or trusts the CheckQuorum lease (ReadLease, only
// allowed with CheckQuorum and only sound with bounded clock drift). A new
// leader answers no read before an entry of its own term has committed.
// Followers forward read requests to the leader.
//
// Bad input never panics and never changes state: Step validates every
// message (see the decoders in codec.go, which reject any malformed byte
// string) and answers with an error wrapping ErrInvalidMessage or
// ErrUnknownNode; messages from older terms are ignored.
package core
