package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// runOrSkip runs impl and skips the test if the implementation still
// panics with "unimplemented".
func runOrSkip(t *testing.T, impl string, opt Options) Result {
	t.Helper()
	res, err := Run(impl, opt)
	if errors.Is(err, ErrUnimplemented) {
		t.Skipf("%s: %v", impl, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestHonest checks that, for both implementations, every proposal is
// applied exactly once and in order at the leader, and that every node
// applies the same sequence.
func TestHonest(t *testing.T) {
	const n = 2000
	for _, impl := range Impls {
		for _, w := range []int{1, 7, 1000, 5000} {
			for _, tick := range []int{0, 3} {
				t.Run(fmt.Sprintf("%s/W=%d/tick=%d", impl, w, tick), func(t *testing.T) {
					res := runOrSkip(t, impl, Options{N: n, W: w, TickEvery: tick, Record: true})
					if res.N != n || res.Impl != impl {
						t.Fatalf("result for %s N=%d, want %s N=%d", res.Impl, res.N, impl, n)
					}
					if len(res.Applied) != 3 {
						t.Fatalf("applied recorded for %d nodes, want 3", len(res.Applied))
					}
					for node, seqs := range res.Applied {
						if len(seqs) != n {
							t.Fatalf("node %d applied %d proposals, want %d", node+1, len(seqs), n)
						}
						for i, s := range seqs {
							if s != uint64(i) {
								t.Fatalf("node %d applied proposal %d as its %dth, want %d", node+1, s, i, i)
							}
						}
					}
					if res.EntriesPerSec <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
						t.Fatalf("implausible metrics: %+v", res)
					}
				})
			}
		}
	}
}

// nullCluster is a one-node "implementation" that commits every proposal
// in the next Ready and allocates nothing; it measures the harness itself.
type nullCluster struct {
	pending  []Committed
	ready    []Committed
	index    uint64
	leader   bool
	hasReady bool
}

type nullMsg struct{ to int }

func (c *nullCluster) Name() string { return "null" }
func (c *nullCluster) Size() int    { return 1 }
func (c *nullCluster) Campaign(int) error {
	c.leader = true
	c.index++
	c.pending = append(c.pending, Committed{Index: c.index}) // empty entry of the new term
	return nil
}
func (c *nullCluster) IsLeader(int) bool { return c.leader }
func (c *nullCluster) Propose(_ int, data []byte) error {
	c.index++
	c.pending = append(c.pending, Committed{Index: c.index, Data: data})
	return nil
}
func (c *nullCluster) Ready(_ int, msgs []nullMsg, ents []Committed) ([]nullMsg, []Committed, bool) {
	if len(c.pending) == 0 {
		return msgs, ents, false
	}
	ents = append(ents, c.pending...)
	c.pending = c.pending[:0]
	// One message to self per Ready, to exercise the queue.
	msgs = append(msgs, nullMsg{to: 0})
	return msgs, ents, true
}
func (c *nullCluster) Advance(int)              {}
func (c *nullCluster) Target(m *nullMsg) int    { return m.to }
func (c *nullCluster) Step(int, *nullMsg) error { return nil }
func (c *nullCluster) Tick(int)                 {}

// TestHarnessAllocatesNothing checks that the measured loop of the harness
// itself makes no per-entry allocations.
func TestHarnessAllocatesNothing(t *testing.T) {
	for _, w := range []int{1, 1000} {
		c := &nullCluster{pending: make([]Committed, 0, 2*w+2)}
		r := NewRunner[nullMsg](c, Options{N: 100_000, W: w, Record: true})
		if err := r.Setup(); err != nil {
			t.Fatal(err)
		}
		r.Prepare()
		res, err := r.Measure()
		if err != nil {
			t.Fatal(err)
		}
		// A GC cycle or the runtime may allocate a few objects of its own.
		if res.Mallocs > 50 {
			t.Errorf("W=%d: harness made %d allocations for %d entries", w, res.Mallocs, res.N)
		}
		for i, s := range res.Applied[0] {
			if s != uint64(i) {
				t.Fatalf("W=%d: applied %d at position %d", w, s, i)
			}
		}
		t.Logf("W=%d: harness alone: %.0f entries/s, %d mallocs, p50 %v", w, res.EntriesPerSec, res.Mallocs, res.P50)
	}
}

// TestPayload checks the payload layout the latency tracking relies on.
func TestPayload(t *testing.T) {
	c := &nullCluster{}
	r := NewRunner[nullMsg](c, Options{N: 10, W: 1})
	r.Prepare()
	for i := 0; i < 10; i++ {
		p := r.slab[i*PayloadSize : (i+1)*PayloadSize]
		if got := binary.LittleEndian.Uint64(p); got != uint64(i) {
			t.Fatalf("payload %d carries sequence %d", i, got)
		}
	}
}

// TestPercentile checks the nearest-rank percentile.
func TestPercentile(t *testing.T) {
	v := make([]int64, 100)
	for i := range v {
		v[i] = int64(i + 1)
	}
	if p := percentile(v, 50); p != 50 {
		t.Errorf("p50 = %d, want 50", p)
	}
	if p := percentile(v, 99); p != 99 {
		t.Errorf("p99 = %d, want 99", p)
	}
	if p := percentile(v[:1], 99); p != 1 {
		t.Errorf("p99 of one = %d, want 1", p)
	}
}
