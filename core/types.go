package core

import "fmt"

// None is the node ID that means "no node": no leader known, no vote cast.
const None uint64 = 0

// EntryType says how the Data of an Entry is to be read.
type EntryType uint8

const (
	// EntryNormal carries application data (empty Data marks a new leader's term start).
	EntryNormal EntryType = 0
	// EntryConfChange carries an encoded ConfChange.
	EntryConfChange EntryType = 1
)

// String returns the name of the entry type.
func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "Normal"
	case EntryConfChange:
		return "ConfChange"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one record of the replicated log.
type Entry struct {
	Term  uint64
	Index uint64
	Type  EntryType
	Data  []byte
}

// entryOverhead is the number of bytes an entry is charged for on top of its
// Data in size accounting (flow control and uncommitted-size limits).
const entryOverhead = 16

// size returns the accounting size of e.
func (e *Entry) size() uint64 { return uint64(len(e.Data)) + entryOverhead }

// HardState is the part of a node's state that must be durable before any
// message that depends on it is sent.
type HardState struct {
	Term   uint64
	Vote   uint64
	Commit uint64
}

// IsEmpty reports whether hs is the zero HardState.
func (hs HardState) IsEmpty() bool { return hs == HardState{} }

// ConfState is a cluster configuration: who votes, who learns, and whether a
// joint configuration is in force.
//
// Voters is the incoming (or only) voter set. VotersOutgoing is non-empty
// only in a joint configuration and holds the outgoing voter set. Learners
// receive the log but do not vote. LearnersNext holds nodes that are voters
// in VotersOutgoing and become learners when the joint configuration is left.
// All lists are sorted and free of duplicates.
type ConfState struct {
	Voters         []uint64
	Learners       []uint64
	VotersOutgoing []uint64
	LearnersNext   []uint64
	// AutoLeave means the leader proposes leaving the joint configuration
	// as soon as it is committed.
	AutoLeave bool
}

// Joint reports whether cs is a joint configuration.
func (cs ConfState) Joint() bool { return len(cs.VotersOutgoing) > 0 }

// SnapshotMeta describes the log prefix a snapshot replaces.
type SnapshotMeta struct {
	Index  uint64
	Term   uint64
	Config ConfState
}

// Snapshot is an application state as of Meta.Index, with the configuration
// in force at that index.
type Snapshot struct {
	Meta SnapshotMeta
	Data []byte
}

// IsEmpty reports whether s is nil or has index zero.
func (s *Snapshot) IsEmpty() bool { return s == nil || s.Meta.Index == 0 }

// ConfChangeType is the kind of one membership change.
type ConfChangeType uint8

const (
	// AddVoter adds a voter, or promotes a learner to voter.
	AddVoter ConfChangeType = 0
	// AddLearner adds a learner, or demotes a voter to learner.
	AddLearner ConfChangeType = 1
	// RemoveNode removes a voter or learner.
	RemoveNode ConfChangeType = 2
)

// String returns the name of the change type.
func (t ConfChangeType) String() string {
	switch t {
	case AddVoter:
		return "AddVoter"
	case AddLearner:
		return "AddLearner"
	case RemoveNode:
		return "RemoveNode"
	}
	return fmt.Sprintf("ConfChangeType(%d)", uint8(t))
}

// ConfChangeSingle is one membership change of one node.
type ConfChangeSingle struct {
	Type   ConfChangeType
	NodeID uint64
}

// ConfChangeTransition says how a change is carried out.
type ConfChangeTransition uint8

const (
	// TransitionAuto uses a single-step change when only one voter changes,
	// and otherwise a joint configuration left automatically.
	TransitionAuto ConfChangeTransition = 0
	// TransitionJointImplicit always enters a joint configuration and
	// leaves it automatically once it is committed.
	TransitionJointImplicit ConfChangeTransition = 1
	// TransitionJointExplicit always enters a joint configuration and stays
	// there until an empty ConfChange (a leave) is proposed.
	TransitionJointExplicit ConfChangeTransition = 2
)

// ConfChange is a membership change. A ConfChange without Changes leaves a
// joint configuration. Context is opaque to the core (a host puts node
// addresses there).
type ConfChange struct {
	Transition ConfChangeTransition
	Changes    []ConfChangeSingle
	Context    []byte
}

// IsLeave reports whether cc asks to leave a joint configuration.
func (cc *ConfChange) IsLeave() bool { return len(cc.Changes) == 0 }

// MessageType is the kind of a Message.
type MessageType uint8

