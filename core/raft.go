package core

import (
	"fmt"
	"slices"

	"github.com/forge-consensus/consensus/core/quorum"
	"github.com/forge-consensus/consensus/core/tracker"
)

// peer is one member of the configuration (this node included) with the
// leader's and candidate's bookkeeping about it.
type peer struct {
	id         uint64
	pr         *tracker.Progress
	vote       int8   // this election: 0 no answer, 1 granted, -1 rejected
	sentCommit uint64 // commit index last sent in an append
	readAck    uint64 // highest read round acknowledged
	snapTicks  int    // heartbeat intervals spent waiting in StateSnapshot
	// resend asks for an append even without new entries, to learn where
	// a follower that answers heartbeats but lags actually stands.
	resend bool
}

// pendingRead is a ReadIndex request waiting for its read round to be
// confirmed by a quorum.
type pendingRead struct {
	index uint64
	round uint64
	from  uint64 // None for a local request
	ctx   []byte
}

// confAt is the configuration in force from an index on.
type confAt struct {
	index uint64
	conf  ConfState
}

// readyInflight remembers what the outstanding Ready handed out.
type readyInflight struct {
	active    bool
	lastIndex uint64 // last entry handed out for persistence (0: none)
	lastTerm  uint64
	applyTo   uint64 // last committed entry handed out
	snapIndex uint64 // snapshot handed out (0: none)
}

// raft is the protocol state machine behind Node.
type raft struct {
	cfg  Config
	id   uint64
	term uint64
	vote uint64
	role Role
	lead uint64
	log  raftLog
	rng  splitMix

	conf   ConfState
	voters quorum.Joint
	peers  []*peer // every voter and learner, sorted by ID
	confs  []confAt

	electionElapsed           int
	heartbeatElapsed          int
	randomizedElectionTimeout int

	// Leader state.
	pendingConfIndex uint64
	uncommittedBytes uint64
	leadTransferee   uint64
	leaseVoid        bool // a MsgTimeoutNow went out this term: no lease
	transferElapsed  int
	readRound        uint64
	needReadRound    bool
	pendingReads     []pendingRead
	termReads        []pendingRead // wait for the first commit of the term

	// Lease reads answered on the lease (and the last one's index and
	// term) and lease reads that fell back to a round: see BasicStatus.
	leaseReads, leaseReadRounds   uint64
	leaseReadIndex, leaseReadTerm uint64

	msgs       []Message
	readStates []ReadState

	// Persistence and application.
	unstableFrom    uint64    // first log index not yet handed out for persistence
	stableIndex     uint64    // last log index known durable
	pendingSnapshot *Snapshot // received snapshot not yet handed out
	snapshot        *Snapshot // latest snapshot, sent to lagging followers
	applying        uint64    // last committed index handed out
	applied         uint64    // last index the host has applied
	// syncedCommit is the highest commit index handed out in a Ready's
	// HardState with MustSync: durable once that Ready is advanced. A
	// membership change is handed out only at or below it.
	syncedCommit uint64
	prevHard     HardState
	prevSoft     SoftState
	inflight     readyInflight
}

func newRaft(cfg Config, st Persisted) (*raft, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &raft{cfg: cfg, id: cfg.ID}
	r.rng.seed(cfg.Seed, cfg.ID)
	if err := r.restore(st); err != nil {
		return nil, err
	}
	// Compare with what is on disk: a term raised over a torn write is
	// then persisted by the first Ready.
	r.prevHard = st.HardState
	if st.IsEmpty() && len(cfg.Voters) > 0 {
		r.bootstrap(cfg.Voters)
	}
	r.becomeFollower(r.term, None)
	r.prevSoft = r.softState()
	return r, nil
}

// restore loads persisted state, checking that it is consistent.
func (r *raft) restore(st Persisted) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: persisted state: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	var conf ConfState
	if !st.Snapshot.IsEmpty() {
		if err := validateSnapshot(st.Snapshot); err != nil {
			return bad("snapshot: %v", err)
		}
		r.log.restore(st.Snapshot.Meta.Index, st.Snapshot.Meta.Term)
		conf = cloneConfState(st.Snapshot.Meta.Config)
		r.snapshot = st.Snapshot
	}
	// Entries a compaction kept behind the snapshot are covered by it.
	for len(st.Entries) > 0 && st.Entries[0].Index <= r.log.offset {
		st.Entries = st.Entries[1:]
	}
	prev := r.log.lastIndex()
	prevTerm := r.log.lastTerm()
	for i := range st.Entries {
		e := &st.Entries[i]
		if e.Index != prev+1 || e.Term < prevTerm {
			return bad("entry %d (term %d) does not follow index %d (term %d)", e.Index, e.Term, prev, prevTerm)
		}
		if err := validateEntry(e); err != nil {
			return bad("entry %d: %v", e.Index, err)
		}
		prev, prevTerm = e.Index, e.Term
	}
	r.log.entries = slices.Clip(st.Entries)
	hs := st.HardState
	if hs.Commit > r.log.lastIndex() {
		return bad("commit index %d beyond last index %d", hs.Commit, r.log.lastIndex())
	}
	if lt := r.log.lastTerm(); lt > hs.Term {
		// A torn write: entries of a newer term reached the disk but the
		// hard state written with them did not. The node was in term lt,
		// yet never voted in it (a vote is durable before it is sent).
		hs.Term, hs.Vote = lt, None
	}
	r.term, r.vote = hs.Term, hs.Vote
	r.log.commitTo(hs.Commit)
	r.confs = []confAt{{index: r.log.offset, conf: conf}}
	r.setConf(conf)
	r.applyCommittedConfChanges(r.log.offset, r.log.committed)
	r.stableIndex = r.log.lastIndex()
	r.unstableFrom = r.stableIndex + 1
	applied := r.cfg.Applied
	if applied < r.log.offset {
		applied = r.log.offset
	}
	if applied > r.log.committed {
		return bad("Config.Applied %d beyond commit index %d", applied, r.log.committed)
	}
	r.applying, r.applied = applied, applied
	return nil
}

// bootstrap writes the founding configuration as the first log entry.
func (r *raft) bootstrap(voters []uint64) {
	cc := ConfChange{}
	for _, id := range slices.Sorted(slices.Values(voters)) {
		cc.Changes = append(cc.Changes, ConfChangeSingle{Type: AddVoter, NodeID: id})
	}
	r.term = 1
	r.log.entries = []Entry{{Term: 1, Index: 1, Type: EntryConfChange, Data: EncodeConfChange(cc)}}
	r.log.commitTo(1)
	r.applyCommittedConfChanges(0, 1)
}

