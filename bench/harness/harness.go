// Package harness drives an in-memory, single-goroutine Raft cluster of one
// of several implementations through the same loop, so that their
// throughput, allocations and commit latency can be compared.
//
// One loop iteration is:
//
//  1. Propose phase (measurement only): the leader tops its window back up to
//     W outstanding proposals (proposed but not yet applied at the leader).
//  2. Ready phase: for every node in turn, if it has a Ready, the
//     implementation persists it to in-memory storage and hands its
//     outgoing messages and committed entries to the harness; the harness
//     queues the messages, applies the committed entries (counting them and
//     recording commit latency at the leader) and then calls Advance.
//  3. Deliver phase: every queued message is stepped into its target node.
//
// Nothing is ticked during the measurement unless Options.TickEvery says so.
package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// PayloadSize is the size of each proposal's data. The first 8 bytes carry
// the proposal's sequence number (little endian).
const PayloadSize = 128

// Committed is a committed entry as handed to the harness for applying.
type Committed struct {
	Index uint64
	// Conf is true for configuration-change entries.
	Conf bool
	Data []byte
}

// Cluster is an in-memory cluster of Size() nodes of one Raft
// implementation. Nodes are addressed by index 0..Size()-1, which is node
// ID index+1. M is the implementation's message type. A Cluster is driven by
// one goroutine.
type Cluster[M any] interface {
	// Name names the implementation ("etcd", "forge").
	Name() string
	// Size returns the number of nodes.
	Size() int
	// Campaign makes node start an election.
	Campaign(node int) error
	// IsLeader reports whether node believes it is the leader.
	IsLeader(node int) bool
	// Propose proposes data at node.
	Propose(node int, data []byte) error
	// Ready: if node has a Ready, persists it to the node's in-memory
	// storage, appends its messages to msgs and its committed entries to
	// ents (applying configuration changes where the implementation needs
	// the host to), and reports true. The harness then applies ents and
	// calls Advance. If node has no Ready, it returns msgs and ents
	// unchanged and false.
	Ready(node int, msgs []M, ents []Committed) ([]M, []Committed, bool)
	// Advance acknowledges node's last Ready.
	Advance(node int)
	// Target returns the node index m is addressed to.
	Target(m *M) int
	// Step delivers m to node. Benign errors are swallowed; anything else
	// is returned and fails the run.
	Step(node int, m *M) error
	// Tick ticks node once.
	Tick(node int)
}

// Options configures one measurement.
type Options struct {
	// N is the number of proposals to make (and apply at the leader).
	N int
	// W is the number of proposals kept outstanding at the leader.
	W int
	// TickEvery ticks every node once every TickEvery loop iterations
	// during the measurement; 0 never ticks.
	TickEvery int
	// Record records, at every node, the sequence numbers of the
	// proposals it applies (for tests).
	Record bool
}

// Result is the outcome of one measurement.
type Result struct {
	Impl string
	N, W int
	// Elapsed is the wall time from the first proposal to the leader
	// applying the last one.
	Elapsed       time.Duration
	EntriesPerSec float64
	// Mallocs and AllocBytes are the runtime.MemStats Mallocs and
	// TotalAlloc deltas over the measurement.
	Mallocs        uint64
	AllocBytes     uint64
	AllocsPerEntry float64
	BytesPerEntry  float64
	// NumGC is the number of GC cycles completed during the measurement.
	NumGC uint32
	// CPU is the process's user+system CPU time during the measurement
	// (all threads, so it includes the GC's background workers). On an
	// otherwise idle machine it is close to Elapsed plus GC work; when it
	// is much smaller than Elapsed, other processes took the CPU.
	CPU time.Duration
	// PageFaults is the number of (minor and major) page faults the
	// process took during the measurement: fresh heap memory touched for
	// the first time. On a VM they can be expensive.
	PageFaults int64
	// Commit latency (Propose to the leader seeing the entry in its
	// CommittedEntries).
	P50, P99, Max time.Duration
	// Iterations of the loop, messages delivered and Readys handled (all
	// nodes) during the measurement.
	Iterations, Messages, Readys int
	// Applied holds, per node, the sequence numbers of the proposals the
	// node applied, in order, when Options.Record is set. It is complete
	// only after Drain.
	Applied [][]uint64
}

// Runner runs the measurement loop over a cluster. Use it in this order:
// Setup, Prepare, Measure, then optionally Drain.
type Runner[M any] struct {
	c    Cluster[M]
	opt  Options
	size int

	queue []M
	ents  []Committed

	// Measurement state.
	measuring   bool
	slab        []byte
	proposeAt   []int64 // per sequence number, ns since base
	latency     []int64 // per sequence number, ns
	base        time.Time
	proposed    int // proposals made
	leaderNext  int // sequence number the leader must apply next
	setupCommit bool
	iterations  int
	messages    int
	readys      int
	applied     [][]uint64
	res         Result
	prepared    bool
}

// Bench is a Runner with the message type hidden.
type Bench interface {
	Setup() error
	Prepare()
	Measure() (Result, error)
	Drain() (Result, error)
}