// The message types. Fields used by each are documented on Message.
const (
	MsgApp            MessageType = 1  // leader → follower: append entries
	MsgAppResp        MessageType = 2  // follower → leader: append result
	MsgVote           MessageType = 3  // candidate → all: request vote
	MsgVoteResp       MessageType = 4  // vote result
	MsgPreVote        MessageType = 5  // pre-candidate → all: would you vote?
	MsgPreVoteResp    MessageType = 6  // pre-vote result
	MsgHeartbeat      MessageType = 7  // leader → follower: I am alive
	MsgHeartbeatResp  MessageType = 8  // follower → leader
	MsgSnap           MessageType = 9  // leader → follower: install snapshot
	MsgProp           MessageType = 10 // follower → leader: forwarded proposals
	MsgReadIndex      MessageType = 11 // follower → leader: forwarded read request
	MsgReadIndexResp  MessageType = 12 // leader → follower: read index answer
	MsgTimeoutNow     MessageType = 13 // leader → transferee: campaign now
	MsgTransferLeader MessageType = 14 // follower → leader: forwarded transfer request
	msgTypeEnd        MessageType = 15
)

var msgTypeNames = [...]string{
	MsgApp:            "MsgApp",
	MsgAppResp:        "MsgAppResp",
	MsgVote:           "MsgVote",
	MsgVoteResp:       "MsgVoteResp",
	MsgPreVote:        "MsgPreVote",
	MsgPreVoteResp:    "MsgPreVoteResp",
	MsgHeartbeat:      "MsgHeartbeat",
	MsgHeartbeatResp:  "MsgHeartbeatResp",
	MsgSnap:           "MsgSnap",
	MsgProp:           "MsgProp",
	MsgReadIndex:      "MsgReadIndex",
	MsgReadIndexResp:  "MsgReadIndexResp",
	MsgTimeoutNow:     "MsgTimeoutNow",
	MsgTransferLeader: "MsgTransferLeader",
}

// String returns the name of the message type.
func (t MessageType) String() string {
	if t > 0 && t < msgTypeEnd {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Valid reports whether t is a known message type.
func (t MessageType) Valid() bool { return t > 0 && t < msgTypeEnd }

// IsResponse reports whether t answers a request.
func (t MessageType) IsResponse() bool {
	switch t {
	case MsgAppResp, MsgVoteResp, MsgPreVoteResp, MsgHeartbeatResp, MsgReadIndexResp:
		return true
	}
	return false
}

// Message is the unit of communication between nodes.
//
// Field use by type:
//   - MsgApp: Index and LogTerm identify the entry preceding Entries; Commit
//     is the leader's commit index.
//   - MsgAppResp: Index is the last index the follower now matches; on
//     Reject, Index is the rejected Index and RejectHint/LogTerm give the
//     largest index (and its term) at which the follower's log may match.
//   - MsgVote, MsgPreVote: Index and LogTerm are the candidate's last log
//     index and term; Force is set when campaigning on a leadership
//     transfer, which overrides a follower's leader lease.
//   - MsgVoteResp, MsgPreVoteResp: Reject says whether the vote was denied.
//   - MsgHeartbeat: Commit is min(follower's match, leader's commit); Index
//     carries the leader's read round; a response echoes it in Index.
//   - MsgSnap: Snapshot.
//   - MsgProp: Entries to propose.
//   - MsgReadIndex: Context identifies the read; MsgReadIndexResp answers
//     with the read Index and the same Context.
//   - MsgTransferLeader: Index is the transferee's ID.
type Message struct {
	Type       MessageType
	Reject     bool
	Force      bool
	From       uint64
	To         uint64
	Term       uint64
	LogTerm    uint64
	Index      uint64
	Commit     uint64
	RejectHint uint64
	Entries    []Entry
	Snapshot   *Snapshot
	Context    []byte
}

// ReadState answers a ReadIndex request: once the local applied index
// reaches Index, a read identified by Context may be served linearizably.
type ReadState struct {
	Index   uint64
	Context []byte
}

// Role is a node's role in its current term.
type Role uint8

const (
	// Follower follows a leader (or waits for one).
	Follower Role = iota
	// PreCandidate asks for pre-votes before starting an election.
	PreCandidate
	// Candidate campaigns for leadership.
	Candidate
	// Leader leads the cluster for its term.
	Leader
)

// String returns the name of the role in lower case.
func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case PreCandidate:
		return "pre-candidate"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// SoftState is volatile state worth reporting: it need not be persisted.
type SoftState struct {
	Lead uint64
	Role Role
}
