package core

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// propRuns is the number of random runs of TestPropertyRaft. An explicit
// -rapid.checks (or RAPID_CHECKS) takes precedence, so that a failure can
// be replayed with the flags rapid prints.
var propRuns = flag.Int("core.runs", 1000, "number of random runs of TestPropertyRaft (e.g. -core.runs=100000)")

// TestPropertyRaft drives 3–5 cores over an adversarial in-memory network
// where rapid chooses every action: tick one node or all, handle a node's
// Ready (or take it and hold it while the node goes on), deliver any
// message in flight (reordering), drop or duplicate one, cut a node off,
// crash a node (also after taking a Ready and before persisting, sending or
// applying it) and restart it from what it persisted, propose, change
// membership (single steps and joint changes), compact, transfer
// leadership, request a read index, campaign. The configuration is drawn
// too: PreVote, CheckQuorum, election tick 3–10, small message, inflight
// and apply batches, an uncommitted-bytes limit, hosts that compact after
// every Ready.
//
// After every action it checks, over the whole run: at most one leader per
// term (never two at once, and none besides one that sent a leader's
// message or persisted its vote in the term); no voter grants two votes in
// a term; log matching between live
// nodes; leader completeness (a leader holds every entry known committed
// in its term or before); committed entries never change; state machine
// safety (one entry per applied index, on every node and in every
// snapshot); commit, persisted term/vote/commit and applied indexes never
// go back, and a restart restores them; Ready follows its contract
// (entries follow the stored log, MustSync when needed, applied index as
// the host applied it); ReadIndex answers cover everything committed before
// the request; an acknowledgement to a leader never claims entries the
// follower does not hold as the leader does; no node rejects a message
// from another as malformed. Then a
// heal phase handles held Readies, restarts crashed nodes and delivers
// everything: a leader must be elected and a new proposal applied by every
// member within 250 election timeouts.
//
// It runs 1000 cases; -core.runs=N runs N (an explicit -rapid.checks wins,
// so the command rapid prints to replay a failure works as is). With -v it
// logs what the runs exercised.
func TestPropertyRaft(t *testing.T) {
	setRapidChecks(t, *propRuns)
	var total propStats
	rapid.Check(t, func(rt *rapid.T) {
		w := newPropWorld(rt, drawPropConfig(rt))
		prog := rapid.SliceOfN(rapid.SliceOfN(propActionGen(), 3, 20), 20, 100).Draw(rt, "program")
		for _, chunk := range prog {
			for _, a := range chunk {
				w.step(a)
			}
		}
		w.stats.maxCommit = w.maxCommit
		w.stats.terms = uint64(len(w.leaders))
		w.heal()
		total.add(&w.stats)
	})
	t.Logf("coverage over all runs: %s", total.String())
}

// propStats counts what the runs exercised, to keep the generator honest.
type propStats struct {
	runs, actions, effective                           int
	delivered, crashes, restarts, snapsSent, snapsInst int
	compactions, ccApplied, transfers, readsServed     int
	snapsHeld, snapsHeldMore                           int
	terms, maxCommit                                   uint64
	kinds, drawn                                       [numPropKinds]int
}

func (s *propStats) add(o *propStats) {
	s.runs++
	s.actions += o.actions
	s.effective += o.effective
	s.delivered += o.delivered
	s.crashes += o.crashes
	s.restarts += o.restarts
	s.snapsSent += o.snapsSent
	s.snapsInst += o.snapsInst
	s.compactions += o.compactions
	s.ccApplied += o.ccApplied
	s.transfers += o.transfers
	s.readsServed += o.readsServed
	s.snapsHeld += o.snapsHeld
	s.snapsHeldMore += o.snapsHeldMore
	s.terms += o.terms
	s.maxCommit += o.maxCommit
	for i := range s.kinds {
		s.kinds[i] += o.kinds[i]
		s.drawn[i] += o.drawn[i]
	}
}

func (s *propStats) String() string {
	r := float64(max(s.runs, 1))
	out := fmt.Sprintf("snapshots reaching a follower that holds their last entry: %d (%d with entries past it); ", s.snapsHeld, s.snapsHeldMore)
	out += fmt.Sprintf("%d runs; per run: %.0f actions (%.0f effective), %.0f delivered, %.1f crashes, %.1f restarts, "+
		"%.1f snapshots sent, %.1f installed, %.1f compactions, %.1f conf changes applied, %.1f successful transfer requests, "+
		"%.1f reads served, %.1f terms with a leader, commit index %.1f before healing; effective actions:",
		s.runs, float64(s.actions)/r, float64(s.effective)/r, float64(s.delivered)/r, float64(s.crashes)/r,
		float64(s.restarts)/r, float64(s.snapsSent)/r, float64(s.snapsInst)/r, float64(s.compactions)/r,
		float64(s.ccApplied)/r, float64(s.transfers)/r, float64(s.readsServed)/r, float64(s.terms)/r, float64(s.maxCommit)/r)
	for k, n := range s.kinds {
		out += fmt.Sprintf(" %v=%.1f/%.1f", propKind(k), float64(n)/r, float64(s.drawn[k])/r)
	}
	return out
}

// setRapidChecks makes the next rapid.Check in t run n cases, unless the
// user chose a number with -rapid.checks or RAPID_CHECKS.
func setRapidChecks(t *testing.T, n int) {
	f := flag.Lookup("rapid.checks")
	if f == nil {
		t.Fatal("rapid.checks flag not registered")
	}
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok || explicit {
		return
	}
	old := f.Value.String()
	if err := f.Value.Set(strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })
}

// ---- configuration and actions ----

// propConfig is what rapid draws once per run.
type propConfig struct {
	n        int // nodes 1..n exist
	founders int // nodes 1..founders found the cluster
	base     Config
	// eagerCompact makes hosts compact their log through the applied
	// index after every Ready, so that lagging followers need snapshots.
	eagerCompact bool
}

