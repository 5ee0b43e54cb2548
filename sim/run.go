// Package sim is a deterministic discrete-event simulator for the Raft core
// and host loop: virtual time, a seeded network, disks and clocks, process
// crashes and pauses, membership churn and client workloads, with Raft's
// safety invariants checked after every event, liveness checked after the
// faults heal, and the client history checked for linearizability.
//
// Every choice comes from one root seed, split per subsystem. The same
// Options give the same trace, byte for byte.
package sim

import (
	"fmt"
	"reflect"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/forge-consensus/consensus/linearizability"
)

// Verdict is the outcome of a run.
type Verdict uint8

// Verdicts, from best to worst. simrun maps each to its own exit code.
const (
	VerdictPass Verdict = iota
	VerdictInconclusive
	VerdictSafety
	VerdictLinearizability
	VerdictLiveness
	VerdictPanic
	VerdictNonDeterminism
)

// String names the verdict.
func (v Verdict) String() string {
	switch v {
	case VerdictPass:
		return "pass"
	case VerdictInconclusive:
		return "inconclusive"
	case VerdictSafety:
		return "safety"
	case VerdictLinearizability:
		return "linearizability"
	case VerdictLiveness:
		return "liveness"
	case VerdictPanic:
		return "panic"
	case VerdictNonDeterminism:
		return "nondeterminism"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// MarshalText names the verdict in JSON.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// Failed reports whether the verdict is a failure (inconclusive is not).
func (v Verdict) Failed() bool { return v >= VerdictSafety }

// Counters say which situations a run reached ("did we ever get there").
type Counters struct {
	LeaderChanges      uint64 `json:"leader_changes"`
	Terms              uint64 `json:"terms"`
	SplitVotes         uint64 `json:"split_votes"` // terms in which no leader was elected
	Truncations        uint64 `json:"truncations"`
	SnapshotsTaken     uint64 `json:"snapshots_taken"`
	SnapshotsInstalled uint64 `json:"snapshots_installed"`
	Crashes            uint64 `json:"crashes"`
	CrashDuringWrite   uint64 `json:"crash_during_write"`
	Restarts           uint64 `json:"restarts"`
	Pauses             uint64 `json:"pauses"`
	Partitions         uint64 `json:"partitions"`
	LeaderIsolated     uint64 `json:"leader_isolated"`
	Clogs              uint64 `json:"clogs"`
	MembershipChanges  uint64 `json:"membership_changes"`
	Transfers          uint64 `json:"transfers"`
	ClientOps          uint64 `json:"client_ops"`
	ClientOK           uint64 `json:"client_ok"`
	ClientUnknown      uint64 `json:"client_unknown"`
	Retries            uint64 `json:"retries"`
	Deduplicated       uint64 `json:"deduplicated"`
	Messages           uint64 `json:"messages"`
	MessagesDropped    uint64 `json:"messages_dropped"`
	// VerifyConfirmed counts checkpoints at which a node's state hash was
	// confirmed by the majority's verdict (cross-replica verification).
	VerifyConfirmed uint64 `json:"verify_confirmed"`
	DiskTorn        uint64 `json:"disk_torn"`
	// Silent storage faults: damage done (records flipped or made
	// unreadable, fsynced writes lost or misdirected), loads refused
	// (fail-stop), damaged nodes that loaded intact state, refusing nodes
	// replaced by fresh ones.
	StorageFaults     uint64 `json:"storage_faults"`
	DiskFlips         uint64 `json:"disk_flips"`
	DiskUnreadable    uint64 `json:"disk_unreadable"`
	DiskLostWrites    uint64 `json:"disk_lost_writes"`
	DiskMisdirected   uint64 `json:"disk_misdirected"`
	StorageRefusals   uint64 `json:"storage_refusals"`
	StorageRecoveries uint64 `json:"storage_recoveries"`
	StorageRepairs    uint64 `json:"storage_repairs"`

	// Membership churn (confchurn.go): joint configurations entered and
	// left (each once, by index), those entered or left while a partition
	// was in force or a member was down or paused, voters replaced through
	// a joint configuration, membership changes proposed while another was
	// pending (refused by correct code), crashes right after applying a
	// membership change.
	JointEntered            uint64 `json:"joint_entered"`
	JointLeft               uint64 `json:"joint_left"`
	JointUnderFault         uint64 `json:"joint_under_fault"`
	VoterReplacements       uint64 `json:"voter_replacements"`
	ConfChangesWhilePending uint64 `json:"conf_changes_while_pending"`
	CrashesAfterConfApply   uint64 `json:"crashes_after_conf_apply"`
	// Lease reads (the lease profile): lease races run (leaders cut off
	// at a transfer or while a new leader took over, with clients steered
	// to them); lease reads asked of a node, asked of a leader during a
	// transfer or after its MsgTimeoutNow, asked of a leader a later one
	// had deposed; answered on the lease; fallen back to a ReadIndex round.
	LeaseRaces           uint64 `json:"lease_races"`
	LeaseReadsAsked      uint64 `json:"lease_reads_asked"`
	LeaseReadsInTransfer uint64 `json:"lease_reads_in_transfer"`
	LeaseReadsDeposed    uint64 `json:"lease_reads_deposed"`
	LeaseReadsAnswered   uint64 `json:"lease_reads_answered"`
	LeaseReadsReplaced   uint64 `json:"lease_reads_replaced"`
	// Elections and commit rules: leader-churn windows opened, leaders
	// cut off or crashed in them, new leaders holding uncommitted entries
	// of an earlier term, truncations of 4 or more entries, pre-vote
	// rounds, pre-vote rounds by a node that could not reach a quorum,
	// committed entries found equal under another node's commit index.
	LeaderChurns      uint64 `json:"leader_churns"`
	ChurnCutoffs      uint64 `json:"churn_cutoffs"`
	LeaderOldTermTail uint64 `json:"leader_old_term_tail"`
	LongTruncations   uint64 `json:"long_truncations"`
	PreVoteRounds     uint64 `json:"prevote_rounds"`
	PreVoteIsolated   uint64 `json:"prevote_isolated"`
	CommitsVerified   uint64 `json:"commits_verified"`
	// Coverage you can see (sim/coverage.go): how often the run reached
	// each interesting state. Add sums it; simrun prints it as a table.
	Reached Reached `json:"reached"`
}

// Add adds o to c: every uint64 field, also in nested structs (Reached),
// so a new counter needs no line here.
func (c *Counters) Add(o *Counters) {
	addUint64s(reflect.ValueOf(c).Elem(), reflect.ValueOf(o).Elem())
}

// addUint64s adds every uint64 field of the struct o to the same field of
// c, recursing into struct fields.
func addUint64s(c, o reflect.Value) {
	for i := range c.NumField() {
		switch f := c.Field(i); f.Kind() {
		case reflect.Uint64:
			f.SetUint(f.Uint() + o.Field(i).Uint())
		case reflect.Struct:
			addUint64s(f, o.Field(i))
		}
	}
}

// Config says what a run keeps and how it checks, beyond its Options.
type Config struct {
	Trace TraceOptions
	// CheckTimeout bounds the linearizability check (wall time); a time-out
	// is inconclusive. 0 means 10 s.
	CheckTimeout time.Duration
	// SkipLinearizability skips the history check (determinism runs).
	SkipLinearizability bool
}

// Result is the outcome of a run.
type Result struct {
	Options   Options  `json:"options"`
	Verdict   Verdict  `json:"verdict"`
	Check     string   `json:"check,omitempty"`  // the failed check
	Detail    string   `json:"detail,omitempty"` // what failed
	FailNode  uint64   `json:"fail_node,omitempty"`
	FailAt    Time     `json:"fail_at,omitempty"`
	EventHash uint64   `json:"event_hash"`
	Events    uint64   `json:"events"`
	SimTime   Time     `json:"sim_time"`
	Counters  Counters `json:"counters"`
	Faults    []Fault  `json:"faults"`
	// CheckWall is the wall time the linearizability check took.
	CheckWall time.Duration `json:"check_wall"`

	History linearizability.History `json:"-"`
	Lin     *linearizability.Result `json:"-"`
	Trace   *Trace                  `json:"-"`
}

// cluster is the state of one run.
type cluster struct {
	o        Options
	cfg      Config
	s        *Scheduler
	tr       *Trace
	net      *Network
	chk      *Checker
	procs    []*proc
	rng      *Rand // process-level choices (crash timing)
	clock    *Rand
	faultRng *Rand
	hist     *linearizability.Recorder
	clients  []*client
	retiring []retirement
	counters Counters
	faults   []Fault

	healing    bool
	partition  bool // a partition is in force
	failed     bool
	res        *Result
	leaders    map[uint64]uint64 // term → leader, for counters
	maxTerm    uint64
	probe      *clientOp
	probeDone  bool
	stableFrom Time
	stableLead uint64

	// Silent storage faults: damaged processes not yet removed, the voters
	// the harness last proposed to remove (the latest first: a removal the
	// core refuses, as a conf-race's is, must not hide the one pending),
	// pending repairs.
	ndamaged  int
	removing  [2]uint64
	repairs   []*repair
	repairRng *Rand

	churn confChurn  // membership faults (confchurn.go)
	race  *leaseRace // the lease race under way (leaserace.go)
	// Leader churn: the window in force (churn.go).
	leaderChurn *churn
	reach       reachState // what coverage counting remembers (coverage.go)
}

// Run runs one simulation of o and returns its result. It never panics: a
// panic in the code under test is the verdict VerdictPanic.
func Run(o Options, cfg Config) (res *Result) {
	res = &Result{Options: o}
	if err := o.Validate(); err != nil {
		res.Verdict, res.Check, res.Detail = VerdictPanic, "options", err.Error()
		return res
	}
	if err := checkBugs(o.Bugs); err != nil {
		res.Verdict, res.Check, res.Detail = VerdictPanic, "options", err.Error()
		return res
	}
	c := &cluster{o: o, cfg: cfg, s: &Scheduler{}, res: res, leaders: make(map[uint64]uint64)}
	c.tr = NewTrace(cfg.Trace)
	res.Trace = c.tr
	defer func() {
		if r := recover(); r != nil {
			res.Verdict, res.Check = VerdictPanic, "panic"
			res.Detail = fmt.Sprintf("%v\n%s", r, debug.Stack())
			res.FailAt = c.s.Now()
			c.finish()
		}
	}()
	c.run()
	return res
}

// boot creates the network, the checker and the initial processes, and
// starts them.
func (c *cluster) boot() {
	o := &c.o
	c.rng = NewRand(o.Seed, "process")
	c.clock = NewRand(o.Seed, "clock")
	c.faultRng = NewRand(o.Seed, "fault-targets")
	c.hist = linearizability.NewRecorder()
	c.net = NewNetwork(o.Network, NewRand(o.Seed, "network"), c.s, c.tr, c.deliver)
	ids := make([]uint64, o.Nodes)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	c.chk = NewChecker(ids)
	c.chk.SetPreVote(o.PreVote)
	for _, name := range o.SkipChecks {
		c.chk.Skip(name)
	}
	for range o.Nodes {
		c.addProc()
	}
	for _, p := range c.procs {
		c.start(p)
	}
}

// step runs the next event due by until and checks safety after it. It
// returns false when no event ran or the run has failed.
func (c *cluster) step(until Time) bool {
	if c.failed || !c.s.Step(until) {
		return false
	}
	if v := c.chk.Err(); v != nil {
		c.fail(VerdictSafety, v.Node, v.Check, v.Detail)
		return false
	}
	return true
}

func (c *cluster) run() {
	o := &c.o
	c.boot()
	c.faults = o.Faults
	if c.faults == nil {
		c.faults = drawFaults(o)
	}
	c.res.Faults = c.faults
	for i := range c.faults {
		f := c.faults[i]
		if f.At < o.HealAt {
			c.s.At(f.At, func() { c.inject(f) })
		}
	}
	c.startClients()
	c.s.At(o.HealAt, c.heal)
	deadline := o.HealAt + c.livenessBound()
	for c.step(deadline) {
		if c.healing && c.live() {
			break
		}
	}
	if !c.failed && !(c.healing && c.live()) {
		c.fail(VerdictLiveness, 0, "liveness", c.livenessReport())
	}
	if !c.failed {
		c.checkNothingLost()
	}
	c.finish()
	if !c.failed && !c.cfg.SkipLinearizability {
		c.checkHistory()
	}
}

// livenessBound is how long after healing the cluster has to recover.
func (c *cluster) livenessBound() Time {
	return Time(c.o.LivenessTimeouts) * Time(c.o.ElectionTick) * c.o.TickInterval * 2
}

func (c *cluster) fail(v Verdict, nodeID uint64, check, detail string) {
	if c.failed {
		return
	}
	c.failed = true
	r := c.res
	r.Verdict, r.Check, r.Detail, r.FailNode, r.FailAt = v, check, detail, nodeID, c.s.Now()
	c.tr.Add(Event{At: c.s.Now(), Kind: EvViolation, Node: nodeID, Text: check})
}

// finish fills in the result's figures.
func (c *cluster) finish() {
	r := c.res
	r.EventHash, r.Events, r.SimTime = c.tr.Hash(), c.tr.Count(), c.s.Now()
	if c.hist != nil {
		r.History = c.hist.History()
	}
	if c.net != nil {
		nc := c.net.Counters()
		c.counters.Messages = nc.Sent
		c.counters.MessagesDropped = nc.Dropped + nc.Overflow + nc.BlockedDrops
	}
	for _, p := range c.procs {
		dc := p.disk.Counters()
		c.counters.DiskTorn += dc.Torn
		c.counters.DiskFlips += dc.Flips
		c.counters.DiskUnreadable += dc.Unreadable
		c.counters.DiskLostWrites += dc.LostWrites
		c.counters.DiskMisdirected += dc.Misdirected
		if p.sm != nil {
			c.counters.Deduplicated += p.sm.Deduplicated()
		}
		if p.n != nil {
			c.counters.VerifyConfirmed += p.n.Confirmed()
		}
	}
	if c.chk != nil {
		c.counters.CommitsVerified = c.chk.CommitsVerified()
	}
	// Term 1 is the bootstrap term, in which nobody leads.
	c.counters.Terms = c.maxTerm
	if c.maxTerm > 1+uint64(len(c.leaders)) {
		c.counters.SplitVotes = c.maxTerm - 1 - uint64(len(c.leaders))
	}
	r.Counters = c.counters
}

// checkHistory checks the client history for linearizability.
func (c *cluster) checkHistory() {
	timeout := c.cfg.CheckTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	start := time.Now()
	lr := linearizability.Check(c.res.History, timeout)
	c.res.CheckWall = time.Since(start)
	c.res.Lin = &lr
	switch lr.Verdict {
	case linearizability.Illegal:
		c.res.Verdict, c.res.Check, c.res.FailAt = VerdictLinearizability, "linearizability", c.s.Now()
		c.res.Detail = fmt.Sprintf("history of %d operations is not linearizable", len(c.res.History.Ops))
	case linearizability.Inconclusive:
		c.res.Verdict, c.res.Check = VerdictInconclusive, "linearizability"
		c.res.Detail = "checker timed out"
	}
}

func (c *cluster) leaderSince(id, term uint64) {
	if _, ok := c.leaders[term]; !ok {
		c.leaders[term] = id
	}
	c.maxTerm = max(c.maxTerm, term)
	c.hist.Annotate(annotation(c.s.Now(), c.s.Now(), "leader", id, "term", term))
}

// ---- heal and liveness ----

// heal ends the fault phase: every link heals, faults stop, every process
// that may run is restarted or resumed. From now on the cluster must
// recover within the liveness bound.
func (c *cluster) heal() {
	c.healing = true
	now := c.s.Now()
	c.tr.Add(Event{At: now, Kind: EvPhase, Text: "heal"})
	c.net.HealAll()
	c.net.SetFaults(false)
	c.meetDamage()
	c.chooseCore()
	for _, p := range c.procs {
		p.disk.SetFaults(false)
		p.crashOnWrite = false
		switch {
		case p.removed, p.excluded:
		case !p.up:
			p.epoch++ // cancel its scheduled restart
			c.start(p)
		case p.paused:
			c.resume(p)
		}
	}
	c.partition = false
	c.leaderChurn = nil
	c.stableFrom, c.stableLead = 0, 0
	for _, cl := range c.clients {
		cl.healed()
	}
}

// meetDamage makes every damaged process meet its damage before the
// liveness phase: a live one loses power and restarts, a down one starts
// now. What refuses to load (or refused before) stays down, outside the
// quorum core; the rest recovered and hold everything they acknowledged
// (the checker saw to that at the restart). Write faults not yet landed
// are disarmed first.
func (c *cluster) meetDamage() {
	if c.ndamaged == 0 {
		return
	}
	for _, p := range c.procs {
		if !p.damaged || p.removed {
			continue
		}
		p.disk.SetFaults(false)
		if !p.refused {
			if p.up {
				c.crash(p, 0)
			}
			p.epoch++ // cancel the scheduled restart
			c.start(p)
		}
		if p.refused && !p.excluded {
			p.excluded = true
			c.tr.Add(Event{At: c.s.Now(), Kind: EvPhase, Node: p.id, Text: "left out of the core: storage refused"})
		}
	}
}

// checkNothingLost checks, after the cluster recovered, that its leader
// holds every index ever committed.
func (c *cluster) checkNothingLost() {
	l := c.leader()
	if l == nil || !c.healing {
		return
	}
	if m := c.chk.MaxCommit(); l.status.Commit < m {
		c.fail(VerdictSafety, l.id, "committed-lost", fmt.Sprintf(
			"after recovery leader %d has commit index %d, but index %d was committed", l.id, l.status.Commit, m))
	}
}

// chooseCore leaves a minority of the voters down for the liveness phase
// when the options ask for it: a quorum core must recover on its own.
func (c *cluster) chooseCore() {
	if !c.o.HealQuorumOnly {
		return
	}
	l := c.leader()
	if l == nil {
		return
	}
	cs := l.n.Core().Status().Config
	if cs.Joint() {
		return // a minority of the union may be a majority of one half
	}
	// At most one membership change can be pending (the core allows no
	// second before the first commits), and it may still remove a voter:
	// leave out at most a minority of the voters minus one, so that what
	// remains is a quorum either way.
	voters := cs.Voters
	r := NewRand(c.o.Seed, "core")
	limit := max(0, (len(voters)-2)/2)
	if c.ndamaged > 0 {
		// Voters whose storage refused are down for good: fewer others
		// may be left out.
		for _, id := range voters {
			if p := c.proc(id); p != nil && p.excluded {
				limit = max(0, limit-1)
			}
		}
	}
	k := r.Intn(limit + 1)
	for _, i := range r.perm(len(voters))[:k] {
		p := c.proc(voters[i])
		if p == nil || p.removed {
			continue
		}
		p.excluded = true
		c.tr.Add(Event{At: c.s.Now(), Kind: EvPhase, Node: p.id, Text: "left out of the core"})
		if p.up {
			c.crash(p, 0)
		}
		p.epoch++ // never restarts
	}
}

// live reports whether the healed cluster has recovered: one leader that
// every live member follows for an election timeout, every client
// operation finished, a probe write committed, and every member applied
// the same state.
func (c *cluster) live() bool {
	for _, p := range c.procs {
		if !p.removed && !p.excluded && !p.up {
			return false
		}
	}
	l := c.leader()
	if l == nil {
		c.stableLead = 0
		return false
	}
	voters, learners := c.members()
	members := c.core(append(voters, learners...))
	for _, id := range members {
		p := c.proc(id)
		if p == nil || !p.up || p.status.Lead != l.id || p.status.Term != l.status.Term {
			c.stableLead = 0
			return false
		}
	}
	now := c.s.Now()
	if c.stableLead != l.id {
		c.stableLead, c.stableFrom = l.id, now
	}
	if now-c.stableFrom < Time(c.o.ElectionTick)*c.o.TickInterval {
		return false
	}
	for _, cl := range c.clients {
		if cl.op != nil {
			return false
		}
	}
	if !c.probeDone {
		c.sendProbe(l)
		return false
	}
	commit := l.status.Commit
	h := l.sm.Hash()
	for _, id := range members {
		p := c.proc(id)
		if p.status.Applied != commit || p.sm.Hash() != h {
			return false
		}
	}
	return true
}

// core drops the processes left out of the liveness phase from ids.
func (c *cluster) core(ids []uint64) []uint64 {
	k := 0
	for _, id := range ids {
		if p := c.proc(id); p == nil || !p.excluded {
			ids[k] = id
			k++
		}
	}
	return ids[:k]
}

// livenessReport says what was missing when the liveness bound passed.
func (c *cluster) livenessReport() string {
	l := c.leader()
	open := 0
	for _, cl := range c.clients {
		if cl.op != nil {
			open++
		}
	}
	s := fmt.Sprintf("no recovery within %d election timeouts of healing:", c.o.LivenessTimeouts)
	if l == nil {
		s += " no leader;"
	} else {
		s += fmt.Sprintf(" leader %d term %d commit %d;", l.id, l.status.Term, l.status.Commit)
	}
	for _, p := range c.procs {
		if p.removed || p.excluded {
			continue
		}
		s += fmt.Sprintf(" n%d up=%v role=%v term=%d lead=%d commit=%d applied=%d;",
			p.id, p.up, p.status.Role, p.status.Term, p.status.Lead, p.status.Commit, p.status.Applied)
	}
	voters, learners := c.members()
	return s + fmt.Sprintf(" voters %v learners %v; %d client operations pending; probe done=%v",
		voters, learners, open, c.probeDone)
}

func annotation(start, end Time, tag string, id uint64, more ...any) linearizability.Annotation {
	text := tag + " n" + strconv.FormatUint(id, 10)
	for i := 0; i+1 < len(more); i += 2 {
		text += fmt.Sprintf(" %v %v", more[i], more[i+1])
	}
	return linearizability.Annotation{Start: start, End: end, Tag: tag, Text: text}
}