func (r *raft) hardState() HardState {
	if BugVoteNotPersisted.In(r.cfg.TestBugs) {
		return HardState{Term: r.term, Commit: r.log.committed}
	}
	return HardState{Term: r.term, Vote: r.vote, Commit: r.log.committed}
}

func (r *raft) softState() SoftState { return SoftState{Lead: r.lead, Role: r.role} }

// ---- configuration ----

// setConf installs cs as the configuration in force and reconciles peers.
func (r *raft) setConf(cs ConfState) {
	r.conf = cs
	r.voters = quorum.Joint{
		Incoming: quorum.NewMajority(cs.Voters...),
		Outgoing: quorum.NewMajority(cs.VotersOutgoing...),
	}
	ids := r.voters.IDs(nil)
	for _, id := range cs.Learners {
		ids = insertID(ids, id)
	}
	old := r.peers
	r.peers = make([]*peer, 0, len(ids))
	for _, id := range ids {
		learner := slices.Contains(cs.Learners, id)
		p := findPeer(old, id)
		if p == nil {
			p = &peer{id: id, pr: r.newProgress(learner)}
			if r.role == Leader && id == r.id {
				p.pr.Match = r.stableIndex
			}
		}
		p.pr.IsLearner = learner
		r.peers = append(r.peers, p)
	}
}

func (r *raft) newProgress(learner bool) *tracker.Progress {
	return tracker.NewProgress(r.log.lastIndex()+1, r.cfg.MaxInflightMsgs, r.cfg.MaxInflightBytes, learner)
}