func drawPropConfig(t *rapid.T) propConfig {
	n := rapid.IntRange(3, 5).Draw(t, "nodes")
	spares := rapid.IntRange(0, n-1).Draw(t, "spares")
	base := Config{
		ElectionTick:  rapid.IntRange(3, 10).Draw(t, "electionTick"),
		HeartbeatTick: 1,
		Seed:          rapid.Uint64().Draw(t, "seed"),
		PreVote:       rapid.Bool().Draw(t, "preVote"),
		CheckQuorum:   rapid.Bool().Draw(t, "checkQuorum"),
	}
	if rapid.Bool().Draw(t, "smallMsgs") {
		base.MaxSizePerMsg = uint64(rapid.IntRange(1, 64).Draw(t, "maxSizePerMsg"))
	}
	if rapid.Bool().Draw(t, "smallInflight") {
		base.MaxInflightMsgs = rapid.IntRange(1, 4).Draw(t, "maxInflightMsgs")
	}
	if rapid.Bool().Draw(t, "smallInflightBytes") {
		base.MaxInflightBytes = uint64(rapid.IntRange(1, 128).Draw(t, "maxInflightBytes"))
	}
	if rapid.Bool().Draw(t, "uncommittedLimit") {
		base.MaxUncommittedBytes = uint64(rapid.IntRange(1, 64).Draw(t, "maxUncommittedBytes"))
	}
	if rapid.Bool().Draw(t, "smallApplyBatches") {
		base.MaxCommittedBytesPerReady = uint64(rapid.IntRange(1, 64).Draw(t, "maxCommittedBytesPerReady"))
	}
	eager := rapid.Bool().Draw(t, "eagerCompact")
	return propConfig{n: n, founders: n - spares, base: base, eagerCompact: eager}
}

type propKind uint8

const (
	actFlush      propKind = iota // handle every Ready, deliver (or lose) what is in flight
	actTickAll                    // tick every live node
	actDeliver                    // deliver one message (any one: reordering); if none, handle every Ready
	actReady                      // handle (or take and hold) one node's Ready
	actReadyAll                   // handle every live node's Ready
	actTick                       // tick one node
	actDrop                       // lose one message
	actDuplicate                  // duplicate one message
	actPropose                    // propose on one node
	actCrash                      // crash one node, possibly halfway through a Ready
	actRestart                    // restart one crashed node
	actConfChange                 // propose a membership change
	actCompact                    // compact one node's log
	actTransfer                   // transfer leadership
	actReadIndex                  // request a read index
	actCampaign                   // make a node campaign
	actIsolate                    // lose every message in flight to or from one node
	numPropKinds
)

var propKindNames = [...]string{
	actDeliver: "deliver", actTickAll: "tickall", actReady: "ready", actReadyAll: "readyall",
	actFlush: "flush", actTick: "tick", actDrop: "drop", actDuplicate: "duplicate",
	actPropose: "propose", actCrash: "crash", actRestart: "restart",
	actConfChange: "confchange", actCompact: "compact", actTransfer: "transfer",
	actReadIndex: "readindex", actCampaign: "campaign", actIsolate: "isolate",
}

func (k propKind) String() string { return propKindNames[k] }

// propKindWeights is the relative frequency of each kind of action (rapid
// favours the front of the table somewhat).
var propKindWeights = [numPropKinds]int{
	actFlush: 3, actTickAll: 12, actDeliver: 6, actReady: 3, actReadyAll: 2,
	actTick: 2, actDrop: 2, actDuplicate: 1, actPropose: 4, actCrash: 1,
	actRestart: 3, actConfChange: 2, actCompact: 2, actTransfer: 1,
	actReadIndex: 1, actCampaign: 1, actIsolate: 1,
}

// propKindTable lists each kind as often as its weight. Rapid also draws
// the first and the last elements more often than the others: flushes.
var propKindTable = func() []propKind {
	var tab []propKind
	for k, w := range propKindWeights {
		for range w {
			tab = append(tab, propKind(k))
		}
	}
	return append(tab, actFlush)
}()

// propAction is one abstract action. Node selects a node among those the
// action applies to (live ones, or crashed ones for a restart) and Arg
// selects a message, a variant or an index, each action reading it its own
// way.
type propAction struct {
	Kind propKind
	Node int
	Arg  int
}

func (a propAction) String() string { return fmt.Sprintf("%v(n%d,%d)", a.Kind, a.Node, a.Arg) }

func propActionGen() *rapid.Generator[propAction] {
	return rapid.Custom(func(t *rapid.T) propAction {
		return propAction{
			Kind: rapid.SampledFrom(propKindTable).Draw(t, "kind"),
			Node: rapid.IntRange(0, 4).Draw(t, "node"),
			Arg:  rapid.IntRange(0, 1<<16-1).Draw(t, "arg"),
		}
	})
}

// ---- the world ----

// propNode is one node and its host: storage, state machine, and the Ready
// it is holding, if any.
type propNode struct {
	id      uint64
	cfg     Config
	founder bool
	n       *Node // nil while crashed
	store   memStore
	held    *Ready // a Ready taken but not yet handled
	sm      []Entry
	// Per incarnation: the commit index at the last check, and how far
	// committed entries were recorded from this node's log.
	lastCommit uint64
	recorded   uint64
}

// commitRec is what is known of a committed index: the entry, and the
// lowest term in which some node was seen to know it committed.
type commitRec struct {
	ok      bool
	term    uint64
	typ     EntryType
	data    string
	obsTerm uint64
}

