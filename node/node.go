// Package node is the host loop shared by the simulator and production: a
// deterministic, single-threaded driver around a core.Node that turns its
// output into ordered calls on Storage, Transport and StateMachine, and
// gives proposals and reads futures.
//
// A Node is driven by events — Tick, Receive, Propose, Read, and the
// completion of a storage write (the done callback of Storage.Save) — all
// from one goroutine. It keeps the core's contract: a Ready's messages are
// sent only once its writes are durable, only committed entries are
// applied, and a proposal's future resolves with its result only after the
// entry is committed and applied on this node.
package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/forge-consensus/consensus/core"
)

// ReadLevel is the consistency of a read.
type ReadLevel uint8

// Read levels.
const (
	// ReadLinearizable takes a read point with ReadIndex (confirmed by a
	// quorum, forwarded to the leader from a follower), waits until it is
	// applied locally, then queries. Works on any node.
	ReadLinearizable ReadLevel = iota
	// ReadLease is answered by the leader on its CheckQuorum lease without
	// a confirmation round. Only with Config.LeaseReads, only on the
	// leader, and only sound while clock drift is bounded and the leader is
	// not paused.
	ReadLease
	// ReadStale queries local state at once. No guarantee: the state may be
	// arbitrarily old, and may go back after a restart.
	ReadStale
)

// String names the level.
func (l ReadLevel) String() string {
	switch l {
	case ReadLinearizable:
		return "linearizable"
	case ReadLease:
		return "lease"
	case ReadStale:
		return "stale"
	}
	return fmt.Sprintf("ReadLevel(%d)", uint8(l))
}

// Config configures a Node.
type Config struct {
	// Core configures the Raft core. Core.Applied is set by the node.
	Core core.Config
	// Storage, Transport and StateMachine are required.
	Storage      Storage
	Transport    Transport
	StateMachine StateMachine
	// Incarnation tells this run of the node from earlier ones, so that an
	// old proposal or read answer is never mistaken for a new one. It must
	// differ across restarts; 0 derives it from Core.Seed (which then must
	// differ across restarts — production draws it at random).
	Incarnation uint64
	// ProposalTimeoutTicks and ReadTimeoutTicks bound how long a request
	// waits, in ticks (0: 5 election timeouts).
	ProposalTimeoutTicks int
	ReadTimeoutTicks     int
	// LeaseReads allows ReadLease (needs Core.CheckQuorum).
	LeaseReads bool
	// SnapshotThreshold takes a snapshot and compacts the log once this
	// many entries were applied since the last snapshot (0: never).
	SnapshotThreshold uint64
	// SnapshotKeep is how many applied entries compaction keeps in the log
	// behind the snapshot, for followers slightly behind.
	SnapshotKeep uint64
	// PeerAddress returns a node's address for NotLeaderError (optional).
	PeerAddress func(id uint64) string
	// ConfChangeApplied is called for each membership change as it is
	// applied, with the context its proposer gave (optional).
	ConfChangeApplied func(index uint64, cc core.ConfChange)
	// Logger receives role changes and failures (optional).
	Logger *slog.Logger
	// AdmitWrite, if set, is asked before a command is accepted: by
	// Propose, and by a leader for a proposal a follower forwarded. A
	// non-nil error (which should wrap ErrNoSpace when storage is short of
	// space) refuses the command: Propose's future fails with it, and a
	// forwarded proposal is dropped (its proposer times out). Membership
	// changes are always admitted, so that an operator can still repair a
	// cluster that is out of space. It must be cheap and must not block.
	AdmitWrite func() error
	// Observer sees every applied entry and snapshot restore (optional:
	// simulators, tests, metrics).
	Observer Observer
	// VerifyInterval turns on cross-replica verification (see Hasher and
	// the package's verify.go): every node reports its state hash through
	// the log at each applied index that is a multiple of it, and the
	// replicas compare them (0: off). StateMachine must implement Hasher.
	// Every node of a cluster should use the same interval.
	VerifyInterval uint64
	// OnAlarm is told, on the driving goroutine, of each divergence alarm
	// this node raises or clears (optional). It must not call the node.
	OnAlarm func(Alarm)
}

// Observer watches what a node applies. Its methods run on the driving
// goroutine and must not call back into the node.
type Observer interface {
	// Applied is called for every committed entry as it is applied,
	// including a new leader's empty entries and membership changes.
	Applied(e *core.Entry)
	// Restored is called when the state machine is restored from the
	// snapshot at index (on start or when a leader sends one).
	Restored(index uint64)
}

