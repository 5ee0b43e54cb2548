package sim

import (
	"errors"
	"fmt"
	"slices"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
)

// proc is one simulated process slot: a disk that survives crashes and,
// while the process is up, a node and its state machine.
type proc struct {
	c       *cluster
	id      uint64
	disk    *Disk
	n       *node.Node // nil while down
	sm      *kv.Store
	up      bool
	removed bool // removed from the configuration: never restarted
	// member: the configuration has named this process; retireAt: the
	// commit index whose configuration left it out again (0 while it is a
	// member).
	member   bool
	namedAt  uint64 // the highest commit index whose configuration named it
	retireAt uint64
	// excluded: left down for the liveness phase (outside the quorum core).
	excluded bool
	paused   bool
	queued   []func() // work that arrived while paused
	boots    uint64
	epoch    uint64 // bumped on crash: stale timers of an old run stop
	drift    float64
	status   core.BasicStatus
	logLast  uint64 // last index the process has written (or is writing)
	// crashOnWrite makes the next Save of this process crash it while the
	// write is in flight.
	crashOnWrite bool
	// damaged: a silent storage fault hit the disk (it counts against the
	// damaged minority until the process is removed); refused: its storage
	// refused to load (fail-stop: it never starts again).
	damaged bool
	refused bool
	// lead is what the commit-quorum check remembers while it leads.
	lead leaderView
	// crashAfterConf, when not 0, crashes the process for that long right
	// after it next applies a membership change (confchurn.go).
	crashAfterConf Time
}

// storage wraps the disk of one process lifetime to tell the checker what
// the node writes and when it becomes durable.
type storage struct {
	p      *proc
	inner  node.Storage
	epoch  uint64
	loaded *core.Persisted // what start read, handed to the node once
	// unsynced are completed writes that no fsync covers yet.
	unsynced []node.Update
}

func (s *storage) Load() (core.Persisted, error) {
	if st := s.loaded; st != nil {
		s.loaded = nil
		return *st, nil
	}
	return s.inner.Load()
}

func (s *storage) Save(u *node.Update, done func(error)) {
	p, c := s.p, s.p.c
	c.reachWrite(p, u)
	c.chk.Write(c.s.Now(), p.id, u)
	if u.Snapshot != nil {
		c.counters.SnapshotsInstalled++
	}
	if u.LocalSnapshot != nil {
		c.counters.SnapshotsTaken++
	}
	if u.Snapshot != nil {
		p.logLast = u.Snapshot.Meta.Index
	}
	if n := len(u.Entries); n > 0 {
		if u.Entries[0].Index <= p.logLast {
			c.counters.Truncations++
			if p.logLast-u.Entries[0].Index >= 3 {
				c.counters.LongTruncations++
			}
		}
		p.logLast = u.Entries[n-1].Index
	}
	s.inner.Save(u, func(err error) {
		if s.epoch != p.epoch {
			return
		}
		if err == nil {
			if u.Sync {
				// An fsync makes the writes completed before it durable too.
				for i := range s.unsynced {
					c.chk.Durable(c.s.Now(), p.id, &s.unsynced[i])
				}
				s.unsynced = s.unsynced[:0]
				c.chk.Durable(c.s.Now(), p.id, u)
			} else {
				// Written, not durable: the node may reuse u, so keep a copy.
				s.unsynced = append(s.unsynced, *u)
			}
		}
		p.run(func() { done(err) })
	})
	if p.crashOnWrite && s.epoch == p.epoch && p.disk.WriteInFlight() {
		p.crashOnWrite = false
		epoch := p.epoch
		c.s.After(c.rng.Exp(max(c.o.Disk.WriteMean, Microsecond)), func() {
			if p.epoch == epoch && p.up {
				if p.disk.WriteInFlight() {
					c.counters.CrashDuringWrite++
				}
				c.crash(p, c.rng.Range(Millisecond, max(c.o.RestartMax, Millisecond)))
			}
		})
	}
}