// NewRunner returns a Runner for c.
func NewRunner[M any](c Cluster[M], opt Options) *Runner[M] {
	if opt.W < 1 {
		opt.W = 1
	}
	if opt.N < 0 {
		opt.N = 0
	}
	return &Runner[M]{c: c, opt: opt, size: c.Size()}
}

// maxIdle bounds the number of loop iterations without any progress before
// the harness declares the cluster stuck.
const maxIdle = 1000

// iterate runs the Ready and Deliver phases once and reports whether
// anything happened.
func (r *Runner[M]) iterate() (busy bool, err error) {
	for i := 0; i < r.size; i++ {
		var ok bool
		r.queue, r.ents, ok = r.c.Ready(i, r.queue, r.ents[:0])
		if !ok {
			continue
		}
		busy = true
		r.readys++
		if err := r.apply(i, r.ents); err != nil {
			return busy, err
		}
		r.c.Advance(i)
	}
	if len(r.queue) > 0 {
		busy = true
	}
	for k := range r.queue {
		m := &r.queue[k]
		if err := r.c.Step(r.c.Target(m), m); err != nil {
			return busy, fmt.Errorf("%s: step to node %d: %w", r.c.Name(), r.c.Target(m)+1, err)
		}
	}
	r.messages += len(r.queue)
	r.queue = r.queue[:0]
	return busy, nil
}

// apply applies committed entries at node.
func (r *Runner[M]) apply(node int, ents []Committed) error {
	if len(ents) == 0 {
		return nil
	}
	var now int64
	if node == 0 && r.measuring {
		now = int64(time.Since(r.base))
	}
	for k := range ents {
		e := &ents[k]
		if e.Conf {
			continue
		}
		if len(e.Data) == 0 {
			if node == 0 {
				r.setupCommit = true
			}
			continue
		}
		if len(e.Data) != PayloadSize {
			return fmt.Errorf("%s: node %d applied an entry of %d bytes at index %d", r.c.Name(), node+1, len(e.Data), e.Index)
		}
		seq := binary.LittleEndian.Uint64(e.Data)
		if r.opt.Record {
			r.applied[node] = append(r.applied[node], seq)
		}
		if node != 0 {
			continue
		}
		if seq != uint64(r.leaderNext) {
			return fmt.Errorf("%s: leader applied proposal %d at index %d, want %d", r.c.Name(), seq, e.Index, r.leaderNext)
		}
		if r.measuring {
			r.latency[seq] = now - r.proposeAt[seq]
		}
		r.leaderNext++
	}
	return nil
}

// settle runs the loop until nothing happens.
func (r *Runner[M]) settle(what string) error {
	for i := 0; ; i++ {
		busy, err := r.iterate()
		if err != nil {
			return err
		}
		if !busy {
			return nil
		}
		if i > 10_000_000 {
			return fmt.Errorf("%s: %s: cluster never settles", r.c.Name(), what)
		}
	}
}

// Setup elects node 1 leader and waits until its first entry of the new
// term is committed and applied at the leader and the cluster is idle.
func (r *Runner[M]) Setup() error {
	if err := r.settle("bootstrap"); err != nil {
		return err
	}
	if err := r.c.Campaign(0); err != nil {
		return fmt.Errorf("%s: campaign: %w", r.c.Name(), err)
	}
	if err := r.settle("election"); err != nil {
		return err
	}
	if !r.c.IsLeader(0) {
		return fmt.Errorf("%s: node 1 did not become leader", r.c.Name())
	}
	if !r.setupCommit {
		return fmt.Errorf("%s: leader's first entry was not committed", r.c.Name())
	}
	return nil
}

// Prepare allocates everything the measurement needs (payload slab,
// latency arrays, queues) and runs a GC, so that nothing the harness
// allocates is charged to the implementation.
func (r *Runner[M]) Prepare() {
	n := r.opt.N
	r.slab = make([]byte, n*PayloadSize)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint64(r.slab[i*PayloadSize:], uint64(i))
		// Fill the rest so the payload is not all zeroes.
		for j := 8; j < PayloadSize; j++ {
			r.slab[i*PayloadSize+j] = byte(i + j)
		}
	}
	r.proposeAt = make([]int64, n)
	r.latency = make([]int64, n)
	// Enough room for a full window of messages per node and iteration,
	// so the queue does not grow during the measurement.
	if cap(r.queue) < 8*r.opt.W+64 {
		r.queue = make([]M, 0, 8*r.opt.W+64)
	}
	if cap(r.ents) < 2*r.opt.W+64 {
		r.ents = make([]Committed, 0, 2*r.opt.W+64)
	}
	if r.opt.Record {
		r.applied = make([][]uint64, r.size)
		for i := range r.applied {
			r.applied[i] = make([]uint64, 0, n)
			touch(r.applied[i][:n])
		}
	}
	// Touch every page now, so that first-touch page faults on the
	// harness's own memory are not charged to the measurement.
	touch(r.proposeAt)
	touch(r.latency)
	touch(r.queue[:cap(r.queue)])
	touch(r.ents[:cap(r.ents)])
	r.prepared = true
	runtime.GC()
}