// Node is a Raft node bound to its storage, transport and state machine.
// It is not safe for concurrent use.
type Node struct {
	cfg  Config
	raft *core.Node
	inc  uint64

	now     uint64 // ticks since start
	applied uint64 // last index applied to the state machine
	snapIdx uint64 // index of the latest snapshot
	// snapRetry is the applied index before which no snapshot is tried
	// again after a snapshot file could not be written (streaming only).
	snapRetry uint64

	driving     bool
	writing     bool
	wseq        uint64 // sequence of the outstanding write
	wdone       bool   // the outstanding write completed during drive
	werr        error
	ready       *core.Ready  // the Ready whose write is outstanding; nil for a compaction write
	compact     *Update      // a compaction write waiting its turn
	snapWriting bool         // the outstanding write is a compaction
	snapWait    []snapWaiter // TakeSnapshot calls waiting for a durable snapshot
	rdBuf       core.Ready   // the Ready being handled
	updBuf      Update       // its write
	early       []core.Message
	durTerm     uint64 // the term in storage (as of the last completed write)
	wterm       uint64 // the term in storage once the outstanding write completes

	stopped error // why the node stopped; nil while running

	seq       uint64
	proposals map[uint64]*Future
	propQueue []deadline
	reads     map[uint64]*pendingRead
	readQueue []deadline
	waiting   []*pendingRead // read points known, waiting for applied to reach them

	role core.Role
	lead uint64

	ver *verifier // nil: verification off

	arena   []byte   // the block proposals' entry data is carved from
	futures []Future // unused futures of the current block
}

type deadline struct {
	seq uint64
	at  uint64
}

type pendingRead struct {
	seq     uint64
	index   uint64
	pointed bool // index is known
	query   []byte
	f       *Future
}

// New loads the node's durable state from cfg.Storage, restores the state
// machine from the latest snapshot and starts the core.
func New(cfg Config) (*Node, error) {
	if cfg.Storage == nil || cfg.Transport == nil || cfg.StateMachine == nil {
		return nil, fmt.Errorf("%w: node needs Storage, Transport and StateMachine", core.ErrInvalidConfig)
	}
	if cfg.LeaseReads && !cfg.Core.CheckQuorum {
		return nil, fmt.Errorf("%w: LeaseReads needs Core.CheckQuorum", core.ErrInvalidConfig)
	}
	et := cfg.Core.ElectionTick
	if et <= 0 {
		et = 10
	}
	if cfg.ProposalTimeoutTicks <= 0 {
		cfg.ProposalTimeoutTicks = 5 * et
	}
	if cfg.ReadTimeoutTicks <= 0 {
		cfg.ReadTimeoutTicks = 5 * et
	}
	st, err := cfg.Storage.Load()
	if err != nil {
		return nil, fmt.Errorf("node %d: load storage: %w", cfg.Core.ID, err)
	}
	n := &Node{
		cfg:       cfg,
		inc:       cfg.Incarnation,
		proposals: make(map[uint64]*Future),
		reads:     make(map[uint64]*pendingRead),
	}
	if n.inc == 0 {
		n.inc = mix64(cfg.Core.Seed ^ 0x9e3779b97f4a7c15*cfg.Core.ID)
	}
	if n.inc == 0 {
		n.inc = 1 // incarnation 0 marks verification records
	}
	if cfg.VerifyInterval > 0 {
		h, ok := cfg.StateMachine.(Hasher)
		if !ok {
			return nil, fmt.Errorf("%w: VerifyInterval needs a StateMachine that implements node.Hasher", core.ErrInvalidConfig)
		}
		n.ver = &verifier{interval: cfg.VerifyInterval, hasher: h}
	}
	if s := st.Snapshot; !s.IsEmpty() {
		if err := cfg.StateMachine.Restore(s.Data); err != nil {
			return nil, fmt.Errorf("node %d: restore snapshot at %d: %w", cfg.Core.ID, s.Meta.Index, err)
		}
		n.applied, n.snapIdx = s.Meta.Index, s.Meta.Index
		if cfg.Observer != nil {
			cfg.Observer.Restored(s.Meta.Index)
		}
	}
	if s := st.Snapshot; n.streams() && s != nil && s.Data != nil {
		// The state machine holds the state; the storage serves the
		// data when a follower needs it (withSnapshotData).
		st.Snapshot = &core.Snapshot{Meta: s.Meta}
	}
	n.durTerm = st.HardState.Term
	cc := cfg.Core
	cc.Applied = n.applied
	r, err := core.New(cc, st)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", cfg.Core.ID, err)
	}
	n.raft = r
	n.drive()
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() uint64 { return n.cfg.Core.ID }

// Core returns the core node, for status and tests. Do not drive it
// directly.
func (n *Node) Core() *core.Node { return n.raft }

// Status returns the core's basic status, with Applied as the state
// machine has it.
func (n *Node) Status() core.BasicStatus {
	s := n.raft.BasicStatus()
	s.Applied = n.applied
	return s
}

// Applied returns the last index applied to the state machine.
func (n *Node) Applied() uint64 { return n.applied }

// Stopped returns why the node stopped, or nil while it runs.
func (n *Node) Stopped() error { return n.stopped }

// Writing reports whether a storage write is outstanding.
func (n *Node) Writing() bool { return n.writing }

// Tick advances logical time by one tick and times out requests.
func (n *Node) Tick() {
	if n.stopped != nil {
		return
	}
	n.now++
	n.raft.Tick()
	n.expire()
	n.verifyTick()
	n.drive()
}