func findPeer(ps []*peer, id uint64) *peer {
	for _, p := range ps {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (r *raft) peer(id uint64) *peer { return findPeer(r.peers, id) }

// promotable reports whether this node may campaign: it is a voter.
func (r *raft) promotable() bool { return r.voters.Contains(r.id) }

// applyCommittedConfChanges makes every configuration change in (lo, hi]
// take effect. A change that turns out invalid is skipped on every node
// alike, so all nodes still agree on the configuration.
func (r *raft) applyCommittedConfChanges(lo, hi uint64) {
	if lo < r.log.offset {
		lo = r.log.offset
	}
	for i := lo + 1; i <= hi; i++ {
		e := r.log.at(i)
		if e.Type != EntryConfChange {
			continue
		}
		cc, err := DecodeConfChange(e.Data)
		if err != nil {
			continue
		}
		cs, err := applyConfChange(r.conf, cc)
		if err != nil {
			continue
		}
		r.confs = append(r.confs, confAt{index: i, conf: cs})
		r.setConf(cs)
		r.afterConfChange()
	}
}

// afterConfChange reacts, as leader, to a configuration that just took
// effect.
func (r *raft) afterConfChange() {
	if r.role != Leader {
		return
	}
	if r.leadTransferee != None && !r.voters.Incoming.Contains(r.leadTransferee) {
		r.abortTransfer()
	}
	if !r.voters.Contains(r.id) {
		// Removed (or demoted): tell the others the commit, hand over to
		// the best-placed voter, and step down.
		r.flushAppends()
		if p := r.bestVoter(); p != nil && p.pr.Match == r.log.lastIndex() {
			r.sendTimeoutNow(p.id)
		}
		r.becomeFollower(r.term, None)
		return
	}
}

// maybeAutoLeave proposes, as leader, to leave a joint configuration that
// asked for it once it is in force and nothing else is pending.
func (r *raft) maybeAutoLeave() {
	if r.role == Leader && r.conf.Joint() && r.conf.AutoLeave && r.pendingConfIndex <= r.log.committed {
		r.appendEntry(EntryConfChange, EncodeConfChange(ConfChange{}))
		r.pendingConfIndex = r.log.lastIndex()
	}
}

// confPosAt returns the position in r.confs of the configuration in force
// at index i (i at or above the compaction point).
func (r *raft) confPosAt(i uint64) int {
	k := 0
	for k+1 < len(r.confs) && r.confs[k+1].index <= i {
		k++
	}
	return k
}

// ---- role transitions ----

func (r *raft) reset(term uint64) {
	if r.term != term {
		r.term = term
		if !BugKeepVoteOnNewTerm.In(r.cfg.TestBugs) {
			r.vote = None
		}
	}
	r.lead = None
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.randomizedElectionTimeout = r.cfg.ElectionTick + int(r.rng.intn(uint64(r.cfg.ElectionTick)))
	r.abortTransfer()
	r.pendingReads = nil
	r.termReads = nil
	r.needReadRound = false
	r.uncommittedBytes = 0
	for _, p := range r.peers {
		*p = peer{id: p.id, pr: r.newProgress(p.pr.IsLearner)}
	}
}

func (r *raft) becomeFollower(term, lead uint64) {
	r.reset(term)
	r.role = Follower
	r.lead = lead
}

func (r *raft) becomePreCandidate() {
	if BugPreVoteRaisesTerm.In(r.cfg.TestBugs) {
		// The bug: set up like a candidate, in the next term (which the
		// next Ready persists); only the vote is left alone.
		r.reset(r.term + 1)
		r.role = PreCandidate
		return
	}
	// The term does not change: a pre-vote round must not disturb anyone.
	r.reset(r.term)
	r.role = PreCandidate
}

func (r *raft) becomeCandidate() {
	r.reset(r.term + 1)
	r.role = Candidate
	r.vote = r.id
}

func (r *raft) becomeLeader() {
	r.reset(r.term)
	r.role = Leader
	r.lead = r.id
	r.leaseVoid = false
	for _, p := range r.peers {
		if p.id == r.id {
			p.pr.Match = r.stableIndex
			p.pr.BecomeReplicate()
		}
		p.pr.RecentActive = true
	}
	// Changes already in the log may not have taken effect yet; allow none
	// before the leader's first entry commits.
	r.pendingConfIndex = r.log.lastIndex()
	r.appendEntry(EntryNormal, nil)
}

// ---- ticking ----

func (r *raft) tick() {
	if r.role == Leader {
		r.tickLeader()
		return
	}
	r.electionElapsed++
	switch {
	case r.electionElapsed < r.randomizedElectionTimeout:
	case r.promotable():
		r.electionElapsed = 0
		r.hup(false)
	case (r.electionElapsed-r.randomizedElectionTimeout)%r.cfg.ElectionTick == 0:
		r.askCommit()
	}
}

// askCommit is what a node that cannot campaign does when no leader spoke
// for an election timeout: it asks the voters it knows for a pre-vote it
// will never use, for their answers carry their commit index (see
// voteResp), and it may be a voter's commit index it is missing. A
// learner that a leader promoted in the same change that removed that
// leader (a voter replaced through a joint configuration) may never have
// heard that the change committed: the leader applied it and stepped
// down, and the learner, a voter in every configuration since, waits as a
// learner for a leader that will never come (simulator swarm seed 15893).
// It asks every election timeout while no leader speaks; it changes no
// state anywhere but the commit index it may learn.
func (r *raft) askCommit() {
	for _, p := range r.peers {
		if p.id != r.id && r.voters.Contains(p.id) {
			r.send(Message{Type: MsgPreVote, To: p.id, Term: r.term + 1, Index: r.log.lastIndex(), LogTerm: r.log.lastTerm()})
		}
	}
}

func (r *raft) tickLeader() {
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.electionElapsed >= r.cfg.ElectionTick {
		r.electionElapsed = 0
		if r.cfg.CheckQuorum && !r.quorumActive() {
			r.becomeFollower(r.term, None)
			return
		}
		for _, p := range r.peers {
			if p.id != r.id {
				p.pr.RecentActive = false
			}
		}
	}
	if r.leadTransferee != None {
		r.transferElapsed++
		if r.transferElapsed >= r.cfg.TransferTimeoutTicks {
			r.abortTransfer()
		}
	}
	if r.heartbeatElapsed >= r.cfg.HeartbeatTick {
		r.heartbeatElapsed = 0
		r.bcastHeartbeat()
		snapTimeout := r.cfg.ElectionTick / r.cfg.HeartbeatTick
		for _, p := range r.peers {
			if p.pr.State != tracker.StateSnapshot {
				continue
			}
			// A snapshot that neither arrived nor failed visibly: try again.
			if p.snapTicks++; p.snapTicks > snapTimeout {
				p.snapTicks = 0
				p.pr.BecomeProbe()
			}
		}
	}
}

// quorumActive reports whether a quorum was heard from in this election
// timeout.
func (r *raft) quorumActive() bool {
	res := r.voters.VoteResult(func(id uint64) (bool, bool) {
		if id == r.id {
			return true, true
		}
		p := r.peer(id)
		return p != nil && p.pr.RecentActive, true
	})
	return res == quorum.VoteWon
}

// ---- elections ----

// hup starts an election: a pre-vote round first when configured, unless
// forced by a leadership transfer.
func (r *raft) hup(transfer bool) {
	if r.role == Leader || !r.promotable() {
		return
	}
	if r.cfg.PreVote && !transfer {
		r.campaign(true, false)
		return
	}
	r.campaign(false, transfer)
}

func (r *raft) campaign(pre, transfer bool) {
	var typ MessageType
	var term uint64
	if pre {
		r.becomePreCandidate()
		typ, term = MsgPreVote, r.term+1
	} else {
		r.becomeCandidate()
		typ, term = MsgVote, r.term
	}
	if r.recordVote(r.id, true) {
		return
	}
	for _, p := range r.peers {
		if p.id == r.id || !r.voters.Contains(p.id) {
			continue
		}
		r.send(Message{Type: typ, To: p.id, Term: term, Index: r.log.lastIndex(),
			LogTerm: r.log.lastTerm(), Force: transfer})
	}
}

// recordVote records a (pre-)vote and acts on the result; it reports
// whether the election was decided.
func (r *raft) recordVote(id uint64, granted bool) bool {
	if p := r.peer(id); p != nil && p.vote == 0 {
		p.vote = -1
		if granted {
			p.vote = 1
		}
	}
	switch r.voters.VoteResult(func(id uint64) (bool, bool) {
		p := r.peer(id)
		if p == nil || p.vote == 0 {
			return false, false
		}
		return p.vote > 0, true
	}) {
	case quorum.VoteWon:
		if r.role == PreCandidate {
			r.campaign(false, false)
		} else {
			r.becomeLeader()
		}
		return true
	case quorum.VoteLost:
		r.becomeFollower(r.term, None)
		return true
	}
	return false
}

// ---- sending ----

func (r *raft) send(m Message) {
	m.From = r.id
	if m.Term == 0 {
		switch m.Type {
		case MsgProp, MsgReadIndex, MsgTransferLeader:
			// Forwarded requests carry no term.
		default:
			m.Term = r.term
		}
	}
	if r.msgs == nil {
		// One allocation per Ready in the common case: a leader writes to
		// every other member, anyone else mostly answers one.
		n := 1
		if r.role == Leader {
			n = max(1, len(r.peers)-1)
		}
		r.msgs = make([]Message, 0, n)
	}
	r.msgs = append(r.msgs, m)
}

// sendAppend sends p one append (or a snapshot when the entries it needs
// are compacted). With empty set it may carry no entries, to update the
// follower's commit index. It reports whether something was sent.
func (r *raft) sendAppend(p *peer, empty bool) bool {
	pr := p.pr
	if pr.IsPaused() {
		return false
	}
	prevIndex := pr.Next - 1
	prevTerm, err := r.log.term(prevIndex)
	if err != nil {
		return r.sendSnapshot(p)
	}
	last := r.log.lastIndex()
	var ents []Entry
	if pr.Next <= last {
		ents = r.log.slice(pr.Next, last+1, r.cfg.MaxSizePerMsg)
	}
	if len(ents) == 0 && !empty {
		return false
	}
	var bytes uint64
	for i := range ents {
		bytes += ents[i].size()
	}
	r.send(Message{Type: MsgApp, To: p.id, Index: prevIndex, LogTerm: prevTerm,
		Entries: ents, Commit: r.log.committed})
	pr.SentEntries(len(ents), prevIndex+uint64(len(ents)), bytes)
	p.sentCommit = r.log.committed
	return true
}

func (r *raft) sendSnapshot(p *peer) bool {
	if r.snapshot.IsEmpty() {
		return false
	}
	r.send(Message{Type: MsgSnap, To: p.id, Snapshot: r.snapshot})
	p.pr.BecomeSnapshot(r.snapshot.Meta.Index)
	p.snapTicks = 0
	return true
}

// flushAppends sends every follower what it lacks, as far as flow control
// allows: new entries (batched up to MaxSizePerMsg per message and
// pipelined up to MaxInflightMsgs), or an empty append carrying a newer
// commit index. Sends are deferred to here so that many proposals leave in
// one message.
func (r *raft) flushAppends() {
	if r.role != Leader {
		return
	}
	last := r.log.lastIndex()
	for _, p := range r.peers {
		if p.id == r.id {
			continue
		}
		for p.pr.Next <= last && r.sendAppend(p, false) {
		}
		if (p.sentCommit < r.log.committed || p.resend) && r.sendAppend(p, true) {
			p.resend = false
		}
	}
	if r.needReadRound {
		r.needReadRound = false
		r.readRound++
		r.bcastHeartbeat()
	}
}

// needsFlush reports whether flushAppends would send anything.
func (r *raft) needsFlush() bool {
	if r.role != Leader {
		return false
	}
	if r.needReadRound {
		return true
	}
	last := r.log.lastIndex()
	for _, p := range r.peers {
		if p.id == r.id || p.pr.IsPaused() {
			continue
		}
		if p.pr.Next <= last || p.sentCommit < r.log.committed || p.resend {
			return true
		}
	}
	return false
}

func (r *raft) bcastHeartbeat() {
	for _, p := range r.peers {
		if p.id == r.id {
			continue
		}
		commit := min(p.pr.Match, r.log.committed)
		if BugCommitBeyondVerified.In(r.cfg.TestBugs) {
			commit = r.log.committed
		}
		r.send(Message{Type: MsgHeartbeat, To: p.id, Commit: commit, Index: r.readRound})
	}
	if r.self() != nil {
		r.self().readAck = r.readRound
	}
}

func (r *raft) self() *peer { return r.peer(r.id) }

// ---- proposals ----

// appendEntry appends one entry of the leader's term.
func (r *raft) appendEntry(typ EntryType, data []byte) {
	idx := r.log.lastIndex() + 1
	r.log.reserve(1)
	r.log.entries = append(r.log.entries, Entry{Term: r.term, Index: idx, Type: typ, Data: data})
	r.uncommittedBytes += uint64(len(data))
}

// propose appends proposals as leader, or forwards them.
func (r *raft) propose(ents []Entry) error {
	if r.role != Leader {
		return r.forward(Message{Type: MsgProp, Entries: ents})
	}
	var largest, total uint64
	for i := range ents {
		n := uint64(len(ents[i].Data))
		largest = max(largest, n)
		total += n
	}
	if err := r.checkProposal(largest, total); err != nil {
		return err
	}
	for i := range ents {
		if ents[i].Type == EntryConfChange {
			if err := r.checkConfChange(ents[i].Data); err != nil {
				return err
			}
			if len(ents) > 1 {
				return fmt.Errorf("%w: a membership change must be proposed alone", ErrInvalidConfChange)
			}
		}
	}
	for i := range ents {
		r.appendEntry(ents[i].Type, ents[i].Data)
		if ents[i].Type == EntryConfChange {
			r.pendingConfIndex = r.log.lastIndex()
		}
	}
	return nil
}

// proposeData is the allocation-free path for one normal proposal.
func (r *raft) proposeData(data []byte) error {
	if r.role != Leader {
		return r.propose([]Entry{{Data: data}})
	}
	n := uint64(len(data))
	if err := r.checkProposal(n, n); err != nil {
		return err
	}
	r.appendEntry(EntryNormal, data)
	return nil
}

// checkProposal says whether the leader takes proposals now whose largest
// entry has largest bytes of data, total bytes in all.
func (r *raft) checkProposal(largest, total uint64) error {
	if r.leadTransferee != None {
		return fmt.Errorf("%w: transferring leadership to %d", ErrTransferInProgress, r.leadTransferee)
	}
	if r.leaving() {
		return fmt.Errorf("%w: the leader is leaving the voters", ErrProposalDropped)
	}
	if largest > r.cfg.MaxEntryBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrEntryTooLarge, largest, r.cfg.MaxEntryBytes)
	}
	if lim := r.cfg.MaxUncommittedBytes; lim > 0 && r.uncommittedBytes > 0 && r.uncommittedBytes+total > lim {
		return fmt.Errorf("%w: %d uncommitted + %d proposed > %d", ErrUncommittedLimit, r.uncommittedBytes, total, lim)
	}
	return nil
}

