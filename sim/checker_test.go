package sim

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// ckSt is a model of one node's stored state.
type ckSt struct {
	hs                  core.HardState
	snapIndex, snapTerm uint64
	base, baseTerm      uint64
	log                 []core.Entry // after base
}

func (s *ckSt) last() uint64 { return s.base + uint64(len(s.log)) }

func (s *ckSt) term(i uint64) uint64 {
	switch {
	case i == s.base:
		return s.baseTerm
	case i > s.base && i <= s.last():
		return s.log[i-s.base-1].Term
	}
	return 0
}

func (s *ckSt) entries(lo, hi uint64) []core.Entry {
	return slices.Clone(s.log[lo-s.base-1 : hi-s.base])
}

// apply applies u as a disk would; it never shares memory with u.
func (s *ckSt) apply(u *node.Update) {
	if sn := u.Snapshot; !sn.IsEmpty() {
		s.snapIndex, s.snapTerm = sn.Meta.Index, sn.Meta.Term
		s.base, s.baseTerm, s.log = sn.Meta.Index, sn.Meta.Term, nil
	}
	if sn := u.LocalSnapshot; !sn.IsEmpty() {
		s.snapIndex, s.snapTerm = sn.Meta.Index, sn.Meta.Term
		if k := u.CompactTo - s.base; u.CompactTo > s.base {
			s.baseTerm = s.log[k-1].Term
			s.log = slices.Clone(s.log[k:])
			s.base = u.CompactTo
		}
	}
	if es := u.Entries; len(es) > 0 {
		k := es[0].Index - s.base - 1
		s.log = append(slices.Clip(s.log[:k]), es...)
	}
	if !u.HardState.IsEmpty() {
		s.hs = u.HardState
	}
}

// persisted returns what a disk holding s would load.
func (s *ckSt) persisted() core.Persisted {
	p := core.Persisted{HardState: s.hs, Entries: slices.Clone(s.log)}
	if s.snapIndex > 0 {
		p.Snapshot = &core.Snapshot{Meta: core.SnapshotMeta{Index: s.snapIndex, Term: s.snapTerm}}
	}
	return p
}

// ckModel is a model of one node for building scenarios.
type ckModel struct {
	id       uint64
	role     core.Role
	w, d     ckSt         // written and durable
	pending  *node.Update // written, not durable
	applied  uint64
	sm       uint64 // state-machine hash at applied
	snapSM   uint64 // state-machine hash at the stored snapshot
	snapSMAt uint64
}

// ckScript builds a scenario: checker calls, with a model of each node so
// that well-formed calls are easy to write and bad ones stand out.
type ckScript struct {
	now   Time
	steps []func(c *Checker)
	nodes map[uint64]*ckModel
}

func newCkScript(ids ...uint64) *ckScript {
	s := &ckScript{nodes: make(map[uint64]*ckModel)}
	for _, id := range ids {
		s.nodes[id] = &ckModel{id: id}
	}
	return s
}

func (s *ckScript) n(id uint64) *ckModel { return s.nodes[id] }

// do appends a raw step.
func (s *ckScript) do(f func(c *Checker, at Time)) {
	s.now += Millisecond
	at := s.now
	s.steps = append(s.steps, func(c *Checker) { f(c, at) })
}

// write issues u on id without making it durable.
func (s *ckScript) write(id uint64, u node.Update) {
	m := s.n(id)
	u.Entries = slices.Clone(u.Entries)
	p := &u
	m.w.apply(p)
	m.pending = p
	s.do(func(c *Checker, at Time) { c.Write(at, id, p) })
}

// sync makes id's pending write durable.
func (s *ckScript) sync(id uint64) {
	m := s.n(id)
	p := m.pending
	m.d.apply(p)
	m.pending = nil
	s.do(func(c *Checker, at Time) { c.Durable(at, id, p) })
}

// put writes u on id and makes it durable.
func (s *ckScript) put(id uint64, u node.Update) {
	s.write(id, u)
	s.sync(id)
}

func (s *ckScript) status(id uint64) {
	m := s.n(id)
	st := core.BasicStatus{ID: id, Role: m.role, Term: m.w.hs.Term, Vote: m.w.hs.Vote, Commit: m.w.hs.Commit,
		Applied: m.applied, FirstIndex: m.w.base + 1, LastIndex: m.w.last()}
	s.do(func(c *Checker, at Time) { c.Status(at, id, st) })
}

func (s *ckScript) send(m core.Message) {
	s.do(func(c *Checker, at Time) { c.Send(at, &m) })
}

// recv hands m to its receiver.
func (s *ckScript) recv(m core.Message) {
	s.do(func(c *Checker, _ Time) { c.Receive(m.To, &m) })
}

func (s *ckScript) hs(id uint64, term, vote, commit uint64) node.Update {
	return node.Update{HardState: core.HardState{Term: term, Vote: vote, Commit: commit}, Sync: true}
}

// boot writes the founding configuration entry on every node and applies it.
func (s *ckScript) boot() {
	for _, id := range s.ids() {
		s.put(id, node.Update{Entries: []core.Entry{ckEnt2(1, 1, "boot")}, Sync: true,
			HardState: core.HardState{Term: 1, Commit: 1}})
		s.status(id)
		s.applyTo(id, 1)
	}
}