// Receive feeds a message from a peer. A malformed message or one from an
// unknown node returns an error and changes nothing.
func (n *Node) Receive(m core.Message) error {
	if n.stopped != nil {
		return n.stopped
	}
	if m.Type == core.MsgProp && n.cfg.AdmitWrite != nil && n.refuseForwarded(m) {
		return nil
	}
	err := n.raft.Step(m)
	n.drive()
	return err
}

// refuseForwarded reports whether a proposal forwarded by a follower must
// be dropped because AdmitWrite refuses writes. Membership changes pass.
func (n *Node) refuseForwarded(m core.Message) bool {
	for i := range m.Entries {
		if m.Entries[i].Type != core.EntryNormal {
			return false
		}
	}
	err := n.cfg.AdmitWrite()
	if err != nil && n.cfg.Logger != nil {
		n.cfg.Logger.Debug("forwarded proposal refused", "node", n.ID(), "from", m.From, "err", err)
	}
	return err != nil
}

// ReportUnreachable tells the core a peer could not be reached.
func (n *Node) ReportUnreachable(id uint64) {
	if n.stopped == nil {
		n.raft.ReportUnreachable(id)
		n.drive()
	}
}

// ReportSnapshot tells the core whether a snapshot reached a peer.
func (n *Node) ReportSnapshot(id uint64, ok bool) {
	if n.stopped == nil {
		n.raft.ReportSnapshot(id, ok)
		n.drive()
	}
}

// Propose proposes a command for the state machine. The future resolves
// with the result of StateMachine.Apply once the command is committed and
// applied on this node, or with an error: *NotLeaderError, ErrDropped (no
// effect), ErrTimeout or ErrStopped (outcome unknown), or a *DivergedError
// (no effect) on a node whose state diverged from the cluster's.
func (n *Node) Propose(cmd []byte) *Future {
	if err := n.divergedErr(); err != nil && n.stopped == nil {
		return resolved(nil, err)
	}
	if n.stopped == nil && n.cfg.AdmitWrite != nil {
		if err := n.cfg.AdmitWrite(); err != nil {
			return resolved(nil, err)
		}
	}
	return n.propose(cmd, func(data []byte) error { return n.raft.Propose(data) })
}

// ProposeConfChange proposes a membership change. Its future resolves with
// the index at which the change was applied, or an error as for Propose.
// cc.Context reaches ConfChangeApplied on every node.
func (n *Node) ProposeConfChange(cc core.ConfChange) *Future {
	return n.propose(cc.Context, func(ctx []byte) error {
		cc.Context = ctx
		return n.raft.ProposeConfChange(cc)
	})
}

// propose prefixes payload with this run's proposal header, hands it to
// submit and, once accepted, tracks the proposal's future.
func (n *Node) propose(payload []byte, submit func([]byte) error) *Future {
	if n.stopped != nil {
		return resolved(nil, n.stopped)
	}
	n.seq++
	seq := n.seq
	data := n.entryBuf(len(payload) + 2*binary.MaxVarintLen64)
	data = binary.AppendUvarint(data, n.inc)
	data = binary.AppendUvarint(data, seq)
	data = append(data, payload...)
	n.takeEntryBuf(data)
	if err := submit(data); err != nil {
		return resolved(nil, n.requestError(err))
	}
	f := n.newFuture()
	n.proposals[seq] = f
	n.propQueue = append(n.propQueue, deadline{seq: seq, at: n.now + uint64(n.cfg.ProposalTimeoutTicks)})
	n.drive()
	return f
}

// Proposals' entry data and futures are carved out of larger blocks, so
// that a busy leader allocates once per block rather than twice per
// proposal. A block lives as long as any entry or future in it.
const (
	arenaBytes   = 64 << 10
	futureBlock  = 256
	arenaMaxPart = arenaBytes / 8 // larger entries get their own allocation
)

// entryBuf returns an empty slice with room for size bytes, from the
// current block when it fits. The caller fills it and passes it to
// takeEntryBuf before the next call.
func (n *Node) entryBuf(size int) []byte {
	if size > arenaMaxPart {
		return make([]byte, 0, size)
	}
	if cap(n.arena)-len(n.arena) < size {
		n.arena = make([]byte, 0, arenaBytes)
	}
	l := len(n.arena)
	return n.arena[l : l : l+size]
}

// takeEntryBuf marks b, filled from entryBuf, as used: later entries go
// after it.
func (n *Node) takeEntryBuf(b []byte) {
	l := len(n.arena)
	if len(b) > 0 && cap(n.arena) > l && &n.arena[:l+1][l] == &b[0] {
		n.arena = n.arena[:l+len(b)]
	}
}

// newFuture returns a new pending future.
func (n *Node) newFuture() *Future {
	if len(n.futures) == 0 {
		n.futures = make([]Future, futureBlock)
	}
	f := &n.futures[0]
	n.futures = n.futures[1:]
	return f
}