// leaving reports whether a membership change not yet committed takes this
// leader out of the incoming voters. Such a leader takes no more proposals,
// so that when the change commits its log ends with entries that a quorum
// of the remaining voters holds: one of them can then take over, and win
// an election without this node's vote, even if every message the leader
// sends after the commit is lost.
func (r *raft) leaving() bool {
	if r.pendingConfIndex <= r.log.committed {
		return false
	}
	cs := r.conf
	for i := r.log.committed + 1; i <= min(r.pendingConfIndex, r.log.lastIndex()); i++ {
		if e := r.log.at(i); e.Type == EntryConfChange {
			if cc, err := DecodeConfChange(e.Data); err == nil {
				if next, err := applyConfChange(cs, cc); err == nil {
					cs = next
				}
			}
		}
	}
	_, in := slices.BinarySearch(cs.Voters, r.id)
	return !in
}

// checkConfChange validates a proposed membership change against the
// configuration in force.
func (r *raft) checkConfChange(data []byte) error {
	if r.pendingConfIndex > r.log.committed && !BugSecondConfChange.In(r.cfg.TestBugs) {
		return fmt.Errorf("%w: change at index %d not yet committed", ErrConfChangePending, r.pendingConfIndex)
	}
	cc, err := DecodeConfChange(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfChange, err)
	}
	if _, err := applyConfChange(r.conf, cc); err != nil {
		return err
	}
	return nil
}

// forward sends a request to the leader, or explains why it cannot.
func (r *raft) forward(m Message) error {
	if r.lead == None || r.cfg.DisableProposalForwarding {
		return &NotLeaderError{Leader: r.lead}
	}
	m.To = r.lead
	r.send(m)
	return nil
}

// ---- commit ----

// maybeCommit advances the commit index to what a quorum has durably
// stored, counting only entries of the current term (Raft §5.4.2).
func (r *raft) maybeCommit() bool {
	acked := func(id uint64) (uint64, bool) {
		p := r.peer(id)
		if p == nil {
			return 0, false
		}
		return p.pr.Match, true
	}
	ci := r.voters.CommittedIndex(acked)
	if BugJointCommitOneHalf.In(r.cfg.TestBugs) && r.voters.IsJoint() {
		// The incoming voters are the configuration being moved to: count
		// them alone.
		ci = r.voters.Incoming.CommittedIndex(acked)
	}
	if ci <= r.log.committed || ci > r.log.lastIndex() {
		return false
	}
	if t, _ := r.log.term(ci); t != r.term && !BugCommitOldTerm.In(r.cfg.TestBugs) {
		return false
	}
	r.commitTo(ci)
	return true
}

// commitTo raises the commit index and lets committed configuration
// changes and term-start reads take effect.
func (r *raft) commitTo(ci uint64) {
	old := r.log.committed
	if ci <= old {
		return
	}
	r.log.commitTo(ci)
	if r.role == Leader {
		var freed uint64
		for i := old + 1; i <= ci; i++ {
			freed += uint64(len(r.log.at(i).Data))
		}
		r.uncommittedBytes -= min(freed, r.uncommittedBytes)
	}
	confs := len(r.confs)
	r.applyCommittedConfChanges(old, ci)
	r.maybeAutoLeave()
	if r.role == Leader && len(r.termReads) > 0 && r.committedInTerm() {
		reads := r.termReads
		r.termReads = nil
		for _, rd := range reads {
			r.handleRead(rd.from, rd.ctx)
		}
	}
	if r.role == Leader && len(r.confs) != confs {
		// The voters changed: entries already acknowledged may now have
		// a quorum, and no acknowledgement may come to say so.
		r.maybeCommit()
	}
}