func (s *ckScript) ids() []uint64 {
	var ids []uint64
	for id := range s.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func ckEnt2(term, index uint64, data string) core.Entry {
	var d []byte
	if data != "" {
		d = []byte(data)
	}
	return core.Entry{Term: term, Index: index, Data: d}
}

// elect makes leader campaign in term and win with the votes of voters.
func (s *ckScript) elect(leader, term uint64, voters ...uint64) {
	l := s.n(leader)
	s.put(leader, s.hs(leader, term, leader, l.w.hs.Commit))
	l.role = core.Candidate
	s.status(leader)
	for _, v := range voters {
		vote := core.Message{Type: core.MsgVote, From: leader, To: v, Term: term, Index: l.w.last(), LogTerm: l.w.term(l.w.last())}
		s.send(vote)
		s.recv(vote)
		m := s.n(v)
		s.put(v, s.hs(v, term, leader, m.w.hs.Commit))
		m.role = core.Follower
		s.status(v)
		s.send(core.Message{Type: core.MsgVoteResp, From: v, To: leader, Term: term})
	}
	l.role = core.Leader
	s.status(leader)
}

// propose appends entries with data to leader's log in its term.
func (s *ckScript) propose(leader uint64, data ...string) {
	l := s.n(leader)
	var es []core.Entry
	for i, d := range data {
		es = append(es, ckEnt2(l.w.hs.Term, l.w.last()+1+uint64(i), d))
	}
	s.put(leader, node.Update{Entries: es, Sync: true})
	s.status(leader)
}

// replicate brings f's log up to leader's up to index upto and has f
// acknowledge it; with durable false, f's write stays in flight and f does
// not answer.
func (s *ckScript) replicate(leader, f, upto uint64, durable bool) {
	l, m := s.n(leader), s.n(f)
	p := min(m.w.last(), upto)
	for p > m.w.base && m.w.term(p) != l.w.term(p) {
		p--
	}
	u := node.Update{Sync: true}
	if p < upto {
		u.Entries = l.w.entries(p+1, upto)
	}
	hs := m.w.hs
	if hs.Term < l.w.hs.Term {
		hs = core.HardState{Term: l.w.hs.Term, Commit: hs.Commit}
	}
	hs.Commit = max(hs.Commit, min(l.w.hs.Commit, upto))
	if hs != m.w.hs {
		u.HardState = hs
	}
	m.role = core.Follower
	s.recv(core.Message{Type: core.MsgApp, From: leader, To: f, Term: l.w.hs.Term})
	s.write(f, u)
	if !durable {
		s.status(f)
		return
	}
	s.sync(f)
	s.status(f)
	s.send(core.Message{Type: core.MsgAppResp, From: f, To: leader, Term: l.w.hs.Term, Index: upto})
}

// commit sets id's commit index.
func (s *ckScript) commit(id, index uint64) {
	hs := s.n(id).w.hs
	hs.Commit = index
	s.put(id, node.Update{HardState: hs})
	s.status(id)
}

// applyTo applies id's log up to index and reports its state hash.
func (s *ckScript) applyTo(id, index uint64) {
	m := s.n(id)
	for i := m.applied + 1; i <= index; i++ {
		e := m.w.log[i-m.w.base-1]
		m.sm = ckSM(m.sm, &e)
		s.do(func(c *Checker, at Time) { c.Apply(at, id, &e) })
	}
	m.applied = index
	s.status(id)
	sm := m.sm
	s.do(func(c *Checker, at Time) { c.StateHash(at, id, index, sm) })
}

func ckSM(h uint64, e *core.Entry) uint64 {
	h = ckFmix(h ^ e.Term<<32 ^ e.Index)
	for _, b := range e.Data {
		h = (h ^ uint64(b)) * 1099511628211
	}
	return h
}

// localSnap snapshots id's state machine at its applied index and compacts
// its log up to compactTo.
func (s *ckScript) localSnap(id, compactTo uint64) {
	m := s.n(id)
	sn := &core.Snapshot{Meta: core.SnapshotMeta{Index: m.applied, Term: m.w.term(m.applied)}}
	s.put(id, node.Update{LocalSnapshot: sn, CompactTo: compactTo, Sync: true})
	m.snapSM, m.snapSMAt = m.sm, m.applied
}

// installSnap sends leader's snapshot to f, which installs it.
func (s *ckScript) installSnap(leader, f uint64) {
	l, m := s.n(leader), s.n(f)
	idx := l.w.snapIndex
	sn := &core.Snapshot{Meta: core.SnapshotMeta{Index: idx, Term: l.w.snapTerm}}
	s.recv(core.Message{Type: core.MsgSnap, From: leader, To: f, Term: l.w.hs.Term})
	s.put(f, node.Update{Snapshot: sn, HardState: core.HardState{Term: l.w.hs.Term, Commit: idx}, Sync: true})
	m.role = core.Follower
	m.applied, m.sm, m.snapSM, m.snapSMAt = idx, l.snapSM, l.snapSM, idx
	s.do(func(c *Checker, at Time) { c.Restore(at, f, idx) })
	s.status(f)
	sm := m.sm
	s.do(func(c *Checker, at Time) { c.StateHash(at, f, idx, sm) })
	s.send(core.Message{Type: core.MsgAppResp, From: f, To: leader, Term: l.w.hs.Term, Index: idx})
}

func (s *ckScript) crash(id uint64) {
	s.do(func(c *Checker, at Time) { c.Crash(at, id) })
}

// restart restarts id with loaded, which the model adopts.
func (s *ckScript) restart(id uint64, loaded core.Persisted) {
	m := s.n(id)
	var st ckSt
	st.hs = loaded.HardState
	if sn := loaded.Snapshot; sn != nil {
		st.snapIndex, st.snapTerm, st.base, st.baseTerm = sn.Meta.Index, sn.Meta.Term, sn.Meta.Index, sn.Meta.Term
	}
	for _, e := range loaded.Entries {
		if e.Index > st.base {
			st.log = append(st.log, e)
		}
	}
	m.w, m.d, m.pending, m.role = st, st, nil, core.Follower
	m.d.log = slices.Clone(st.log)
	m.applied, m.sm = 0, 0
	if st.snapIndex > 0 {
		m.applied, m.sm = st.snapIndex, m.snapSM
	}
	s.do(func(c *Checker, at Time) { c.Restart(at, id, loaded) })
	if st.snapIndex > 0 {
		idx := st.snapIndex
		s.do(func(c *Checker, at Time) { c.Restore(at, id, idx) })
	}
	s.status(id)
}

// load restarts id with loaded and nothing else (for a restart that the
// checker must refuse).
func (s *ckScript) load(id uint64, loaded core.Persisted) {
	s.do(func(c *Checker, at Time) { c.Restart(at, id, loaded) })
}

// torn returns id's durable state plus the first keep entries of its
// write in flight (a torn write).
func (s *ckScript) torn(id uint64, keep int) core.Persisted {
	m := s.n(id)
	p := m.d.persisted()
	es := m.pending.Entries
	k := slices.IndexFunc(p.Entries, func(e core.Entry) bool { return e.Index >= es[0].Index })
	if k >= 0 {
		p.Entries = p.Entries[:k]
	}
	p.Entries = append(p.Entries, es[:keep]...)
	return p
}

type ckCase struct {
	name  string
	nodes int // 3 if 0
	build func(s *ckScript)
	check string // "" for a clean run
	node  uint64
}

// ckReplicated: three nodes, node 1 leads term 2 and entries 1..4 are
// committed and applied everywhere.
func ckReplicated(s *ckScript) {
	s.boot()
	s.elect(1, 2, 2, 3)
	s.propose(1, "", "a", "b")
	s.replicate(1, 2, 4, true)
	s.replicate(1, 3, 4, true)
	s.commit(1, 4)
	s.replicate(1, 2, 4, true)
	s.replicate(1, 3, 4, true)
	for _, id := range s.ids() {
		s.applyTo(id, 4)
	}
}

// ckSnapshotted: node 3 misses entries 2..4 and installs node 1's
// snapshot at 4; then entry 5 is committed and applied everywhere.
func ckSnapshotted(s *ckScript) {
	s.boot()
	s.elect(1, 2, 2)
	s.propose(1, "", "a", "b")
	s.replicate(1, 2, 4, true)
	s.commit(1, 4)
	s.replicate(1, 2, 4, true)
	s.applyTo(1, 4)
	s.applyTo(2, 4)
	s.localSnap(1, 3) // keeps entry 4 behind the snapshot at 4
	s.installSnap(1, 3)
	s.propose(1, "c")
	s.replicate(1, 2, 5, true)
	s.replicate(1, 3, 5, true)
	s.commit(1, 5)
	s.replicate(1, 2, 5, true)
	s.replicate(1, 3, 5, true)
	for _, id := range s.ids() {
		s.applyTo(id, 5)
	}
}

var ckCases = []ckCase{
	// Clean runs.
	{name: "replication", build: ckReplicated},
	{name: "truncate uncommitted suffix", build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2, 3)
		s.propose(1, "")
		s.replicate(1, 2, 2, true)
		s.replicate(1, 3, 2, true)
		s.commit(1, 2)
		s.propose(1, "x", "y")     // 3 and 4, never committed
		s.replicate(1, 2, 3, true) // node 2 gets 3 only
		s.elect(2, 3, 3)
		s.propose(2, "") // (4, term 3)
		s.replicate(2, 3, 4, true)
		s.replicate(2, 1, 4, true) // node 1 loses (4, term 2)
		s.commit(2, 4)
		s.replicate(2, 1, 4, true)
		s.replicate(2, 3, 4, true)
		for _, id := range s.ids() {
			s.applyTo(id, 4)
		}
	}},
	{name: "snapshot install then more entries", build: ckSnapshotted},
	{name: "restart from snapshot", build: func(s *ckScript) {
		ckSnapshotted(s)
		s.crash(1)
		s.restart(1, s.n(1).d.persisted()) // snapshot at 4, entries 4 and 5
		s.applyTo(1, 5)
		s.crash(3)
		s.restart(3, s.n(3).d.persisted())
		s.applyTo(3, 5)
	}},
	{name: "crash restart with torn extra entries", build: func(s *ckScript) {
		ckReplicated(s)
		s.propose(1, "c", "d")      // 5 and 6
		s.replicate(1, 2, 6, false) // in flight at the crash
		s.crash(2)
		s.restart(2, s.torn(2, 1)) // entry 5 reached the disk, 6 did not
		s.applyTo(2, 4)            // re-applied from the start
		s.replicate(1, 2, 6, true)
		s.commit(1, 6)
		s.replicate(1, 2, 6, true)
		s.replicate(1, 3, 6, true)
		for _, id := range s.ids() {
			s.applyTo(id, 6)
		}
	}},
	{name: "crash restart with a truncating write torn", build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2, 3)
		s.propose(1, "")
		s.replicate(1, 2, 2, true)
		s.replicate(1, 3, 2, true)
		s.commit(1, 2)
		s.propose(1, "x", "y")
		s.replicate(1, 2, 4, true) // node 2 holds (3, 2) and (4, 2)
		s.elect(3, 3, 2)           // node 3 wins without them
		s.propose(3, "z")          // (3, term 3)
		s.replicate(3, 2, 3, false)
		s.crash(2)
		s.restart(2, s.torn(2, 0)) // truncated at 3, nothing appended
	}},
	{name: "crash restart with the write in flight complete or lost", build: func(s *ckScript) {
		ckReplicated(s)
		s.write(3, s.hs(3, 3, 2, 4)) // a vote for 2 in term 3, in flight
		s.crash(3)
		m := s.n(3)
		s.restart(3, m.w.persisted()) // the write completed before the crash
		s.write(3, s.hs(3, 4, 3, 4))
		s.crash(3)
		s.restart(3, s.n(3).d.persisted()) // lost
		s.applyTo(3, 4)
	}},
	{name: "stale vote grant sent after a later term is durable", build: func(s *ckScript) {
		ckReplicated(s)
		// Node 3 voted for 2 in term 3 in memory, then campaigned in term
		// 4 before anything was written; term 4 and its own vote are
		// durable when both replies go out.
		s.put(3, s.hs(3, 4, 3, 4))
		s.send(core.Message{Type: core.MsgVoteResp, From: 3, To: 2, Term: 3})
		s.send(core.Message{Type: core.MsgVote, From: 3, To: 2, Term: 4, Index: 4, LogTerm: 2})
		s.send(core.Message{Type: core.MsgAppResp, From: 3, To: 1, Term: 2, Index: 9}) // stale, term 2
	}},
	{name: "pre-votes carry a future term", build: func(s *ckScript) {
		ckReplicated(s)
		s.send(core.Message{Type: core.MsgPreVote, From: 3, To: 2, Term: 3, Index: 4, LogTerm: 2})
		s.send(core.Message{Type: core.MsgPreVoteResp, From: 2, To: 3, Term: 3})
	}},

	// election-safety
	{name: "two leaders in one term", check: CheckElectionSafety, node: 2, build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2)
		s.n(2).role = core.Leader
		s.status(2)
	}},

	// log-matching
	{name: "same index and term, other data", check: CheckLogMatching, node: 2, build: func(s *ckScript) {
		s.boot()
		s.put(1, node.Update{Entries: []core.Entry{ckEnt2(1, 2, "a")}})
		s.write(2, node.Update{Entries: []core.Entry{ckEnt2(1, 2, "b")}})
	}},
	{name: "same index and term, other prefix", check: CheckLogMatching, node: 2, build: func(s *ckScript) {
		s.boot()
		s.put(1, node.Update{Entries: []core.Entry{ckEnt2(1, 2, "x"), ckEnt2(2, 3, "z")}})
		s.write(2, node.Update{Entries: []core.Entry{ckEnt2(2, 2, "y"), ckEnt2(2, 3, "z")}})
	}},
	{name: "gap in the log", check: CheckLogMatching, node: 3, build: func(s *ckScript) {
		s.boot()
		s.do(func(c *Checker, at Time) {
			c.Write(at, 3, &node.Update{Entries: []core.Entry{ckEnt2(1, 5, "")}})
		})
	}},
	{name: "term goes down in the log", check: CheckLogMatching, node: 1, build: func(s *ckScript) {
		s.boot()
		s.do(func(c *Checker, at Time) {
			c.Write(at, 1, &node.Update{Entries: []core.Entry{ckEnt2(3, 2, ""), ckEnt2(2, 3, "")}})
		})
	}},

	// leader-completeness
	{name: "new leader misses a committed entry", check: CheckLeaderCompleteness, node: 3, build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2)
		s.propose(1, "")
		s.replicate(1, 2, 2, true)
		s.commit(1, 2)
		s.elect(3, 3, 2)
	}},
	{name: "figure 8: an old-term entry committed by counting replicas", nodes: 5, check: CheckLeaderCompleteness, node: 5,
		build: func(s *ckScript) {
			s.boot()
			s.elect(1, 2, 2, 3)
			s.propose(1, "a") // (2, term 2)
			s.replicate(1, 2, 2, true)
			s.elect(5, 3, 3, 4)
			s.propose(5, "b") // (2, term 3), on node 5 only
			s.elect(1, 4, 2, 3)
			s.replicate(1, 3, 2, true) // (2, term 2) on a majority
			s.commit(1, 2)             // the bug: no entry of term 4 yet
			s.elect(5, 5, 2, 3, 4)     // legal: node 5's log is more up to date
		}},
	{name: "new leader holds another entry at a committed index", check: CheckLeaderCompleteness, node: 3, build: func(s *ckScript) {
		s.boot()
		s.put(3, node.Update{Entries: []core.Entry{ckEnt2(1, 2, "old")}})
		s.elect(1, 2, 2)
		s.propose(1, "")
		s.replicate(1, 2, 2, true)
		s.commit(1, 2)
		s.elect(3, 3, 2)
	}},

	// state-machine-safety
	{name: "two entries applied at one index", check: CheckStateMachineSafety, node: 2, build: func(s *ckScript) {
		s.boot()
		s.do(func(c *Checker, at Time) { c.Apply(at, 1, &core.Entry{Term: 1, Index: 2, Data: []byte("a")}) })
		s.do(func(c *Checker, at Time) { c.Apply(at, 2, &core.Entry{Term: 1, Index: 2, Data: []byte("b")}) })
	}},
	{name: "applied out of order", check: CheckStateMachineSafety, node: 1, build: func(s *ckScript) {
		s.boot()
		s.do(func(c *Checker, at Time) { c.Apply(at, 1, &core.Entry{Term: 1, Index: 3}) })
	}},
	{name: "applied twice", check: CheckStateMachineSafety, node: 1, build: func(s *ckScript) {
		s.boot()
		s.do(func(c *Checker, at Time) { c.Apply(at, 1, &core.Entry{Term: 1, Index: 1, Data: []byte("boot")}) })
	}},
	{name: "two entries committed at one index", check: CheckCommitVerified, node: 2, build: func(s *ckScript) {
		s.boot()
		s.put(1, node.Update{Entries: []core.Entry{ckEnt2(2, 2, "a")}, HardState: core.HardState{Term: 2, Commit: 2}})
		s.put(2, node.Update{Entries: []core.Entry{ckEnt2(3, 2, "b")}, HardState: core.HardState{Term: 3, Commit: 1}})
		s.write(2, s.hs(2, 3, 0, 2))
	}},
	{name: "applied entry is not the committed one", check: CheckStateMachineSafety, node: 3, build: func(s *ckScript) {
		s.boot()
		s.put(1, node.Update{Entries: []core.Entry{ckEnt2(2, 2, "a")}, HardState: core.HardState{Term: 2, Commit: 2}})
		s.do(func(c *Checker, at Time) { c.Apply(at, 3, &core.Entry{Term: 3, Index: 2, Data: []byte("c")}) })
	}},
	{name: "snapshot conflicts with the committed log", check: CheckStateMachineSafety, node: 3, build: func(s *ckScript) {
		ckReplicated(s)
		sn := &core.Snapshot{Meta: core.SnapshotMeta{Index: 4, Term: 3}}
		s.write(3, node.Update{Snapshot: sn, HardState: core.HardState{Term: 3, Commit: 4}})
	}},

	// monotonic
	{name: "commit goes back", check: CheckMonotonic, node: 2, build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2, 3)
		s.propose(1, "", "a", "b")
		s.replicate(1, 2, 4, true)
		s.commit(1, 4)
		s.replicate(1, 2, 4, true) // node 2: commit 4, applied 1
		s.n(2).w.hs.Commit = 3
		s.status(2)
	}},
	{name: "applied above commit", check: CheckMonotonic, node: 2, build: func(s *ckScript) {
		s.boot()
		s.n(2).applied = 2
		s.status(2)
	}},
	{name: "applied goes back", check: CheckMonotonic, node: 3, build: func(s *ckScript) {
		ckReplicated(s)
		s.n(3).applied = 3
		s.status(3)
	}},
	{name: "commit above last index", check: CheckMonotonic, node: 1, build: func(s *ckScript) {
		ckReplicated(s)
		s.n(1).w.hs.Commit = 5
		s.status(1)
	}},
	{name: "term goes back", check: CheckMonotonic, node: 1, build: func(s *ckScript) {
		ckReplicated(s)
		s.n(1).w.hs.Term = 1
		s.status(1)
	}},
	{name: "state machine restored backwards", check: CheckMonotonic, node: 2, build: func(s *ckScript) {
		ckReplicated(s)
		s.do(func(c *Checker, at Time) { c.Restore(at, 2, 3) })
	}},

	// durability
	{name: "vote lost across a restart", check: CheckDurability, node: 2, build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2, 3)
		s.crash(2)
		p := s.n(2).d.persisted()
		p.HardState = core.HardState{Term: 2, Commit: 1}
		s.load(2, p)
	}},
	{name: "term lost across a restart", check: CheckDurability, node: 2, build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2, 3)
		s.crash(2)
		p := s.n(2).d.persisted()
		p.HardState = core.HardState{Term: 1, Commit: 1}
		s.load(2, p)
	}},
	{name: "loaded commit index never written", check: CheckDurability, node: 2, build: func(s *ckScript) {
		ckReplicated(s)
		s.propose(1, "c")
		s.replicate(1, 2, 5, true)
		s.crash(2)
		p := s.n(2).d.persisted()
		p.HardState.Commit = 5
		s.load(2, p)
	}},
	{name: "acknowledged entries lost across a restart", check: CheckDurability, node: 2, build: func(s *ckScript) {
		ckReplicated(s)
		s.crash(2)
		p := s.n(2).d.persisted()
		p.Entries = p.Entries[:3]
		s.load(2, p)
	}},
	{name: "loaded entry never written", check: CheckDurability, node: 2, build: func(s *ckScript) {
		ckReplicated(s)
		s.crash(2)
		p := s.n(2).d.persisted()
		p.Entries = append(p.Entries, ckEnt2(2, 5, "ghost"))
		s.load(2, p)
	}},
	{name: "loaded snapshot never written", check: CheckDurability, node: 3, build: func(s *ckScript) {
		ckSnapshotted(s)
		s.crash(3)
		p := s.n(3).d.persisted()
		p.Snapshot = &core.Snapshot{Meta: core.SnapshotMeta{Index: 5, Term: 2}} // never written
		s.load(3, p)
	}},

	// persist-before-send
	{name: "vote granted before it is durable", check: CheckPersistBeforeSend, node: 2, build: func(s *ckScript) {
		s.boot()
		s.put(2, s.hs(2, 2, 0, 1)) // term 2 is durable, the vote is not
		s.write(2, s.hs(2, 2, 1, 1))
		s.send(core.Message{Type: core.MsgVoteResp, From: 2, To: 1, Term: 2})
	}},
	{name: "votes requested before the vote is durable", check: CheckPersistBeforeSend, node: 1, build: func(s *ckScript) {
		s.boot()
		s.put(1, s.hs(1, 2, 0, 1)) // term 2 is durable, the vote is not
		s.write(1, s.hs(1, 2, 1, 1))
		s.send(core.Message{Type: core.MsgVote, From: 1, To: 2, Term: 2, Index: 1, LogTerm: 1})
	}},
	{name: "entries acknowledged before they are durable", check: CheckPersistBeforeSend, node: 2, build: func(s *ckScript) {
		ckReplicated(s)
		s.propose(1, "c")
		s.replicate(1, 2, 5, false)
		s.send(core.Message{Type: core.MsgAppResp, From: 2, To: 1, Term: 2, Index: 5})
	}},
	{name: "truncation acknowledged before it is durable", check: CheckPersistBeforeSend, node: 2, build: func(s *ckScript) {
		s.boot()
		s.put(2, node.Update{Entries: []core.Entry{ckEnt2(1, 2, "x"), ckEnt2(1, 3, "y")},
			HardState: core.HardState{Term: 2, Commit: 1}})
		s.write(2, node.Update{Entries: []core.Entry{ckEnt2(2, 2, "a")}})
		s.send(core.Message{Type: core.MsgAppResp, From: 2, To: 1, Term: 2, Index: 2})
	}},
	{name: "commit announced before the leader's entry is durable", check: CheckPersistBeforeSend, node: 1, build: func(s *ckScript) {
		ckReplicated(s)
		s.write(1, node.Update{Entries: []core.Entry{ckEnt2(2, 5, "c")}, Sync: true})
		// Sending the entry early is allowed; announcing it committed is not.
		s.send(core.Message{Type: core.MsgApp, From: 1, To: 2, Term: 2, Index: 4, LogTerm: 2,
			Entries: []core.Entry{ckEnt2(2, 5, "c")}, Commit: 4})
		s.send(core.Message{Type: core.MsgHeartbeat, From: 1, To: 3, Term: 2, Commit: 5})
	}},

	// commit-verified
	{name: "follower commits its stale tail on a heartbeat", check: CheckCommitVerified, node: 3, build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2)
		s.propose(1, "a", "b")     // 2 and 3, term 2
		s.replicate(1, 3, 3, true) // node 3 holds them; nobody else
		s.elect(2, 3, 3)           // node 2 wins term 3 with node 3's vote (its log is behind: legal in this script)
		s.propose(2, "x", "y")     // 2 and 3, term 3
		s.replicate(2, 1, 3, true)
		s.commit(2, 3) // committed: node 2 and node 1
		// Node 3 still holds term 2's entries at 2 and 3, and takes the
		// leader's commit index 3 on a heartbeat without an append that
		// verified them.
		s.recv(core.Message{Type: core.MsgHeartbeat, From: 2, To: 3, Term: 3, Commit: 3})
		s.write(3, s.hs(3, 3, 2, 3))
	}},
	{name: "follower commits what the append verified", build: func(s *ckScript) {
		s.boot()
		s.elect(1, 2, 2)
		s.propose(1, "a", "b")
		s.replicate(1, 3, 3, true)
		s.elect(2, 3, 3)
		s.propose(2, "x", "y")
		s.replicate(2, 1, 3, true)
		s.commit(2, 3)
		s.replicate(2, 3, 3, true) // truncates node 3's tail, then commits
	}},

	// prevote-term
	{name: "pre-candidate raises its term", check: CheckPreVoteTerm, node: 3, build: func(s *ckScript) {
		ckReplicated(s)
		m := s.n(3)
		s.put(3, s.hs(3, m.w.hs.Term+1, 0, m.w.hs.Commit))
		m.role = core.PreCandidate
		s.status(3)
	}},
	{name: "term raised by a pre-vote request", check: CheckPreVoteTerm, node: 2, build: func(s *ckScript) {
		ckReplicated(s)
		m := s.n(2)
		s.recv(core.Message{Type: core.MsgPreVote, From: 3, To: 2, Term: m.w.hs.Term + 1})
		s.put(2, s.hs(2, m.w.hs.Term+1, 0, m.w.hs.Commit))
		m.role = core.Follower
		s.status(2)
	}},
	{name: "candidate without a pre-vote round, PreVote on", check: CheckPreVoteTerm, node: 3, build: func(s *ckScript) {
		ckReplicated(s)
		s.do(func(c *Checker, _ Time) { c.SetPreVote(true) })
		m := s.n(3)
		s.put(3, s.hs(3, m.w.hs.Term+1, 3, m.w.hs.Commit))
		m.role = core.Candidate
		s.status(3)
	}},
	{name: "candidate after a pre-vote round, PreVote on", build: func(s *ckScript) {
		ckReplicated(s)
		s.do(func(c *Checker, _ Time) { c.SetPreVote(true) })
		m := s.n(3)
		m.role = core.PreCandidate
		s.status(3)
		s.recv(core.Message{Type: core.MsgPreVoteResp, From: 2, To: 3, Term: m.w.hs.Term + 1})
		s.put(3, s.hs(3, m.w.hs.Term+1, 3, m.w.hs.Commit))
		m.role = core.Candidate
		s.status(3)
	}},
	{name: "transferee campaigns at once, PreVote on", build: func(s *ckScript) {
		ckReplicated(s)
		s.do(func(c *Checker, _ Time) { c.SetPreVote(true) })
		m := s.n(3)
		s.recv(core.Message{Type: core.MsgTimeoutNow, From: 1, To: 3, Term: m.w.hs.Term})
		s.put(3, s.hs(3, m.w.hs.Term+1, 3, m.w.hs.Commit))
		m.role = core.Candidate
		s.status(3)
	}},
	{name: "term raised by a rejected pre-vote answer", build: func(s *ckScript) {
		ckReplicated(s)
		m := s.n(3)
		s.recv(core.Message{Type: core.MsgPreVoteResp, From: 2, To: 3, Term: m.w.hs.Term + 2, Reject: true})
		s.put(3, s.hs(3, m.w.hs.Term+2, 0, m.w.hs.Commit))
		m.role = core.Follower
		s.status(3)
	}},

	{name: "message in a term not durable", check: CheckPersistBeforeSend, node: 2, build: func(s *ckScript) {
		s.boot()
		s.write(2, s.hs(2, 5, 0, 1))
		s.send(core.Message{Type: core.MsgHeartbeatResp, From: 2, To: 1, Term: 5})
	}},

	// convergence
	{name: "replicas disagree at one applied index", check: CheckConvergence, node: 2, build: func(s *ckScript) {
		ckReplicated(s)
		s.do(func(c *Checker, at Time) { c.StateHash(at, 2, 4, 12345) })
	}},
}

