package sim

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Names of the invariants a Checker checks (Violation.Check).
const (
	CheckElectionSafety     = "election-safety"
	CheckLogMatching        = "log-matching"
	CheckLeaderCompleteness = "leader-completeness"
	CheckStateMachineSafety = "state-machine-safety"
	CheckMonotonic          = "monotonic"
	CheckDurability         = "durability"
	CheckPersistBeforeSend  = "persist-before-send"
	CheckConvergence        = "convergence"
	// CheckVerification fails on any divergence alarm a node raises
	// (node.Config.OnAlarm): with no planted bug, an alarm is a false one.
	CheckVerification = "verification"
	// CheckAppliedDurable fails when a node applies a membership change
	// above its durable commit index: a crash would restart it below the
	// change (see CheckRestartBelowApplied).
	CheckAppliedDurable = "applied-durable"
	// CheckRestartBelowApplied fails when a node restarts with a commit
	// index below a membership change it applied in an earlier lifetime:
	// it is back in the configuration before the change, which may need
	// a node the change removed (and the harness retired).
	CheckRestartBelowApplied = "restart-below-applied"
	// CheckCommitVerified fails when a node's commit index covers an entry
	// that differs from the committed entry at that index: a follower must
	// commit only up to what an append from its leader showed to match the
	// leader's log, never a stale tail of its own.
	CheckCommitVerified = "commit-verified"
	// CheckPreVoteTerm fails when a node's term rises other than by
	// campaigning (as a candidate, or a leader elected at once) or by
	// hearing the new term in a message: a pre-vote round, in particular,
	// must leave the term alone. With PreVote on (SetPreVote), a candidate
	// must also come out of a pre-vote round, or of a leadership transfer
	// (MsgTimeoutNow): a node that cannot win pre-votes, say one cut off
	// from a quorum, never raises its term.
	CheckPreVoteTerm = "prevote-term"
)

// Violation is the first broken invariant a Checker saw.
type Violation struct {
	At     Time   // virtual time of the event that broke it
	Node   uint64 // the node whose event broke it
	Check  string // one of the Check* names
	Detail string // what was seen
}

// Error describes the violation on one line.
func (v *Violation) Error() string {
	return fmt.Sprintf("%s violated at %v on node %d: %s", v.Check, time.Duration(v.At), v.Node, v.Detail)
}

// Checker checks Raft's safety invariants continuously, from what the
// simulator tells it about every node: storage writes (issued and
// durable), statuses, messages sent, entries applied, snapshot restores,
// crashes and restarts, and state-machine hashes. Every call is O(1) or
// amortized O(1) in the number of entries it carries; a restart costs
// O(loaded log). After the first violation every call is a no-op and Err
// keeps returning it.
//
// Entries are compared by prefix hash: an entry's chain hash covers its
// index, term, type and data and the chain hash of the entry before it, so
// two equal chain hashes mean two equal logs up to that index.
//
// The simulator must report a write durable (Durable) before it calls the
// write's completion, since the node sends what depends on the write from
// that completion.
type Checker struct {
	err     *Violation
	skipped []string // checks turned off

	small []*ckNode // nodes by ID, for small IDs
	big   map[uint64]*ckNode

	leaders map[uint64]uint64 // term → the node that led it
	maxTerm uint64            // highest term any node reached
	marks   []ckMark          // when maxTerm rose, and the commit index then

	lm ckTable[ckSlot] // log matching: index → (term → first chain hash seen)
	// prov holds the log-matching entries first seen in a write that is not
	// yet durable, and no other node has written: (index, term) → the node.
	// A crash that loses that write takes them back (lmForget): they never
	// existed outside that node, which may write that index again in the
	// same term (a lone voter that won a term whose hard state the crash
	// lost). Looked up only, never iterated.
	prov      map[ckKey]uint64
	commits   ckTable[ckCommit] // the global committed log, by index
	maxCommit uint64            // highest index in commits
	applied   ckTable[ckApplied]
	conv      []ckConv // state hashes by applied index (a ring)

	// Membership checks (checkconf.go): the highest commit index any
	// node reported.
	topCommit uint64
	lease     ckLease // the lease-read check (checklease.go)
	// verified counts committed entries found again, equal, below another
	// node's commit index (commit-verified).
	verified uint64
	preVote  bool // the nodes run pre-vote rounds (prevote-term)
}

// ckConvSlots is the size of the convergence ring: state hashes are
// compared for applied indexes at most this far apart.
const ckConvSlots = 4096

// ckSmallIDs bounds the node IDs kept in a slice rather than a map.
const ckSmallIDs = 1024

// ckEnt is one entry of a log mirror.
type ckEnt struct{ term, chain uint64 }

