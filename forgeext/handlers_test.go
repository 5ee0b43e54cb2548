package forgeext_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/forgeext"
)

// counter is a user's replicated state: a number that "add" commands
// change and that never goes below zero.
type counter struct {
	mu       sync.Mutex
	n        int64
	restores int
}

func (c *counter) Apply(_ uint64, cmd forgeext.Command) (any, error) {
	var d int64
	if err := cmd.Decode(&d); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n+d < 0 {
		return c.n, errors.New("counter would go below zero")
	}
	c.n += d
	return c.n, nil
}

func (c *counter) Snapshot() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.AppendVarint(nil, c.n), nil
}

func (c *counter) Restore(data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.restores++
	c.n = 0
	if len(data) > 0 {
		v, k := binary.Varint(data)
		if k <= 0 {
			return errors.New("bad counter snapshot")
		}
		c.n = v
	}
	return nil
}

func (c *counter) value() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func add(d int) forgeext.Command {
	return forgeext.Command{Type: "add", Payload: []byte(strconv.Itoa(d))}
}

func TestUserHandlersAreReplicated(t *testing.T) {
	nodes := newNodes(t, 3)
	counters := make([]*counter, 3)
	for i, n := range nodes {
		counters[i] = &counter{}
		n.beforeStart = func(s *forgeext.Service) error { return s.RegisterHandler("counter", counters[i], "add") }
		n.start(t)
		t.Cleanup(func() { n.stop(t) })
	}
	svcs := []*forgeext.Service{nodes[0].svc, nodes[1].svc, nodes[2].svc}
	l := leader(t, svcs)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := svcs[l].RegisterHandler("late", &counter{}, "late"); err == nil {
		t.Fatal("a handler registered after start")
	}
	for i := range 5 {
		res, err := svcs[l].ApplyResult(ctx, add(i+1))
		if err != nil || res.Output != int64((i+1)*(i+2)/2) {
			t.Fatalf("add %d: %+v, %v", i+1, res, err)
		}
	}
	// A command the handler refuses is committed with the same outcome
	// everywhere: an error, and no change.
	if res, err := svcs[l].ApplyResult(ctx, add(-100)); !errors.Is(err, forgeext.ErrCommandFailed) || res.Output != int64(15) {
		t.Fatalf("add -100: %+v, %v; want ErrCommandFailed with the value 15", res, err)
	}
	if _, err := svcs[l].ApplyResult(ctx, forgeext.Command{Type: "multiply", Payload: []byte("2")}); !errors.Is(err, forgeext.ErrInvalidCommand) {
		t.Fatalf("unregistered type: %v", err)
	}
	for i, s := range svcs {
		if err := s.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if v := counters[i].value(); v != 15 {
			t.Fatalf("node %d: counter %d, want 15", i+1, v)
		}
	}

	// A node restarted from its snapshot and log gets its state back.
	r := (l + 1) % 3
	if err := svcs[r].Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := svcs[l].ApplyResult(ctx, add(5)); err != nil {
		t.Fatal(err)
	}
	nodes[r].stop(t)
	fresh := &counter{}
	nodes[r].beforeStart = func(s *forgeext.Service) error { return s.RegisterHandler("counter", fresh, "add") }
	nodes[r].start(t)
	poll(t, "the restarted node has the counter back", func() bool {
		return nodes[r].svc.ReadBarrier(ctx) == nil && fresh.value() == 20
	})
	if fresh.restores == 0 {
		t.Fatal("the restarted node did not restore its handler from the snapshot")
	}
}
