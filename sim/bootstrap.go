package sim

import (
	"bytes"
	"container/heap"
	"fmt"
	"slices"
	"strings"

	"github.com/forge-consensus/consensus/adapters/discovery/bootstrap"
)

// BootstrapOptions configures RunBootstrap: a seeded simulation of
// discovery-driven bootstrap (package adapters/discovery/bootstrap)
// among nodes that start at random moments and see each other through a
// discovery source that lags, reorders and loses answers, over a
// network that delays, drops and duplicates asks and answers, with
// nodes that crash and restart keeping only what they persisted.
type BootstrapOptions struct {
	Seed uint64
	// Nodes is the number of nodes started; Expect is bootstrap_expect.
	// Nodes > Expect models an operator who started more nodes than
	// bootstrap_expect before a cluster existed.
	Nodes, Expect int
	// Ticks bounds the run (default 3,000).
	Ticks int64
	// Late starts this many extra nodes well after the others (at tick
	// Ticks/2 or later): they must join the cluster, not form another.
	Late int
	// Naive replaces the protocol by "bootstrap with the first
	// bootstrap_expect candidates found", the split-prone strategy, to
	// show that the checks catch a split.
	Naive bool
}

// BootstrapResult is what RunBootstrap found.
type BootstrapResult struct {
	// Formed maps each voter set bootstrapped (names joined by ",") to
	// the nodes that bootstrapped it; more than one key is a split.
	Formed map[string][]string
	// Members is the number of nodes that bootstrapped or joined by the
	// end; Joined the number that joined.
	Members, Joined int
	// Rounds is the number of ask rounds run, Crashes the crashes.
	Rounds, Crashes int
	// Err is the first violation: two clusters formed, a node
	// bootstrapped a set without itself, a node joined when no cluster
	// existed, or (with Nodes == Expect and no Naive) not every node
	// became a member by the end.
	Err error
	// Trace is the run's event log; the same options give the same bytes.
	Trace []byte
}

// Bootstrap simulation timing, in ticks.
const (
	bsStartSpread  = 60  // nodes start within this many ticks
	bsRefreshMin   = 5   // a node looks up again after 5..15 ticks
	bsRefreshMax   = 15  //
	bsLagMax       = 40  // discovery shows the nodes started up to this many ticks ago
	bsDelayMax     = 8   // a message takes 1..8 ticks
	bsRoundTimeout = 20  // a round decides with the answers that arrived by then
	bsDownMax      = 30  // a crashed node is down 1..30 ticks
	bsLoseCand     = 0.2 // each candidate is missing from a lookup with this chance
	bsDrop         = 0.1 // each message is lost with this chance
	bsDup          = 0.05
	bsCrash        = 0.003 // per node per tick, before it is a member
)

type bsNode struct {
	name    string
	start   int64 // tick it starts (and is visible to discovery)
	up      bool
	epoch   int // incremented by every crash: stale events of an earlier life are ignored
	proto   *bootstrap.Node
	promise []string // persisted
	member  bool     // persisted
	voters  []string // what it bootstrapped with
	round   int      // current round number (answers of older rounds are ignored)
	answers []bootstrap.Hello
	naive   bool
}

type bsEvent struct {
	at    int64
	seq   int
	kind  int // bsStart, bsRefresh, bsAsk, bsAnswer, bsDecide, bsCrash, bsRestart
	to    int
	epoch int
	round int
	from  int
	ask   bootstrap.Ask
	hello bootstrap.Hello
}

const (
	bsStart = iota
	bsRefresh
	bsAsk
	bsAnswer
	bsDecide
	bsRestart
)

type bsQueue []*bsEvent