// committedInTerm reports whether an entry of the current term is committed.
func (r *raft) committedInTerm() bool {
	t, err := r.log.term(r.log.committed)
	return err == nil && t == r.term
}

// ---- reads ----

// sendTimeoutNow tells the transferee to campaign at once. Its campaign
// overrides the followers' leader stickiness, on which the lease rests, so
// this leader trusts no lease for the rest of its term: the message may be
// delayed arbitrarily, even past an abandoned transfer.
func (r *raft) sendTimeoutNow(to uint64) {
	r.leaseVoid = true
	r.send(Message{Type: MsgTimeoutNow, To: to})
}

// leaseValid reports whether the CheckQuorum lease holds.
func (r *raft) leaseValid() bool {
	if BugLeaseAfterTransfer.In(r.cfg.TestBugs) {
		// The lease rests on the quorum's recent contact alone: a transfer
		// under way, or a MsgTimeoutNow already sent, is forgotten.
		return r.quorumActive()
	}
	return !r.leaseVoid && r.leadTransferee == None && r.quorumActive()
}

// leaseRead serves a read on the leader's CheckQuorum lease when it holds,
// and otherwise as a ReadSafe request.
func (r *raft) leaseRead(ctx []byte) error {
	if !r.cfg.CheckQuorum {
		return fmt.Errorf("%w: lease reads need CheckQuorum", ErrInvalidConfig)
	}
	if r.role != Leader {
		return &NotLeaderError{Leader: r.lead}
	}
	// A leader that has committed in its term knows every committed entry;
	// BugLeaseReadNoCheck takes that for enough and checks no lease.
	if r.committedInTerm() && (r.leaseValid() || BugLeaseReadNoCheck.In(r.cfg.TestBugs)) {
		r.answerLeaseRead(None, ctx)
		return nil
	}
	r.leaseReadRounds++
	r.handleRead(None, ctx)
	return nil
}

// answerLeaseRead answers a read on the lease at the commit index and
// counts it.
func (r *raft) answerLeaseRead(from uint64, ctx []byte) {
	r.leaseReads++
	r.leaseReadIndex, r.leaseReadTerm = r.log.committed, r.term
	r.answerRead(pendingRead{index: r.log.committed, from: from, ctx: ctx})
}

// handleRead serves a ReadIndex request as leader.
func (r *raft) handleRead(from uint64, ctx []byte) {
	if !r.committedInTerm() {
		r.termReads = append(r.termReads, pendingRead{from: from, ctx: ctx})
		return
	}
	alone := len(r.voters.Incoming) == 1 && r.voters.Incoming[0] == r.id && !r.voters.IsJoint()
	// The lease holds only while a quorum was heard from in the current
	// quorum-check window: each of them then ignores candidates (and will
	// not campaign) for an election timeout from that contact, which lasts
	// beyond the window. Otherwise confirm with a round as in ReadSafe.
	if r.cfg.ReadMode == ReadLease && r.leaseValid() {
		// A lease: no confirmation round needed.
		r.answerLeaseRead(from, ctx)
		return
	}
	if alone {
		// A single voter: no confirmation round needed.
		r.answerRead(pendingRead{index: r.log.committed, from: from, ctx: ctx})
		return
	}
	r.pendingReads = append(r.pendingReads, pendingRead{
		index: r.log.committed, round: r.readRound + 1, from: from, ctx: ctx,
	})
	r.needReadRound = true
}

func (r *raft) answerRead(rd pendingRead) {
	if rd.from == None || rd.from == r.id {
		r.readStates = append(r.readStates, ReadState{Index: rd.index, Context: rd.ctx})
		return
	}
	r.send(Message{Type: MsgReadIndexResp, To: rd.from, Index: rd.index, Context: rd.ctx})
}

// releaseReads answers the reads whose round a quorum has confirmed.
func (r *raft) releaseReads() {
	if len(r.pendingReads) == 0 {
		return
	}
	confirmed := r.voters.CommittedIndex(func(id uint64) (uint64, bool) {
		p := r.peer(id)
		if p == nil {
			return 0, false
		}
		return p.readAck, true
	})
	n := 0
	for n < len(r.pendingReads) && r.pendingReads[n].round <= confirmed {
		r.answerRead(r.pendingReads[n])
		n++
	}
	r.pendingReads = r.pendingReads[n:]
}

// ---- leadership transfer ----

func (r *raft) transferLeadership(to uint64) error {
	if r.role != Leader {
		return r.forward(Message{Type: MsgTransferLeader, Index: to})
	}
	if to == r.id || !r.voters.Incoming.Contains(to) {
		return fmt.Errorf("%w: %d is not a voter other than the leader", ErrInvalidTransferTarget, to)
	}
	if r.leadTransferee != None {
		if r.leadTransferee == to {
			return nil
		}
		return fmt.Errorf("%w: to %d", ErrTransferInProgress, r.leadTransferee)
	}
	r.leadTransferee = to
	r.transferElapsed = 0
	r.electionElapsed = 0
	if p := r.peer(to); p.pr.Match == r.log.lastIndex() {
		r.sendTimeoutNow(to)
	}
	return nil
}

func (r *raft) abortTransfer() {
	r.leadTransferee = None
	r.transferElapsed = 0
}

// bestVoter returns the voter other than this node with the highest match
// (lowest ID on ties), or nil.
func (r *raft) bestVoter() *peer {
	var best *peer
	for _, p := range r.peers {
		if p.id == r.id || !r.voters.Incoming.Contains(p.id) {
			continue
		}
		if best == nil || p.pr.Match > best.pr.Match {
			best = p
		}
	}
	return best
}

// ---- stepping ----