// ckLog mirrors a node's stored state: hard state, latest snapshot, and
// the log after base (entries up to base are compacted or covered by the
// snapshot; base's term and chain hash are kept).
type ckLog struct {
	hs                  core.HardState
	snapIndex, snapTerm uint64
	base, baseTerm      uint64
	baseChain           uint64
	ents                []ckEnt // ents[k] is index base+1+k
}

func (l *ckLog) last() uint64 { return l.base + uint64(len(l.ents)) }

func (l *ckLog) lastEnt() ckEnt {
	if k := len(l.ents); k > 0 {
		return l.ents[k-1]
	}
	return ckEnt{l.baseTerm, l.baseChain}
}

// at returns the entry at index i, which may be base.
func (l *ckLog) at(i uint64) (ckEnt, bool) {
	switch {
	case i == l.base:
		return ckEnt{l.baseTerm, l.baseChain}, true
	case i > l.base && i <= l.last():
		return l.ents[i-l.base-1], true
	}
	return ckEnt{}, false
}

// commit is the commit index a node restarting from l would have: the hard
// state's, or the snapshot's index if higher (a snapshot is committed).
func (l *ckLog) commit() uint64 { return max(l.hs.Commit, l.snapIndex) }

// effTerm is the term a node restarting from l would be in: the hard
// state's, or the last entry's if higher (a torn write).
func (l *ckLog) effTerm() uint64 { return max(l.hs.Term, l.lastEnt().term) }

func (l *ckLog) reset(base, term, chain uint64) {
	l.base, l.baseTerm, l.baseChain = base, term, chain
	l.ents = l.ents[:0]
}

// copyFrom makes l a copy of o that shares no memory with it.
func (l *ckLog) copyFrom(o *ckLog) {
	ents := append(l.ents[:0], o.ents...)
	*l = *o
	l.ents = ents
}

// ckPending describes the write a node has issued but that is not durable.
type ckPending struct {
	active    bool
	snap      bool   // it installs a snapshot (replacing the log)
	snapIndex uint64 // of that snapshot
	ents      bool   // it writes entries
	first     uint64 // from this index
}

// ckKey names an entry by index and term.
type ckKey struct{ index, term uint64 }

// ckNode is the checker's view of one node.
type ckNode struct {
	id      uint64
	prov    []ckKey // entries its writes not yet durable registered first
	issued  ckLog   // what the node has written (its view of its log)
	durable ckLog   // what is durable
	pend    ckPending
	crashed bool

	recCommit  uint64 // highest index this node's commits were recorded to
	leaderTerm uint64 // last term in which the node was seen leading

	stTerm, stCommit, stApplied uint64 // from the last status
	applied                     uint64 // last index applied (or restored)
	// confApplied is the highest index of a membership change the node
	// applied, in this lifetime or an earlier one: it survives restarts.
	confApplied uint64
	// confIdx are the indexes of the membership changes in the written
	// log, ascending (checkconf.go).
	confIdx []uint64
	// heard is the highest term the node may have adopted from the
	// messages it received since its last status, timeoutNow whether one
	// was a MsgTimeoutNow, stRole its role at its last status
	// (prevote-term).
	heard      uint64
	timeoutNow bool
	stRole     core.Role
}

// ckSlot holds the first chain hash seen per term at one index.
type ckSlot struct {
	term, chain uint64 // the first term seen (0: none)
	more        []ckEnt
}

// ckCommit is a committed entry.
type ckCommit struct {
	term, chain uint64
	node        uint64 // who reported it first
	set         bool
}

// ckApplied is an applied entry.
type ckApplied struct {
	term, hash uint64
	node       uint64
	set        bool
}

// ckConv is a reported state hash.
type ckConv struct {
	index, hash uint64
	node        uint64
	set         bool
}

// ckMark says the highest committed index when maxTerm rose to term.
type ckMark struct{ term, commit uint64 }

// NewChecker returns a checker for a cluster whose initial members are
// nodes. Nodes that join later are tracked from their first call.
func NewChecker(nodes []uint64) *Checker {
	c := &Checker{leaders: make(map[uint64]uint64), conv: make([]ckConv, ckConvSlots), prov: make(map[ckKey]uint64)}
	for _, id := range nodes {
		c.node(id)
	}
	return c
}

// MaxCommit returns the highest index any node was seen to commit.
func (c *Checker) MaxCommit() uint64 { return c.maxCommit }

// Err returns the first violation, or nil.
func (c *Checker) Err() *Violation { return c.err }

// Skip turns one check off by name (to show what the other checks catch
// without it). Turning a check off can let the checker's own bookkeeping
// drift after a violation it ignored; it is a diagnostic, not a mode.
func (c *Checker) Skip(check string) {
	c.skipped = append(c.skipped, check)
}

