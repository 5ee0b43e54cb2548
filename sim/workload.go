package sim

import (
	"errors"
	"strconv"

	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/linearizability"
	"github.com/forge-consensus/consensus/node"
)

// client runs one operation at a time against the cluster, retrying an
// operation with the same session sequence number (so a retried write is
// applied once) until it succeeds or the client gives up on it.
type client struct {
	c      *cluster
	id     int
	rng    *Rand
	seq    uint64
	writes uint64
	target uint64
	op     *clientOp
	stop   bool // the fault phase ended: no new operations
	// leaseUntil: a lease race steered this client to the leader; until
	// then it only reads, on the lease.
	leaseUntil Time
}

// clientOp is an operation in flight.
type clientOp struct {
	hist     int // history id; -1 for the liveness probe
	cmd      kv.Command
	enc      []byte
	level    node.ReadLevel
	viaLog   bool
	start    Time
	attempt  int
	unknown  bool // some attempt may have taken effect
	deadline Time // give up after; 0 while healing (must finish)
	// slow counts the attempts that a live process took but did not
	// answer in time: each one doubles the time the next attempt waits
	// (see patience), as a real client backs off from a slow
	// server. A client that retried at a fixed pace would keep a cluster
	// whose commit latency exceeds its patience in a retry storm: every
	// attempt times out, and its re-proposal adds to the backlog that made
	// it time out (swarm seed 52702, 7 clients against one-entry
	// messages). An attempt at a process that is down (a refused
	// connection, to a real client) does not count: the next one goes
	// elsewhere at the usual pace. reached is the last attempt that found
	// its process up.
	slow    int
	reached int
	cl      *client
}

func (c *cluster) startClients() {
	for i := range c.o.Clients {
		cl := &client{c: c, id: i + 1, rng: NewRand(c.o.Seed, "client").Split(strconv.Itoa(i))}
		cl.target = uint64(1 + cl.rng.Intn(c.o.Nodes))
		c.clients = append(c.clients, cl)
		c.s.After(cl.rng.Range(0, 100*Millisecond), cl.next)
	}
}

// latency is a client↔node one-way delay.
func (cl *client) latency() Time {
	o := &cl.c.o.Network
	return o.DelayMin + cl.rng.Exp(max(o.DelayMean, Microsecond))
}

// next starts a new operation.
func (cl *client) next() {
	c := cl.c
	if cl.stop || c.failed || cl.op != nil {
		return
	}
	o := &c.o
	cl.seq++
	key := "k" + strconv.Itoa(cl.rng.Intn(o.Keys))
	op := &clientOp{start: c.s.Now(), cl: cl, deadline: c.s.Now() + o.ClientTimeout}
	var in linearizability.Input
	x := cl.rng.Float64()
	switch {
	case x < o.ReadShare:
		op.cmd = kv.Command{Op: kv.OpGet, Key: key}
		in = linearizability.Input{Kind: linearizability.Get, Key: key}
		if cl.rng.Chance(o.LogReadShare) {
			op.viaLog = true
			op.cmd.ClientID, op.cmd.Seq = uint64(cl.id), cl.seq
		} else if o.LeaseReads && cl.rng.Chance(0.5) {
			op.level = node.ReadLease
		}
	case x < o.ReadShare+o.DeleteShare:
		op.cmd = kv.Command{Op: kv.OpDelete, Key: key, ClientID: uint64(cl.id), Seq: cl.seq}
		in = linearizability.Input{Kind: linearizability.Delete, Key: key}
	case x < o.ReadShare+o.DeleteShare+o.CASShare:
		// Compare against a value this client may have written (or not).
		exp := cl.value(cl.rng.Intn(int(cl.writes) + 1))
		cl.writes++
		val := cl.value(int(cl.writes))
		op.cmd = kv.Command{Op: kv.OpCAS, Key: key, Value: []byte(val), Expected: []byte(exp),
			ClientID: uint64(cl.id), Seq: cl.seq}
		in = linearizability.Input{Kind: linearizability.CAS, Key: key, Value: val, Expected: exp}
	default:
		cl.writes++
		val := cl.value(int(cl.writes))
		op.cmd = kv.Command{Op: kv.OpSet, Key: key, Value: []byte(val), ClientID: uint64(cl.id), Seq: cl.seq}
		in = linearizability.Input{Kind: linearizability.Put, Key: key, Value: val}
	}
	in = cl.leaseRead(op, in)
	op.enc = kv.EncodeCommand(op.cmd)
	op.hist = c.hist.Invoke(cl.id, in, c.s.Now())
	c.counters.ClientOps++
	c.tr.Add(Event{At: c.s.Now(), Kind: EvClientCall, Node: cl.target, A: uint64(cl.id), B: cl.seq})
	cl.op = op
	op.attempt = 1
	op.send()
}

// value is the unique value of this client's n-th write.
func (cl *client) value(n int) string {
	return "c" + strconv.Itoa(cl.id) + "-" + strconv.Itoa(n)
}

