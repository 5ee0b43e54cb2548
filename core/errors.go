package core

import (
	"errors"
	"fmt"
)

// Errors returned by Node methods. Each leaves the node unchanged.
var (
	// ErrNotLeader is matched (errors.Is) by every *NotLeaderError.
	ErrNotLeader = errors.New("core: not the leader")
	// ErrProposalDropped means a proposal was refused, for instance while a
	// leadership transfer is in progress or when no leader is known.
	ErrProposalDropped = errors.New("core: proposal dropped")
	// ErrUncommittedLimit means the leader already holds
	// Config.MaxUncommittedBytes of uncommitted entries.
	ErrUncommittedLimit = errors.New("core: too many uncommitted bytes")
	// ErrEntryTooLarge means an entry's data exceeds Config.MaxEntryBytes.
	ErrEntryTooLarge = errors.New("core: entry too large")
	// ErrConfChangePending means a membership change is proposed while
	// another is not yet committed.
	ErrConfChangePending = errors.New("core: another membership change is pending")
	// ErrInvalidConfChange means a membership change is impossible in the
	// current configuration (removing the last voter, leaving a joint
	// configuration that is not in force, and so on).
	ErrInvalidConfChange = errors.New("core: invalid membership change")
	// ErrTransferInProgress means a leadership transfer is under way.
	ErrTransferInProgress = errors.New("core: leadership transfer in progress")
	// ErrInvalidTransferTarget means the transfer target is not a voter
	// other than the leader.
	ErrInvalidTransferTarget = errors.New("core: invalid leadership transfer target")
	// ErrUnknownNode means a message came from a node that is not in the
	// configuration where only members may speak.
	ErrUnknownNode = errors.New("core: message from unknown node")
	// ErrInvalidMessage means a message is malformed: unknown type, wrong
	// recipient, impossible indexes.
	ErrInvalidMessage = errors.New("core: invalid message")
	// ErrNotVoter means this node cannot campaign: it is not a voter.
	ErrNotVoter = errors.New("core: not a voter")
	// ErrCompacted means an index is at or below the last compaction.
	ErrCompacted = errors.New("core: index compacted")
	// ErrUnavailable means an index is beyond what the node can use.
	ErrUnavailable = errors.New("core: index unavailable")
	// ErrNoReady means Advance was called without an outstanding Ready.
	ErrNoReady = errors.New("core: no Ready to advance")
)

// NotLeaderError is returned when a request needs the leader and this node
// is not it. Leader is the leader this node knows of, or None.
type NotLeaderError struct {
	Leader uint64
}

// Error describes the error and names the known leader.
func (e *NotLeaderError) Error() string {
	if e.Leader == None {
		return "core: not the leader (leader unknown)"
	}
	return fmt.Sprintf("core: not the leader (leader is %d)", e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