// step handles one message that passed validation.
func (r *raft) step(m Message) error {
	// Checks first: a message refused with an error changes nothing.
	switch m.Type {
	case MsgProp, MsgReadIndex, MsgTransferLeader:
		if m.Term != 0 {
			return fmt.Errorf("%w: forwarded %v with term %d", ErrInvalidMessage, m.Type, m.Term)
		}
	default:
		if m.Term == 0 {
			return fmt.Errorf("%w: %v without a term", ErrInvalidMessage, m.Type)
		}
	}
	if m.Type.IsResponse() && r.peer(m.From) == nil {
		return fmt.Errorf("%w: %v from %d", ErrUnknownNode, m.Type, m.From)
	}
	if m.Type == MsgApp && m.Term >= r.term {
		if err := r.checkAppend(m); err != nil {
			return err
		}
	}
	switch {
	case m.Term == 0:
	case m.Term > r.term:
		if m.Type == MsgVote || m.Type == MsgPreVote {
			inLease := r.cfg.CheckQuorum && r.lead != None && r.electionElapsed < r.cfg.ElectionTick
			if inLease && !m.Force {
				// We heard from a live leader recently: a disruptive
				// candidate (say, one rejoining after a partition) is ignored.
				return nil
			}
		}
		switch {
		case m.Type == MsgPreVote:
			// Never raise our term for a pre-vote.
		case m.Type == MsgPreVoteResp && !m.Reject:
			// The term is the one we would campaign in; handled below.
		case m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap:
			r.becomeFollower(m.Term, m.From)
		default:
			r.becomeFollower(m.Term, None)
		}
	case m.Term < r.term:
		switch {
		case (r.cfg.CheckQuorum || r.cfg.PreVote || !r.promotable() || !r.voters.Contains(m.From)) &&
			(m.Type == MsgHeartbeat || m.Type == MsgApp):
			// A stale leader: tell it our term so it steps down, since
			// with these options we may never vote for it to learn it,
			// a node that cannot campaign will never ask it to, and our
			// campaigns do not reach a leader outside our voters (one
			// added by a change we have not learnt of yet).
			r.send(Message{Type: MsgAppResp, To: m.From})
		case m.Type == MsgPreVote:
			r.send(r.voteResp(MsgPreVoteResp, m.From, 0, true))
		case m.Type == MsgVote && (!r.promotable() || !r.voters.Contains(m.From)) &&
			r.log.isUpToDate(m.Index, m.LogTerm):
			// A candidate behind our term, with a log we would vote for,
			// that our own campaigns would never reach (we cannot
			// campaign, or it is not among our voters): tell it our term,
			// or it may never reach one we can vote in. One whose log is
			// behind gets no answer: our vote could not help it, and a
			// node removed long ago stays harmless in its old term.
			r.send(r.voteResp(MsgVoteResp, m.From, 0, true))
		}
		return nil
	}

	switch m.Type {
	case MsgVote, MsgPreVote:
		r.handleVote(m)
		return nil
	case MsgVoteResp, MsgPreVoteResp:
		if r.role != Leader {
			// A leader learns its commit index only by counting its
			// quorum (Raft §5.4.2; the simulator's commit-quorum check
			// holds it to that): a late answer to its campaign has nothing
			// it needs.
			r.learnCommit(m.Commit, m.LogTerm)
		}
	}
	switch r.role {
	case Leader:
		return r.stepLeader(m)
	case Candidate, PreCandidate:
		return r.stepCandidate(m)
	default:
		return r.stepFollower(m)
	}
}

func (r *raft) handleVote(m Message) {
	canVote := r.vote == m.From ||
		(r.vote == None && r.lead == None) ||
		(m.Type == MsgPreVote && m.Term > r.term)
	resp := MsgVoteResp
	if m.Type == MsgPreVote {
		resp = MsgPreVoteResp
	}
	if canVote && r.log.isUpToDate(m.Index, m.LogTerm) {
		// A granted vote answers in the requested term, so a pre-candidate
		// can count it; like a refusal, it tells our commit index.
		r.send(r.voteResp(resp, m.From, m.Term, false))
		if m.Type == MsgVote {
			r.electionElapsed = 0
			r.vote = m.From
		}
		return
	}
	r.send(r.voteResp(resp, m.From, 0, true))
}

// voteResp answers a (pre-)vote request, in term (0: ours). Granted or
// refused, it tells the candidate our commit index and the term of the
// entry there: a candidate that holds that entry knows from it that its
// log is committed up to there (Log Matching), even though no leader told
// it. Without this a membership change could wedge
// a cluster. Take voters {1, 2} and an entry removing 1: 1 leads, commits
// and applies it, and having left the voters never campaigns again; 2 never
// heard of the commit, still counts {1, 2} and needs 1's vote. If 1's log
// is ahead of 2's (2 led a later term and lost an entry it had sent before
// its own write completed), 1 refuses, and no one can win. Learning the
// commit index from the refusal, 2 applies the removal and wins alone.
func (r *raft) voteResp(t MessageType, to, term uint64, reject bool) Message {
	ct, _ := r.log.term(r.log.committed)
	return Message{Type: t, To: to, Term: term, Reject: reject, Commit: r.log.committed, LogTerm: ct}
}

// learnCommit raises the commit index to ci if this log holds the entry
// there with the given term: by Log Matching the log up to ci is then the
// log that the sender knows to be committed.
func (r *raft) learnCommit(ci, term uint64) {
	if ci <= r.log.committed || ci > r.log.lastIndex() || term == 0 {
		return
	}
	if t, err := r.log.term(ci); err == nil && t == term {
		r.commitTo(ci)
		if (r.role == PreCandidate || r.role == Candidate) && !r.promotable() {
			// The commit index took us out of the voters: the campaign
			// under way must not go on to make a leader of a non-voter
			// (swarm seed 45898).
			r.becomeFollower(r.term, None)
		}
	}
}

func (r *raft) stepLeader(m Message) error {
	switch m.Type {
	case MsgProp, MsgReadIndex, MsgTransferLeader:
		// Forwarded requests are taken from members only.
		if r.peer(m.From) == nil {
			return fmt.Errorf("%w: forwarded %v from %d", ErrUnknownNode, m.Type, m.From)
		}
	}
	switch m.Type {
	case MsgProp:
		return r.propose(m.Entries)
	case MsgReadIndex:
		r.handleRead(m.From, m.Context)
		return nil
	case MsgTransferLeader:
		return r.transferLeadership(m.Index)
	case MsgApp, MsgHeartbeat, MsgSnap, MsgVoteResp, MsgPreVoteResp, MsgTimeoutNow, MsgReadIndexResp:
		// Another leader in our term is impossible; stale answers are harmless.
		return nil
	}
	p := r.peer(m.From)
	if p == nil || p.id == r.id {
		return fmt.Errorf("%w: %v from %d", ErrUnknownNode, m.Type, m.From)
	}
	pr := p.pr
	pr.RecentActive = true
	switch m.Type {
	case MsgAppResp:
		if m.Index > r.log.lastIndex() {
			return fmt.Errorf("%w: %v for index %d beyond last index %d", ErrInvalidMessage, m.Type, m.Index, r.log.lastIndex())
		}
		if m.Reject {
			hint := min(m.RejectHint, r.log.lastIndex())
			if m.LogTerm > 0 {
				// Skip every entry of a term the follower does not have.
				hint, _ = r.log.findConflictByTerm(hint, m.LogTerm)
			}
			if pr.MaybeDecrTo(m.Index, hint) && pr.State == tracker.StateReplicate {
				pr.BecomeProbe()
			}
			return nil
		}
		if pr.MaybeUpdate(m.Index) || pr.State == tracker.StateSnapshot && pr.Match >= pr.PendingSnapshot {
			switch {
			case pr.State == tracker.StateProbe:
				pr.BecomeReplicate()
			case pr.State == tracker.StateSnapshot && pr.Match >= pr.PendingSnapshot:
				pr.BecomeProbe()
				pr.BecomeReplicate()
			}
			r.maybeCommit()
			if r.leadTransferee == m.From && pr.Match == r.log.lastIndex() {
				r.sendTimeoutNow(m.From)
			}
		}
	case MsgHeartbeatResp:
		pr.MsgAppProbesPaused = false
		if pr.State == tracker.StateReplicate && pr.Inflights.Full() {
			pr.Inflights.FreeFirstOne()
		}
		if pr.Match < r.log.lastIndex() {
			// Appends or their answers may have been lost: send one more.
			p.resend = true
		}
		if m.Index > p.readAck && m.Index <= r.readRound {
			p.readAck = m.Index
			r.releaseReads()
		}
	}
	return nil
}