type propWorld struct {
	t     *rapid.T
	cfg   propConfig
	nodes []*propNode
	net   []Message

	leaders   map[uint64]uint64    // term → leader
	votes     map[[2]uint64]uint64 // (voter, term) → candidate
	committed []commitRec          // committed[i] describes index i
	applied   []Entry              // applied[i-1]: entry applied at index i
	reads     map[string]uint64    // read ctx → lowest acceptable index
	maxCommit uint64

	props  int
	nreads int
	trace  []traceRec
	stats  propStats
}

func newPropWorld(t *rapid.T, cfg propConfig) *propWorld {
	w := &propWorld{t: t, cfg: cfg, leaders: map[uint64]uint64{},
		votes: map[[2]uint64]uint64{}, reads: map[string]uint64{}}
	var founders []uint64
	for i := 1; i <= cfg.founders; i++ {
		founders = append(founders, uint64(i))
	}
	for i := 1; i <= cfg.n; i++ {
		c := cfg.base
		c.ID = uint64(i)
		pn := &propNode{id: uint64(i), cfg: c, founder: i <= cfg.founders}
		if pn.founder {
			c.Voters = founders
		}
		n, err := New(c, Persisted{})
		if err != nil {
			t.Fatalf("New(%d): %v", i, err)
		}
		pn.n = n
		w.nodes = append(w.nodes, pn)
	}
	w.tracef("config: %d nodes, %d founders, eager compaction %t, %+v", cfg.n, cfg.founders, cfg.eagerCompact, cfg.base)
	w.check()
	return w
}

// traceRec is one line of the trace, formatted only if a property fails.
// Its arguments must not change afterwards: messages, Readies and entries
// are wrapped in the value types below, and the slices they hold are
// read-only.
type traceRec struct {
	format string
	args   []any
}

func (w *propWorld) tracef(format string, args ...any) {
	w.trace = append(w.trace, traceRec{format, args})
}

type (
	msgFmt   Message
	readyFmt Ready
	entsFmt  []Entry
)

func (m msgFmt) String() string    { return msgString(Message(m)) }
func (rd readyFmt) String() string { r := Ready(rd); return readyString(&r) }
func (e entsFmt) String() string   { return entriesString(e) }

// fail reports a violated property with the trace of actions so far.
func (w *propWorld) fail(format string, args ...any) {
	w.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, format, args...)
	b.WriteString("\ntrace:\n")
	for _, l := range w.trace {
		b.WriteString("  ")
		fmt.Fprintf(&b, l.format, l.args...)
		b.WriteByte('\n')
	}
	b.WriteString("state:\n")
	for _, pn := range w.nodes {
		b.WriteString("  ")
		b.WriteString(pn.describe())
		b.WriteByte('\n')
	}
	w.t.Fatal(b.String())
}

func (pn *propNode) describe() string {
	if pn.n == nil {
		return fmt.Sprintf("%d: crashed, stored hs=%+v snap=%d entries=%s", pn.id, pn.store.hs,
			snapIndex(pn.store.snap), entriesString(pn.store.entries))
	}
	r := pn.n.r
	return fmt.Sprintf("%d: %v term=%d vote=%d lead=%d commit=%d applied=%d conf=%+v log(off=%d/%d)=%s",
		pn.id, r.role, r.term, r.vote, r.lead, r.log.committed, r.applied, r.conf,
		r.log.offset, r.log.offsetTerm, entriesString(r.log.entries))
}

func snapIndex(s *Snapshot) uint64 {
	if s == nil {
		return 0
	}
	return s.Meta.Index
}

func entriesString(ents []Entry) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range ents {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", e.Index, e.Term)
		switch {
		case e.Type == EntryConfChange:
			b.WriteString(":cc")
		case len(e.Data) > 0:
			fmt.Fprintf(&b, ":%s", e.Data)
		}
	}
	b.WriteByte(']')
	return b.String()
}

func msgString(m Message) string {
	s := fmt.Sprintf("%v %d→%d t%d", m.Type, m.From, m.To, m.Term)
	switch m.Type {
	case MsgApp:
		s += fmt.Sprintf(" prev=%d/%d commit=%d ents=%s", m.Index, m.LogTerm, m.Commit, entriesString(m.Entries))
	case MsgAppResp:
		s += fmt.Sprintf(" idx=%d reject=%t hint=%d/%d", m.Index, m.Reject, m.RejectHint, m.LogTerm)
	case MsgVote, MsgPreVote:
		s += fmt.Sprintf(" last=%d/%d force=%t", m.Index, m.LogTerm, m.Force)
	case MsgVoteResp, MsgPreVoteResp:
		s += fmt.Sprintf(" reject=%t", m.Reject)
	case MsgHeartbeat:
		s += fmt.Sprintf(" commit=%d round=%d", m.Commit, m.Index)
	case MsgSnap:
		s += fmt.Sprintf(" snap=%d/%d", m.Snapshot.Meta.Index, m.Snapshot.Meta.Term)
	case MsgProp:
		s += " ents=" + entriesString(m.Entries)
	}
	return s
}

// pick returns the node an action applies to: one of the live nodes, or
// one of the crashed ones if crashed is set; nil if there is none.
func (w *propWorld) pick(a propAction, crashed bool) *propNode {
	var cands [5]*propNode
	k := 0
	for _, pn := range w.nodes {
		if (pn.n == nil) == crashed {
			cands[k] = pn
			k++
		}
	}
	if k == 0 {
		return nil
	}
	return cands[a.Node%k]
}