func (c *Checker) fail(at Time, id uint64, check, format string, args ...any) {
	for _, s := range c.skipped {
		if s == check {
			return
		}
	}
	if c.err == nil {
		c.err = &Violation{At: at, Node: id, Check: check, Detail: fmt.Sprintf(format, args...)}
	}
}

func (c *Checker) node(id uint64) *ckNode {
	if id < uint64(len(c.small)) {
		if n := c.small[id]; n != nil {
			return n
		}
	} else if n := c.big[id]; n != nil {
		return n
	}
	n := &ckNode{id: id}
	if id < ckSmallIDs {
		c.small = ckGrow(c.small, id)
		c.small[id] = n
	} else {
		if c.big == nil {
			c.big = make(map[uint64]*ckNode)
		}
		c.big[id] = n
	}
	return n
}

// ckGrow returns s extended with zero values so that s[i] exists.
func ckGrow[T any](s []T, i uint64) []T {
	if i < uint64(len(s)) {
		return s
	}
	return append(s, make([]T, i+1-uint64(len(s)))...)
}

// ckChunkBits sets the size of a ckTable chunk.
const ckChunkBits = 12

// ckTable is an array indexed by log index, grown in fixed-size chunks so
// that growing never copies it.
type ckTable[T any] struct{ chunks [][]T }

// at returns the element at index i, allocating it (zero) if needed.
func (t *ckTable[T]) at(i uint64) *T {
	k := i >> ckChunkBits
	t.chunks = ckGrow(t.chunks, k)
	if t.chunks[k] == nil {
		t.chunks[k] = make([]T, 1<<ckChunkBits)
	}
	return &t.chunks[k][i&(1<<ckChunkBits-1)]
}

// get returns the element at index i, or nil if it was never allocated.
func (t *ckTable[T]) get(i uint64) *T {
	k := i >> ckChunkBits
	if k >= uint64(len(t.chunks)) || t.chunks[k] == nil {
		return nil
	}
	return &t.chunks[k][i&(1<<ckChunkBits-1)]
}

// raise records that some node reached term t.
func (c *Checker) raise(t uint64) {
	if t > c.maxTerm {
		c.maxTerm = t
		c.marks = append(c.marks, ckMark{term: t, commit: c.maxCommit})
	}
}

// committedBefore returns the highest index recorded committed before any
// node reached term t.
func (c *Checker) committedBefore(t uint64) uint64 {
	k := sort.Search(len(c.marks), func(k int) bool { return c.marks[k].term >= t })
	if k == len(c.marks) {
		return c.maxCommit
	}
	return c.marks[k].commit
}

// Write mirrors a write the node issued: from now on it is the node's view
// of its stored state. Its entries are checked for log matching, and
// entries up to the written commit index are recorded as committed.
func (c *Checker) Write(at Time, id uint64, u *node.Update) {
	if c.err != nil || u == nil {
		return
	}
	n := c.node(id)
	c.raise(u.HardState.Term)
	n.pend = ckPending{active: true}
	if s := u.Snapshot; !s.IsEmpty() {
		n.pend.snap, n.pend.snapIndex = true, s.Meta.Index
	}
	if len(u.Entries) > 0 {
		n.pend.ents, n.pend.first = true, u.Entries[0].Index
	}
	c.noteConfs(n, u)
	if c.update(at, n, &n.issued, u, true) {
		c.recordCommits(at, n)
	}
}

// Durable mirrors a write that became durable (fsynced if u.Sync). It must
// be called before the write's completion runs.
func (c *Checker) Durable(at Time, id uint64, u *node.Update) {
	if c.err != nil || u == nil {
		return
	}
	n := c.node(id)
	if n.crashed {
		return
	}
	c.update(at, n, &n.durable, u, false)
	c.lmSettle(n, &n.durable, false)
	n.pend = ckPending{}
}

// baseChain returns the chain hash of the log prefix a snapshot at (index,
// term) stands for: the one seen for that entry, or a synthetic one.
func (c *Checker) baseChain(index, term uint64) uint64 {
	if index == 0 {
		return 0
	}
	h, _ := c.lmCheck(index, term, ckFmix(index*ckK3^term^0x5eed5eed5eed))
	return h
}

// lmCheck returns the chain hash first seen for (index, term), registering
// h if none was, and whether h agrees with it.
func (c *Checker) lmCheck(index, term, h uint64) (uint64, bool) {
	chain, ok, _ := c.lmFind(index, term, h)
	return chain, ok
}

