package runner

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
)

// mesh connects runners in memory.
type mesh struct {
	mu sync.RWMutex
	rs map[uint64]*Runner
}

type meshTransport struct{ m *mesh }

func (t meshTransport) Send(msgs []core.Message) {
	t.m.mu.RLock()
	defer t.m.mu.RUnlock()
	for _, m := range msgs {
		if r := t.m.rs[m.To]; r != nil {
			r.Deliver(m)
		}
	}
}

// asyncStorage completes every write on a goroutine of its own, as a
// storage with a group-commit goroutine does.
type asyncStorage struct{ *node.MemoryStorage }

func (s asyncStorage) Save(u *node.Update, done func(error)) {
	s.MemoryStorage.Save(u, func(err error) { go done(err) })
}

func startCluster(t *testing.T) (*mesh, map[uint64]*Runner) {
	t.Helper()
	m := &mesh{rs: map[uint64]*Runner{}}
	for _, id := range []uint64{1, 2, 3} {
		r, err := Start(Config{
			Node: node.Config{
				Core:         core.Config{ID: id, Voters: []uint64{1, 2, 3}, Seed: id, PreVote: true, CheckQuorum: true},
				Storage:      asyncStorage{node.NewMemoryStorage()},
				Transport:    meshTransport{m},
				StateMachine: kv.New(kv.Config{}),
			},
			TickInterval: 5 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		m.rs[id] = r
		m.mu.Unlock()
		t.Cleanup(r.Stop)
	}
	return m, m.rs
}

// eventually polls cond until it holds; the limit only guards a hang.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func leaderOf(rs map[uint64]*Runner) *Runner {
	for _, r := range rs {
		if r.Status().Role == core.Leader {
			return r
		}
	}
	return nil
}

// TestWriteAndReadAcrossGoroutines: a cluster on real time and goroutines
// elects a leader, applies a write proposed on a follower, and answers a
// linearizable read on another node with it.
func TestWriteAndReadAcrossGoroutines(t *testing.T) {
	_, rs := startCluster(t)
	eventually(t, func() bool { return leaderOf(rs) != nil })
	l := leaderOf(rs)
	var follower *Runner
	for _, r := range rs {
		if r != l {
			follower = r
		}
	}
	ctx := context.Background()
	set := kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "k", Value: []byte("v1"), ClientID: 1, Seq: 1})
	var res any
	var err error
	eventually(t, func() bool {
		res, err = follower.Propose(ctx, set)
		return err == nil
	})
	if r := res.(kv.Result); r.Status != kv.StatusOK {
		t.Fatalf("set: %+v", r)
	}
	for _, r := range rs {
		got, err := r.Read(ctx, node.ReadLinearizable, kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: "k"}))
		if err != nil {
			t.Fatalf("read on %d: %v", r.ID(), err)
		}
		if v := got.(kv.Result); string(v.Value) != "v1" || !v.Found {
			t.Fatalf("read on %d: %+v", r.ID(), v)
		}
	}
}

// TestStop: Stop is idempotent, pending and later requests fail, the
// runner reports Done.
func TestStop(t *testing.T) {
	_, rs := startCluster(t)
	r := rs[1]
	r.Stop()
	r.Stop()
	<-r.Done()
	if _, err := r.Propose(context.Background(), []byte("x")); !errors.Is(err, ErrStopped) {
		t.Fatalf("propose after stop: %v", err)
	}
	if err := r.TransferLeadership(context.Background(), 2); !errors.Is(err, ErrStopped) {
		t.Fatalf("transfer after stop: %v", err)
	}
}

// TestContextCancel: a cancelled context returns at once with its error.
func TestContextCancel(t *testing.T) {
	_, rs := startCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := rs[1].Read(ctx, node.ReadLinearizable, kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: "k"}))
	if !errors.Is(err, context.Canceled) && err != nil {
		t.Fatalf("read with a cancelled context: %v", err)
	}
}

// TestInboxBound: messages beyond MaxInbox are dropped and counted, never
// blocking the sender.
func TestInboxBound(t *testing.T) {
	r, err := Start(Config{
		Node: node.Config{
			Core:    core.Config{ID: 1, Voters: []uint64{1, 2, 3}, Seed: 1},
			Storage: node.NewMemoryStorage(), Transport: meshTransport{&mesh{}}, StateMachine: kv.New(kv.Config{}),
		},
		TickInterval: time.Hour, MaxInbox: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	// Hold the loop goroutine busy, then deliver: four fit, six drop.
	started, release := make(chan struct{}), make(chan struct{})
	r.post(func() { close(started); <-release }, false)
	<-started
	for range 10 {
		r.Deliver(core.Message{Type: core.MsgHeartbeat, From: 2, To: 1, Term: 1})
	}
	close(release)
	if r.Dropped() != 6 {
		t.Fatalf("dropped %d, want 6", r.Dropped())
	}
}

// TestSubmitBatch: one Submit proposes a batch; every future's OnResolve
// callback runs with the state machine's result; a stopped runner refuses.
func TestSubmitBatch(t *testing.T) {
	_, rs := startCluster(t)
	eventually(t, func() bool { return leaderOf(rs) != nil })
	l := leaderOf(rs)
	const n = 50
	results := make(chan error, n)
	err := l.Submit(func(nd *node.Node) {
		for i := range n {
			cmd := kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "k", Value: []byte{byte(i)}, ClientID: uint64(i + 1), Seq: 1})
			nd.Propose(cmd).OnResolve(func(f *node.Future) {
				res, err := f.Result()
				if err == nil && res.(kv.Result).Status != kv.StatusOK {
					err = errors.New(res.(kv.Result).Status.String())
				}
				results <- err
			})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-results; err != nil {
			t.Fatalf("batched proposal: %v", err)
		}
	}
	l.Stop()
	if err := l.Submit(func(*node.Node) { t.Error("ran on a stopped runner") }); !errors.Is(err, ErrStopped) {
		t.Fatalf("Submit after Stop: %v", err)
	}
}