// step interprets one action, then checks every invariant.
func (w *propWorld) step(a propAction) {
	w.stats.actions++
	w.stats.drawn[a.Kind]++
	pn := w.pick(a, a.Kind == actRestart)
	if pn == nil {
		return
	}
	switch a.Kind {
	case actDeliver, actDrop, actDuplicate:
		if len(w.net) == 0 {
			if a.Kind != actDeliver {
				return
			}
			w.readyAll()
			break
		}
		k := a.Arg % len(w.net)
		m := w.net[k]
		switch a.Kind {
		case actDeliver:
			w.net = append(w.net[:k], w.net[k+1:]...)
			w.deliver(m, a.Arg&(1<<15) != 0)
		case actDrop:
			w.net = append(w.net[:k], w.net[k+1:]...)
			w.tracef("drop %s", msgFmt(m))
			if a.Arg&(1<<15) != 0 {
				w.reportFailure(m)
			}
		case actDuplicate:
			w.net = append(w.net, m)
			w.tracef("duplicate %s", msgFmt(m))
		}
	case actTickAll:
		for _, pn := range w.nodes {
			if pn.n != nil {
				pn.n.Tick()
			}
		}
		w.tracef("tick all live nodes")
	case actTick:
		pn.n.Tick()
		w.tracef("tick %d", pn.id)
	case actReady:
		if pn.held == nil && !pn.n.HasReady() {
			return
		}
		w.readyOf(pn, a.Arg%5 == 0)
	case actReadyAll, actFlush:
		w.readyAll()
		if a.Kind == actFlush {
			// Deliver what is in flight now, in order; with a lossy
			// flush, lose every message whose bit in Arg is set.
			q := w.net
			w.net = nil
			lossy := a.Arg%3 == 0
			for i, m := range q {
				if lossy && a.Arg>>(i%16)&1 != 0 {
					w.tracef("drop %s", msgFmt(m))
					if i%2 == 0 {
						w.reportFailure(m)
					}
					continue
				}
				w.deliver(m, true)
				w.check()
			}
		}
	case actPropose:
		if l := w.leader(); l != nil && a.Arg%2 == 0 {
			pn = l
		}
		w.props++
		data := fmt.Sprintf("p%d", w.props)
		err := pn.n.Propose([]byte(data))
		w.tracef("propose %s at %d: %v", data, pn.id, err)
	case actCrash:
		w.crash(pn, a.Arg%4)
	case actRestart:
		w.restart(pn)
	case actConfChange:
		cc := w.confChange(a.Arg)
		err := pn.n.ProposeConfChange(cc)
		w.tracef("propose conf change %+v at %d: %v", cc, pn.id, err)
	case actCompact:
		if l := w.leader(); l != nil && a.Arg%2 == 0 {
			pn = l
		}
		w.compact(pn, a.Arg/2)
	case actTransfer:
		to := uint64(a.Arg%len(w.nodes)) + 1
		err := pn.n.TransferLeadership(to)
		if err == nil {
			w.stats.transfers++
		}
		w.tracef("transfer leadership to %d at %d: %v", to, pn.id, err)
	case actReadIndex:
		w.nreads++
		ctx := fmt.Sprintf("r%d", w.nreads)
		if err := pn.n.ReadIndex([]byte(ctx)); err == nil {
			// Everything known committed now must be visible to the read.
			w.reads[ctx] = w.maxCommit
		}
		w.tracef("read index %s at %d (needs %d)", ctx, pn.id, w.maxCommit)
	case actCampaign:
		err := pn.n.Campaign()
		w.tracef("campaign %d: %v", pn.id, err)
	case actIsolate:
		w.tracef("isolate %d", pn.id)
		kept := w.net[:0]
		for _, m := range w.net {
			if m.From != pn.id && m.To != pn.id {
				kept = append(kept, m)
				continue
			}
			w.tracef("drop %s", msgFmt(m))
			if a.Arg%2 == 0 {
				w.reportFailure(m)
			}
		}
		w.net = kept
	}
	w.stats.effective++
	w.stats.kinds[a.Kind]++
	w.check()
}

// readyAll handles the Ready of every live node that has one.
func (w *propWorld) readyAll() {
	for _, pn := range w.nodes {
		if pn.n != nil && (pn.held != nil || pn.n.HasReady()) {
			w.readyOf(pn, false)
			w.check()
		}
	}
}

// readyOf handles pn's held Ready, or takes a new one and handles it (or,
// with hold, keeps it to handle later while the node goes on).
func (w *propWorld) readyOf(pn *propNode, hold bool) {
	if pn.held != nil {
		rd := pn.held
		pn.held = nil
		w.tracef("handle held ready of %d", pn.id)
		w.handleReady(pn, rd)
		return
	}
	rd := pn.n.Ready()
	if hold {
		pn.held = &rd
		w.tracef("take and hold ready of %d: %s", pn.id, readyFmt(rd))
		return
	}
	w.tracef("handle ready of %d: %s", pn.id, readyFmt(rd))
	w.handleReady(pn, &rd)
}

func readyString(rd *Ready) string {
	var b strings.Builder
	if rd.SoftState != nil {
		fmt.Fprintf(&b, " soft=%+v", *rd.SoftState)
	}
	if !rd.HardState.IsEmpty() {
		fmt.Fprintf(&b, " hard=%+v", rd.HardState)
	}
	if rd.Snapshot != nil {
		fmt.Fprintf(&b, " snap=%d/%d", rd.Snapshot.Meta.Index, rd.Snapshot.Meta.Term)
	}
	if len(rd.Entries) > 0 {
		fmt.Fprintf(&b, " entries=%s", entriesString(rd.Entries))
	}
	if len(rd.CommittedEntries) > 0 {
		fmt.Fprintf(&b, " committed=%s", entriesString(rd.CommittedEntries))
	}
	for _, m := range rd.Messages {
		fmt.Fprintf(&b, "\n      send %s", msgString(m))
	}
	return b.String()
}