// lmFind is lmCheck that also says whether h was registered now.
func (c *Checker) lmFind(index, term, h uint64) (chain uint64, ok, fresh bool) {
	s := c.lm.at(index)
	if s.term == term {
		return s.chain, s.chain == h, false
	}
	if s.term == 0 {
		s.term, s.chain = term, h
		return h, true, true
	}
	for _, e := range s.more {
		if e.term == term {
			return e.chain, e.chain == h, false
		}
	}
	s.more = append(s.more, ckEnt{term, h})
	return h, true, true
}

// lmNote checks an entry node n writes for log matching. An entry it is
// the first to write stays provisional (c.prov) until a write of n that
// holds it is durable or another node writes it too.
func (c *Checker) lmNote(n *ckNode, index, term, h uint64) bool {
	_, ok, fresh := c.lmFind(index, term, h)
	k := ckKey{index, term}
	switch {
	case fresh:
		c.prov[k] = n.id
		n.prov = append(n.prov, k)
	case ok:
		if owner, found := c.prov[k]; found && owner != n.id {
			delete(c.prov, k)
		}
	}
	return ok
}

// lmSettle settles n's provisional entries against l: those l holds are
// confirmed; with lost (a restart: l is what n loaded), the others were
// lost with the writes in flight and are taken back, else they stay
// provisional (their writes are still pending).
func (c *Checker) lmSettle(n *ckNode, l *ckLog, lost bool) {
	keep := n.prov[:0]
	for _, k := range n.prov {
		if c.prov[k] != n.id {
			continue // confirmed by another node
		}
		if e, ok := l.at(k.index); ok && e.term == k.term {
			delete(c.prov, k)
			continue
		}
		if lost {
			delete(c.prov, k)
			c.lmForget(k.index, k.term)
			continue
		}
		keep = append(keep, k)
	}
	clear(n.prov[len(keep):])
	n.prov = keep
}

// lmForget takes back the log-matching entry registered for (index, term).
func (c *Checker) lmForget(index, term uint64) {
	s := c.lm.at(index)
	if s.term == term {
		if len(s.more) > 0 {
			s.term, s.chain = s.more[0].term, s.more[0].chain
			s.more = s.more[1:]
		} else {
			s.term, s.chain = 0, 0
		}
		return
	}
	for k, e := range s.more {
		if e.term == term {
			s.more = append(s.more[:k], s.more[k+1:]...)
			return
		}
	}
}

// update applies u to the mirror l of node n. With check, entries are
// checked against the log-matching table and snapshots recorded as
// committed. It reports whether no violation was found.
func (c *Checker) update(at Time, n *ckNode, l *ckLog, u *node.Update, check bool) bool {
	if s := u.Snapshot; !s.IsEmpty() {
		idx, term := s.Meta.Index, s.Meta.Term
		l.reset(idx, term, c.baseChain(idx, term))
		l.snapIndex, l.snapTerm = idx, term
		if check && !c.record(at, n.id, idx, term, l.baseChain, CheckStateMachineSafety) {
			return false
		}
	}
	if s := u.LocalSnapshot; !s.IsEmpty() {
		l.snapIndex, l.snapTerm = s.Meta.Index, s.Meta.Term
		c.compact(l, u.CompactTo)
	}
	if es := u.Entries; len(es) > 0 {
		first := es[0].Index
		if first > l.last()+1 {
			c.fail(at, n.id, CheckLogMatching, "entries from index %d leave a gap after last index %d", first, l.last())
			return false
		}
		if first <= l.base {
			l.ents = l.ents[:0]
		} else {
			l.ents = l.ents[:first-l.base-1]
		}
		if check && first <= n.recCommit {
			n.recCommit = first - 1
		}
		prevIdx := l.last()
		prev := l.lastEnt()
		for k := range es {
			e := &es[k]
			if e.Index <= l.base {
				continue // covered by the snapshot
			}
			if e.Index != prevIdx+1 {
				c.fail(at, n.id, CheckLogMatching, "entry index %d follows index %d", e.Index, prevIdx)
				return false
			}
			if e.Term < prev.term {
				c.fail(at, n.id, CheckLogMatching, "entry %d has term %d below the preceding entry's term %d", e.Index, e.Term, prev.term)
				return false
			}
			h := ckChain(prev.chain, e)
			if check {
				if !c.lmNote(n, e.Index, e.Term, h) {
					c.fail(at, n.id, CheckLogMatching,
						"entry %d of term %d differs from another log's entry %d of term %d, or its preceding entries do",
						e.Index, e.Term, e.Index, e.Term)
					return false
				}
			}
			prev = ckEnt{e.Term, h}
			prevIdx = e.Index
			l.ents = append(l.ents, prev)
		}
	}
	if !u.HardState.IsEmpty() {
		l.hs = u.HardState
	}
	return true
}