// Read answers query at the given consistency level with the result of
// StateMachine.Query. Errors: *NotLeaderError, ErrDropped,
// ErrLeaseReadsDisabled, ErrTimeout, ErrStopped, a *DivergedError (at every
// level) on a node whose state diverged from the cluster's, or the query's
// own error.
func (n *Node) Read(level ReadLevel, query []byte) *Future {
	if n.stopped != nil {
		return resolved(nil, n.stopped)
	}
	if err := n.divergedErr(); err != nil {
		return resolved(nil, err)
	}
	if level == ReadLinearizable && core.BugReadLocal.In(n.cfg.Core.TestBugs) {
		level = ReadStale
	}
	switch level {
	case ReadStale:
		return resolved(n.cfg.StateMachine.Query(query))
	case ReadLinearizable, ReadLease:
	default:
		return resolved(nil, fmt.Errorf("%w: unknown read level %d", ErrDropped, level))
	}
	if level == ReadLease && !n.cfg.LeaseReads {
		return resolved(nil, ErrLeaseReadsDisabled)
	}
	n.seq++
	seq := n.seq
	var ctx [16]byte
	binary.BigEndian.PutUint64(ctx[:8], n.inc)
	binary.BigEndian.PutUint64(ctx[8:], seq)
	var err error
	if level == ReadLease {
		err = n.raft.LeaseRead(ctx[:])
	} else {
		err = n.raft.ReadIndex(ctx[:])
	}
	if err != nil {
		return resolved(nil, n.requestError(err))
	}
	rd := &pendingRead{seq: seq, query: query, f: &Future{}}
	n.reads[seq] = rd
	n.readQueue = append(n.readQueue, deadline{seq: seq, at: n.now + uint64(n.cfg.ReadTimeoutTicks)})
	n.drive()
	return rd.f
}

// TransferLeadership asks the leader to hand leadership to the voter to.
func (n *Node) TransferLeadership(to uint64) error {
	if n.stopped != nil {
		return n.stopped
	}
	err := n.raft.TransferLeadership(to)
	n.drive()
	if err != nil {
		return n.requestError(err)
	}
	return nil
}

// StepDown makes the leader hand leadership to its most up-to-date voter.
func (n *Node) StepDown() error {
	if n.stopped != nil {
		return n.stopped
	}
	err := n.raft.StepDown()
	n.drive()
	if err != nil {
		return n.requestError(err)
	}
	return nil
}

// TakeSnapshot snapshots the state machine at the applied index and
// compacts the log behind it (keeping SnapshotKeep entries), as the
// automatic threshold does. The future resolves with the snapshot's index
// once the snapshot is durable; if nothing was applied since the last
// snapshot, with that snapshot's index once it is durable.
//
// A node whose state diverged from the cluster's takes no snapshot: it
// fails with a *DivergedError.
func (n *Node) TakeSnapshot() *Future {
	if n.stopped != nil {
		return resolved(nil, n.stopped)
	}
	if err := n.divergedErr(); err != nil {
		return resolved(nil, err)
	}
	f := &Future{}
	n.snapWait = append(n.snapWait, snapWaiter{f: f, at: n.applied})
	if n.compact == nil && !n.snapWriting {
		n.snapshotDone() // the last snapshot, durable, covers it
	}
	if !n.writing {
		n.maybeSnapshot()
	}
	n.drive()
	return f
}

// Campaign makes this node start an election at once (tests, operators).
func (n *Node) Campaign() error {
	if n.stopped != nil {
		return n.stopped
	}
	err := n.raft.Campaign()
	n.drive()
	return err
}

// Stop stops the node: every pending request resolves with ErrStopped and
// later events are ignored. A write in flight may still complete in
// storage; its completion is ignored. Stop is idempotent.
func (n *Node) Stop() { n.fail(ErrStopped) }

func (n *Node) fail(err error) {
	if n.stopped != nil {
		return
	}
	n.stopped = err
	for _, d := range n.propQueue {
		if f, ok := n.proposals[d.seq]; ok {
			f.resolve(nil, err)
		}
	}
	for _, d := range n.readQueue {
		if rd, ok := n.reads[d.seq]; ok {
			rd.f.resolve(nil, err)
		}
	}
	for _, w := range n.snapWait {
		w.f.resolve(nil, err)
	}
	n.propQueue, n.readQueue, n.waiting, n.snapWait = nil, nil, nil, nil
	clear(n.proposals)
	clear(n.reads)
}

// requestError turns a core refusal into the node's typed errors.
func (n *Node) requestError(err error) error {
	var nl *core.NotLeaderError
	if errors.As(err, &nl) {
		e := &NotLeaderError{LeaderID: nl.Leader}
		if nl.Leader != 0 && n.cfg.PeerAddress != nil {
			e.Address = n.cfg.PeerAddress(nl.Leader)
		}
		return e
	}
	return fmt.Errorf("%w: %w", ErrDropped, err)
}