// deliver steps m into its recipient (if it is up). A message the core
// rejects as malformed was produced by the core itself: that is a bug.
func (w *propWorld) deliver(m Message, report bool) {
	pn := w.nodes[m.To-1]
	if pn.n == nil {
		w.tracef("deliver %s: recipient down", msgFmt(m))
		return
	}
	if m.Type == MsgSnap {
		lg := &pn.n.r.log
		if s := m.Snapshot.Meta; s.Index > lg.committed && lg.matchTerm(s.Index, s.Term) {
			w.stats.snapsHeld++
			if lg.lastIndex() > s.Index {
				w.stats.snapsHeldMore++
			}
		}
	}
	sent := len(pn.n.r.msgs)
	err := pn.n.Step(m)
	w.stats.delivered++
	w.tracef("deliver %s: %v", msgFmt(m), err)
	for _, ack := range pn.n.r.msgs[sent:] {
		w.checkAck(pn, ack)
	}
	if errors.Is(err, ErrInvalidMessage) {
		w.fail("node %d rejected %s as malformed: %v", m.To, msgString(m), err)
	}
	if report && m.Type == MsgSnap {
		if from := w.nodes[m.From-1]; from.n != nil {
			from.n.ReportSnapshot(m.To, true)
			w.tracef("report snapshot to %d delivered at %d", m.To, m.From)
		}
	}
}

// checkAck: an acknowledgement to the leader of its term claims that the
// follower's log matches the leader's up to its index (which the leader
// then counts toward commitment). Check it against both logs as they are
// when it is made.
func (w *propWorld) checkAck(f *propNode, ack Message) {
	if ack.Type != MsgAppResp || ack.Reject || ack.Index == 0 {
		return
	}
	l := w.nodes[ack.To-1]
	if l.n == nil || l.n.r.role != Leader || l.n.r.term != ack.Term {
		return
	}
	fl, ll := &f.n.r.log, &l.n.r.log
	if ack.Index > fl.lastIndex() || ack.Index > ll.lastIndex() {
		w.fail("node %d acknowledges index %d to leader %d, but their logs end at %d and %d",
			f.id, ack.Index, l.id, fl.lastIndex(), ll.lastIndex())
	}
	for i := max(fl.offset, ll.offset); i <= ack.Index; i++ {
		ft, _ := fl.term(i)
		lt, _ := ll.term(i)
		if ft != lt {
			w.fail("node %d acknowledges index %d to leader %d of term %d, but holds term %d at %d where the leader holds %d",
				f.id, ack.Index, l.id, ack.Term, ft, i, lt)
		}
	}
}

// reportFailure tells the sender of a dropped message about it, as a host
// whose transport noticed would.
func (w *propWorld) reportFailure(m Message) {
	from := w.nodes[m.From-1]
	if from.n == nil {
		return
	}
	if m.Type == MsgSnap {
		from.n.ReportSnapshot(m.To, false)
		w.tracef("report snapshot to %d failed at %d", m.To, m.From)
		return
	}
	from.n.ReportUnreachable(m.To)
	w.tracef("report %d unreachable at %d", m.To, m.From)
}

// handleReady carries out a Ready as the host contract says: persist, send,
// apply, serve reads, Advance.
func (w *propWorld) handleReady(pn *propNode, rd *Ready) {
	w.persist(pn, rd)
	w.send(rd)
	w.apply(pn, rd)
	if err := pn.n.Advance(); err != nil {
		w.fail("Advance(%d): %v", pn.id, err)
	}
	st := pn.n.BasicStatus()
	if st.Applied != uint64(len(pn.sm)) {
		w.fail("node %d: core says applied %d, host applied %d", pn.id, st.Applied, len(pn.sm))
	}
	if w.cfg.eagerCompact && st.Applied >= st.FirstIndex {
		w.compact(pn, 0)
	}
}

// persist saves the durable part of rd, checking that durable state only
// moves forward.
func (w *propWorld) persist(pn *propNode, rd *Ready) {
	old := pn.store.hs
	if hs := rd.HardState; !hs.IsEmpty() {
		switch {
		case hs.Term < old.Term:
			w.fail("node %d persists term %d after %d", pn.id, hs.Term, old.Term)
		case hs.Term == old.Term && old.Vote != None && hs.Vote != old.Vote:
			w.fail("node %d changes its vote in term %d from %d to %d", pn.id, hs.Term, old.Vote, hs.Vote)
		case hs.Commit < old.Commit:
			w.fail("node %d persists commit %d after %d", pn.id, hs.Commit, old.Commit)
		}
	}
	if s := rd.Snapshot; s != nil && pn.store.snap != nil && s.Meta.Index <= pn.store.snap.Meta.Index {
		w.fail("node %d persists snapshot %d over snapshot %d", pn.id, s.Meta.Index, pn.store.snap.Meta.Index)
	}
	if len(rd.Entries) > 0 {
		first := rd.Entries[0].Index
		off := snapIndex(pn.store.snap)
		if rd.Snapshot != nil {
			off = rd.Snapshot.Meta.Index
		}
		last := off + uint64(len(pn.store.entries))
		if rd.Snapshot != nil {
			last = off
		}
		if first <= off || first > last+1 {
			w.fail("node %d: Ready entries from %d do not follow stored log (%d, %d]", pn.id, first, off, last)
		}
	}
	pn.store.save(rd)
	if !rd.MustSync && (rd.Snapshot != nil || len(rd.Entries) > 0 ||
		(!rd.HardState.IsEmpty() && (rd.HardState.Term != old.Term || rd.HardState.Vote != old.Vote))) {
		w.fail("node %d: Ready needs a sync but MustSync is false", pn.id)
	}
}

// send queues rd's messages, recording every vote granted.
func (w *propWorld) send(rd *Ready) {
	for _, m := range rd.Messages {
		switch m.Type {
		case MsgApp, MsgHeartbeat, MsgSnap, MsgTimeoutNow:
			w.leads(m.From, m.Term)
		}
		if m.Type == MsgVoteResp && !m.Reject {
			key := [2]uint64{m.From, m.Term}
			if c, ok := w.votes[key]; ok && c != m.To {
				w.fail("node %d voted for %d and %d in term %d", m.From, c, m.To, m.Term)
			}
			w.votes[key] = m.To
		}
	}
	w.net = append(w.net, rd.Messages...)
	for _, m := range rd.Messages {
		if m.Type == MsgSnap {
			w.stats.snapsSent++
		}
	}
}