// compact drops the entries of l at or below to.
func (c *Checker) compact(l *ckLog, to uint64) {
	switch {
	case to <= l.base:
	case to <= l.last():
		e := l.ents[to-l.base-1]
		l.ents = l.ents[to-l.base:]
		l.base, l.baseTerm, l.baseChain = to, e.term, e.chain
	default: // past the log: only the snapshot can say what is there
		term := uint64(0)
		if to == l.snapIndex {
			term = l.snapTerm
		}
		l.reset(to, term, c.baseChain(to, term))
	}
}

// recordCommits records the entries of n's written log up to its written
// commit index as committed. An entry there that differs from the one
// committed before fails commit-verified: the node's commit index covers
// an entry its leader's log does not hold.
func (c *Checker) recordCommits(at Time, n *ckNode) {
	l := &n.issued
	hi := min(l.hs.Commit, l.last())
	for i := max(n.recCommit, l.base) + 1; i <= hi; i++ {
		e := l.ents[i-l.base-1]
		if !c.record(at, n.id, i, e.term, e.chain, CheckCommitVerified) {
			return
		}
	}
	n.recCommit = max(n.recCommit, hi)
}

// record records that node id holds (index, term, chain) as committed;
// check names the check that fails if another entry was committed there.
func (c *Checker) record(at Time, id, index, term, chain uint64, check string) bool {
	r := c.commits.at(index)
	if r.set {
		if r.chain != chain {
			c.fail(at, id, check,
				"index %d committed with term %d here but with term %d (or another prefix) on node %d",
				index, term, r.term, r.node)
			return false
		}
		c.verified++
		return true
	}
	*r = ckCommit{term: term, chain: chain, node: id, set: true}
	c.maxCommit = max(c.maxCommit, index)
	if a := c.applied.get(index); a != nil {
		if a.set && a.term != term {
			c.fail(at, id, CheckStateMachineSafety, "index %d committed with term %d but node %d applied term %d",
				index, term, a.node, a.term)
			return false
		}
	}
	return true
}

// Status checks a node's current status: one leader per term, a new
// leader's log holds what was committed before its term, and term, commit
// and applied never go back (within one process lifetime), with
// applied ≤ commit ≤ last index.
func (c *Checker) Status(at Time, id uint64, st core.BasicStatus) {
	if c.err != nil {
		return
	}
	n := c.node(id)
	c.raise(st.Term)
	switch {
	case st.Term < n.stTerm:
		c.fail(at, id, CheckMonotonic, "term went back from %d to %d", n.stTerm, st.Term)
	case st.Commit < n.stCommit:
		c.fail(at, id, CheckMonotonic, "commit index went back from %d to %d", n.stCommit, st.Commit)
	case st.Applied < n.stApplied:
		c.fail(at, id, CheckMonotonic, "applied index went back from %d to %d", n.stApplied, st.Applied)
	case st.Applied > st.Commit:
		c.fail(at, id, CheckMonotonic, "applied index %d above commit index %d", st.Applied, st.Commit)
	case st.Commit > st.LastIndex:
		c.fail(at, id, CheckMonotonic, "commit index %d above last index %d", st.Commit, st.LastIndex)
	case st.Term > n.stTerm && n.stTerm > 0 && st.Term > n.heard &&
		st.Role != core.Candidate && st.Role != core.Leader:
		c.fail(at, id, CheckPreVoteTerm,
			"term rose from %d to %d as %v, neither by campaigning nor from a message of that term (highest heard %d)",
			n.stTerm, st.Term, st.Role, n.heard)
	case c.preVote && st.Term > n.stTerm && n.stTerm > 0 && st.Term > n.heard && st.Role == core.Candidate &&
		n.stRole != core.PreCandidate && !n.timeoutNow:
		c.fail(at, id, CheckPreVoteTerm,
			"candidate in term %d straight from %v in term %d, with PreVote on: no pre-vote round won, no leadership transfer",
			st.Term, n.stRole, n.stTerm)
	}
	n.heard, n.timeoutNow, n.stRole = 0, false, st.Role
	if c.err != nil {
		return
	}
	n.stTerm, n.stCommit, n.stApplied = st.Term, st.Commit, st.Applied
	if st.Role == core.Leader && n.leaderTerm != st.Term {
		c.newLeader(at, n, st.Term)
	}
	c.checkSingleConf(at, n, &st)
}