func (r *raft) stepCandidate(m Message) error {
	switch m.Type {
	case MsgProp:
		return fmt.Errorf("%w: election in progress", ErrProposalDropped)
	case MsgReadIndex, MsgTransferLeader:
		return &NotLeaderError{}
	case MsgApp, MsgHeartbeat, MsgSnap:
		// A leader of our term exists.
		r.becomeFollower(m.Term, m.From)
		return r.stepFollower(m)
	case MsgPreVoteResp:
		if r.role == PreCandidate && (m.Reject || m.Term == r.term+1) {
			r.recordVote(m.From, !m.Reject)
		}
	case MsgVoteResp:
		if r.role == Candidate && m.Term == r.term {
			r.recordVote(m.From, !m.Reject)
		}
	}
	return nil
}

func (r *raft) stepFollower(m Message) error {
	switch m.Type {
	case MsgProp, MsgReadIndex, MsgTransferLeader:
		// Requests are forwarded once, by the node they were made on.
		return &NotLeaderError{Leader: r.lead}
	case MsgApp:
		r.electionElapsed = 0
		r.lead = m.From
		return r.handleAppend(m)
	case MsgHeartbeat:
		r.electionElapsed = 0
		r.lead = m.From
		r.commitTo(min(m.Commit, r.log.lastIndex()))
		r.send(Message{Type: MsgHeartbeatResp, To: m.From, Index: m.Index})
	case MsgSnap:
		r.electionElapsed = 0
		r.lead = m.From
		r.handleSnapshot(m)
	case MsgTimeoutNow:
		r.hup(true)
	case MsgReadIndexResp:
		r.readStates = append(r.readStates, ReadState{Index: m.Index, Context: m.Context})
	}
	return nil
}

func (r *raft) handleAppend(m Message) error {
	if m.Index < r.log.committed {
		r.send(Message{Type: MsgAppResp, To: m.From, Index: r.log.committed})
		return nil
	}
	if !r.log.matchTerm(m.Index, m.LogTerm) {
		hint, hintTerm := r.log.findConflictByTerm(min(m.Index, r.log.lastIndex()), m.LogTerm)
		r.send(Message{Type: MsgAppResp, To: m.From, Index: m.Index, Reject: true,
			RejectHint: hint, LogTerm: hintTerm})
		return nil
	}
	lastNew := m.Index + uint64(len(m.Entries))
	if ci := r.log.findConflict(m.Entries); ci != 0 {
		if at := r.log.truncateAndAppend(m.Entries[ci-m.Index-1:]); at != 0 {
			r.unstableFrom = min(r.unstableFrom, at)
			r.stableIndex = min(r.stableIndex, at-1)
		}
	}
	if BugCommitBeyondVerified.In(r.cfg.TestBugs) {
		// The bug: up to our last index, which may lie past what this
		// append showed to match the leader's log.
		lastNew = max(lastNew, r.log.lastIndex())
		r.commitTo(min(m.Commit, lastNew))
		r.send(Message{Type: MsgAppResp, To: m.From, Index: m.Index + uint64(len(m.Entries))})
		return nil
	}
	r.commitTo(min(m.Commit, lastNew))
	r.send(Message{Type: MsgAppResp, To: m.From, Index: lastNew})
	return nil
}

// checkAppend refuses an append that would overwrite a committed entry: no
// leader can send one, so the message is corrupt or forged.
func (r *raft) checkAppend(m Message) error {
	committed := r.log.committed
	if m.Index >= committed {
		// Everything it carries lies past the commit index.
		return nil
	}
	// The preceding entry and the entries up to the commit index must be
	// ours where we still hold them (compacted ones are settled anyway).
	if t, err := r.log.term(m.Index); err == nil && t != m.LogTerm {
		return fmt.Errorf("%w: append from %d contradicts committed index %d", ErrInvalidMessage, m.From, m.Index)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Index > committed {
			break
		}
		if t, err := r.log.term(e.Index); err == nil && t != e.Term {
			return fmt.Errorf("%w: append from %d conflicts with committed index %d", ErrInvalidMessage, m.From, e.Index)
		}
	}
	return nil
}

func (r *raft) handleSnapshot(m Message) {
	s := m.Snapshot
	idx, term := s.Meta.Index, s.Meta.Term
	if idx <= r.log.committed {
		r.send(Message{Type: MsgAppResp, To: m.From, Index: r.log.committed})
		return
	}
	if r.log.matchTerm(idx, term) {
		// We already have the entries: just learn that they are committed.
		// Acknowledge no further: entries past idx may be a deposed
		// leader's, unlike the sender's at the same indexes.
		r.commitTo(idx)
		r.send(Message{Type: MsgAppResp, To: m.From, Index: idx})
		return
	}
	r.log.restore(idx, term)
	r.unstableFrom = idx + 1
	r.stableIndex = min(r.stableIndex, idx)
	r.pendingSnapshot = s
	r.snapshot = s
	r.applying = idx
	conf := cloneConfState(s.Meta.Config)
	r.confs = []confAt{{index: idx, conf: conf}}
	r.setConf(conf)
	r.send(Message{Type: MsgAppResp, To: m.From, Index: idx})
}

// ---- Ready and Advance ----

func (r *raft) hasReady() bool {
	if r.inflight.active {
		return false
	}
	if len(r.msgs) > 0 || len(r.readStates) > 0 || r.pendingSnapshot != nil ||
		r.unstableFrom <= r.log.lastIndex() || r.log.committed > r.applying ||
		r.softState() != r.prevSoft || r.hardState() != r.prevHard {
		return true
	}
	return r.needsFlush()
}