// apply installs a snapshot and applies committed entries to pn's state
// machine, checking them against every entry applied anywhere.
func (w *propWorld) apply(pn *propNode, rd *Ready) {
	if s := rd.Snapshot; s != nil {
		if s.Meta.Index <= uint64(len(pn.sm)) {
			w.fail("node %d installs snapshot %d, not past its applied index %d", pn.id, s.Meta.Index, len(pn.sm))
		}
		pn.sm = w.restoreSM(pn, s)
		w.stats.snapsInst++
	}
	for _, e := range rd.CommittedEntries {
		if e.Index != uint64(len(pn.sm))+1 {
			w.fail("node %d applies index %d after %d", pn.id, e.Index, len(pn.sm))
		}
		w.checkApplied(pn.id, e)
		pn.sm = append(pn.sm, e)
	}
	w.stats.readsServed += len(rd.ReadStates)
	for _, rs := range rd.ReadStates {
		need, ok := w.reads[string(rs.Context)]
		if !ok {
			w.fail("node %d: read state for unknown context %q", pn.id, rs.Context)
		}
		if rs.Index < need {
			w.fail("node %d: read %q at index %d, but %d was committed before it was requested",
				pn.id, rs.Context, rs.Index, need)
		}
	}
}

// checkApplied enforces state machine safety: one entry per index.
func (w *propWorld) checkApplied(id uint64, e Entry) {
	i := e.Index
	if i <= uint64(len(w.applied)) {
		if p := w.applied[i-1]; p.Term != e.Term || p.Type != e.Type || string(p.Data) != string(e.Data) {
			w.fail("state machine safety: node %d applies %s at %d, another node applied %s",
				id, entriesString([]Entry{e}), i, entriesString([]Entry{p}))
		}
		return
	}
	if i != uint64(len(w.applied))+1 {
		w.fail("node %d applies index %d, but nothing is known applied at %d", id, i, len(w.applied)+1)
	}
	w.applied = append(w.applied, e)
	if e.Type == EntryConfChange {
		w.stats.ccApplied++
	}
}

// restoreSM decodes a snapshot's state machine, checking it against what
// was applied and against the snapshot's metadata.
func (w *propWorld) restoreSM(pn *propNode, s *Snapshot) []Entry {
	sm, err := decodePropSM(s.Data)
	if err != nil {
		w.fail("node %d: snapshot %d: %v", pn.id, s.Meta.Index, err)
	}
	if uint64(len(sm)) != s.Meta.Index {
		w.fail("node %d: snapshot at %d holds %d entries", pn.id, s.Meta.Index, len(sm))
	}
	if len(sm) > 0 && sm[len(sm)-1].Term != s.Meta.Term {
		w.fail("node %d: snapshot %d has term %d, its last entry %d", pn.id, s.Meta.Index, s.Meta.Term, sm[len(sm)-1].Term)
	}
	for _, e := range sm {
		w.checkApplied(pn.id, e)
	}
	return sm
}

// crash stops pn. Variants: 0 crash now (losing a held Ready); 1 take a
// Ready and crash before persisting it; 2 persist it and crash before
// sending; 3 persist and send it and crash before applying.
func (w *propWorld) crash(pn *propNode, variant int) {
	if pn.held == nil && variant > 0 && pn.n.HasReady() {
		rd := pn.n.Ready()
		switch variant {
		case 1:
			w.tracef("take ready of %d, crash before persisting: %s", pn.id, readyFmt(rd))
		case 2:
			w.persist(pn, &rd)
			w.tracef("take ready of %d, persist, crash before sending: %s", pn.id, readyFmt(rd))
		case 3:
			w.persist(pn, &rd)
			w.send(&rd)
			w.tracef("take ready of %d, persist, send, crash before applying: %s", pn.id, readyFmt(rd))
		}
	} else {
		w.tracef("crash %d (held ready lost: %t)", pn.id, pn.held != nil)
	}
	pn.n = nil
	pn.held = nil
	pn.sm = nil
	w.stats.crashes++
}

// restart brings pn back from its store.
func (w *propWorld) restart(pn *propNode) {
	cfg := pn.cfg
	st := pn.store.persisted()
	if st.IsEmpty() && pn.founder {
		// Nothing was persisted, so nothing was sent: found again.
		for i := 1; i <= w.cfg.founders; i++ {
			cfg.Voters = append(cfg.Voters, uint64(i))
		}
	}
	cfg.Applied = snapIndex(st.Snapshot)
	n, err := New(cfg, st)
	if err != nil {
		w.fail("restart %d from %+v: %v", pn.id, st, err)
	}
	pn.n = n
	pn.sm = nil
	if st.Snapshot != nil {
		pn.sm = w.restoreSM(pn, st.Snapshot)
	}
	bs := n.BasicStatus()
	hs := st.HardState
	w.tracef("restart %d: hs=%+v snap=%d stored=%s → term=%d vote=%d commit=%d",
		pn.id, hs, snapIndex(st.Snapshot), entsFmt(st.Entries), bs.Term, bs.Vote, bs.Commit)
	if bs.Term < hs.Term || bs.Vote != hs.Vote || bs.Commit < hs.Commit {
		w.fail("node %d restarts with term %d vote %d commit %d from hard state %+v", pn.id, bs.Term, bs.Vote, bs.Commit, hs)
	}
	if bs.Applied != uint64(len(pn.sm)) {
		w.fail("node %d restarts with applied %d, host restored %d", pn.id, bs.Applied, len(pn.sm))
	}
	pn.lastCommit = bs.Commit
	pn.recorded = n.r.log.offset
	w.stats.restarts++
}