// newLeader checks a node that leads term t.
func (c *Checker) newLeader(at Time, n *ckNode, t uint64) {
	n.leaderTerm = t
	if l, ok := c.leaders[t]; ok && l != n.id {
		c.fail(at, n.id, CheckElectionSafety, "nodes %d and %d both lead term %d", l, n.id, t)
		return
	}
	c.leaders[t] = n.id
	h := c.committedBefore(t)
	if h == 0 {
		return
	}
	l := &n.issued
	if l.last() < h {
		c.fail(at, n.id, CheckLeaderCompleteness,
			"leader of term %d has last index %d, but index %d was committed before its term", t, l.last(), h)
		return
	}
	if e, ok := l.at(h); ok && e.chain != c.commits.at(h).chain {
		r := c.commits.at(h)
		c.fail(at, n.id, CheckLeaderCompleteness,
			"leader of term %d has entry %d of term %d, but entry %d of term %d (node %d) was committed before its term",
			t, h, e.term, h, r.term, r.node)
	}
}

// Receive notes a message about to be handed to node id: it may adopt the
// message's term (prevote-term). A pre-vote, and a granted pre-vote
// answer, carry a term the receiver does not adopt.
func (c *Checker) Receive(id uint64, m *core.Message) {
	if c.err != nil || m.Type == core.MsgPreVote || m.Type == core.MsgPreVoteResp && !m.Reject {
		return
	}
	n := c.node(id)
	n.heard = max(n.heard, m.Term)
	n.timeoutNow = n.timeoutNow || m.Type == core.MsgTimeoutNow
}

// SetPreVote tells the checker whether the nodes run pre-vote rounds.
func (c *Checker) SetPreVote(on bool) { c.preVote = on }

// CommitsVerified returns how many committed entries were found again,
// equal, under another node's commit index.
func (c *Checker) CommitsVerified() uint64 { return c.verified }

// Send checks that what a message depends on is durable at its sender: a
// granted vote, a vote request, a term, an acknowledged log prefix, an
// announced commit index.
func (c *Checker) Send(at Time, m *core.Message) {
	if c.err != nil || m == nil {
		return
	}
	if m.Type == core.MsgTimeoutNow {
		c.leaseTimeoutNow(m)
	}
	if m.Type == core.MsgPreVote || m.Type == core.MsgPreVoteResp {
		return // pre-votes carry a term not yet reached and promise nothing
	}
	n := c.node(m.From)
	if n.crashed {
		return
	}
	c.raise(m.Term)
	d := &n.durable
	switch m.Type {
	case core.MsgVoteResp:
		// A grant must be durable, or superseded by a durable later term
		// (a reply generated before the node moved on, sent after).
		if !m.Reject && (d.hs.Term < m.Term || d.hs.Term == m.Term && d.hs.Vote != m.To) {
			c.fail(at, n.id, CheckPersistBeforeSend,
				"vote for %d in term %d granted, but the durable term and vote are %d and %d",
				m.To, m.Term, d.hs.Term, d.hs.Vote)
			return
		}
	case core.MsgVote:
		if d.hs.Term < m.Term || d.hs.Term == m.Term && d.hs.Vote != m.From {
			c.fail(at, n.id, CheckPersistBeforeSend,
				"votes requested in term %d, but the durable term and vote are %d and %d", m.Term, d.hs.Term, d.hs.Vote)
			return
		}
	case core.MsgApp, core.MsgHeartbeat:
		// A leader may send entries before its own write of them completes,
		// but a commit index it announces counts its own copy, which must
		// be durable by then.
		if m.Commit > d.last() {
			c.fail(at, n.id, CheckPersistBeforeSend,
				"%v announces commit index %d, but the durable log ends at %d", m.Type, m.Commit, d.last())
			return
		}
	case core.MsgAppResp:
		// Within a term a follower's log only grows past what it
		// acknowledged; an acknowledgement from an earlier term may have
		// been overtaken by a later leader's truncation.
		if !m.Reject && m.Index > d.base && m.Term >= d.effTerm() {
			if m.Index > d.last() {
				c.fail(at, n.id, CheckPersistBeforeSend,
					"appended entries acknowledged up to index %d, but the durable log ends at %d", m.Index, d.last())
				return
			}
			if e, ok := n.issued.at(m.Index); ok && e.chain != d.ents[m.Index-d.base-1].chain {
				c.fail(at, n.id, CheckPersistBeforeSend,
					"appended entries acknowledged up to index %d, but the durable entry there is not the written one", m.Index)
				return
			}
		}
	}
	if m.Term > d.effTerm() {
		c.fail(at, n.id, CheckPersistBeforeSend, "%v sent in term %d, but the durable term is %d",
			m.Type, m.Term, d.effTerm())
	}
}

