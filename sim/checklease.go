package sim

import "github.com/forge-consensus/consensus/core"

// CheckLeaseRead fails when a read answered on the leader's lease (without
// a confirmation round) may be stale: its read index lies below an index
// already committed in the cluster when it was answered, or the leader
// answered it after a node that its own MsgTimeoutNow of that term forced
// to campaign was elected. A lease is only sound if every later leader
// respects it; a transferee's forced campaign does not.
const CheckLeaseRead = "lease-read"

// ckLease is the lease check's state: per node, the MsgTimeoutNows it sent
// in its latest term that sent any.
type ckLease struct {
	timeoutNow map[uint64]*ckTimeoutNow
}

// ckTimeoutNow lists the nodes one leader sent MsgTimeoutNow in term.
type ckTimeoutNow struct {
	term uint64
	to   []uint64
}

// leaseTimeoutNow records a MsgTimeoutNow m being sent.
func (c *Checker) leaseTimeoutNow(m *core.Message) {
	l := &c.lease
	if l.timeoutNow == nil {
		l.timeoutNow = make(map[uint64]*ckTimeoutNow)
	}
	t := l.timeoutNow[m.From]
	if t == nil {
		t = &ckTimeoutNow{}
		l.timeoutNow[m.From] = t
	}
	if t.term != m.Term {
		t.term, t.to = m.Term, t.to[:0]
	}
	for _, id := range t.to {
		if id == m.To {
			return
		}
	}
	t.to = append(t.to, m.To)
}

// TimeoutNowSent reports whether node id sent a MsgTimeoutNow in term.
func (c *Checker) TimeoutNowSent(id, term uint64) bool {
	t := c.lease.timeoutNow[id]
	return t != nil && t.term == term
}

// LeaseRead checks a read that node id, leading term, answered on its
// lease at read index index (see CheckLeaseRead).
func (c *Checker) LeaseRead(at Time, id, term, index uint64) {
	if c.err != nil {
		return
	}
	if index < c.maxCommit {
		r := c.commits.at(c.maxCommit)
		c.fail(at, id, CheckLeaseRead,
			"node %d answered a lease read in term %d at read index %d, but index %d (term %d, node %d) is committed",
			id, term, index, c.maxCommit, r.term, r.node)
		return
	}
	if t := c.lease.timeoutNow[id]; t != nil && t.term == term {
		for _, to := range t.to {
			if lt := c.node(to).leaderTerm; lt > term {
				c.fail(at, id, CheckLeaseRead,
					"node %d answered a lease read in term %d after node %d, which its MsgTimeoutNow of that term forced to campaign, led term %d",
					id, term, to, lt)
				return
			}
		}
	}
}