// compact takes a snapshot of pn's state machine at an applied index.
func (w *propWorld) compact(pn *propNode, arg int) {
	st := pn.n.BasicStatus()
	if st.Applied < st.FirstIndex {
		return
	}
	idx := st.Applied - uint64(arg)%(st.Applied-st.FirstIndex+1)
	if idx > uint64(len(pn.sm)) {
		w.fail("node %d: applied %d but host applied only %d", pn.id, st.Applied, len(pn.sm))
	}
	err := pn.n.Compact(idx, encodePropSM(pn.sm[:idx]))
	w.tracef("compact %d at %d: %v", pn.id, idx, err)
	if err != nil {
		w.fail("Compact(%d) on node %d (first %d, applied %d): %v", idx, pn.id, st.FirstIndex, st.Applied, err)
	}
	snap := pn.n.Snapshot()
	if snap == nil || snap.Meta.Index != idx {
		w.fail("node %d: after Compact(%d), Snapshot() = %+v", pn.id, idx, snap)
	}
	off := snapIndex(pn.store.snap)
	if idx <= off || idx > off+uint64(len(pn.store.entries)) {
		w.fail("node %d compacts at %d, but its store holds (%d, %d]", pn.id, idx, off, off+uint64(len(pn.store.entries)))
	}
	if e := pn.store.entries[idx-off-1]; e.Term != snap.Meta.Term {
		w.fail("node %d: snapshot %d has term %d, stored entry has %d", pn.id, idx, snap.Meta.Term, e.Term)
	}
	pn.store.compact(snap)
	w.stats.compactions++
}

// confChange builds a membership change from arg: a leave, or one or two
// changes of nodes that exist, with any transition.
func (w *propWorld) confChange(arg int) ConfChange {
	var cc ConfChange
	if arg%6 == 0 {
		return cc
	}
	// Rapid draws small numbers far more often than large ones: scatter
	// arg so that every node and change type comes up.
	h := uint64(arg) * 0x9e3779b97f4a7c15 >> 20
	cc.Transition = ConfChangeTransition(h % 3)
	h /= 3
	count := 1 + h%2
	h /= 2
	for range count {
		typ := ConfChangeType(h % 3)
		h /= 3
		id := h%uint64(len(w.nodes)) + 1
		h /= uint64(len(w.nodes))
		cc.Changes = append(cc.Changes, ConfChangeSingle{Type: typ, NodeID: id})
	}
	return cc
}

// ---- invariants ----

// check verifies every safety property over the live nodes and the
// history of the run.
func (w *propWorld) check() {
	var leaders []*propNode
	for _, pn := range w.nodes {
		if pn.n == nil {
			continue
		}
		r := pn.n.r
		st := pn.n.BasicStatus()
		if st.Commit < pn.lastCommit {
			w.fail("node %d: commit went back from %d to %d", pn.id, pn.lastCommit, st.Commit)
		}
		pn.lastCommit = st.Commit
		if st.Commit < pn.store.hs.Commit || st.Term < pn.store.hs.Term {
			w.fail("node %d: term %d commit %d below persisted %+v", pn.id, st.Term, st.Commit, pn.store.hs)
		}
		if st.Commit > st.LastIndex || st.Applied > st.Commit {
			w.fail("node %d: applied %d, commit %d, last index %d out of order", pn.id, st.Applied, st.Commit, st.LastIndex)
		}
		if st.Role == Leader {
			for _, l := range leaders {
				if l.n.r.term == st.Term {
					w.fail("election safety: nodes %d and %d lead term %d at once", l.id, pn.id, st.Term)
				}
			}
			if hs := pn.store.hs; hs.Term == st.Term && hs.Vote == pn.id {
				w.leads(pn.id, st.Term)
			}
			leaders = append(leaders, pn)
		}
		// Record the newly committed entries.
		for i := max(pn.recorded, r.log.offset) + 1; i <= st.Commit; i++ {
			w.recordCommitted(pn.id, r.log.at(i), st.Term)
		}
		pn.recorded = max(pn.recorded, st.Commit)
		w.maxCommit = max(w.maxCommit, st.Commit)
	}
	for i, a := range w.nodes {
		if a.n == nil {
			continue
		}
		for _, b := range w.nodes[i+1:] {
			if b.n != nil {
				w.checkLogMatching(a, b)
			}
		}
	}
	for _, l := range leaders {
		w.checkLeaderCompleteness(l)
	}
}

// leads records that node id led term, and checks that no other node did.
// Leadership counts once it can have had an effect: once the leader has
// sent a leader's message in the term, or made its vote for itself
// durable. (A node that wins an election and crashes before persisting the
// Ready that follows loses its term and vote with it; nothing it did as
// leader left it, so it may vote for another candidate in that term after
// restarting.)
func (w *propWorld) leads(id, term uint64) {
	if l, ok := w.leaders[term]; ok && l != id {
		w.fail("election safety: nodes %d and %d both led term %d", l, id, term)
	}
	w.leaders[term] = id
}

// recordCommitted notes that e is committed, as seen by node id in term
// obsTerm, and checks that no other entry was committed at its index.
func (w *propWorld) recordCommitted(id uint64, e *Entry, obsTerm uint64) {
	for uint64(len(w.committed)) <= e.Index {
		w.committed = append(w.committed, commitRec{})
	}
	c := &w.committed[e.Index]
	if !c.ok {
		*c = commitRec{ok: true, term: e.Term, typ: e.Type, data: string(e.Data), obsTerm: obsTerm}
		return
	}
	if c.term != e.Term || c.typ != e.Type || c.data != string(e.Data) {
		w.fail("node %d has %s committed at %d, but %d/%q was committed there before",
			id, entriesString([]Entry{*e}), e.Index, c.term, c.data)
	}
	c.obsTerm = min(c.obsTerm, obsTerm)
}