// transport hands a node's messages to the checker and the network.
type transport struct{ p *proc }

func (t transport) Send(msgs []core.Message) {
	c := t.p.c
	now := c.s.Now()
	for i := range msgs {
		c.chk.Send(now, &msgs[i])
		if msgs[i].Type == core.MsgSnap {
			c.reachSend(&msgs[i])
		}
	}
	if c.race != nil && c.race.armed {
		c.leaseRaceSend(msgs)
	}
	c.net.Send(msgs)
}

// observer tells the checker what a node applies.
type observer struct{ p *proc }

func (o observer) Applied(e *core.Entry) {
	c := o.p.c
	c.chk.Apply(c.s.Now(), o.p.id, e)
}

func (o observer) Restored(index uint64) {
	c := o.p.c
	c.chk.Restore(c.s.Now(), o.p.id, index)
}

// run runs fn now, or when the process resumes if it is paused.
func (p *proc) run(fn func()) {
	if p.paused {
		p.queued = append(p.queued, fn)
		return
	}
	fn()
	p.after()
}

// after observes the process after an event and handles a fail-stop.
func (p *proc) after() {
	p.observe()
	if p.n != nil && p.n.Stopped() != nil {
		// Fail-stop after a storage error: the process exits and restarts.
		c := p.c
		c.tr.Add(Event{At: c.s.Now(), Kind: EvDiskError, Node: p.id, Text: "fail-stop"})
		c.crash(p, c.rng.Range(Millisecond, max(c.o.RestartMax, Millisecond)))
	}
}

// observe reports the node's status to the checker and traces changes.
func (p *proc) observe() {
	if p.n == nil {
		return
	}
	c := p.c
	st := p.n.Status()
	old := p.status
	p.status = st
	now := c.s.Now()
	c.chk.Status(now, p.id, st)
	c.watchCommit(p, &old, &st)
	if st.Role != old.Role || st.Term != old.Term || st.Lead != old.Lead {
		c.tr.Add(Event{At: now, Kind: EvRole, Node: p.id, Peer: st.Lead, A: st.Term, B: uint64(st.Role)})
		c.reachRole(p, old, st)
		if st.Role == core.Leader && (old.Role != core.Leader || old.Term != st.Term) {
			c.counters.LeaderChanges++
			c.leaderSince(p.id, st.Term)
			if st.LastIndex > st.Commit+1 {
				// Uncommitted entries before its first own one: older terms'.
				c.counters.LeaderOldTermTail++
			}
			if c.leaderChurn != nil {
				c.churnLeader(p)
			}
		}
		if st.Role == core.PreCandidate && (old.Role != core.PreCandidate || old.Term != st.Term) {
			c.counters.PreVoteRounds++
			if !c.reachesQuorum(p) {
				c.counters.PreVoteIsolated++
			}
		}
	}
	if st.Commit != old.Commit {
		c.tr.Add(Event{At: now, Kind: EvCommit, Node: p.id, A: st.Commit, B: st.Applied})
		if c.reach.tailLeader == p.id {
			c.reachCommit(p, st)
		}
	}
	if st.LeaseReads != old.LeaseReads || st.LeaseReadRounds != old.LeaseReadRounds {
		c.leaseReadsObserved(p, &old, &st)
	}
	if st.Applied != old.Applied && p.sm != nil {
		c.chk.StateHash(now, p.id, st.Applied, p.sm.Hash())
	}
}

