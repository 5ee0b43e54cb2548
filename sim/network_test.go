package sim

import (
	"bytes"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

type delivery struct {
	at Time
	m  core.Message
}

type netFixture struct {
	n    *Network
	s    *Scheduler
	tr   *Trace
	got  []delivery
	rng  *Rand
	opts NetworkOptions
}

func newNetFixture(t testing.TB, o NetworkOptions, seed uint64) *netFixture {
	t.Helper()
	f := &netFixture{s: &Scheduler{}, tr: NewTrace(TraceOptions{}), rng: NewRand(seed, "network"), opts: o}
	f.n = NewNetwork(o, f.rng, f.s, f.tr, func(m core.Message) {
		f.got = append(f.got, delivery{at: f.s.Now(), m: m})
	})
	return f
}

// run runs every scheduled event, leaving the clock at the last one.
func (f *netFixture) run() {
	for f.s.Step(math.MaxInt64) {
	}
}

// heartbeats returns k heartbeats from→to with Index 1..k.
func heartbeats(from, to uint64, k int) []core.Message {
	ms := make([]core.Message, k)
	for i := range ms {
		ms[i] = core.Message{Type: core.MsgHeartbeat, From: from, To: to, Term: 1, Index: uint64(i + 1)}
	}
	return ms
}

func indexes(ds []delivery) []uint64 {
	var out []uint64
	for _, d := range ds {
		out = append(out, d.m.Index)
	}
	return out
}

func TestNetworkDelay(t *testing.T) {
	o := NetworkOptions{DelayMin: 5 * Millisecond, DelayMean: 3 * Millisecond}
	f := newNetFixture(t, o, 1)
	const k = 50 // below the default cap of 64
	f.n.Send(heartbeats(1, 2, k))
	if len(f.got) != 0 {
		t.Fatalf("%d messages delivered during Send", len(f.got))
	}
	f.run()
	if len(f.got) != k {
		t.Fatalf("delivered %d of %d", len(f.got), k)
	}
	var above bool
	for _, d := range f.got {
		if d.at < o.DelayMin {
			t.Fatalf("message %d delivered at %d, before DelayMin %d", d.m.Index, d.at, o.DelayMin)
		}
		above = above || d.at > o.DelayMin
	}
	if !above {
		t.Fatal("every delay equals DelayMin: the exponential part is missing")
	}
	if ix := indexes(f.got); slices.IsSorted(ix) {
		t.Fatalf("%d messages with independent delays arrived in send order: no reordering", k)
	}
	c := f.n.Counters()
	if c.Sent != k || c.Delivered != k || c.Dropped+c.Overflow+c.BlockedDrops+c.Duplicated != 0 {
		t.Fatalf("counters %+v", c)
	}
	if got := f.n.InFlight(1, 2); got != 0 {
		t.Fatalf("InFlight after drain = %d", got)
	}
}

func TestNetworkDropAll(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond, DropRate: 1}, 2)
	f.n.Send(heartbeats(1, 2, 20))
	f.run()
	if len(f.got) != 0 {
		t.Fatalf("DropRate 1 delivered %d messages", len(f.got))
	}
	if c := f.n.Counters(); c.Dropped != 20 || c.Sent != 20 {
		t.Fatalf("counters %+v", c)
	}
}

func TestNetworkDropSome(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond, DropRate: 0.5}, 3)
	for range 20 {
		f.n.Send(heartbeats(1, 2, 10))
		f.run()
	}
	c := f.n.Counters()
	if c.Dropped < 50 || c.Dropped > 150 || c.Delivered+c.Dropped != 200 {
		t.Fatalf("DropRate 0.5 of 200: counters %+v", c)
	}
}

func TestNetworkDuplicateAll(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMin: Millisecond, DelayMean: 2 * Millisecond, DupRate: 1, QueueCap: 100}, 4)
	const k = 30
	f.n.Send(heartbeats(1, 2, k))
	f.run()
	if len(f.got) != 2*k {
		t.Fatalf("DupRate 1: delivered %d, want %d", len(f.got), 2*k)
	}
	seen := map[uint64]int{}
	for _, d := range f.got {
		seen[d.m.Index]++
	}
	for i := uint64(1); i <= k; i++ {
		if seen[i] != 2 {
			t.Fatalf("message %d delivered %d times, want 2", i, seen[i])
		}
	}
	if c := f.n.Counters(); c.Duplicated != k || c.Delivered != 2*k {
		t.Fatalf("counters %+v", c)
	}
}

