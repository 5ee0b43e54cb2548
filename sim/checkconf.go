package sim

import (
	"slices"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Membership checks: cheap, direct sightings of two classic membership
// bugs, before their consequences (a lost commit, a stuck cluster) show.
const (
	// CheckCommitQuorum fails when a leader's commit index advances to an
	// index that is not durable on a quorum of every half of the
	// configuration that was in force for it (both halves while joint).
	CheckCommitQuorum = "commit-quorum"
	// CheckSingleConfChange fails when a leader's log holds more than one
	// membership change above the highest commit index any node reached:
	// a second change was accepted before the first committed.
	CheckSingleConfChange = "single-conf-change"
)

// noteConfs keeps n.confIdx, the indexes of the membership changes in the
// node's written log, up to date with the write u: a snapshot replaces the
// log, entries replace the log from their first index, a compaction drops
// what it covers.
func (c *Checker) noteConfs(n *ckNode, u *node.Update) {
	if s := u.Snapshot; !s.IsEmpty() {
		n.confIdx = n.confIdx[:0]
	}
	if s := u.LocalSnapshot; !s.IsEmpty() && len(n.confIdx) > 0 && n.confIdx[0] <= u.CompactTo {
		k := 0
		for k < len(n.confIdx) && n.confIdx[k] <= u.CompactTo {
			k++
		}
		n.confIdx = append(n.confIdx[:0], n.confIdx[k:]...)
	}
	es := u.Entries
	if len(es) == 0 {
		return
	}
	for k := len(n.confIdx); k > 0 && n.confIdx[k-1] >= es[0].Index; k-- {
		n.confIdx = n.confIdx[:k-1]
	}
	for i := range es {
		if es[i].Type == core.EntryConfChange {
			n.confIdx = append(n.confIdx, es[i].Index)
		}
	}
}

// loadConfs sets n.confIdx from a restarted node's loaded log (entries
// above base).
func (c *Checker) loadConfs(n *ckNode, ents []core.Entry, base uint64) {
	n.confIdx = n.confIdx[:0]
	for i := range ents {
		if ents[i].Type == core.EntryConfChange && ents[i].Index > base {
			n.confIdx = append(n.confIdx, ents[i].Index)
		}
	}
}

// checkSingleConf checks, for a node that leads, that its written log
// holds at most one membership change above the highest commit index any
// node reported: a leader accepts a change only once the previous one has
// committed, and a new leader accepts none before its first entry (which
// covers every inherited one) commits.
func (c *Checker) checkSingleConf(at Time, n *ckNode, st *core.BasicStatus) {
	c.topCommit = max(c.topCommit, st.Commit)
	if st.Role != core.Leader {
		return
	}
	g := max(c.topCommit, c.maxCommit)
	ci := n.confIdx
	if len(ci) < 2 || ci[len(ci)-2] <= g {
		return
	}
	k := len(ci)
	for k > 0 && ci[k-1] > g {
		k--
	}
	c.fail(at, n.id, CheckSingleConfChange,
		"leader of term %d holds %d uncommitted membership changes (at indexes %v; highest commit index %d)",
		st.Term, len(ci)-k, ci[k:], g)
}

// ConfChangeIn reports whether node id's written log holds a membership
// change in (lo, hi].
func (c *Checker) ConfChangeIn(id, lo, hi uint64) bool {
	ci := c.node(id).confIdx
	k, _ := slices.BinarySearch(ci, lo+1)
	return k < len(ci) && ci[k] <= hi
}

// LeaderCommit checks that leader id, whose commit index went from old to
// index within one event, committed an index that is durable (as far as
// the checker knows each node's durable log) on a quorum of every half of
// a configuration in force for it. before is the leader's configuration
// when its commit index was old. after, if not nil, is its configuration
// now, after the membership changes in (old, index] took effect: it was in
// force for index too if the last of those changes lies below index (the
// leader counted again under it). With more than one such change the
// intermediate configurations are unknown, and a failure under both is
// not reported.
func (c *Checker) LeaderCommit(at Time, id, old, index uint64, before, after *core.ConfState) {
	if c.err != nil || index <= old {
		return
	}
	n := c.node(id)
	e, ok := n.issued.at(index)
	if !ok {
		return // compacted: below what the leader can still tell
	}
	if c.quorumHolds(before, index, e.chain) {
		return
	}
	var below, at0 int // membership changes in (old, index), and at index
	ci := n.confIdx
	for k, _ := slices.BinarySearch(ci, old+1); k < len(ci) && ci[k] <= index; k++ {
		if ci[k] == index {
			at0++
		} else {
			below++
		}
	}
	switch {
	case after != nil && below > 0 && at0 == 0:
		if c.quorumHolds(after, index, e.chain) {
			return
		}
		c.fail(at, id, CheckCommitQuorum,
			"leader committed index %d (from %d), but it is durable on %s of voters %v and %s of outgoing voters %v "+
				"(the configuration before), and on %s of voters %v and %s of outgoing voters %v (the one after the membership change below it)",
			index, old, c.holders(before.Voters, index, e.chain), before.Voters,
			c.holders(before.VotersOutgoing, index, e.chain), before.VotersOutgoing,
			c.holders(after.Voters, index, e.chain), after.Voters,
			c.holders(after.VotersOutgoing, index, e.chain), after.VotersOutgoing)
		return
	case below+at0 > 1:
		return // an intermediate configuration may have counted it
	}
	c.fail(at, id, CheckCommitQuorum,
		"leader committed index %d (from %d), but it is durable on %s of voters %v and %s of outgoing voters %v",
		index, old, c.holders(before.Voters, index, e.chain), before.Voters,
		c.holders(before.VotersOutgoing, index, e.chain), before.VotersOutgoing)
}

// holds reports whether node id's durable log holds the entry at index
// with chain hash chain (or has compacted it away: a snapshot covers only
// committed entries).
func (c *Checker) holds(id, index, chain uint64) bool {
	d := &c.node(id).durable
	if index <= d.base {
		return true
	}
	e, ok := d.at(index)
	return ok && e.chain == chain
}

// quorumHolds reports whether a quorum of each half of cs holds the entry.
func (c *Checker) quorumHolds(cs *core.ConfState, index, chain uint64) bool {
	return c.majorityHolds(cs.Voters, index, chain) && c.majorityHolds(cs.VotersOutgoing, index, chain)
}

// majorityHolds reports whether more than half of voters hold the entry
// (an empty set constrains nothing).
func (c *Checker) majorityHolds(voters []uint64, index, chain uint64) bool {
	if len(voters) == 0 {
		return true
	}
	k := 0
	for _, id := range voters {
		if c.holds(id, index, chain) {
			k++
		}
	}
	return 2*k > len(voters)
}

// holders names the voters that hold the entry, for a report.
func (c *Checker) holders(voters []uint64, index, chain uint64) string {
	var ids []uint64
	for _, id := range voters {
		if c.holds(id, index, chain) {
			ids = append(ids, id)
		}
	}
	return fmtIDs(ids)
}

// fmtIDs formats node IDs as a list.
func fmtIDs(ids []uint64) string {
	b := []byte{'['}
	for i, id := range ids {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendUint(b, id)
	}
	return string(append(b, ']'))
}

func appendUint(b []byte, v uint64) []byte {
	if v >= 10 {
		b = appendUint(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

// leaderView is what the commit-quorum check remembers of a process while
// it leads: the lifetime and term, the commit index at the last
// observation and the configuration in force above it.
type leaderView struct {
	epoch, term uint64
	commit      uint64
	conf        core.ConfState
	valid       bool
}

// watchCommit hands a leader's commit advance to the checker, with the
// configuration before it (remembered from the previous observation) and,
// when a membership change took effect in between, the configuration now.
// It costs a configuration copy only when a process starts leading and
// when a membership change commits.
func (c *cluster) watchCommit(p *proc, old *core.BasicStatus, st *core.BasicStatus) {
	if st.Role != core.Leader && old.Role != core.Leader {
		return
	}
	v := &p.lead
	if !v.valid || old.Role != core.Leader || v.epoch != p.epoch || v.term != st.Term || old.Term != st.Term {
		v.valid = false
		if st.Role == core.Leader {
			*v = leaderView{epoch: p.epoch, term: st.Term, commit: st.Commit, conf: p.n.Core().Status().Config, valid: true}
		}
		return
	}
	if st.Commit == v.commit {
		return
	}
	var after *core.ConfState
	var cs core.ConfState
	if c.chk.ConfChangeIn(p.id, v.commit, st.Commit) {
		cs = p.n.Core().Status().Config
		after = &cs
	}
	c.chk.LeaderCommit(c.s.Now(), p.id, v.commit, st.Commit, &v.conf, after)
	v.commit = st.Commit
	if after != nil {
		c.leaderConfCommitted(p, &v.conf, &cs)
		v.conf = cs
	}
	if st.Role != core.Leader {
		v.valid = false
	}
}
