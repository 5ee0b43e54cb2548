// Package runner runs a node.Node in production: on its own goroutine,
// ticked by a real clock, fed by a network transport and by callers on
// other goroutines, with storage that may complete writes on goroutines of
// its own. It adds no protocol logic: everything the simulator proves about
// node.Node holds here, because every event still reaches the node on one
// goroutine, in one order.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// ErrStopped is returned by calls on a stopped runner.
var ErrStopped = errors.New("runner: stopped")

// Config configures a Runner.
type Config struct {
	// Node is the node's configuration. Its Storage may call done from any
	// goroutine; its Transport's Send is called from the runner's goroutine.
	Node node.Config
	// TickInterval is the real time of one logical tick (0: 100 ms).
	TickInterval time.Duration
	// MaxInbox bounds the messages waiting for the node; more are dropped
	// (the protocol retries) and counted (0: 16384).
	MaxInbox int
	// Logger receives start, stop and failures (optional).
	Logger *slog.Logger
}

// Runner owns a node and the goroutine that drives it.
type Runner struct {
	cfg  Config
	n    *node.Node
	log  *slog.Logger
	id   uint64
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	queue   []func() // work for the loop, in arrival order
	inbox   int      // messages among queue
	wake    chan struct{}
	stopped bool

	status  atomic.Pointer[core.BasicStatus]
	alarms  atomic.Pointer[[]node.Alarm]
	alarmGn uint64 // the node's alarms generation last published (loop only)
	dropped atomic.Uint64
}