func TestChecker(t *testing.T) {
	for _, tc := range ckCases {
		t.Run(tc.name, func(t *testing.T) {
			ids := []uint64{1, 2, 3}
			for id := uint64(4); id <= uint64(tc.nodes); id++ {
				ids = append(ids, id)
			}
			s := newCkScript(ids...)
			tc.build(s)
			c := NewChecker(ids)
			for i, step := range s.steps {
				step(c)
				if v := c.Err(); v != nil {
					if tc.check == "" {
						t.Fatalf("clean scenario: step %d of %d: %v", i+1, len(s.steps), v)
					}
					if i != len(s.steps)-1 {
						t.Fatalf("step %d of %d (want the last): %v", i+1, len(s.steps), v)
					}
					break
				}
			}
			v := c.Err()
			switch {
			case tc.check == "":
				return
			case v == nil:
				t.Fatalf("no violation, want %s on node %d", tc.check, tc.node)
			case v.Check != tc.check || v.Node != tc.node:
				t.Fatalf("got %v, want %s on node %d", v, tc.check, tc.node)
			case v.At != s.now:
				t.Fatalf("violation at %d, want %d", v.At, s.now)
			}
			if msg := v.Error(); !strings.Contains(msg, tc.check) || v.Detail == "" {
				t.Fatalf("Error() = %q", msg)
			}
			t.Log(v)
		})
	}
}