func TestNetworkDuplicateRespectsCap(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond, DupRate: 1, QueueCap: 5}, 5)
	f.n.Send(heartbeats(1, 2, 10))
	if got := f.n.InFlight(1, 2); got != 5 {
		t.Fatalf("in flight %d, want the cap 5", got)
	}
	f.run()
	if c := f.n.Counters(); c.Delivered != 5 || c.Duplicated != 2 || c.Overflow != 7 {
		t.Fatalf("counters %+v, want 3 originals + 2 duplicates delivered, 7 overflows", c)
	}
}

func TestNetworkQueueCapOverflow(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond, QueueCap: 3}, 6)
	f.n.Send(heartbeats(1, 2, 10))
	f.n.Send(heartbeats(2, 1, 2)) // another link has its own queue
	f.run()
	if c := f.n.Counters(); c.Delivered != 5 || c.Overflow != 7 {
		t.Fatalf("counters %+v, want 5 delivered and 7 overflows", c)
	}
	var from1 []uint64
	for _, d := range f.got {
		if d.m.From == 1 {
			from1 = append(from1, d.m.Index)
		}
	}
	slices.Sort(from1)
	if !slices.Equal(from1, []uint64{1, 2, 3}) {
		t.Fatalf("delivered %v from 1, want the first three", from1)
	}
	// The queue drained: the link takes messages again.
	f.got = nil
	f.n.Send(heartbeats(1, 2, 3))
	f.run()
	if len(f.got) != 3 {
		t.Fatalf("after draining, delivered %d of 3", len(f.got))
	}
}

func TestNetworkQueueCapDefault(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond}, 7)
	if got := f.n.Options().QueueCap; got != defaultQueueCap {
		t.Fatalf("QueueCap 0 resolved to %d", got)
	}
	f.n.Send(heartbeats(1, 2, defaultQueueCap+1))
	if c := f.n.Counters(); c.Overflow != 1 {
		t.Fatalf("counters %+v, want one overflow", c)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("negative QueueCap did not panic")
		}
	}()
	newNetFixture(t, NetworkOptions{QueueCap: -1}, 1)
}

func TestNetworkBlocked(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMin: 10 * Millisecond, DelayMean: Millisecond}, 8)
	if f.n.Blocked(1, 2) {
		t.Fatal("fresh link blocked")
	}
	f.n.SetBlocked(1, 2, true)
	if !f.n.Blocked(1, 2) || f.n.Blocked(2, 1) {
		t.Fatal("SetBlocked is not one-way")
	}
	f.n.Send(heartbeats(1, 2, 3))
	f.n.Send(heartbeats(2, 1, 1)) // the reverse direction still works
	if c := f.n.Counters(); c.BlockedDrops != 3 {
		t.Fatalf("blocked at send: counters %+v", c)
	}
	f.run()
	if len(f.got) != 1 || f.got[0].m.From != 2 {
		t.Fatalf("delivered %+v, want only the 2→1 message", f.got)
	}

	// Blocked after send: dropped on arrival.
	f.got = nil
	f.n.SetBlocked(1, 2, false)
	f.n.Send(heartbeats(1, 2, 4))
	f.s.RunUntil(f.s.Now()+Millisecond, nil)
	f.n.SetBlocked(1, 2, true)
	f.run()
	if len(f.got) != 0 {
		t.Fatalf("messages in flight when the link was cut were delivered: %+v", f.got)
	}
	if c := f.n.Counters(); c.BlockedDrops != 7 {
		t.Fatalf("blocked at delivery: counters %+v", c)
	}

	// Unblocked before arrival: delivered.
	f.n.SetBlocked(1, 2, false)
	f.n.Send(heartbeats(1, 2, 2))
	f.n.SetBlocked(1, 2, true)
	f.n.SetBlocked(1, 2, false)
	f.run()
	if len(f.got) != 2 {
		t.Fatalf("delivered %d of 2 after unblocking", len(f.got))
	}
}