// send makes attempt number op.attempt against the client's target.
func (op *clientOp) send() {
	cl := op.cl
	c := cl.c
	attempt := op.attempt
	target := cl.target
	c.s.After(cl.latency(), func() {
		if op.done() {
			return
		}
		p := c.proc(target)
		if p == nil || !p.up {
			return // no answer: the attempt timer retries
		}
		op.reached = attempt
		p.run(func() {
			if p.n == nil || op.done() {
				return
			}
			var f *node.Future
			switch {
			case op.cmd.Op == kv.OpGet && !op.viaLog:
				if op.level == node.ReadLease {
					c.leaseReadAsked(p)
				}
				f = p.n.Read(op.level, op.enc)
			default:
				f = p.n.Propose(op.enc)
			}
			f.OnResolve(func(f *node.Future) {
				res, err := f.Result()
				if err == nil && op.level == node.ReadLease && !op.viaLog {
					c.reachLeaseAnswer(p)
				}
				c.s.After(cl.latency(), func() { op.answer(attempt, res, err) })
			})
		})
	})
	c.s.After(op.patience(), func() {
		if op.attempt == attempt && !op.done() {
			op.unknown = op.unknown || op.cmd.Op != kv.OpGet || op.viaLog
			if op.reached == attempt {
				op.slow++
			}
			op.retry(0)
		}
	})
}

func (op *clientOp) done() bool { return op.cl.op != op }

// patience is how long the client waits for an answer to an attempt:
// AttemptTime, doubled for each attempt in a row that a live process did
// not answer in time, up to 8 times AttemptTime or four election timeouts,
// whichever is less (but never less than AttemptTime). The cap keeps a
// backed-off client within the liveness bound of the cluster it uses.
func (op *clientOp) patience() Time {
	o := &op.cl.c.o
	limit := max(o.AttemptTime, 4*Time(o.ElectionTick)*o.TickInterval)
	return min(o.AttemptTime<<min(op.slow, 3), limit)
}

// answer handles the answer to one attempt (a late answer to an earlier
// attempt is as good as any: the operation took effect between its call
// and now).
func (op *clientOp) answer(attempt int, res any, err error) {
	if op.done() {
		return
	}
	if err == nil {
		r, ok := res.(kv.Result)
		if ok && r.Status == kv.StatusOK {
			op.complete(r)
			return
		}
		// A stale session answer: the outcome of this operation is unknown.
		op.unknown = true
		op.giveUp()
		return
	}
	if attempt != op.attempt {
		return // the current attempt is still running
	}
	var nl *node.NotLeaderError
	switch {
	case errors.As(err, &nl):
		op.retry(nl.LeaderID)
	case errors.Is(err, node.ErrDropped), errors.Is(err, node.ErrLeaseReadsDisabled):
		op.retry(0)
	default: // timed out or stopped: it may still take effect
		op.unknown = op.unknown || op.cmd.Op != kv.OpGet || op.viaLog
		if errors.Is(err, node.ErrTimeout) {
			op.slow++
		}
		op.retry(0)
	}
}

// retry sends the operation again, to hint or to another node.
func (op *clientOp) retry(hint uint64) {
	cl := op.cl
	c := cl.c
	if op.deadline > 0 && c.s.Now() >= op.deadline && !cl.stop {
		op.giveUp()
		return
	}
	c.counters.Retries++
	if hint != 0 {
		cl.target = hint
	} else {
		ids := c.memberIDs()
		cl.target = ids[cl.rng.Intn(len(ids))]
	}
	op.attempt++ // answers to the earlier attempt no longer steer it
	c.s.After(cl.rng.Range(Millisecond, 20*Millisecond), func() {
		if !op.done() {
			op.send()
		}
	})
}

// complete records a known result.
func (op *clientOp) complete(r kv.Result) {
	cl := op.cl
	c := cl.c
	cl.op = nil
	c.tr.Add(Event{At: c.s.Now(), Kind: EvClientReturn, A: uint64(cl.id), B: op.cmd.Seq, Text: "ok"})
	if op.hist < 0 {
		c.probeDone = true
		return
	}
	c.counters.ClientOK++
	if op.cmd.Op == kv.OpGet {
		c.reachRead(op)
	}
	out := linearizability.Output{Value: string(r.Value), Found: r.Found, OK: r.OK}
	c.hist.Return(op.hist, out, c.s.Now())
	cl.think()
}

// giveUp abandons the operation; its outcome stays unknown.
func (op *clientOp) giveUp() {
	cl := op.cl
	c := cl.c
	cl.op = nil
	c.tr.Add(Event{At: c.s.Now(), Kind: EvClientReturn, A: uint64(cl.id), B: op.cmd.Seq, Text: "unknown"})
	if op.hist < 0 {
		return
	}
	c.counters.ClientUnknown++
	c.hist.Fail(op.hist)
	cl.think()
}

func (cl *client) think() {
	c := cl.c
	c.s.After(cl.rng.Range(0, c.o.ThinkMax), cl.next)
}

// healed: no new operations; the one in flight must now finish.
func (cl *client) healed() {
	cl.stop = true
	if cl.op != nil {
		cl.op.deadline = 0
	}
}

// dropClientAttempts: a crashed process answers nothing; the attempt
// timers retry on their own.
func (c *cluster) dropClientAttempts(uint64) {}

// sendProbe writes once through the leader after healing: a new write must
// commit within the liveness bound.
func (c *cluster) sendProbe(l *proc) {
	if c.probe != nil {
		return
	}
	cl := &client{c: c, id: 1 << 20, rng: NewRand(c.o.Seed, "probe"), target: l.id, stop: true}
	op := &clientOp{hist: -1, cl: cl, start: c.s.Now(),
		cmd: kv.Command{Op: kv.OpSet, Key: "probe", Value: []byte("probe"), ClientID: 1 << 20, Seq: 1}}
	op.enc = kv.EncodeCommand(op.cmd)
	cl.op = op
	c.probe = op
	op.attempt = 1
	op.send()
}