// expire times out requests whose deadline passed. It also drops from the
// front of the deadline queues the requests answered already, so that the
// queues hold about the requests in flight rather than every request of
// the last timeout period (which a busy leader would copy again and again
// as the queue grows).
func (n *Node) expire() {
	i := 0
	for ; i < len(n.propQueue); i++ {
		seq := n.propQueue[i].seq
		f, ok := n.proposals[seq]
		if !ok {
			continue // answered
		}
		if n.propQueue[i].at > n.now {
			break
		}
		delete(n.proposals, seq)
		f.resolve(nil, ErrTimeout)
	}
	n.propQueue = n.propQueue[i:]
	i = 0
	for ; i < len(n.readQueue); i++ {
		seq := n.readQueue[i].seq
		rd, ok := n.reads[seq]
		if !ok {
			continue // answered
		}
		if n.readQueue[i].at > n.now {
			break
		}
		delete(n.reads, seq)
		rd.f.resolve(nil, ErrTimeout)
	}
	n.readQueue = n.readQueue[i:]
	if len(n.waiting) > 0 {
		k := 0
		for _, rd := range n.waiting {
			if !rd.f.done {
				n.waiting[k] = rd
				k++
			}
		}
		clear(n.waiting[k:])
		n.waiting = n.waiting[:k]
	}
}

// drive carries out the core's output until it has none or a write is
// outstanding.
func (n *Node) drive() {
	if n.driving {
		return
	}
	n.driving = true
	defer func() { n.driving = false }()
	for n.stopped == nil {
		if n.writing {
			if !n.wdone {
				n.applyCommitted()
				return
			}
			n.writing, n.wdone = false, false
			if n.werr != nil {
				n.storageFailed(n.werr)
				return
			}
			n.durTerm = n.wterm
			if rd := n.ready; rd != nil {
				n.ready = nil
				n.finish(rd)
			} else if n.snapWriting {
				n.snapWriting = false
				n.maybeSnapshot() // serves TakeSnapshot's waiters
			}
			continue
		}
		if u := n.compact; u != nil {
			n.compact, n.snapWriting = nil, true
			n.save(u, nil)
			continue
		}
		if !n.raft.HasReady() {
			return
		}
		// One Ready and one Update are in flight at a time: reuse them.
		n.rdBuf = n.raft.Ready()
		rd := &n.rdBuf
		n.logReady(rd)
		n.updBuf = Update{Snapshot: rd.Snapshot, Entries: rd.Entries, HardState: rd.HardState, Sync: rd.MustSync}
		u := &n.updBuf
		if core.BugAckBeforeDurable.In(n.cfg.Core.TestBugs) && len(rd.Messages) > 0 && !u.IsEmpty() {
			if n.streams() {
				rd.Messages = n.withSnapshotData(rd.Messages)
			}
			n.cfg.Transport.Send(rd.Messages)
			rd.Messages = nil
		}
		if u.IsEmpty() {
			n.finish(rd)
			continue
		}
		n.sendEarly(rd)
		n.save(u, rd)
		n.applyDurable(rd)
	}
}

// logReady logs a Ready's outline at Debug level: the protocol-level
// detail an operator turns on to follow what a node does.
func (n *Node) logReady(rd *core.Ready) {
	l := n.cfg.Logger
	if l == nil || !l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.Uint64("node", n.ID()), slog.Int("entries", len(rd.Entries)),
		slog.Int("committed", len(rd.CommittedEntries)), slog.Int("messages", len(rd.Messages))}
	if !rd.HardState.IsEmpty() {
		attrs = append(attrs, slog.Uint64("term", rd.HardState.Term), slog.Uint64("vote", rd.HardState.Vote),
			slog.Uint64("commit", rd.HardState.Commit))
	}
	if len(rd.Entries) > 0 {
		attrs = append(attrs, slog.Uint64("first", rd.Entries[0].Index), slog.Uint64("last", rd.Entries[len(rd.Entries)-1].Index))
	}
	if rd.Snapshot != nil {
		attrs = append(attrs, slog.Uint64("snapshot", rd.Snapshot.Meta.Index))
	}
	for _, m := range rd.Messages {
		if m.Type != core.MsgApp && m.Type != core.MsgAppResp && m.Type != core.MsgHeartbeat && m.Type != core.MsgHeartbeatResp {
			attrs = append(attrs, slog.String("msg", fmt.Sprintf("%v to %d term %d", m.Type, m.To, m.Term)))
		}
	}
	l.LogAttrs(context.Background(), slog.LevelDebug, "raft ready", attrs...)
}