// Apply checks an applied entry: each node applies indexes in order, once,
// and every node applies the same entry at an index, the committed one. A
// membership change must be covered by the node's durable commit index
// when it is applied (applied ≤ durable commit, which a crash cannot take
// back).
func (c *Checker) Apply(at Time, id uint64, e *core.Entry) {
	if c.err != nil || e == nil {
		return
	}
	n := c.node(id)
	if e.Index != n.applied+1 {
		c.fail(at, id, CheckStateMachineSafety, "applied index %d after index %d", e.Index, n.applied)
		return
	}
	n.applied = e.Index
	if e.Type == core.EntryConfChange {
		if d := n.durable.commit(); e.Index > d {
			c.fail(at, id, CheckAppliedDurable,
				"membership change at index %d applied, but the durable commit index is %d: a crash now restarts the node below it",
				e.Index, d)
		}
		n.confApplied = max(n.confApplied, e.Index)
	}
	h := ckEntryHash(e)
	a := c.applied.at(e.Index)
	if !a.set {
		*a = ckApplied{term: e.Term, hash: h, node: id, set: true}
	} else if a.hash != h {
		c.fail(at, id, CheckStateMachineSafety, "applied entry %d (term %d), but node %d applied another entry %d (term %d)",
			e.Index, e.Term, a.node, e.Index, a.term)
		return
	}
	if r := c.commits.get(e.Index); r != nil {
		if r.set && r.term != e.Term {
			c.fail(at, id, CheckStateMachineSafety, "applied entry %d of term %d, but entry %d of term %d is committed",
				e.Index, e.Term, e.Index, r.term)
		}
	}
}

// Restore records that the node's state machine was restored from the
// snapshot at index: applying resumes after it.
func (c *Checker) Restore(at Time, id uint64, index uint64) {
	if c.err != nil {
		return
	}
	n := c.node(id)
	if index < n.applied {
		c.fail(at, id, CheckMonotonic, "state machine restored to index %d after applying up to %d", index, n.applied)
		return
	}
	n.applied = index
}

// Crash records that the node's process died: its volatile state is lost
// and a write in flight may be lost or torn.
func (c *Checker) Crash(at Time, id uint64) {
	if c.err != nil {
		return
	}
	c.node(id).crashed = true
}

// Restart checks what a (re)starting node loaded: its durable state, or
// that plus the remains of the write that was in flight (its snapshot, a
// prefix of its entries, or all of it). Term and vote are the durable ones
// or the in-flight write's, no loaded entry was never written, and no
// durable entry is missing unless the in-flight write replaces it; its
// commit index is not below a membership change it applied in an earlier
// lifetime. The node's mirrors then restart from the loaded state.
func (c *Checker) Restart(at Time, id uint64, loaded core.Persisted) {
	if c.err != nil {
		return
	}
	n := c.node(id)
	var l ckLog
	if s := loaded.Snapshot; !s.IsEmpty() {
		l.snapIndex, l.snapTerm = s.Meta.Index, s.Meta.Term
	}
	l.hs = loaded.HardState
	if !c.checkLoadedMeta(at, n, &l) {
		return
	}
	if l.snapIndex > 0 {
		l.reset(l.snapIndex, l.snapTerm, c.baseChain(l.snapIndex, l.snapTerm))
	}
	l.ents = make([]ckEnt, 0, len(loaded.Entries))
	for k := range loaded.Entries {
		e := &loaded.Entries[k]
		if e.Index <= l.base {
			continue
		}
		prev := l.lastEnt()
		if e.Index != l.last()+1 || e.Term < prev.term {
			c.fail(at, id, CheckDurability, "loaded entry %d (term %d) does not follow index %d (term %d)",
				e.Index, e.Term, l.last(), prev.term)
			return
		}
		l.ents = append(l.ents, ckEnt{e.Term, ckChain(prev.chain, e)})
	}
	if !c.checkLoadedLog(at, n, &l) {
		return
	}
	c.loadConfs(n, loaded.Entries, l.base)
	if lc := l.commit(); lc < n.confApplied {
		c.fail(at, id, CheckRestartBelowApplied,
			"restarted with commit index %d, below the membership change at index %d it applied before: it is back in the configuration before the change",
			lc, n.confApplied)
	}
	c.raise(l.effTerm())
	c.lmSettle(n, &l, true)
	n.durable.copyFrom(&l)
	n.issued.copyFrom(&l)
	n.pend, n.crashed = ckPending{}, false
	n.recCommit, n.leaderTerm = 0, 0
	n.stTerm, n.stCommit, n.stApplied = 0, 0, 0
	n.applied = l.snapIndex
	if l.snapIndex > 0 && !c.record(at, id, l.snapIndex, l.snapTerm, l.baseChain, CheckStateMachineSafety) {
		return
	}
	c.recordCommits(at, n)
}