// TestCheckerFirstViolationSticks: later violations do not replace the
// first, and calls after it change nothing.
func TestCheckerFirstViolationSticks(t *testing.T) {
	c := NewChecker([]uint64{1, 2})
	c.Status(1, 1, core.BasicStatus{ID: 1, Role: core.Leader, Term: 2})
	c.Status(2, 2, core.BasicStatus{ID: 2, Role: core.Leader, Term: 2})
	first := c.Err()
	if first == nil || first.Check != CheckElectionSafety {
		t.Fatalf("got %v", first)
	}
	c.StateHash(3, 1, 1, 1)
	c.StateHash(4, 2, 1, 2)
	c.Apply(5, 1, &core.Entry{Index: 7})
	if v := c.Err(); v != first || *v != *first {
		t.Fatalf("first violation replaced: %v", v)
	}
}

// TestCheckerLateNodes: a node that was not an initial member is tracked
// from its first call.
func TestCheckerLateNodes(t *testing.T) {
	c := NewChecker([]uint64{1})
	c.Restart(1, 4000, core.Persisted{})
	c.Write(2, 4000, &node.Update{Entries: []core.Entry{ckEnt2(1, 1, "")}, HardState: core.HardState{Term: 1}})
	c.Send(3, &core.Message{Type: core.MsgAppResp, From: 4000, To: 1, Term: 1, Index: 1})
	if v := c.Err(); v == nil || v.Check != CheckPersistBeforeSend || v.Node != 4000 {
		t.Fatalf("got %v, want persist-before-send on node 4000", v)
	}
}

