package sim

import (
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Coverage you can see: Reached counts how often a run got into the states
// where classic Raft bugs live, so that a fuzz run can say which of them it
// exercised and which it never reached. Each counter only observes: it
// draws nothing from any generator and changes nothing in the run, and
// each is O(1) per event it looks at (a few entries at most), so counting
// costs no measurable speed.
//
// Where each is counted: role and commit changes in proc.observe
// (reachRole, reachCommit), appends as they are delivered (reachApp),
// storage writes in storage.Save (reachWrite), snapshot messages in
// transport.Send (reachSend), crashes in cluster.crash (reachCrash),
// applied membership changes in cluster.confChangeApplied (reachConf),
// partitions in partitionNet (reachPartition), transfers in inject
// (reachTransfer), client answers in clientOp.complete (reachRead), lease
// reads as the node answers them in clientOp.send (reachLeaseAnswer).

// Reached counts the interesting states a run reached. simrun fuzz prints
// them (with the other counters it names) as its coverage table.
type Reached struct {
	// Elections: terms in which more than one node stood as a candidate;
	// new leaders whose log holds, past the highest index known committed,
	// an entry of an older term (the Figure 8 situation); leadership
	// transfers that ended with the target leading.
	CompetingCandidates uint64 `json:"competing_candidates"`
	OldTermTail         uint64 `json:"old_term_tail"`
	TransfersCompleted  uint64 `json:"transfers_completed"`
	// OldTermCommitted: such a leader then committed past its old-term
	// tail (in the same term: it committed an entry of its own above it).
	OldTermCommitted uint64 `json:"old_term_committed"`
	// StaleTailCommit: appends a follower accepts that announce a commit
	// index past the last index they verify, to a follower whose entry
	// after that index differs from the leader's (a stale tail that a
	// follower committing up to its last index would commit).
	StaleTailCommit uint64 `json:"stale_tail_commit"`
	// Membership: joint configurations entered and left (counted when the
	// first node applies the change), those during which a partition was
	// in force at some time, and those left while one was.
	JointEntered         uint64 `json:"joint_entered"`
	JointLeft            uint64 `json:"joint_left"`
	JointPartitioned     uint64 `json:"joint_partitioned"`
	JointLeftPartitioned uint64 `json:"joint_left_partitioned"`
	// Snapshots: sent to a node whose written log conflicts with the
	// snapshot (an entry of another term at its index, or a last entry
	// below it that is not the committed one); installed over such a log.
	SnapshotSentConflict uint64 `json:"snapshot_sent_conflict"`
	SnapshotOverConflict uint64 `json:"snapshot_over_conflict"`
	// LongTruncations: writes that replace at least longTail entries of
	// the node's log (a long stale tail cut back).
	LongTruncations uint64 `json:"long_truncations"`
	// Crashes at each persistence step: with a write in flight that
	// carries entries, only a hard state, a snapshot to install, a
	// compaction (local snapshot), or entries that overwrite a suffix of
	// the written log; and with completed writes no fsync covered yet.
	CrashEntries    uint64 `json:"crash_entries"`
	CrashHardState  uint64 `json:"crash_hard_state"`
	CrashSnapshot   uint64 `json:"crash_snapshot"`
	CrashCompaction uint64 `json:"crash_compaction"`
	CrashOverwrite  uint64 `json:"crash_overwrite"`
	CrashUnsynced   uint64 `json:"crash_unsynced"`
	// Reads answered to clients, by level: ReadIndex, lease, through the
	// log; lease reads whose operation spans a leadership transfer request
	// or a leader change (from its call to its answer); lease reads a
	// node answered while some node was in a higher term than its own.
	ReadsIndex             uint64 `json:"reads_index"`
	ReadsLease             uint64 `json:"reads_lease"`
	ReadsLog               uint64 `json:"reads_log"`
	LeaseReadsTransfer     uint64 `json:"lease_reads_transfer"`
	LeaseReadsLeaderChange uint64 `json:"lease_reads_leader_change"`
	LeaseReadsStaleTerm    uint64 `json:"lease_reads_stale_term"`
}

// longTail is the number of entries a truncation must replace to count as
// one of a long tail.
const longTail = 10

// reachState is what the counting remembers between events.
type reachState struct {
	// candidates: term → the first candidate seen in it, or noCandidate
	// once a second one was counted.
	candidates map[uint64]uint64
	// jointAt: index of the latest joint configuration entered; inJoint:
	// not left yet; jointParted: a partition was in force while in it.
	jointAt     uint64
	inJoint     bool
	jointParted bool
	// transferTo: target of the pending transfer (0: none) requested in
	// transferTerm; lastTransfer, lastLeader: when the latest transfer was
	// requested and the latest leader took over (0: never).
	transferTo   uint64
	transferTerm uint64
	lastTransfer Time
	lastLeader   Time
	// tailLeader leads tailTerm with an old-term tail up to tailIndex,
	// not committed yet (0: none).
	tailLeader, tailTerm, tailIndex uint64
}

const noCandidate = ^uint64(0)

// reachRole counts what a role change of p from old to st reached.
func (c *cluster) reachRole(p *proc, old, st core.BasicStatus) {
	r, k := &c.reach, &c.counters.Reached
	switch {
	case st.Role == core.Candidate && (old.Role != core.Candidate || old.Term != st.Term):
		if r.candidates == nil {
			r.candidates = make(map[uint64]uint64)
		}
		switch first, ok := r.candidates[st.Term]; {
		case !ok:
			r.candidates[st.Term] = p.id
		case first != p.id && first != noCandidate:
			r.candidates[st.Term] = noCandidate
			k.CompetingCandidates++
		}
	case st.Role == core.Leader && (old.Role != core.Leader || old.Term != st.Term):
		r.lastLeader = c.s.Now()
		if i := c.chk.oldTermTail(p.id, st.Term); i > 0 {
			k.OldTermTail++
			r.tailLeader, r.tailTerm, r.tailIndex = p.id, st.Term, i
		}
		if r.transferTo != 0 && st.Term > r.transferTerm {
			if p.id == r.transferTo {
				k.TransfersCompleted++
			}
			r.transferTo = 0
		}
	}
}

// reachCommit counts the leader with an old-term tail committing past it
// (st is p's status after its commit index moved).
func (c *cluster) reachCommit(p *proc, st core.BasicStatus) {
	r := &c.reach
	switch {
	case r.tailLeader != p.id:
	case st.Term != r.tailTerm || st.Role != core.Leader:
		r.tailLeader = 0
	case st.Commit >= r.tailIndex:
		c.counters.Reached.OldTermCommitted++
		r.tailLeader = 0
	}
}

// reachApp counts an append from a leader to a follower that announces a
// commit index past verified (its last index), accepted (the follower's
// entry at index has logTerm) by a follower whose entry at verified+1
// differs from the leader's (or the committed one).
func (c *cluster) reachApp(from, to, index, logTerm, verified uint64) {
	if c.chk.err != nil {
		return
	}
	fl := &c.chk.node(to).issued
	if e, ok := fl.at(index); !ok || e.term != logTerm {
		return
	}
	fe, ok := fl.at(verified + 1)
	if !ok {
		return
	}
	term := uint64(0)
	if le, ok := c.chk.node(from).issued.at(verified + 1); ok {
		term = le.term
	} else if r := c.chk.commits.get(verified + 1); r != nil && r.set {
		term = r.term
	}
	if term != 0 && fe.term != term {
		c.counters.Reached.StaleTailCommit++
	}
}

// reachTransfer notes a leadership transfer from l to to that l accepted.
func (c *cluster) reachTransfer(l *proc, to uint64) {
	r := &c.reach
	r.transferTo, r.transferTerm, r.lastTransfer = to, l.status.Term, c.s.Now()
}

// reachWrite counts what a write u of p reached; it runs before the
// checker mirrors u.
func (c *cluster) reachWrite(p *proc, u *node.Update) {
	k := &c.counters.Reached
	if s := u.Snapshot; s != nil && c.chk.conflicts(p.id, s.Meta.Index, s.Meta.Term) {
		k.SnapshotOverConflict++
	}
	if len(u.Entries) > 0 {
		last := p.logLast
		if u.Snapshot != nil {
			last = u.Snapshot.Meta.Index
		}
		if first := u.Entries[0].Index; first+longTail <= last+1 {
			k.LongTruncations++
		}
	}
}

// reachSend counts a snapshot message to a node whose log conflicts with
// it.
func (c *cluster) reachSend(m *core.Message) {
	if s := m.Snapshot; m.Type == core.MsgSnap && s != nil && c.chk.conflicts(m.To, s.Meta.Index, s.Meta.Term) {
		c.counters.Reached.SnapshotSentConflict++
	}
}

// reachCrash counts the persistence step at which p crashes; it runs
// before the disk loses what the crash loses.
func (c *cluster) reachCrash(p *proc) {
	k := &c.counters.Reached
	d := p.disk
	if len(d.unsynced) > 0 {
		k.CrashUnsynced++
	}
	w := d.inflight
	if w == nil {
		return
	}
	if len(w.ents) > 0 {
		k.CrashEntries++
		if w.ents[0].Index <= d.volatile.lastIndex() {
			k.CrashOverwrite++
		}
	} else if !w.hs.IsEmpty() && w.snap == nil && w.local == nil {
		k.CrashHardState++
	}
	if w.snap != nil {
		k.CrashSnapshot++
	}
	if w.local != nil {
		k.CrashCompaction++
	}
}

// reachConf counts a membership change at index, applied by the first
// node to apply it, that enters or leaves a joint configuration.
func (c *cluster) reachConf(index uint64, joint bool) {
	r, k := &c.reach, &c.counters.Reached
	switch {
	case joint && index > r.jointAt:
		r.jointAt, r.inJoint, r.jointParted = index, true, c.partition
		k.JointEntered++
		if c.partition {
			k.JointPartitioned++
		}
	case !joint && r.inJoint && index > r.jointAt:
		r.inJoint = false
		k.JointLeft++
		if c.partition {
			k.JointLeftPartitioned++
		}
	}
}

// reachPartition counts a partition that starts while the cluster is in a
// joint configuration.
func (c *cluster) reachPartition() {
	if r := &c.reach; r.inJoint && !r.jointParted {
		r.jointParted = true
		c.counters.Reached.JointPartitioned++
	}
}

// reachRead counts a read answered to a client.
func (c *cluster) reachRead(op *clientOp) {
	k := &c.counters.Reached
	switch {
	case op.viaLog:
		k.ReadsLog++
	case op.level == node.ReadLease:
		k.ReadsLease++
		r := &c.reach
		if r.lastTransfer != 0 && r.lastTransfer >= op.start {
			k.LeaseReadsTransfer++
		}
		if r.lastLeader != 0 && r.lastLeader >= op.start {
			k.LeaseReadsLeaderChange++
		}
	default:
		k.ReadsIndex++
	}
}

// reachLeaseAnswer counts a lease read that p answers while some node is
// in a higher term (a newer election may be under way, or won).
func (c *cluster) reachLeaseAnswer(p *proc) {
	if p.n != nil && p.n.Status().Term < c.chk.maxTerm {
		c.counters.Reached.LeaseReadsStaleTerm++
	}
}

// conflicts reports whether node id's written log holds a tail that
// conflicts with a snapshot at (index, term): an entry at index of another
// term, or, when the log ends before index, a last entry that is not the
// committed entry there. Entries covered by its own snapshot never
// conflict.
func (c *Checker) conflicts(id, index, term uint64) bool {
	if c.err != nil {
		return false
	}
	l := &c.node(id).issued
	last := l.last()
	switch {
	case last <= l.base || index <= l.base:
		return false
	case last >= index:
		e, _ := l.at(index)
		return e.term != term
	}
	r := c.commits.get(last)
	return r != nil && r.set && r.chain != l.lastEnt().chain
}

// oldTermTail returns the index of the last entry of a term below term
// in node id's written log if it lies past the highest index known
// committed, and otherwise 0.
func (c *Checker) oldTermTail(id, term uint64) uint64 {
	if c.err != nil {
		return 0
	}
	l := &c.node(id).issued
	i := l.last()
	for i > l.base && l.ents[i-l.base-1].term >= term {
		i--
	}
	if i > l.base && i > c.maxCommit {
		return i
	}
	return 0
}