func TestNetworkClog(t *testing.T) {
	o := NetworkOptions{DelayMin: 2 * Millisecond, DelayMean: 5 * Millisecond, QueueCap: 100}
	f := newNetFixture(t, o, 9)
	until := 100 * Millisecond
	f.n.Send(heartbeats(1, 2, 5)[:3]) // in flight before the clog
	f.n.Clog(1, 2, until)
	if !f.n.Clogged(1, 2) || f.n.Clogged(2, 1) {
		t.Fatal("Clog is not one-way")
	}
	f.n.Send(heartbeats(1, 2, 5)[3:]) // sent during the clog
	f.n.Send(heartbeats(2, 1, 1))     // other direction flows
	f.s.RunUntil(until-1, nil)
	if len(f.got) != 1 || f.got[0].m.From != 2 {
		t.Fatalf("during the clog delivered %+v, want only the 2→1 message", f.got)
	}
	if got := f.n.InFlight(1, 2); got != 5 {
		t.Fatalf("held %d, want 5", got)
	}
	f.got = nil
	f.run()
	if ix := indexes(f.got); !slices.Equal(ix, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("released %v, want send order 1..5", ix)
	}
	for _, d := range f.got {
		if d.at < until+o.DelayMin {
			t.Fatalf("message %d delivered at %d, before the clog end %d plus DelayMin", d.m.Index, d.at, until)
		}
	}
	if c := f.n.Counters(); c.Delivered != 6 || c.Dropped+c.Overflow+c.BlockedDrops != 0 {
		t.Fatalf("counters %+v", c)
	}
}

func TestNetworkClogExtendAndHeal(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond}, 10)
	f.n.Clog(1, 2, 50*Millisecond)
	f.n.Clog(1, 2, 200*Millisecond) // replaces the first end
	f.n.SetBlocked(3, 1, true)
	f.n.Send(heartbeats(1, 2, 2))
	f.s.RunUntil(100*Millisecond, nil)
	if len(f.got) != 0 {
		t.Fatalf("superseded clog end released %+v", f.got)
	}
	f.n.HealAll()
	if f.n.Clogged(1, 2) || f.n.Blocked(3, 1) {
		t.Fatal("HealAll left a link clogged or blocked")
	}
	f.run()
	if ix := indexes(f.got); !slices.Equal(ix, []uint64{1, 2}) {
		t.Fatalf("after HealAll delivered %v", ix)
	}
	if f.got[0].at > 150*Millisecond {
		t.Fatalf("HealAll did not release at once: delivered at %d", f.got[0].at)
	}
	f.n.Send(heartbeats(3, 1, 1))
	f.run()
	if len(f.got) != 3 {
		t.Fatal("HealAll did not unblock 3→1")
	}
}

func TestNetworkEncode(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond, Encode: true}, 11)
	m := core.Message{
		Type: core.MsgApp, From: 1, To: 2, Term: 3, LogTerm: 2, Index: 4, Commit: 4,
		Entries: []core.Entry{
			{Term: 3, Index: 5, Data: []byte("five")},
			{Term: 3, Index: 6, Type: core.EntryNormal, Data: []byte("six")},
		},
	}
	sent := m
	sent.Entries = slices.Clone(m.Entries)
	f.n.Send([]core.Message{sent})
	f.run()
	if len(f.got) != 1 {
		t.Fatalf("delivered %d", len(f.got))
	}
	got := f.got[0].m
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	if &got.Entries[0] == &sent.Entries[0] || &got.Entries[0].Data[0] == &sent.Entries[0].Data[0] {
		t.Fatal("Encode delivered the sender's memory, not a decoded copy")
	}
	if !bytes.Equal(got.Entries[1].Data, []byte("six")) {
		t.Fatal("data lost")
	}
}

func TestNetworkEncodePanicsOnBadMessage(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{Encode: true}, 12)
	defer func() {
		if recover() == nil {
			t.Fatal("an undecodable message did not panic")
		}
	}()
	// From == To fails validation on decode.
	f.n.Send([]core.Message{{Type: core.MsgHeartbeat, From: 1, To: 1, Term: 1}})
}