// checkLoadedMeta compares a loaded snapshot and hard state with n's
// durable and written mirrors.
func (c *Checker) checkLoadedMeta(at Time, n *ckNode, l *ckLog) bool {
	d, w := &n.durable, &n.issued
	if (l.snapIndex != d.snapIndex || l.snapTerm != d.snapTerm) && (l.snapIndex != w.snapIndex || l.snapTerm != w.snapTerm) {
		c.fail(at, n.id, CheckDurability, "loaded snapshot (%d, term %d), but the durable one is (%d, term %d)",
			l.snapIndex, l.snapTerm, d.snapIndex, d.snapTerm)
		return false
	}
	if (l.hs.Term != d.hs.Term || l.hs.Vote != d.hs.Vote) && (l.hs.Term != w.hs.Term || l.hs.Vote != w.hs.Vote) {
		c.fail(at, n.id, CheckDurability, "loaded term %d and vote %d, but the durable ones are %d and %d",
			l.hs.Term, l.hs.Vote, d.hs.Term, d.hs.Vote)
		return false
	}
	if l.hs.Commit > max(d.hs.Commit, w.hs.Commit) {
		c.fail(at, n.id, CheckDurability, "loaded commit index %d was never written (durable %d)", l.hs.Commit, d.hs.Commit)
		return false
	}
	return true
}

// checkLoadedLog compares a loaded log with n's durable and written
// mirrors.
func (c *Checker) checkLoadedLog(at Time, n *ckNode, l *ckLog) bool {
	d, w := &n.durable, &n.issued
	for k, e := range l.ents {
		i := l.base + 1 + uint64(k)
		if x, ok := d.at(i); ok && x.chain == e.chain {
			continue
		}
		if x, ok := w.at(i); ok && x.chain == e.chain {
			continue
		}
		c.fail(at, n.id, CheckDurability, "loaded entry %d (term %d) was never written there", i, e.term)
		return false
	}
	// Durable entries up to r must survive; later ones only if the write
	// in flight did not replace them.
	r := d.last()
	if p := &n.pend; p.active {
		if p.snap {
			r = min(r, p.snapIndex)
		}
		if p.ents && p.first <= r {
			r = p.first - 1
		}
	}
	// (Loaded entries up to r are the durable ones: each is a written one,
	// and the write in flight changed none of them.)
	if r > l.last() {
		c.fail(at, n.id, CheckDurability, "loaded log ends at index %d, but the durable log reached %d", l.last(), r)
		return false
	}
	return true
}

// StateHash checks that replicas at the same applied index have the same
// state (for applied indexes within the last few thousand reported).
func (c *Checker) StateHash(at Time, id uint64, applied uint64, hash uint64) {
	if c.err != nil || applied == 0 {
		return
	}
	s := &c.conv[applied%ckConvSlots]
	switch {
	case s.set && s.index == applied:
		if s.hash != hash {
			c.fail(at, id, CheckConvergence, "state hash %#x at applied index %d, but node %d had %#x",
				hash, applied, s.node, s.hash)
		}
	case !s.set || s.index < applied:
		*s = ckConv{index: applied, hash: hash, node: id, set: true}
	}
}

// Alarm fails the run on a divergence alarm raised by node id's
// cross-replica verification (cleared alarms are ignored).
func (c *Checker) Alarm(at Time, id uint64, a node.Alarm) {
	if c.err != nil || a.Cleared {
		return
	}
	c.fail(at, id, CheckVerification, "node %d raised a divergence alarm: %s", id, a)
}

// Hashing: a 64-bit multiply-xorshift hash, deterministic across runs.
const (
	ckK1 = 0x9e3779b97f4a7c15
	ckK2 = 0xbf58476d1ce4e5b9
	ckK3 = 0x94d049bb133111eb
)

// ckFmix is SplitMix64's finalizer.
func ckFmix(x uint64) uint64 {
	x ^= x >> 30
	x *= ckK2
	x ^= x >> 27
	x *= ckK3
	x ^= x >> 31
	return x
}

// ckEntryHash hashes an entry's term, index, type and data.
func ckEntryHash(e *core.Entry) uint64 {
	h := ckFmix(e.Term*ckK1 + e.Index)
	h = ckFmix(h ^ uint64(e.Type)<<56 ^ uint64(len(e.Data)))
	d := e.Data
	for len(d) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(d)) * ckK2
		h ^= h >> 29
		d = d[8:]
	}
	if len(d) > 0 {
		var t uint64
		for i, b := range d {
			t |= uint64(b) << (8 * i)
		}
		h = (h ^ t) * ckK3
		h ^= h >> 29
	}
	return ckFmix(h)
}

// ckChain extends the chain hash prev with e.
func ckChain(prev uint64, e *core.Entry) uint64 {
	return ckFmix(prev*ckK1 ^ ckEntryHash(e))
}