// BenchmarkCheckerWriteApply: a three-node steady stream of entries, per
// entry: the leader writes it, every follower writes and acknowledges it,
// everyone commits and applies it, with a status after each event. Every
// 1024 entries each node snapshots and compacts its log, as nodes do.
func BenchmarkCheckerWriteApply(b *testing.B) {
	ids := []uint64{1, 2, 3}
	c := NewChecker(ids)
	data := []byte("0123456789abcdef0123456789abcdef")
	var (
		ents [1]core.Entry
		u    node.Update
		m    core.Message
	)
	st := make([]core.BasicStatus, 4)
	for _, id := range ids {
		u = node.Update{HardState: core.HardState{Term: 2, Vote: 1}, Sync: true}
		c.Write(0, id, &u)
		c.Durable(0, id, &u)
		st[id] = core.BasicStatus{ID: id, Term: 2, Vote: 1}
	}
	st[1].Role = core.Leader
	c.Status(0, 1, st[1])
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		at := Time(i)
		idx := uint64(i)
		ents[0] = core.Entry{Term: 2, Index: idx, Data: data}
		for _, id := range ids {
			u = node.Update{Entries: ents[:], HardState: core.HardState{Term: 2, Vote: 1, Commit: idx - 1}, Sync: true}
			c.Write(at, id, &u)
			c.Durable(at, id, &u)
			if id != 1 {
				m = core.Message{Type: core.MsgAppResp, From: id, To: 1, Term: 2, Index: idx}
				c.Send(at, &m)
			}
			s := &st[id]
			s.Commit, s.LastIndex = idx-1, idx
			c.Status(at, id, *s)
		}
		for _, id := range ids {
			c.Apply(at, id, &ents[0])
			s := &st[id]
			s.Commit, s.Applied = idx, idx
			c.Status(at, id, *s)
			c.StateHash(at, id, idx, idx*7)
		}
		if idx%1024 == 0 {
			snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: idx, Term: 2}}
			for _, id := range ids {
				u = node.Update{LocalSnapshot: snap, CompactTo: idx - 64, Sync: true}
				c.Write(at, id, &u)
				c.Durable(at, id, &u)
			}
		}
	}
	b.StopTimer()
	if v := c.Err(); v != nil {
		b.Fatal(v)
	}
}