// checkLogMatching: if two logs hold an entry with the same index and term,
// they are identical up to it.
func (w *propWorld) checkLogMatching(a, b *propNode) {
	la, lb := &a.n.r.log, &b.n.r.log
	lo := max(la.offset, lb.offset)
	hi := min(la.lastIndex(), lb.lastIndex())
	if lo > hi {
		return
	}
	i := hi
	for {
		ta, _ := la.term(i)
		tb, _ := lb.term(i)
		if ta == tb {
			break
		}
		if i == lo {
			return
		}
		i--
	}
	for ; i > lo; i-- {
		ea, eb := la.at(i), lb.at(i)
		if ea.Term != eb.Term || ea.Type != eb.Type || string(ea.Data) != string(eb.Data) {
			w.fail("log matching: nodes %d and %d agree on a later entry but differ at %d: %s vs %s",
				a.id, b.id, i, entriesString([]Entry{*ea}), entriesString([]Entry{*eb}))
		}
	}
	ta, _ := la.term(lo)
	tb, _ := lb.term(lo)
	if ta != tb {
		w.fail("log matching: nodes %d and %d agree on a later entry but differ in term at %d (%d vs %d)",
			a.id, b.id, lo, ta, tb)
	}
}

// checkLeaderCompleteness: a leader holds every entry committed in its term
// or before.
func (w *propWorld) checkLeaderCompleteness(l *propNode) {
	lg := &l.n.r.log
	term := l.n.r.term
	for i := lg.offset; i < uint64(len(w.committed)); i++ {
		c := &w.committed[i]
		if !c.ok || c.obsTerm > term {
			continue
		}
		if i > lg.lastIndex() {
			w.fail("leader completeness: leader %d of term %d lacks committed index %d (last %d)", l.id, term, i, lg.lastIndex())
		}
		t, _ := lg.term(i)
		if t != c.term || (i > lg.offset && (lg.at(i).Type != c.typ || string(lg.at(i).Data) != c.data)) {
			w.fail("leader completeness: leader %d of term %d has term %d at %d, but %d/%q is committed there",
				l.id, term, t, i, c.term, c.data)
		}
	}
}

// ---- heal phase ----

// heal stops every fault: held Readies are handled, crashed nodes restart,
// the network delivers everything. Then a leader must be elected and a new
// proposal must be applied by every member within a bound.
func (w *propWorld) heal() {
	w.tracef("---- heal ----")
	for _, pn := range w.nodes {
		if pn.n != nil && pn.held != nil {
			rd := pn.held
			pn.held = nil
			w.handleReady(pn, rd)
		}
	}
	for _, pn := range w.nodes {
		if pn.n == nil {
			w.restart(pn)
		}
	}
	w.check()
	w.settle()
	// Elections are randomized, so the bound is generous: when only one
	// node can win (the others' logs are behind it) and a joint
	// configuration needs every vote, the losers' campaigns (without
	// PreVote) keep resetting its timer, and with ElectionTick 3 it comes
	// first alone in only about one election in five or nine.
	bound := 250 * w.cfg.base.ElectionTick
	var want []string // heal proposals accepted by a leader
	var proposedTerm uint64
	for tick := 0; tick < bound; tick++ {
		if l := w.leader(); l != nil {
			st := l.n.BasicStatus()
			if proposedTerm != st.Term {
				w.props++
				data := fmt.Sprintf("heal%d", w.props)
				err := l.n.Propose([]byte(data))
				w.tracef("heal: propose %s at leader %d (term %d): %v", data, l.id, st.Term, err)
				if err == nil {
					proposedTerm = st.Term
					want = append(want, data)
				}
				w.settle()
			}
			if w.healed(l, want) {
				return
			}
		}
		for _, pn := range w.nodes {
			pn.n.Tick()
		}
		w.tracef("heal: tick all")
		w.check()
		w.settle()
	}
	w.fail("liveness: no proposal applied by every member within %d ticks of healing", bound)
}

// settle handles Readies and delivers every message until the network is
// quiet, checking the invariants after each step.
func (w *propWorld) settle() {
	for range 100000 {
		progress := false
		for _, pn := range w.nodes {
			if pn.n.HasReady() {
				rd := pn.n.Ready()
				w.tracef("handle ready of %d", pn.id)
				w.handleReady(pn, &rd)
				w.check()
				progress = true
			}
		}
		if len(w.net) > 0 {
			m := w.net[0]
			w.net = w.net[1:]
			w.deliver(m, true)
			w.check()
			progress = true
		}
		if !progress {
			return
		}
	}
	w.fail("liveness: the network never went quiet")
}

// leader returns the live leader of the highest term, or nil.
func (w *propWorld) leader() *propNode {
	var best *propNode
	for _, pn := range w.nodes {
		if pn.n != nil && pn.n.r.role == Leader && (best == nil || pn.n.r.term > best.n.r.term) {
			best = pn
		}
	}
	return best
}

// healed reports whether one of the proposals in want has been applied by
// every voter and learner in the leader's configuration.
func (w *propWorld) healed(l *propNode, want []string) bool {
	cs := l.n.r.conf
	var members []uint64
	members = append(members, cs.Voters...)
	members = append(members, cs.VotersOutgoing...)
	members = append(members, cs.Learners...)
	members = append(members, cs.LearnersNext...)
	for _, data := range want {
		all := true
		for _, id := range members {
			if !w.nodes[id-1].hasApplied(data) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (pn *propNode) hasApplied(data string) bool {
	for i := len(pn.sm) - 1; i >= 0; i-- {
		if string(pn.sm[i].Data) == data {
			return true
		}
	}
	return false
}