// start boots the process from its disk.
func (c *cluster) start(p *proc) {
	if p.removed || p.excluded || p.up || p.refused {
		return
	}
	p.boots++
	p.epoch++
	p.sm = kv.New(kv.Config{})
	inner := p.disk.Open()
	loaded, err := inner.Load()
	if errors.Is(err, ErrCorrupt) {
		c.refuse(p, err)
		return
	}
	if err != nil {
		// A read error: the process cannot start; try again later.
		c.tr.Add(Event{At: c.s.Now(), Kind: EvDiskError, Node: p.id, Text: "load"})
		c.s.After(100*Millisecond, func() { c.start(p) })
		return
	}
	if p.disk.Recovered() {
		c.counters.StorageRecoveries++
		c.tr.Add(Event{At: c.s.Now(), Kind: EvRestart, Node: p.id, Text: "recovered after damage"})
	}
	st := &storage{p: p, inner: inner, epoch: p.epoch, loaded: &loaded}
	p.logLast = 0
	if s := loaded.Snapshot; s != nil {
		p.logLast = s.Meta.Index
	}
	if n := len(loaded.Entries); n > 0 {
		p.logLast = max(p.logLast, loaded.Entries[n-1].Index)
	}
	var voters []uint64
	// A founding member bootstraps whenever its disk is empty (the core
	// ignores Voters otherwise): a crash before the founding entry was
	// durable leaves it as new.
	if p.id <= uint64(c.o.Nodes) {
		for i := 1; i <= c.o.Nodes; i++ {
			voters = append(voters, uint64(i))
		}
	}
	var sm node.StateMachine = p.sm
	if core.BugDivergentApply.In(c.o.Bugs) && p.id == 1 {
		sm = &divergentStore{Store: p.sm}
	}
	cfg := node.Config{
		Core: core.Config{
			ID: p.id, Voters: voters,
			ElectionTick: c.o.ElectionTick, HeartbeatTick: c.o.HeartbeatTick,
			Seed:    c.o.Seed ^ mix64(p.id<<32|p.boots),
			PreVote: c.o.PreVote, CheckQuorum: c.o.CheckQuorum,
			MaxSizePerMsg: c.o.MaxSizePerMsg, MaxInflightMsgs: c.o.MaxInflightMsgs,
			TestBugs: c.o.Bugs,
		},
		Storage: st, Transport: transport{p}, StateMachine: sm, Observer: observer{p},
		Incarnation:          mix64(c.o.Seed ^ p.id<<40 ^ p.boots),
		ProposalTimeoutTicks: 3 * c.o.ElectionTick,
		ReadTimeoutTicks:     3 * c.o.ElectionTick,
		LeaseReads:           c.o.LeaseReads,
		SnapshotThreshold:    c.o.SnapshotThreshold,
		SnapshotKeep:         c.o.SnapshotKeep,
		ConfChangeApplied:    func(index uint64, cc core.ConfChange) { c.confChangeApplied(p, index, cc) },
		VerifyInterval:       c.o.VerifyInterval,
		OnAlarm:              func(a node.Alarm) { c.alarm(p, a) },
	}
	c.chk.Restart(c.s.Now(), p.id, loaded)
	if v := c.chk.Err(); v != nil && p.damaged {
		// A node that starts with less than it acknowledged.
		c.fail(VerdictSafety, p.id, v.Check, fmt.Sprintf(
			"node %d started from damaged storage with less than it acknowledged: %s (damage on its disk: %s)",
			p.id, v.Detail, p.disk.DamageReport()))
		return
	}
	p.up, p.paused, p.queued = true, false, nil
	p.status = core.BasicStatus{}
	n, err := node.New(cfg)
	if err != nil {
		c.fail(VerdictSafety, p.id, "start", err.Error())
		return
	}
	p.n = n
	if p.boots > 1 {
		c.counters.Restarts++
		c.tr.Add(Event{At: c.s.Now(), Kind: EvRestart, Node: p.id, A: p.boots})
	}
	p.observe()
	c.scheduleTick(p, p.epoch)
}

// alarm hands a divergence alarm to the checker.
func (c *cluster) alarm(p *proc, a node.Alarm) { c.chk.Alarm(c.s.Now(), p.id, a) }

// scheduleTick drives the process's logical clock at its drifted rate.
func (c *cluster) scheduleTick(p *proc, epoch uint64) {
	d := Time(float64(c.o.TickInterval) * (1 + p.drift))
	c.s.After(d, func() {
		if p.epoch != epoch || !p.up {
			return
		}
		if !p.paused {
			p.n.Tick()
			p.observe()
		}
		if len(c.retiring) > 0 {
			c.retire()
		}
		c.scheduleTick(p, epoch)
	})
}