func TestNetworkLargeIDs(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond}, 13)
	f.n.SetBlocked(100, 1, true)
	f.n.Send(heartbeats(100, 1, 1))
	f.n.Send(heartbeats(1, 100, 1))
	f.run()
	if len(f.got) != 1 || f.got[0].m.To != 100 || !f.n.Blocked(100, 1) {
		t.Fatalf("large IDs: delivered %+v", f.got)
	}
	f.n.HealAll()
	if f.n.Blocked(100, 1) {
		t.Fatal("HealAll missed a link with a large ID")
	}
}

// netWorkload drives a network with every fault on and returns its trace
// hash and counters.
func netWorkload(seed uint64) (uint64, NetworkCounters) {
	o := NetworkOptions{DelayMin: Millisecond, DelayMean: 20 * Millisecond, DropRate: 0.1, DupRate: 0.3, QueueCap: 4, Encode: seed%2 == 0}
	s := &Scheduler{}
	tr := NewTrace(TraceOptions{})
	root := NewRand(seed, "root")
	n := NewNetwork(o, root.Split("network"), s, tr, func(core.Message) {})
	w := root.Split("workload")
	var msgs []core.Message
	for step := range 400 {
		msgs = msgs[:0]
		for range w.Intn(4) {
			from := uint64(w.Range(1, 5))
			to := uint64(w.Range(1, 4))
			if to >= from {
				to++
			}
			msgs = append(msgs, core.Message{Type: core.MsgHeartbeat, From: from, To: to, Term: 1, Index: uint64(step)})
		}
		n.Send(msgs)
		switch w.Intn(40) {
		case 0:
			n.SetBlocked(uint64(w.Range(1, 5)), uint64(w.Range(1, 5)), w.Chance(0.5))
		case 1:
			n.Clog(uint64(w.Range(1, 5)), uint64(w.Range(1, 5)), s.Now()+w.Range(0, 50*Millisecond))
		case 2:
			n.HealAll()
		}
		s.RunUntil(s.Now()+Millisecond, nil)
	}
	s.RunUntil(s.Now()+Second, nil)
	return tr.Hash(), n.Counters()
}

func TestNetworkDeterminism(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		h1, c1 := netWorkload(seed)
		h2, c2 := netWorkload(seed)
		if h1 != h2 || c1 != c2 {
			t.Fatalf("seed %d: two runs differ: %x %+v vs %x %+v", seed, h1, c1, h2, c2)
		}
		h3, _ := netWorkload(seed + 100)
		if h1 == h3 {
			t.Fatalf("seeds %d and %d give the same trace hash", seed, seed+100)
		}
		if c1.Delivered == 0 || c1.Dropped == 0 || c1.Duplicated == 0 || c1.Overflow == 0 || c1.BlockedDrops == 0 {
			t.Fatalf("seed %d: workload missed a fault class: %+v", seed, c1)
		}
	}
}

func BenchmarkNetworkSend(b *testing.B) {
	s := &Scheduler{}
	var delivered int
	n := NewNetwork(NetworkOptions{DelayMin: Millisecond, DelayMean: 5 * Millisecond, DropRate: 0.05, DupRate: 0.05},
		NewRand(1, "network"), s, NewTrace(TraceOptions{}), func(core.Message) { delivered++ })
	msgs := []core.Message{{Type: core.MsgApp, From: 1, To: 2, Term: 1, Index: 7, Entries: []core.Entry{{Term: 1, Index: 8}}}}
	b.ReportAllocs()
	for b.Loop() {
		n.Send(msgs)
		for s.Step(math.MaxInt64) {
		}
	}
	if delivered == 0 {
		b.Fatal("nothing delivered")
	}
}

func TestNetworkSetFaults(t *testing.T) {
	f := newNetFixture(t, NetworkOptions{DelayMean: Millisecond, DropRate: 1, DupRate: 1}, 14)
	f.n.SetFaults(false)
	f.n.Send(heartbeats(1, 2, 5))
	f.run()
	if len(f.got) != 5 {
		t.Fatalf("faults off: delivered %d of 5 exactly once", len(f.got))
	}
	f.n.SetFaults(true)
	f.n.Send(heartbeats(1, 2, 5))
	f.run()
	if c := f.n.Counters(); c.Dropped != 5 || c.Delivered != 5 {
		t.Fatalf("faults back on: counters %+v", c)
	}
	if o := f.n.Options(); o.DropRate != 1 {
		t.Fatalf("Options after SetFaults: %+v", o)
	}
}