func (r *raft) ready() Ready {
	var rd Ready
	if r.inflight.active {
		return rd
	}
	r.flushAppends()
	if ss := r.softState(); ss != r.prevSoft {
		rd.SoftState = &SoftState{Lead: ss.Lead, Role: ss.Role}
		r.prevSoft = ss
	}
	if hs := r.hardState(); hs != r.prevHard {
		rd.HardState = hs
		rd.MustSync = hs.Term != r.prevHard.Term || hs.Vote != r.prevHard.Vote
		r.prevHard = hs
	}
	fl := readyInflight{active: true}
	if r.pendingSnapshot != nil {
		rd.Snapshot = r.pendingSnapshot
		rd.MustSync = true
		fl.snapIndex = r.pendingSnapshot.Meta.Index
		r.pendingSnapshot = nil
	}
	if last := r.log.lastIndex(); r.unstableFrom <= last {
		rd.Entries = r.log.slice(r.unstableFrom, last+1, 0)
		rd.MustSync = true
		fl.lastIndex, fl.lastTerm = last, r.log.lastTerm()
		r.unstableFrom = last + 1
	}
	rd.Messages = r.msgs
	r.msgs = nil
	hi := r.log.committed
	if BugApplyUncommitted.In(r.cfg.TestBugs) {
		hi = max(hi, min(r.stableIndex, r.log.lastIndex()))
	}
	if hi > r.applying {
		rd.CommittedEntries = r.log.slice(r.applying+1, hi+1, r.cfg.MaxCommittedBytesPerReady)
		r.applying += uint64(len(rd.CommittedEntries))
		if confChangeAbove(rd.CommittedEntries, r.syncedCommit) && !BugApplyConfUnsynced.In(r.cfg.TestBugs) {
			// The host applies a membership change once this Ready's
			// write completes: sync the commit index that covers it (even
			// if unchanged since an unsynced write), so that a crash cannot
			// restart the node below a change it applied.
			rd.HardState = r.hardState()
			rd.MustSync = true
		}
	}
	if rd.MustSync && !rd.HardState.IsEmpty() {
		r.syncedCommit = max(r.syncedCommit, rd.HardState.Commit)
	}
	fl.applyTo = r.applying
	rd.ReadStates = r.readStates
	r.readStates = nil
	r.inflight = fl
	return rd
}

// confChangeAbove reports whether ents, in index order, hold a membership
// change above index i.
func confChangeAbove(ents []Entry, i uint64) bool {
	for k := len(ents) - 1; k >= 0 && ents[k].Index > i; k-- {
		if ents[k].Type == EntryConfChange {
			return true
		}
	}
	return false
}

func (r *raft) takeCommitted(applied uint64) []Entry {
	if applied != r.applying || r.pendingSnapshot != nil || r.inflight.snapIndex > 0 {
		return nil
	}
	hi := min(r.log.committed, r.stableIndex)
	if hi <= r.applying {
		return nil
	}
	ents := r.log.slice(r.applying+1, hi+1, r.cfg.MaxCommittedBytesPerReady)
	// A membership change waits for a Ready, so that the commit index
	// covering it is durable here before the host sees it applied: a node
	// that restarted with a commit index below an applied removal would
	// need the removed node to commit it again.
	for i := range ents {
		if ents[i].Type == EntryConfChange {
			ents = ents[:i]
			break
		}
	}
	r.applying += uint64(len(ents))
	r.applied = max(r.applied, r.applying)
	return ents
}

func (r *raft) advance() error {
	fl := r.inflight
	if !fl.active {
		return ErrNoReady
	}
	r.inflight = readyInflight{}
	if fl.snapIndex > 0 {
		r.stableIndex = max(r.stableIndex, fl.snapIndex)
		r.applied = max(r.applied, fl.snapIndex)
	}
	if fl.lastIndex > 0 && r.log.matchTerm(fl.lastIndex, fl.lastTerm) {
		r.stableIndex = max(r.stableIndex, fl.lastIndex)
	}
	r.applied = max(r.applied, fl.applyTo)
	if r.role == Leader {
		if p := r.self(); p != nil && p.pr.MaybeUpdate(r.stableIndex) {
			r.maybeCommit()
		}
	}
	return nil
}

// ---- compaction ----

func (r *raft) compact(index uint64, data []byte, keep uint64) error {
	if index <= r.log.offset || (r.snapshot != nil && index <= r.snapshot.Meta.Index) {
		return fmt.Errorf("%w: index %d, log starts after %d", ErrCompacted, index, r.log.offset)
	}
	if index > r.applied {
		return fmt.Errorf("%w: index %d not yet applied (applied %d)", ErrUnavailable, index, r.applied)
	}
	if index > r.log.committed {
		return fmt.Errorf("%w: index %d not committed (commit %d)", ErrUnavailable, index, r.log.committed)
	}
	t, _ := r.log.term(index)
	k := r.confPosAt(index)
	r.snapshot = &Snapshot{
		Meta: SnapshotMeta{Index: index, Term: t, Config: cloneConfState(r.confs[k].conf)},
		Data: data,
	}
	if cut := index - min(index, keep); cut > r.log.offset {
		r.log.compact(cut)
	}
	// Keep the configuration in force at the compaction point as the base.
	r.confs = append([]confAt{{index: index, conf: r.confs[k].conf}}, r.confs[k+1:]...)
	return nil
}

// ---- status ----

func (r *raft) basicStatus() BasicStatus {
	return BasicStatus{
		ID: r.id, Role: r.role, Term: r.term, Vote: r.vote, Lead: r.lead,
		Commit: r.log.committed, Applied: r.applied,
		FirstIndex: r.log.firstIndex(), LastIndex: r.log.lastIndex(),
		LeadTransferee: r.leadTransferee,
		LeaseReads:     r.leaseReads, LeaseReadRounds: r.leaseReadRounds,
		LeaseReadIndex: r.leaseReadIndex, LeaseReadTerm: r.leaseReadTerm,
	}
}

func (r *raft) status() Status {
	s := Status{BasicStatus: r.basicStatus(), Config: cloneConfState(r.conf)}
	if r.role == Leader {
		s.Progress = make([]PeerProgress, 0, len(r.peers))
		for _, p := range r.peers {
			s.Progress = append(s.Progress, PeerProgress{
				ID: p.id, Match: p.pr.Match, Next: p.pr.Next, State: ProgressState(p.pr.State),
				Learner: p.pr.IsLearner, RecentActive: p.pr.RecentActive,
				Inflight: p.pr.Inflights.Count(), PendingSnapshot: p.pr.PendingSnapshot,
			})
		}
	}
	return s
}