// Measure makes N proposals at the leader, keeping W outstanding, until
// all are applied at the leader.
func (r *Runner[M]) Measure() (Result, error) {
	if !r.prepared {
		r.Prepare()
	}
	n, w := r.opt.N, r.opt.W
	r.iterations, r.messages, r.readys = 0, 0, 0
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0, flt0 := cpuTime()
	r.measuring = true
	r.base = time.Now()
	idle := 0
	for r.leaderNext < n {
		for r.proposed < n && r.proposed-r.leaderNext < w {
			seq := r.proposed
			data := r.slab[seq*PayloadSize : (seq+1)*PayloadSize : (seq+1)*PayloadSize]
			r.proposeAt[seq] = int64(time.Since(r.base))
			if err := r.c.Propose(0, data); err != nil {
				r.measuring = false
				return r.res, fmt.Errorf("%s: propose %d: %w", r.c.Name(), seq, err)
			}
			r.proposed++
		}
		r.iterations++
		if r.opt.TickEvery > 0 && r.iterations%r.opt.TickEvery == 0 {
			for i := 0; i < r.size; i++ {
				r.c.Tick(i)
			}
		}
		busy, err := r.iterate()
		if err != nil {
			r.measuring = false
			return r.res, err
		}
		if busy {
			idle = 0
		} else if idle++; idle > maxIdle {
			r.measuring = false
			return r.res, fmt.Errorf("%s: stuck after %d of %d proposals applied at the leader", r.c.Name(), r.leaderNext, n)
		}
	}
	elapsed := time.Since(r.base)
	cpu1, flt1 := cpuTime()
	cpu := cpu1 - cpu0
	r.measuring = false
	runtime.ReadMemStats(&after)

	res := Result{
		Impl:       r.c.Name(),
		N:          n,
		W:          w,
		Elapsed:    elapsed,
		Mallocs:    after.Mallocs - before.Mallocs,
		AllocBytes: after.TotalAlloc - before.TotalAlloc,
		NumGC:      after.NumGC - before.NumGC,
		CPU:        cpu,
		PageFaults: flt1 - flt0,
		Iterations: r.iterations,
		Messages:   r.messages,
		Readys:     r.readys,
	}
	if n > 0 {
		res.EntriesPerSec = float64(n) / elapsed.Seconds()
		res.AllocsPerEntry = float64(res.Mallocs) / float64(n)
		res.BytesPerEntry = float64(res.AllocBytes) / float64(n)
		lat := r.latency[:n]
		slices.Sort(lat)
		res.P50 = time.Duration(percentile(lat, 50))
		res.P99 = time.Duration(percentile(lat, 99))
		res.Max = time.Duration(lat[n-1])
	}
	r.res = res
	if r.opt.Record {
		r.res.Applied = r.applied
	}
	return r.res, nil
}

// Drain runs the loop (without ticks or proposals) until the cluster is
// idle, so that followers apply everything; it returns the Result of
// Measure with Applied complete.
func (r *Runner[M]) Drain() (Result, error) {
	if err := r.settle("drain"); err != nil {
		return r.res, err
	}
	if r.opt.Record {
		r.res.Applied = r.applied
	}
	return r.res, nil
}

// cpuTime returns the process's user+system CPU time and page faults so far.
func cpuTime() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), int64(ru.Minflt + ru.Majflt)
}

// touch writes the zero value to every element of s.
func touch[T any](s []T) {
	var zero T
	for i := range s {
		s[i] = zero
	}
}

// percentile returns the nearest-rank p-th percentile of sorted v.
func percentile(v []int64, p int) int64 {
	if len(v) == 0 {
		return 0
	}
	k := (len(v)*p + 99) / 100 // ceil(len*p/100)
	if k < 1 {
		k = 1
	}
	return v[k-1]
}

// Impls lists the implementation names New accepts.
var Impls = []string{"forge", "etcd"}

// New returns a Bench for the named implementation with a fresh 3-node
// cluster.
func New(impl string, opt Options) (Bench, error) {
	switch impl {
	case "etcd":
		c, err := NewEtcdCluster(3)
		if err != nil {
			return nil, err
		}
		return NewRunner(c, opt), nil
	case "forge":
		c, err := NewForgeCluster(3)
		if err != nil {
			return nil, err
		}
		return NewRunner(c, opt), nil
	}
	return nil, fmt.Errorf("unknown implementation %q", impl)
}

// ErrUnimplemented is returned by Run when the implementation panics with
// "unimplemented" (the forge core while it is being written).
var ErrUnimplemented = errors.New("implementation panics: unimplemented")

// Run builds a fresh cluster of impl, sets it up, measures, and drains.
// A panic "unimplemented" from the implementation becomes ErrUnimplemented.
func Run(impl string, opt Options) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			if s, ok := p.(string); ok && s == "unimplemented" {
				err = fmt.Errorf("%s: %w", impl, ErrUnimplemented)
				return
			}
			panic(p)
		}
	}()
	b, err := New(impl, opt)
	if err != nil {
		return res, err
	}
	if err := b.Setup(); err != nil {
		return res, err
	}
	b.Prepare()
	if _, err := b.Measure(); err != nil {
		return res, err
	}
	return b.Drain()
}