// crash kills the process: unsynced writes are lost; it restarts after
// down (unless removed or the run is healing, which restarts it anyway).
func (c *cluster) crash(p *proc, down Time) {
	if !p.up {
		return
	}
	now := c.s.Now()
	c.counters.Crashes++
	c.tr.Add(Event{At: now, Kind: EvCrash, Node: p.id})
	c.hist.Annotate(annotation(now, now+down, "crash", p.id))
	c.reachCrash(p)
	p.disk.Crash()
	c.chk.Crash(now, p.id)
	if p.n != nil {
		c.counters.VerifyConfirmed += p.n.Confirmed()
	}
	p.up, p.n, p.sm, p.paused, p.queued, p.crashOnWrite = false, nil, nil, false, nil, false
	p.epoch++
	c.dropClientAttempts(p.id)
	epoch := p.epoch
	c.s.After(down, func() {
		if p.epoch == epoch {
			c.start(p)
		}
	})
}

// pause stops the process's ticks and I/O for d; work queues up.
func (c *cluster) pause(p *proc, d Time) {
	if !p.up || p.paused {
		return
	}
	now := c.s.Now()
	c.counters.Pauses++
	p.paused = true
	c.tr.Add(Event{At: now, Kind: EvPause, Node: p.id, A: uint64(d)})
	c.hist.Annotate(annotation(now, now+d, "pause", p.id))
	epoch := p.epoch
	c.s.After(d, func() {
		if p.epoch == epoch {
			c.resume(p)
		}
	})
}

func (c *cluster) resume(p *proc) {
	if !p.paused {
		return
	}
	p.paused = false
	c.tr.Add(Event{At: c.s.Now(), Kind: EvResume, Node: p.id})
	q := p.queued
	p.queued = nil
	for _, fn := range q {
		if p.paused || !p.up {
			break
		}
		p.run(fn)
	}
}

// deliver hands a message from the network to its receiver.
func (c *cluster) deliver(m core.Message) {
	p := c.proc(m.To)
	if p == nil || !p.up {
		return
	}
	if m.Type == core.MsgApp {
		if v := m.Index + uint64(len(m.Entries)); m.Commit > v {
			c.reachApp(m.From, m.To, m.Index, m.LogTerm, v)
		}
	}
	if p.paused {
		p.queued = append(p.queued, func() {
			if p.n != nil {
				c.chk.Receive(p.id, &m)
				_ = p.n.Receive(m) // a refused message changes nothing
			}
		})
		return
	}
	c.chk.Receive(p.id, &m)
	if ch := c.leaderChurn; ch != nil && ch.watch == p && m.Type == core.MsgAppResp {
		c.churnAck(ch, &m)
	}
	_ = p.n.Receive(m) // a refused message changes nothing
	p.after()
}

func (c *cluster) proc(id uint64) *proc {
	if id == 0 || id > uint64(len(c.procs)) {
		return nil
	}
	return c.procs[id-1]
}

// leader returns the process that leads in the highest term, or nil.
func (c *cluster) leader() *proc {
	var best *proc
	for _, p := range c.procs {
		if p.up && p.n != nil && p.status.Role == core.Leader && (best == nil || p.status.Term > best.status.Term) {
			best = p
		}
	}
	return best
}

// members returns the IDs of the voters and learners as the leader (or,
// without one, the most advanced live node) sees them.
func (c *cluster) members() (voters, learners []uint64) {
	p := c.leader()
	if p == nil {
		for _, q := range c.procs {
			if q.up && q.n != nil && (p == nil || q.status.Commit > p.status.Commit) {
				p = q
			}
		}
	}
	if p == nil {
		return nil, nil
	}
	cs := p.n.Core().Status().Config
	voters = append(append(voters, cs.Voters...), cs.VotersOutgoing...)
	slices.Sort(voters)
	voters = slices.Compact(voters)
	learners = append(append(learners, cs.Learners...), cs.LearnersNext...)
	slices.Sort(learners)
	return voters, slices.Compact(learners)
}