// sendEarly sends a leader's appends and heartbeats before the Ready's
// write, so that the followers write their logs while the leader writes its
// own (Raft thesis §10.2.1); the rest of the Ready's messages wait for the
// write. This is safe because what these messages claim is durable already:
//   - their term: only messages in the durable term go early;
//   - their commit index: the node takes a Ready only once the previous
//     write completed, so every entry sent before this Ready is durable
//     here, and followers cannot have acknowledged entries first sent in
//     it; a commit index learnt during this write (the core counts the
//     leader's own entries only after Advance, so from followers alone)
//     reaches messages only in a later Ready, taken after this write
//     completed. A commit index in a message therefore never exceeds the
//     sender's durable log (the simulator checks this on every send).
//
// The entries they carry need not be durable at the leader: a leader that
// crashes before its write completes is a leader that crashed right after
// sending, which Raft tolerates.
func (n *Node) sendEarly(rd *core.Ready) {
	early, k := n.early[:0], 0
	for _, m := range rd.Messages {
		if (m.Type == core.MsgApp || m.Type == core.MsgHeartbeat) && m.Term == n.durTerm {
			early = append(early, m)
			continue
		}
		rd.Messages[k] = m
		k++
	}
	if len(early) == 0 {
		return
	}
	clear(rd.Messages[k:])
	rd.Messages = rd.Messages[:k]
	n.cfg.Transport.Send(early)
	clear(early)
	n.early = early[:0]
}

// applyCommitted applies, while a write is outstanding, the entries that
// became committed meanwhile and are durable here (core.Node.TakeCommitted),
// and answers the reads they make possible.
func (n *Node) applyCommitted() {
	ents := n.raft.TakeCommitted(n.applied)
	if len(ents) == 0 {
		return
	}
	for i := range ents {
		n.apply(&ents[i])
	}
	n.serveReads()
}

// applyDurable applies, while the Ready's write is outstanding, the
// committed entries that are durable here already (those before the
// Ready's new entries: the node takes a Ready only once the previous write
// completed), and answers the reads they make possible. Without it an
// entry committed during one write would wait for the next write, which
// has nothing to do with it, before its proposer hears back. The rest is
// applied by finish once the write completes.
func (n *Node) applyDurable(rd *core.Ready) {
	if rd.Snapshot != nil || n.stopped != nil {
		return
	}
	limit := uint64(math.MaxUint64)
	if len(rd.Entries) > 0 {
		limit = rd.Entries[0].Index
	}
	for i := range rd.CommittedEntries {
		e := &rd.CommittedEntries[i]
		if e.Index >= limit || e.Type == core.EntryConfChange {
			// A membership change waits until this Ready's commit index
			// is durable: applied must imply committed-and-durable here,
			// or a node restarting below an applied removal could need
			// the removed node to commit it again.
			break
		}
		n.apply(e)
	}
	for _, rs := range rd.ReadStates {
		n.readPoint(rs)
	}
	rd.ReadStates = nil
	n.serveReads()
}

// save starts a write; its completion resumes drive.
func (n *Node) save(u *Update, rd *core.Ready) {
	n.writing, n.wdone, n.werr, n.ready = true, false, nil, rd
	n.wterm = n.durTerm
	if !u.HardState.IsEmpty() {
		n.wterm = u.HardState.Term
	}
	n.wseq++
	seq := n.wseq
	n.cfg.Storage.Save(u, func(err error) {
		if seq != n.wseq || !n.writing || n.wdone || n.stopped != nil {
			return // a stale or repeated completion
		}
		n.wdone, n.werr = true, err
		n.drive()
	})
}

func (n *Node) storageFailed(err error) {
	if n.cfg.Logger != nil {
		n.cfg.Logger.Error("storage write failed; node stops", "node", n.ID(), "err", err)
	}
	n.fail(fmt.Errorf("%w: %w", ErrStorage, err))
}

// finish does what follows a Ready's durable write: send, apply, answer
// reads, advance, and maybe compact.
func (n *Node) finish(rd *core.Ready) {
	if ss := rd.SoftState; ss != nil {
		if n.cfg.Logger != nil && (ss.Role != n.role || ss.Lead != n.lead) {
			n.cfg.Logger.Info("role changed", "node", n.ID(), "role", ss.Role.String(), "leader", ss.Lead,
				"term", n.raft.BasicStatus().Term)
		}
		n.role, n.lead = ss.Role, ss.Lead
	}
	if len(rd.Messages) > 0 {
		if n.streams() {
			rd.Messages = n.withSnapshotData(rd.Messages)
		}
		n.cfg.Transport.Send(rd.Messages)
	}
	if s := rd.Snapshot; s != nil && s.Meta.Index > n.applied {
		if err := n.cfg.StateMachine.Restore(s.Data); err != nil {
			n.fail(fmt.Errorf("node %d: restore snapshot at %d: %w", n.ID(), s.Meta.Index, err))
			return
		}
		n.applied, n.snapIdx = s.Meta.Index, s.Meta.Index
		if n.cfg.Observer != nil {
			n.cfg.Observer.Restored(s.Meta.Index)
		}
		n.verifyRestored(s.Meta.Index)
	}
	for i := range rd.CommittedEntries {
		n.apply(&rd.CommittedEntries[i])
	}
	for _, rs := range rd.ReadStates {
		n.readPoint(rs)
	}
	n.serveReads()
	if err := n.raft.Advance(); err != nil {
		n.fail(fmt.Errorf("node %d: advance: %w", n.ID(), err))
		return
	}
	n.maybeSnapshot()
}