// TestCountersAdd: Add sums every counter field, those of nested structs
// (Reached) included.
func TestCountersAdd(t *testing.T) {
	var a, b Counters
	var leaves []reflect.Value // every uint64 field of b, depth first
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for i := range v.NumField() {
			switch f := v.Field(i); f.Kind() {
			case reflect.Uint64:
				leaves = append(leaves, f)
			case reflect.Struct:
				walk(f)
			}
		}
	}
	walk(reflect.ValueOf(&b).Elem())
	for i, f := range leaves {
		f.SetUint(uint64(i + 1))
	}
	if b.Reached.LeaseReadsLeaderChange == 0 || b.StorageRepairs == 0 {
		t.Fatalf("fields not reached by the walk: %+v", b)
	}
	a.Add(&b)
	a.Add(&b)
	want := b
	leaves = leaves[:0]
	walk(reflect.ValueOf(&want).Elem())
	for _, f := range leaves {
		f.SetUint(2 * f.Uint())
	}
	if a != want {
		t.Errorf("sum of b twice:\n%+v\nwant\n%+v", a, want)
	}
}

// TestCheckerLostWriteForgotten: entries that only one node wrote, in a
// write a crash lost, are taken back from the log-matching table. After
// the restart that node may write the same index in the same term again
// with other data, as a lone voter does when the crash also lost the hard
// state of the term it won. The same rewrite after the first write became
// durable is a log-matching violation.
func TestCheckerLostWriteForgotten(t *testing.T) {
	hs := core.HardState{Term: 2, Vote: 1}
	first := []core.Entry{{Term: 2, Index: 1, Data: []byte("a")}}
	again := []core.Entry{{Term: 2, Index: 1, Data: []byte("b")}}
	for _, durable := range []bool{false, true} {
		c := NewChecker([]uint64{1, 2, 3})
		c.Write(1, 1, &node.Update{HardState: hs, Entries: first, Sync: true})
		var loaded core.Persisted
		if durable {
			c.Durable(2, 1, &node.Update{HardState: hs, Entries: first, Sync: true})
			loaded = core.Persisted{HardState: hs, Entries: first}
		}
		c.Crash(3, 1)
		c.Restart(4, 1, loaded)
		if v := c.Err(); v != nil {
			t.Fatalf("durable=%v: restart: %v", durable, v)
		}
		c.Write(5, 1, &node.Update{HardState: hs, Entries: again, Sync: true})
		v := c.Err()
		switch {
		case !durable && v != nil:
			t.Errorf("lost write rewritten: %v", v)
		case durable && (v == nil || v.Check != CheckLogMatching):
			t.Errorf("durable entry rewritten in its term: %v, want %s", v, CheckLogMatching)
		}
	}
}