// confChangeApplied notes the processes the configuration no longer
// names (after a plain removal, or once a joint configuration is left).
// They keep running until every voter of the new configuration has applied
// the change: a removed leader may still have to tell them it committed.
func (c *cluster) confChangeApplied(p *proc, index uint64, cc core.ConfChange) {
	c.tr.Add(Event{At: c.s.Now(), Kind: EvMembership, Node: p.id, A: index, Text: "applied"})
	if p.n == nil {
		return // replayed by node.New on a restart: the others applied it already
	}
	c.noteConfApplied(p, index, &cc)
	// The core's configuration is the one in force at its commit index,
	// which may be past index already (with a later change in it): the
	// configuration is as of at, and so are the namings and removals it
	// shows (swarm seed 41088: a node that had committed the next change,
	// adding a learner, named it at the earlier index; another node, which
	// had not, then retired the learner at that same index).
	st := p.n.Core().Status()
	cs, at := st.Config, max(index, st.Commit)
	c.reachConf(index, cs.Joint())
	sets := [][]uint64{cs.Voters, cs.VotersOutgoing, cs.Learners, cs.LearnersNext}
	named := func(id uint64) bool {
		for _, set := range sets {
			if slices.Contains(set, id) {
				return true
			}
		}
		return false
	}
	for _, q := range c.procs {
		if named(q.id) {
			q.member = true
			q.namedAt = max(q.namedAt, at)
			continue
		}
		// A lagging node's older configuration may not name q yet: only a
		// configuration later than one that named q removes it.
		if !q.member || q.removed || q.retireAt != 0 || at <= q.namedAt {
			continue
		}
		q.retireAt = at
		c.retiring = append(c.retiring, retirement{p: q, index: at, voters: slices.Clone(cs.Voters)})
	}
}

// retirement is a removed process waiting to be stopped.
type retirement struct {
	p      *proc
	index  uint64   // the entry that removed it
	voters []uint64 // the voters that must apply it first
}

// retire stops the removed processes whose removal every remaining voter
// has applied.
func (c *cluster) retire() {
	k := 0
	for _, r := range c.retiring {
		done := true
		for _, id := range r.voters {
			if v := c.proc(id); v != nil && v.refused {
				continue // its storage refused: it never applies again
			}
			if v := c.proc(id); v == nil || !v.up || v.status.Applied < r.index {
				done = false
				break
			}
		}
		if !done {
			c.retiring[k] = r
			k++
			continue
		}
		q := r.p
		q.removed = true
		if q.damaged {
			c.ndamaged--
		}
		c.tr.Add(Event{At: c.s.Now(), Kind: EvMembership, Node: q.id, A: r.index, Text: "retired"})
		if q.up {
			q.disk.Crash()
			c.chk.Crash(c.s.Now(), q.id)
			q.up, q.n, q.sm, q.paused, q.queued = false, nil, nil, false, nil
		}
		q.epoch++ // no restart
	}
	clear(c.retiring[k:])
	c.retiring = c.retiring[:k]
}

// addProc adds a process slot for a new node ID (it starts empty and waits
// to be contacted by the leader).
func (c *cluster) addProc() *proc {
	id := uint64(len(c.procs) + 1)
	p := &proc{c: c, id: id, drift: c.drawDrift(), member: id <= uint64(c.o.Nodes)}
	p.disk = NewDisk(id, c.o.Disk, NewRand(c.o.Seed, "disk").Split(string(rune('a'+id))), c.s, c.tr)
	p.disk.SetBugs(c.o.Bugs)
	c.procs = append(c.procs, p)
	return p
}

func (c *cluster) drawDrift() float64 {
	if c.o.Drift == 0 {
		return 0
	}
	return (2*c.clock.Float64() - 1) * c.o.Drift
}