// apply applies one committed entry and resolves its proposer's future.
func (n *Node) apply(e *core.Entry) {
	if e.Index <= n.applied {
		return
	}
	n.applied = e.Index
	if n.cfg.Observer != nil {
		n.cfg.Observer.Applied(e)
	}
	switch e.Type {
	case core.EntryNormal:
		if len(e.Data) == 0 {
			break // a new leader's empty entry
		}
		if isRecord(e.Data) {
			n.applyRecord(e.Index, e.Data) // never reaches the state machine
			break
		}
		inc, seq, cmd, ok := splitHeader(e.Data)
		if !ok {
			cmd = e.Data
		}
		res := n.cfg.StateMachine.Apply(e.Index, cmd)
		if n.ver != nil {
			n.ver.changed = true
		}
		if ok && inc == n.inc {
			if f, found := n.proposals[seq]; found {
				delete(n.proposals, seq)
				f.resolve(res, nil)
			}
		}
	case core.EntryConfChange:
		cc, err := core.DecodeConfChange(e.Data)
		if err != nil {
			break // the core skipped it too
		}
		inc, seq, ctx, ok := splitHeader(cc.Context)
		if ok {
			cc.Context = ctx
		}
		for _, c := range cc.Changes {
			if c.Type == core.RemoveNode {
				n.verifyRemoved(c.NodeID)
			}
		}
		if n.cfg.ConfChangeApplied != nil {
			n.cfg.ConfChangeApplied(e.Index, cc)
		}
		if ok && inc == n.inc {
			if f, found := n.proposals[seq]; found {
				delete(n.proposals, seq)
				f.resolve(e.Index, nil)
			}
		}
	}
	n.verifyApplied(e.Index)
}

func splitHeader(b []byte) (inc, seq uint64, rest []byte, ok bool) {
	inc, k := binary.Uvarint(b)
	if k <= 0 {
		return 0, 0, b, false
	}
	seq, j := binary.Uvarint(b[k:])
	if j <= 0 {
		return 0, 0, b, false
	}
	return inc, seq, b[k+j:], true
}

// readPoint records the read index the core gave a read request.
func (n *Node) readPoint(rs core.ReadState) {
	if len(rs.Context) != 16 || binary.BigEndian.Uint64(rs.Context[:8]) != n.inc {
		return // an earlier run's read
	}
	seq := binary.BigEndian.Uint64(rs.Context[8:])
	rd, ok := n.reads[seq]
	if !ok || rd.pointed {
		return // timed out already, or a duplicate answer
	}
	rd.index, rd.pointed = rs.Index, true
	n.waiting = append(n.waiting, rd)
}

// serveReads answers the reads whose read point is applied.
func (n *Node) serveReads() {
	if len(n.waiting) == 0 {
		return
	}
	k := 0
	for _, rd := range n.waiting {
		if rd.f.done {
			continue
		}
		if rd.index <= n.applied {
			delete(n.reads, rd.seq)
			if err := n.divergedErr(); err != nil {
				rd.f.resolve(nil, err)
				continue
			}
			rd.f.resolve(n.cfg.StateMachine.Query(rd.query))
			continue
		}
		n.waiting[k] = rd
		k++
	}
	clear(n.waiting[k:])
	n.waiting = n.waiting[:k]
}

// maybeSnapshot snapshots the state machine and compacts the log once
// enough entries were applied since the last snapshot.
func (n *Node) maybeSnapshot() {
	if n.compact != nil || n.snapWriting {
		return // one snapshot at a time; waiters are served after it
	}
	n.snapshotDone() // waiters the last (durable) snapshot covers
	if err := n.divergedErr(); err != nil {
		// A diverged state is not made durable as a snapshot: the log
		// keeps the records that tell this node so after a restart.
		for _, w := range n.snapWait {
			w.f.resolve(nil, err)
		}
		n.snapWait = n.snapWait[:0]
		return
	}
	t := n.cfg.SnapshotThreshold
	if len(n.snapWait) == 0 && (t == 0 || n.applied < n.snapIdx+t || n.applied < n.snapRetry) {
		return
	}
	_ = n.snapshotAt(n.applied) // on failure (e.g. the core's log moved past it): retry later
}

// snapshotDone resolves, with the durable snapshot's index, the
// TakeSnapshot futures whose applied index at the call it covers.
func (n *Node) snapshotDone() {
	k := 0
	for _, w := range n.snapWait {
		if w.at <= n.snapIdx {
			w.f.resolve(n.snapIdx, nil)
			continue
		}
		n.snapWait[k] = w
		k++
	}
	clear(n.snapWait[k:])
	n.snapWait = n.snapWait[:k]
}

type snapWaiter struct {
	f  *Future
	at uint64 // applied index when TakeSnapshot was called
}