// Start loads the node from its storage and starts driving it.
func Start(cfg Config) (*Runner, error) {
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.MaxInbox <= 0 {
		cfg.MaxInbox = 16384
	}
	r := &Runner{
		cfg: cfg, id: cfg.Node.Core.ID, log: cfg.Logger,
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Node.Storage == nil {
		return nil, fmt.Errorf("runner: node %d: %w: no Storage", r.id, core.ErrInvalidConfig)
	}
	nc := cfg.Node
	nc.Storage = &storage{r: r, inner: cfg.Node.Storage}
	if ss, ok := cfg.Node.Storage.(node.SnapshotStore); ok {
		// The node streams its snapshots to a storage that takes them.
		nc.Storage = snapshotStorage{nc.Storage.(*storage), ss}
	}
	if nc.Logger == nil {
		nc.Logger = cfg.Logger
	}
	n, err := node.New(nc)
	if err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	r.n = n
	r.publish()
	go r.loop()
	r.log.Info("node started", "node", r.id, "tick", cfg.TickInterval)
	return r, nil
}

// storage hands the node's write completions back to the loop goroutine.
type storage struct {
	r     *Runner
	inner node.Storage
}

func (s *storage) Load() (core.Persisted, error) { return s.inner.Load() }

func (s *storage) Save(u *node.Update, done func(error)) {
	s.inner.Save(u, func(err error) { s.r.post(func() { done(err) }, false) })
}

// snapshotStorage is the storage wrapper of a node.SnapshotStore; its
// methods are called on the loop goroutine and answer at once.
type snapshotStorage struct {
	*storage
	snaps node.SnapshotStore
}

func (s snapshotStorage) CreateSnapshot() (node.SnapshotFile, error) { return s.snaps.CreateSnapshot() }

func (s snapshotStorage) SnapshotData(meta core.SnapshotMeta) ([]byte, error) {
	return s.snaps.SnapshotData(meta)
}

// post queues fn for the loop. Messages beyond MaxInbox are dropped.
func (r *Runner) post(fn func(), message bool) bool {
	r.mu.Lock()
	if r.stopped || (message && r.inbox >= r.cfg.MaxInbox) {
		r.mu.Unlock()
		if message {
			r.dropped.Add(1)
		}
		return false
	}
	r.queue = append(r.queue, fn)
	if message {
		r.inbox++
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

func (r *Runner) loop() {
	defer close(r.done)
	ticker := time.NewTicker(r.cfg.TickInterval)
	defer ticker.Stop()
	var batch []func()
	for {
		select {
		case <-r.stop:
			r.n.Stop()
			r.publish()
			return
		case <-ticker.C:
			r.n.Tick()
		case <-r.wake:
		}
		r.mu.Lock()
		batch, r.queue = r.queue, batch[:0]
		r.inbox = 0
		r.mu.Unlock()
		for i, fn := range batch {
			fn()
			batch[i] = nil
		}
		r.publish()
		if err := r.n.Stopped(); err != nil && !errors.Is(err, node.ErrStopped) {
			r.log.Error("node failed; runner stops", "node", r.id, "err", err)
			r.markStopped()
			r.publish()
			return
		}
	}
}

func (r *Runner) publish() {
	st := r.n.Status()
	r.status.Store(&st)
	if g := r.n.AlarmsGeneration(); g != r.alarmGn || r.alarms.Load() == nil {
		r.alarmGn = g
		a := r.n.Alarms()
		r.alarms.Store(&a)
	}
}

func (r *Runner) markStopped() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

// Stop stops the node (pending requests fail with node.ErrStopped) and
// waits for the loop to end. It is idempotent.
func (r *Runner) Stop() {
	r.mu.Lock()
	first := !r.stopped
	r.stopped = true
	r.mu.Unlock()
	if first {
		close(r.stop)
	}
	<-r.done
}

// Done is closed when the runner has stopped (by Stop or a node failure).
func (r *Runner) Done() <-chan struct{} { return r.done }

// Err returns why the node stopped, or nil while it runs.
func (r *Runner) Err() error {
	select {
	case <-r.done:
		return r.n.Stopped()
	default:
		return nil
	}
}

// ID returns the node's ID.
func (r *Runner) ID() uint64 { return r.id }

// Status returns the node's status as of its last event.
func (r *Runner) Status() core.BasicStatus { return *r.status.Load() }

// Alarms returns the node's divergence alarms as of its last event (see
// node.Node.Alarms): the replicas known to have diverged, this one
// included, and not repaired since.
func (r *Runner) Alarms() []node.Alarm {
	if a := r.alarms.Load(); a != nil {
		return *a
	}
	return nil
}

// Dropped returns how many inbound messages were dropped for a full inbox.
func (r *Runner) Dropped() uint64 { return r.dropped.Load() }

// Deliver hands a message from the network to the node. It never blocks;
// a message that finds the inbox full is dropped.
func (r *Runner) Deliver(m core.Message) {
	r.post(func() { _ = r.n.Receive(m) }, true)
}

// Do runs fn on the node's goroutine and waits for it: for inspection and
// requests this package does not wrap. fn must not block.
func (r *Runner) Do(ctx context.Context, fn func(n *node.Node)) error {
	ran := make(chan struct{})
	if !r.post(func() { fn(r.n); close(ran) }, false) {
		return ErrStopped
	}
	select {
	case <-ran:
		return nil
	case <-r.done:
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("runner: %w", ctx.Err())
	}
}

// Submit queues fn to run on the node's goroutine and returns at once: for
// callers that batch requests and take their answers through
// node.Future.OnResolve (whose callbacks also run on that goroutine). fn
// and those callbacks must not block. It returns ErrStopped if the runner
// has stopped, in which case fn never runs.
func (r *Runner) Submit(fn func(n *node.Node)) error {
	if !r.post(func() { fn(r.n) }, false) {
		return ErrStopped
	}
	return nil
}

// await runs start on the node's goroutine and waits for the future it
// returns. A cancelled context leaves the request's outcome unknown.
func (r *Runner) await(ctx context.Context, start func(n *node.Node) *node.Future) (any, error) {
	ch := make(chan *node.Future, 1)
	if !r.post(func() {
		f := start(r.n)
		f.Done() // create the channel on the loop goroutine
		ch <- f
	}, false) {
		return nil, ErrStopped
	}
	var f *node.Future
	select {
	case f = <-ch:
	case <-r.done:
		return nil, ErrStopped
	case <-ctx.Done():
		return nil, fmt.Errorf("runner: %w", ctx.Err())
	}
	select {
	case <-f.Done():
		return f.Result()
	case <-ctx.Done():
		return nil, fmt.Errorf("runner: %w", ctx.Err())
	}
}

// Propose proposes cmd and waits until it is applied here (its result) or
// fails (see node.Node.Propose for the errors).
func (r *Runner) Propose(ctx context.Context, cmd []byte) (any, error) {
	return r.await(ctx, func(n *node.Node) *node.Future { return n.Propose(cmd) })
}

// Read answers query at the given level (see node.Node.Read).
func (r *Runner) Read(ctx context.Context, level node.ReadLevel, query []byte) (any, error) {
	return r.await(ctx, func(n *node.Node) *node.Future { return n.Read(level, query) })
}

// ProposeConfChange proposes a membership change and returns the index at
// which it was applied here.
func (r *Runner) ProposeConfChange(ctx context.Context, cc core.ConfChange) (uint64, error) {
	res, err := r.await(ctx, func(n *node.Node) *node.Future { return n.ProposeConfChange(cc) })
	if err != nil {
		return 0, err
	}
	return res.(uint64), nil
}

// TransferLeadership asks the leader to hand over to the voter to.
func (r *Runner) TransferLeadership(ctx context.Context, to uint64) error {
	var err error
	if e := r.Do(ctx, func(n *node.Node) { err = n.TransferLeadership(to) }); e != nil {
		return e
	}
	return err
}

// StepDown asks the leader to hand leadership to its most up-to-date voter.
func (r *Runner) StepDown(ctx context.Context) error {
	var err error
	if e := r.Do(ctx, func(n *node.Node) { err = n.StepDown() }); e != nil {
		return e
	}
	return err
}

// TakeSnapshot snapshots the state machine now and returns the snapshot's
// index once it is durable (see node.Node.TakeSnapshot).
func (r *Runner) TakeSnapshot(ctx context.Context) (uint64, error) {
	res, err := r.await(ctx, func(n *node.Node) *node.Future { return n.TakeSnapshot() })
	if err != nil {
		return 0, err
	}
	return res.(uint64), nil
}

// CoreStatus returns the core's full status (configuration and, on a
// leader, every peer's progress), read on the node's goroutine.
func (r *Runner) CoreStatus(ctx context.Context) (core.Status, error) {
	var st core.Status
	if err := r.Do(ctx, func(n *node.Node) {
		st = n.Core().Status()
		st.Applied = n.Applied()
	}); err != nil {
		return core.Status{}, err
	}
	return st, nil
}
