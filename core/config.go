package core

import (
	"errors"
	"fmt"
)

// ReadMode selects how the leader confirms its leadership for ReadIndex.
type ReadMode uint8

const (
	// ReadSafe confirms leadership with a heartbeat round to a quorum for
	// every batch of read requests.
	ReadSafe ReadMode = iota
	// ReadLease trusts the leader lease that CheckQuorum maintains: no
	// round trip while a quorum was heard from in the current check
	// window (otherwise a round as in ReadSafe). Requires CheckQuorum, and
	// is only correct while clock drift between nodes is bounded well below
	// the election timeout and a restarted node waits an election timeout
	// before it starts (a fresh node honours no lease it granted before).
	ReadLease
)

// Config configures a Node. Zero values of the tuning fields take the
// defaults documented on each field.
type Config struct {
	// ID is this node's ID; it must not be zero.
	ID uint64
	// Voters bootstraps a brand-new cluster: when the persisted state given
	// to New is empty and Voters is not, the node starts with a log whose
	// first entry (index 1, term 1, committed) adds these voters. Every
	// founding member must be given the same list. Leave it empty on a
	// restart and on a node that joins an existing cluster.
	Voters []uint64

	// ElectionTick is the minimum election timeout in ticks; each timeout is
	// drawn from [ElectionTick, 2*ElectionTick). Default 10.
	ElectionTick int
	// HeartbeatTick is the heartbeat interval in ticks; it must be less
	// than ElectionTick. Default 1.
	HeartbeatTick int
	// Seed seeds the generator of election timeouts. It is mixed with ID,
	// so nodes given the same seed still draw different timeouts.
	Seed uint64

	// PreVote runs a pre-election round so that a partitioned node cannot
	// disrupt the cluster by raising its term.
	PreVote bool
	// CheckQuorum makes a leader step down when it has not heard from a
	// quorum within an election timeout, and makes followers that heard
	// from a leader within the minimum election timeout ignore vote
	// requests (unless forced by a leadership transfer).
	CheckQuorum bool
	// ReadMode selects ReadSafe (default) or ReadLease.
	ReadMode ReadMode

	// MaxSizePerMsg caps the entry bytes in one append message (at least
	// one entry is always sent). Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs caps append messages in flight to one follower
	// during optimistic replication. Default 256.
	MaxInflightMsgs int
	// MaxInflightBytes caps entry bytes in flight to one follower; zero
	// means no limit beyond MaxInflightMsgs.
	MaxInflightBytes uint64
	// MaxUncommittedBytes caps the entry bytes a leader holds uncommitted;
	// proposals beyond it fail with ErrUncommittedLimit. Zero means no
	// limit.
	MaxUncommittedBytes uint64
	// MaxEntryBytes caps the size of one proposed entry's data; larger
	// proposals fail with ErrEntryTooLarge. Default 8 MiB.
	MaxEntryBytes uint64
	// MaxCommittedBytesPerReady caps the committed entry bytes handed out
	// in one Ready (at least one entry is always handed out). Zero means
	// no limit.
	MaxCommittedBytesPerReady uint64

	// DisableProposalForwarding makes a follower refuse proposals, read
	// requests and transfer requests with a NotLeaderError (carrying the
	// known leader) instead of forwarding them to the leader.
	DisableProposalForwarding bool
	// TransferTimeoutTicks aborts a leadership transfer that has not
	// completed in this many ticks. Default ElectionTick.
	TransferTimeoutTicks int

	// Applied is the index the application had applied before a restart;
	// entries up to it are not handed out again. Zero means the snapshot
	// index of the persisted state.
	Applied uint64
	// TestBugs plants known bugs (a set of Bug values) to prove that tests
	// catch them. Only builds with the simbugs tag accept it; others
	// refuse a non-zero value.
	TestBugs uint64
}

// Defaults for zero Config fields.
const (
	DefaultElectionTick    = 10
	DefaultHeartbeatTick   = 1
	DefaultMaxSizePerMsg   = 1 << 20
	DefaultMaxInflightMsgs = 256
	DefaultMaxEntryBytes   = 8 << 20
)

// ErrInvalidConfig is wrapped by every configuration error from New.
var ErrInvalidConfig = errors.New("core: invalid config")

// withDefaults returns c with zero fields set to defaults, or an error
// naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.TestBugs != 0 && (!BugsEnabled || c.TestBugs&^uint64(AllBugs) != 0) {
		return bad("TestBugs %#x: planted bugs need the simbugs build tag", c.TestBugs)
	}
	if c.ID == None {
		return bad("ID must not be zero")
	}
	if c.ElectionTick == 0 {
		c.ElectionTick = DefaultElectionTick
	}
	if c.HeartbeatTick == 0 {
		c.HeartbeatTick = DefaultHeartbeatTick
	}
	if c.ElectionTick < 0 || c.HeartbeatTick < 0 {
		return bad("ElectionTick (%d) and HeartbeatTick (%d) must be positive", c.ElectionTick, c.HeartbeatTick)
	}
	if c.HeartbeatTick >= c.ElectionTick {
		return bad("HeartbeatTick (%d) must be less than ElectionTick (%d)", c.HeartbeatTick, c.ElectionTick)
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = DefaultMaxSizePerMsg
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxInflightMsgs < 0 {
		return bad("MaxInflightMsgs (%d) must be positive", c.MaxInflightMsgs)
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if c.TransferTimeoutTicks == 0 {
		c.TransferTimeoutTicks = c.ElectionTick
	}
	if c.TransferTimeoutTicks < 0 {
		return bad("TransferTimeoutTicks (%d) must be positive", c.TransferTimeoutTicks)
	}
	switch c.ReadMode {
	case ReadSafe:
	case ReadLease:
		if !c.CheckQuorum {
			return bad("ReadMode ReadLease requires CheckQuorum")
		}
	default:
		return bad("unknown ReadMode %d", c.ReadMode)
	}
	seen := make(map[uint64]bool, len(c.Voters))
	for _, id := range c.Voters {
		if id == None {
			return bad("Voters contains node ID zero")
		}
		if seen[id] {
			return bad("Voters lists node %d twice", id)
		}
		seen[id] = true
	}
	return c, nil
}