// snapshotAt snapshots the state machine, which is at idx, and queues the
// compaction write.
func (n *Node) snapshotAt(idx uint64) error {
	if n.streams() {
		return n.streamSnapshotAt(idx)
	}
	data, err := n.cfg.StateMachine.Snapshot()
	if err != nil {
		err = fmt.Errorf("node %d: snapshot at %d: %w", n.ID(), idx, err)
		n.fail(err)
		return err
	}
	if err := n.raft.CompactKeep(idx, data, n.cfg.SnapshotKeep); err != nil {
		return fmt.Errorf("%w: snapshot at %d: %w", ErrDropped, idx, err)
	}
	n.snapIdx = idx
	s := n.raft.Snapshot()
	n.compact = &Update{LocalSnapshot: s, CompactTo: idx - min(idx, n.cfg.SnapshotKeep), Sync: true}
	return nil
}

// streams reports whether the node streams its snapshots to storage
// instead of holding them in memory: its storage is a SnapshotStore and its
// state machine a SnapshotWriter.
func (n *Node) streams() bool {
	_, okS := n.cfg.Storage.(SnapshotStore)
	_, okW := n.cfg.StateMachine.(SnapshotWriter)
	return okS && okW
}

// streamSnapshotAt writes the state machine, which is at idx, into a new
// snapshot file of the storage, keeps only the snapshot's metadata in the
// core and queues the write that makes the file durable. A failure to
// write the file (a full disk, say) drops this snapshot: it is tried again
// once another SnapshotThreshold entries were applied, and TakeSnapshot's
// waiters get the error.
func (n *Node) streamSnapshotAt(idx uint64) error {
	f, err := n.cfg.Storage.(SnapshotStore).CreateSnapshot()
	if err != nil {
		return n.snapshotFailed(idx, fmt.Errorf("create snapshot file: %w", err))
	}
	fw := &fileWriter{f: f}
	if err := n.cfg.StateMachine.(SnapshotWriter).WriteSnapshot(fw); err != nil {
		f.Abort()
		if fw.err != nil {
			return n.snapshotFailed(idx, fmt.Errorf("write snapshot file: %w", fw.err))
		}
		err = fmt.Errorf("node %d: snapshot at %d: %w", n.ID(), idx, err)
		n.fail(err)
		return err
	}
	if err := n.raft.CompactKeep(idx, nil, n.cfg.SnapshotKeep); err != nil {
		f.Abort()
		return fmt.Errorf("%w: snapshot at %d: %w", ErrDropped, idx, err)
	}
	n.snapIdx, n.snapRetry = idx, 0
	s := n.raft.Snapshot()
	n.compact = &Update{LocalSnapshot: s, LocalSnapshotFile: f, CompactTo: idx - min(idx, n.cfg.SnapshotKeep), Sync: true}
	return nil
}

// snapshotFailed logs a snapshot that could not be written, answers the
// TakeSnapshot waiters with the error and puts the next attempt off.
func (n *Node) snapshotFailed(idx uint64, err error) error {
	err = fmt.Errorf("%w: snapshot at %d: %w", ErrDropped, idx, err)
	if n.cfg.Logger != nil {
		n.cfg.Logger.Warn("snapshot not taken; the log keeps growing until one is", "node", n.ID(), "err", err)
	}
	for _, w := range n.snapWait {
		w.f.resolve(nil, err)
	}
	clear(n.snapWait)
	n.snapWait = n.snapWait[:0]
	n.snapRetry = n.applied + max(n.cfg.SnapshotThreshold, 1)
	return err
}

// fileWriter remembers the error of the snapshot file it writes to, so
// that a failed write is told apart from a failing state machine.
type fileWriter struct {
	f   SnapshotFile
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	k, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return k, err
}

// withSnapshotData returns msgs with the data of every snapshot a MsgSnap
// carries without it read back from the storage (a streaming node keeps
// only the snapshot's metadata). A message whose snapshot can no longer be
// read is dropped and reported as not delivered, so the core tries again.
func (n *Node) withSnapshotData(msgs []core.Message) []core.Message {
	k := 0
	for _, m := range msgs {
		if m.Type == core.MsgSnap && m.Snapshot != nil && m.Snapshot.Data == nil && !m.Snapshot.IsEmpty() {
			if ss, ok := n.cfg.Storage.(SnapshotStore); ok {
				data, err := ss.SnapshotData(m.Snapshot.Meta)
				if err != nil {
					if n.cfg.Logger != nil {
						n.cfg.Logger.Warn("snapshot not sent: its data cannot be read", "node", n.ID(), "to", m.To,
							"index", m.Snapshot.Meta.Index, "err", err)
					}
					n.raft.ReportSnapshot(m.To, false)
					continue
				}
				m.Snapshot = &core.Snapshot{Meta: m.Snapshot.Meta, Data: data}
			}
		}
		msgs[k] = m
		k++
	}
	clear(msgs[k:])
	return msgs[:k]
}

// mix64 derives the incarnation from a seed (SplitMix64's finalizer).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