func (q bsQueue) Len() int { return len(q) }
func (q bsQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q bsQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *bsQueue) Push(x any)   { *q = append(*q, x.(*bsEvent)) }
func (q *bsQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type bsRun struct {
	o     BootstrapOptions
	r     *Rand
	nodes []*bsNode
	q     bsQueue
	seq   int
	now   int64
	trace bytes.Buffer
	res   BootstrapResult
}

// RunBootstrap runs the simulation and checks it (see BootstrapResult.Err).
func RunBootstrap(o BootstrapOptions) BootstrapResult {
	if o.Ticks <= 0 {
		o.Ticks = 3000
	}
	s := &bsRun{o: o, r: NewRand(o.Seed, "bootstrap"), res: BootstrapResult{Formed: map[string][]string{}}}
	if o.Expect < 1 || o.Nodes < o.Expect {
		s.res.Err = fmt.Errorf("sim: bootstrap: %d nodes, bootstrap_expect %d: want 1 <= expect <= nodes", o.Nodes, o.Expect)
		return s.res
	}
	for i := range o.Nodes + o.Late {
		n := &bsNode{name: fmt.Sprintf("node-%d", i+1), naive: o.Naive}
		if i < o.Nodes {
			n.start = s.r.Range(0, bsStartSpread)
		} else {
			n.start = s.r.Range(o.Ticks/2, o.Ticks/2+bsStartSpread)
		}
		s.nodes = append(s.nodes, n)
		s.push(&bsEvent{at: n.start, kind: bsStart, to: i})
	}
	for s.q.Len() > 0 && s.res.Err == nil {
		e := heap.Pop(&s.q).(*bsEvent)
		if e.at > o.Ticks {
			break
		}
		s.now = e.at
		s.step(e)
	}
	s.finish()
	s.res.Trace = s.trace.Bytes()
	return s.res
}

func (s *bsRun) push(e *bsEvent) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

func (s *bsRun) logf(format string, args ...any) {
	fmt.Fprintf(&s.trace, "%5d ", s.now)
	fmt.Fprintf(&s.trace, format, args...)
	s.trace.WriteByte('\n')
}

func (s *bsRun) fail(format string, args ...any) {
	if s.res.Err == nil {
		s.res.Err = fmt.Errorf("sim: bootstrap (seed %d) at tick %d: %s", s.o.Seed, s.now, fmt.Sprintf(format, args...))
		s.logf("VIOLATION %v", s.res.Err)
	}
}

// boot (re)starts node i from what it persisted.
func (s *bsRun) boot(i int) {
	n := s.nodes[i]
	p, err := bootstrap.New(bootstrap.Config{Name: n.name, ClusterID: "c", Expect: s.o.Expect, Promise: n.promise, Member: n.member})
	if err != nil {
		s.fail("%s: restart: %v", n.name, err)
		return
	}
	n.proto, n.up = p, true
	s.push(&bsEvent{at: s.now, kind: bsRefresh, to: i, epoch: n.epoch})
}

func (s *bsRun) step(e *bsEvent) {
	n := s.nodes[e.to]
	switch e.kind {
	case bsStart:
		s.logf("%s starts", n.name)
		s.boot(e.to)
	case bsRestart:
		s.logf("%s restarts (promise %v, member %t)", n.name, n.promise, n.member)
		s.boot(e.to)
	case bsRefresh:
		if !n.up || e.epoch != n.epoch || n.member {
			return
		}
		if s.r.Chance(bsCrash * float64(bsRefreshMax)) {
			s.crash(e.to)
			return
		}
		s.round(e.to)
	case bsAsk:
		if !n.up {
			return
		}
		var h bootstrap.Hello
		if n.naive {
			h = bootstrap.Hello{Name: n.name, ClusterID: "c", Member: n.member, Promise: n.voters}
		} else {
			var changed bool
			h, changed = n.proto.Answer(e.ask)
			if changed {
				n.promise = n.proto.Promise() // persisted before the answer leaves
				s.logf("%s promises %s to %s", n.name, strings.Join(n.promise, ","), e.ask.From)
			}
		}
		s.send(&bsEvent{kind: bsAnswer, to: e.from, from: e.to, epoch: e.epoch, round: e.round, hello: h})
	case bsAnswer:
		if !n.up || e.epoch != n.epoch || e.round != n.round {
			return
		}
		n.answers = append(n.answers, e.hello)
	case bsDecide:
		if !n.up || e.epoch != n.epoch || e.round != n.round || n.member {
			return
		}
		s.decide(e.to)
	}
}

func (s *bsRun) crash(i int) {
	n := s.nodes[i]
	n.up = false
	n.epoch++
	s.res.Crashes++
	s.logf("%s crashes", n.name)
	s.push(&bsEvent{at: s.now + s.r.Range(1, bsDownMax), kind: bsRestart, to: i})
}

// lookup is node i's discovery answer now: the nodes started at least a
// random lag ago, each missing with some chance, in random order.
func (s *bsRun) lookup() []int {
	lag := s.r.Range(0, bsLagMax)
	var found []int
	for j, m := range s.nodes {
		if m.start <= s.now-lag && !s.r.Chance(bsLoseCand) {
			found = append(found, j)
		}
	}
	p := s.r.perm(len(found))
	out := make([]int, len(found))
	for k, j := range p {
		out[k] = found[j]
	}
	return out
}

// round looks up and asks every candidate; the decision comes after
// bsRoundTimeout.
func (s *bsRun) round(i int) {
	n := s.nodes[i]
	n.round++
	n.answers = n.answers[:0]
	s.res.Rounds++
	found := s.lookup()
	names := make([]string, len(found))
	for k, j := range found {
		names[k] = s.nodes[j].name
	}
	s.logf("%s round %d: discovery finds %s", n.name, n.round, strings.Join(names, ","))
	ask := n.proto.Ask()
	for _, j := range found {
		if j == i {
			continue
		}
		s.send(&bsEvent{kind: bsAsk, to: j, from: i, epoch: n.epoch, round: n.round, ask: ask})
	}
	s.push(&bsEvent{at: s.now + bsRoundTimeout, kind: bsDecide, to: i, epoch: n.epoch, round: n.round})
}

// send delivers e after a random delay, maybe never, maybe twice.
func (s *bsRun) send(e *bsEvent) {
	if s.r.Chance(bsDrop) {
		return
	}
	e.at = s.now + s.r.Range(1, bsDelayMax)
	s.push(e)
	if s.r.Chance(bsDup) {
		d := *e
		d.at = s.now + s.r.Range(1, bsDelayMax)
		s.push(&d)
	}
}

func (s *bsRun) decide(i int) {
	n := s.nodes[i]
	// The answers arrive in network order; shuffle them too.
	answers := slices.Clone(n.answers)
	for k, j := range s.r.perm(len(answers)) {
		answers[k] = n.answers[j]
	}
	var d bootstrap.Decision
	if n.naive {
		d = s.naiveDecide(n, answers)
	} else {
		d = n.proto.Decide(answers)
		n.promise = n.proto.Promise() // persisted before anything is sent
	}
	s.logf("%s decides %v: %s", n.name, d.Kind, d.Reason)
	next := s.now + s.r.Range(bsRefreshMin, bsRefreshMax)
	switch d.Kind {
	case bootstrap.Propose:
		next = s.now // ask for the promises now
	case bootstrap.Bootstrap:
		if _, ok := slices.BinarySearch(d.Voters, n.name); !ok {
			s.fail("%s bootstrapped %v, without itself", n.name, d.Voters)
		}
		n.member, n.voters = true, d.Voters
		if !n.naive {
			n.proto.SetMember()
		}
		key := strings.Join(d.Voters, ",")
		s.res.Formed[key] = append(s.res.Formed[key], n.name)
		if len(s.res.Formed) > 1 {
			s.fail("two clusters: %s", s.formed())
		}
		return
	case bootstrap.Join:
		// Joining needs a cluster: some node must have bootstrapped.
		if len(s.res.Formed) == 0 {
			s.fail("%s joins via %v, but no cluster exists", n.name, d.Via)
		}
		n.member = true
		if !n.naive {
			n.proto.SetMember()
		}
		s.res.Joined++
		return
	}
	s.push(&bsEvent{at: next, kind: bsRefresh, to: i, epoch: n.epoch})
}

// naiveDecide is the split-prone strategy: join a member if one
// answered, else bootstrap with the first Expect names found.
func (s *bsRun) naiveDecide(n *bsNode, answers []bootstrap.Hello) bootstrap.Decision {
	names := []string{n.name}
	for _, h := range answers {
		if h.Member {
			return bootstrap.Decision{Kind: bootstrap.Join, Via: []string{h.Name}, Reason: "a member answered"}
		}
		names = append(names, h.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) < s.o.Expect {
		return bootstrap.Decision{Kind: bootstrap.Wait, Reason: "too few"}
	}
	return bootstrap.Decision{Kind: bootstrap.Bootstrap, Voters: names[:s.o.Expect], Reason: "found enough"}
}

func (s *bsRun) formed() string {
	keys := make([]string, 0, len(s.res.Formed))
	for k := range s.res.Formed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "{%s} by %s", k, strings.Join(s.res.Formed[k], ","))
	}
	return b.String()
}

func (s *bsRun) finish() {
	for _, n := range s.nodes {
		if n.member {
			s.res.Members++
		}
	}
	s.logf("end: %d members (%d joined), %d rounds, %d crashes; formed %s", s.res.Members, s.res.Joined, s.res.Rounds, s.res.Crashes, s.formed())
	if s.res.Err != nil || s.o.Naive || s.o.Nodes != s.o.Expect {
		return
	}
	// Exactly bootstrap_expect nodes started: every one must be a member.
	for _, n := range s.nodes {
		if !n.member {
			s.fail("%s is not a member after %d ticks (promise %v)", n.name, s.o.Ticks, n.promise)
			return
		}
	}
}
