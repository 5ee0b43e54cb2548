package sim

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

type diskFixture struct {
	d *Disk
	s *Scheduler
	h node.Storage
}

func newDiskFixture(t testing.TB, o DiskOptions, seed uint64) *diskFixture {
	t.Helper()
	f := &diskFixture{s: &Scheduler{}}
	f.d = NewDisk(1, o, NewRand(seed, "disk"), f.s, NewTrace(TraceOptions{}))
	f.h = f.d.Open()
	return f
}

func (f *diskFixture) run() {
	for f.s.Step(math.MaxInt64) {
	}
}

// saveResult records the calls of one Save's done.
type saveResult struct {
	calls int
	err   error
}

func (f *diskFixture) save(u node.Update) *saveResult {
	r := &saveResult{}
	f.h.Save(&u, func(err error) { r.calls++; r.err = err })
	return r
}

// write saves u, runs the scheduler and fails the test unless done(nil)
// ran exactly once.
func (f *diskFixture) write(t *testing.T, u node.Update) {
	t.Helper()
	r := f.save(u)
	f.run()
	if r.calls != 1 || r.err != nil {
		t.Fatalf("Save: done called %d times, err %v", r.calls, r.err)
	}
}

func (f *diskFixture) load(t *testing.T) core.Persisted {
	t.Helper()
	p, err := f.h.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

// ents returns entries lo..hi of term.
func ents(term, lo, hi uint64) []core.Entry {
	var out []core.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, core.Entry{Term: term, Index: i, Data: []byte{byte(i)}})
	}
	return out
}

func entIndexes(es []core.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Index)
	}
	return out
}

func span(lo, hi uint64) []uint64 {
	var out []uint64
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

// testDiskOptions returns options with latencies and no faults.
func testDiskOptions() DiskOptions {
	return DiskOptions{WriteMean: Millisecond, SyncMean: 2 * Millisecond}
}

func TestDiskSyncWriteDurable(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 1)
	hs := core.HardState{Term: 2, Vote: 1, Commit: 1}
	r := f.save(node.Update{Entries: ents(1, 1, 3), HardState: hs, Sync: true})
	if !f.d.WriteInFlight() || r.calls != 0 {
		t.Fatal("Save completed synchronously")
	}
	if p := f.d.Durable(); !p.IsEmpty() {
		t.Fatalf("durable before completion: %+v", p)
	}
	f.run()
	if r.calls != 1 || r.err != nil || f.d.WriteInFlight() {
		t.Fatalf("done %d times, err %v, in flight %v", r.calls, r.err, f.d.WriteInFlight())
	}
	if f.s.Now() <= 0 {
		t.Fatal("write took no time")
	}
	want := core.Persisted{HardState: hs, Entries: ents(1, 1, 3)}
	if p := f.d.Durable(); !reflect.DeepEqual(p, want) {
		t.Fatalf("durable %+v, want %+v", p, want)
	}
	f.d.Crash()
	f.h = f.d.Open()
	if p := f.load(t); !reflect.DeepEqual(p, want) {
		t.Fatalf("after crash loaded %+v, want %+v", p, want)
	}
	if c := f.d.Counters(); c.Writes != 1 || c.Syncs != 1 || c.LostOnCrash != 0 {
		t.Fatalf("counters %+v", c)
	}
}

func TestDiskUnsyncedWrites(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 2)
	hs1 := core.HardState{Term: 1, Commit: 1}
	hs2 := core.HardState{Term: 2, Vote: 2, Commit: 1}
	f.write(t, node.Update{Entries: ents(1, 1, 2), HardState: hs1, Sync: true})
	f.write(t, node.Update{Entries: ents(2, 3, 4), HardState: hs2})
	f.write(t, node.Update{Entries: ents(2, 5, 5)})

	// Without a crash, the unsynced writes are visible, also to a new
	// process lifetime.
	p := f.load(t)
	if !slices.Equal(entIndexes(p.Entries), span(1, 5)) || p.HardState != hs2 {
		t.Fatalf("volatile %+v", p)
	}
	f.h = f.d.Open()
	if p := f.load(t); !slices.Equal(entIndexes(p.Entries), span(1, 5)) {
		t.Fatalf("after a restart without a crash: %+v", p)
	}
	if p := f.d.Durable(); !slices.Equal(entIndexes(p.Entries), span(1, 2)) || p.HardState != hs1 {
		t.Fatalf("durable %+v", p)
	}

	f.d.Crash()
	f.h = f.d.Open()
	p = f.load(t)
	if !slices.Equal(entIndexes(p.Entries), span(1, 2)) || p.HardState != hs1 {
		t.Fatalf("after crash loaded %+v, want entries 1..2 and %+v", p, hs1)
	}
	if c := f.d.Counters(); c.LostOnCrash != 2 {
		t.Fatalf("counters %+v, want 2 writes lost", c)
	}

	// A later sync makes earlier unsynced writes durable.
	f.write(t, node.Update{Entries: ents(3, 3, 3), HardState: core.HardState{Term: 3}})
	f.write(t, node.Update{Entries: ents(3, 4, 4), Sync: true})
	f.d.Crash()
	f.h = f.d.Open()
	p = f.load(t)
	if !slices.Equal(entIndexes(p.Entries), span(1, 4)) || p.HardState.Term != 3 || p.Entries[2].Term != 3 {
		t.Fatalf("sync did not cover earlier unsynced writes: %+v", p)
	}
}

func TestDiskInFlightLostOnCrash(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 3)
	f.write(t, node.Update{Entries: ents(1, 1, 1), Sync: true})
	before := f.d.Durable()
	r := f.save(node.Update{Entries: ents(1, 2, 3), HardState: core.HardState{Term: 1, Commit: 3}, Sync: true})
	f.d.Crash()
	if f.d.WriteInFlight() {
		t.Fatal("write still in flight after a crash")
	}
	f.run()
	if r.calls != 0 {
		t.Fatalf("done of a write lost in a crash ran %d times", r.calls)
	}
	if p := f.d.Durable(); !reflect.DeepEqual(p, before) {
		t.Fatalf("durable %+v, want %+v", p, before)
	}
	if c := f.d.Counters(); c.LostOnCrash != 1 || c.Torn != 0 {
		t.Fatalf("counters %+v", c)
	}
	// The dead handle stays dead; a new one works.
	if _, err := f.h.Load(); !errors.Is(err, ErrDiskClosed) {
		t.Fatalf("Load on a dead handle: %v", err)
	}
	old := f.h
	f.h = f.d.Open()
	f.write(t, node.Update{Entries: ents(2, 2, 2), Sync: true})
	dead := &saveResult{}
	old.Save(&node.Update{Entries: ents(2, 3, 3)}, func(err error) { dead.calls++ })
	f.run()
	if dead.calls != 0 || f.d.WriteInFlight() {
		t.Fatal("a dead handle's Save ran")
	}
}

func TestDiskOpenAbandonsInFlight(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 4)
	r := f.save(node.Update{Entries: ents(1, 1, 1), Sync: true})
	f.h = f.d.Open()
	f.run()
	if p := f.d.Durable(); r.calls != 0 || !p.IsEmpty() {
		t.Fatalf("write of an earlier lifetime completed: done %d, durable %+v", r.calls, p)
	}
}

func TestDiskTornWrite(t *testing.T) {
	hs1 := core.HardState{Term: 1, Vote: 1, Commit: 2}
	lengths := map[int]bool{}
	for seed := uint64(0); seed < 40; seed++ {
		o := testDiskOptions()
		o.TornRate = 1
		f := newDiskFixture(t, o, seed)
		f.write(t, node.Update{Entries: ents(1, 1, 4), HardState: hs1, Sync: true})
		f.write(t, node.Update{Entries: ents(1, 5, 5)}) // unsynced: lost on the crash
		// Replaces entries 3.. with six entries of term 2.
		r := f.save(node.Update{Entries: ents(2, 3, 8), HardState: core.HardState{Term: 2, Commit: 2}, Sync: true})
		f.d.Crash()
		f.run()
		if r.calls != 0 {
			t.Fatal("done of a torn write ran")
		}
		p := f.d.Durable()
		if p.HardState != hs1 {
			t.Fatalf("seed %d: torn write kept its hard state: %+v", seed, p.HardState)
		}
		kept := len(p.Entries) - 2
		if kept < 0 || kept > 6 {
			t.Fatalf("seed %d: entries %v", seed, entIndexes(p.Entries))
		}
		if !slices.Equal(entIndexes(p.Entries), span(1, uint64(2+kept))) {
			t.Fatalf("seed %d: entries %v are not a prefix", seed, entIndexes(p.Entries))
		}
		for _, e := range p.Entries[2:] {
			if e.Term != 2 {
				t.Fatalf("seed %d: old entry %d survived the truncation", seed, e.Index)
			}
		}
		f.h = f.d.Open()
		if v := f.load(t); !reflect.DeepEqual(v, p) {
			t.Fatalf("seed %d: loaded %+v, durable %+v", seed, v, p)
		}
		if c := f.d.Counters(); c.Torn != 1 || c.LostOnCrash != 1 {
			t.Fatalf("seed %d: counters %+v", seed, c)
		}
		lengths[kept] = true
	}
	if len(lengths) < 4 || !lengths[0] {
		t.Fatalf("torn prefix lengths seen: %v; want variety including 0", lengths)
	}
}

func TestDiskTornWriteSnapshotAndGap(t *testing.T) {
	o := testDiskOptions()
	o.TornRate = 1
	// A torn write whose entries would not reach the durable log keeps
	// none of them (the log stays contiguous).
	for seed := uint64(0); seed < 10; seed++ {
		f := newDiskFixture(t, o, seed)
		f.write(t, node.Update{Entries: ents(1, 1, 2), Sync: true})
		f.write(t, node.Update{Entries: ents(1, 3, 4)})
		f.save(node.Update{Entries: ents(1, 5, 6), Sync: true})
		f.d.Crash()
		if p := f.d.Durable(); !slices.Equal(entIndexes(p.Entries), span(1, 2)) {
			t.Fatalf("seed %d: torn write left a gap: %v", seed, entIndexes(p.Entries))
		}
	}
	// A torn snapshot install keeps the snapshot, drops the old log.
	f := newDiskFixture(t, o, 1)
	f.write(t, node.Update{Entries: ents(1, 1, 3), HardState: core.HardState{Term: 1}, Sync: true})
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: 10, Term: 2, Config: core.ConfState{Voters: []uint64{1, 2, 3}}}, Data: []byte("s")}
	f.save(node.Update{Snapshot: snap, Entries: ents(2, 11, 12), HardState: core.HardState{Term: 2, Commit: 10}, Sync: true})
	f.d.Crash()
	p := f.d.Durable()
	if p.Snapshot == nil || p.Snapshot.Meta.Index != 10 || p.HardState.Term != 1 {
		t.Fatalf("torn snapshot install: %+v", p)
	}
	for _, e := range p.Entries {
		if e.Index <= 10 {
			t.Fatalf("old entry %d survived a torn snapshot install", e.Index)
		}
	}
}

func TestDiskLocalSnapshotCompaction(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 5)
	f.write(t, node.Update{Entries: ents(1, 1, 10), HardState: core.HardState{Term: 1, Commit: 10}, Sync: true})
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: 7, Term: 1, Config: core.ConfState{Voters: []uint64{1}}}, Data: []byte("seven")}
	f.write(t, node.Update{LocalSnapshot: snap, CompactTo: 5, Sync: true})
	for _, p := range []core.Persisted{f.load(t), f.d.Durable()} {
		if !slices.Equal(entIndexes(p.Entries), span(6, 10)) || !reflect.DeepEqual(p.Snapshot, snap) {
			t.Fatalf("after compaction to 5: entries %v, snapshot %+v", entIndexes(p.Entries), p.Snapshot)
		}
	}
	f.write(t, node.Update{Entries: ents(1, 11, 11), Sync: true})
	// Compacting past the last entry empties the log; appends continue
	// after the snapshot.
	snap2 := &core.Snapshot{Meta: core.SnapshotMeta{Index: 11, Term: 1}}
	f.write(t, node.Update{LocalSnapshot: snap2, CompactTo: 11, Entries: ents(1, 12, 12), Sync: true})
	p := f.load(t)
	if !slices.Equal(entIndexes(p.Entries), span(12, 12)) || p.Snapshot.Meta.Index != 11 {
		t.Fatalf("after compaction to 11: entries %v, snapshot %+v", entIndexes(p.Entries), p.Snapshot)
	}
}

func TestDiskSnapshotInstall(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 6)
	f.write(t, node.Update{Entries: ents(1, 1, 10), Sync: true})
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: 5, Term: 1}}
	f.write(t, node.Update{Snapshot: snap, HardState: core.HardState{Term: 2, Commit: 5}, Sync: true})
	p := f.load(t)
	if len(p.Entries) != 0 || p.Snapshot.Meta.Index != 5 || p.HardState.Commit != 5 {
		t.Fatalf("after snapshot install: %+v", p)
	}
	f.write(t, node.Update{Entries: ents(2, 6, 7), Sync: true})
	if p := f.d.Durable(); !slices.Equal(entIndexes(p.Entries), span(6, 7)) {
		t.Fatalf("append after install: %v", entIndexes(p.Entries))
	}
}

func TestDiskTruncation(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 7)
	f.write(t, node.Update{Entries: ents(1, 1, 10), Sync: true})
	f.write(t, node.Update{Entries: ents(2, 4, 5), Sync: true})
	p := f.load(t)
	if !slices.Equal(entIndexes(p.Entries), span(1, 5)) || p.Entries[3].Term != 2 {
		t.Fatalf("after overwrite from 4: %+v", p.Entries)
	}
}

func TestDiskCallerBugsPanic(t *testing.T) {
	mustPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s did not panic", name)
			}
		}()
		fn()
	}
	f := newDiskFixture(t, testDiskOptions(), 8)
	f.write(t, node.Update{Entries: ents(1, 1, 2), Sync: true})
	mustPanic("gap", func() { f.save(node.Update{Entries: ents(1, 4, 4)}) })
	mustPanic("non-contiguous entries", func() {
		f.save(node.Update{Entries: append(ents(1, 3, 3), ents(1, 5, 5)...)})
	})
	f.save(node.Update{Entries: ents(1, 3, 3)})
	mustPanic("second Save", func() { f.save(node.Update{Entries: ents(1, 4, 4)}) })
}

func TestDiskWriteError(t *testing.T) {
	o := testDiskOptions()
	f := newDiskFixture(t, o, 9)
	f.write(t, node.Update{Entries: ents(1, 1, 2), HardState: core.HardState{Term: 1}, Sync: true})
	f.write(t, node.Update{Entries: ents(1, 3, 3)})
	vol, dur := f.load(t), f.d.Durable()

	f.d.o.WriteErrorRate = 1
	r := f.save(node.Update{Entries: ents(2, 2, 4), HardState: core.HardState{Term: 2}, Sync: true})
	f.run()
	if r.calls != 1 || !errors.Is(r.err, ErrDiskWrite) {
		t.Fatalf("done %d times with %v, want one ErrDiskWrite", r.calls, r.err)
	}
	if p := f.load(t); !reflect.DeepEqual(p, vol) {
		t.Fatalf("failed write changed the volatile state: %+v", p)
	}
	if p := f.d.Durable(); !reflect.DeepEqual(p, dur) {
		t.Fatalf("failed write changed the durable state: %+v", p)
	}
	if c := f.d.Counters(); c.Errors != 1 || c.Syncs != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestDiskReadError(t *testing.T) {
	f := newDiskFixture(t, DiskOptions{ReadErrorRate: 1}, 10)
	if _, err := f.h.Load(); !errors.Is(err, ErrDiskRead) {
		t.Fatalf("Load: %v, want ErrDiskRead", err)
	}
	f.d.o.ReadErrorRate = 0.5
	var ok, failed int
	for range 100 {
		if _, err := f.h.Load(); err != nil {
			failed++
		} else {
			ok++
		}
	}
	if ok < 20 || failed < 20 {
		t.Fatalf("ReadErrorRate 0.5: %d ok, %d failed", ok, failed)
	}
}

func TestDiskLoadReturnsCopies(t *testing.T) {
	f := newDiskFixture(t, testDiskOptions(), 11)
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: 2, Term: 1, Config: core.ConfState{Voters: []uint64{1, 2}}}}
	u := node.Update{Snapshot: snap, Entries: ents(1, 3, 5), HardState: core.HardState{Term: 1}, Sync: true}
	r := f.save(u)
	// The caller reuses its buffers while the write is in flight and after.
	u.Entries[0].Term = 99
	snap.Meta.Index = 99
	snap.Meta.Config.Voters[0] = 99
	f.run()
	if r.err != nil {
		t.Fatal(r.err)
	}
	u.Entries[1].Term = 99
	want := core.Persisted{
		HardState: core.HardState{Term: 1},
		Snapshot:  &core.Snapshot{Meta: core.SnapshotMeta{Index: 2, Term: 1, Config: core.ConfState{Voters: []uint64{1, 2}}}},
		Entries:   ents(1, 3, 5),
	}
	for _, get := range []func() core.Persisted{func() core.Persisted { return f.load(t) }, f.d.Durable} {
		p := get()
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("got %+v, want %+v", p, want)
		}
		p.Entries[0].Term = 42
		p.Entries = append(p.Entries[:1], core.Entry{Index: 77})
		p.Snapshot.Meta.Index = 42
		p.Snapshot.Meta.Config.Voters[0] = 42
		if p := get(); !reflect.DeepEqual(p, want) {
			t.Fatalf("mutating a returned copy changed the disk: %+v", p)
		}
	}
}

// diskWorkload drives a disk through writes, crashes and restarts with
// every fault on and returns the trace hash and counters.
func diskWorkload(t *testing.T, seed uint64) (uint64, DiskCounters) {
	o := DiskOptions{WriteMean: Millisecond, SyncMean: Millisecond, StallRate: 0.1, StallMean: 10 * Millisecond,
		WriteErrorRate: 0.02, ReadErrorRate: 0.1, TornRate: 0.5}
	s := &Scheduler{}
	tr := NewTrace(TraceOptions{})
	root := NewRand(seed, "root")
	d := NewDisk(3, o, root.Split("disk"), s, tr)
	w := root.Split("workload")
	h := d.Open()
	busy := false
	var last, term uint64
	restart := func() {
		h = d.Open()
		p, err := h.Load()
		for err != nil {
			p, err = h.Load()
		}
		busy = false
		last = 0
		if p.Snapshot != nil {
			last = p.Snapshot.Meta.Index
		}
		if k := len(p.Entries); k > 0 {
			last = p.Entries[k-1].Index
		}
		term = max(term, p.HardState.Term)
	}
	for range 2000 {
		switch {
		case w.Chance(0.02):
			d.Crash()
			restart()
		case !busy && w.Chance(0.5):
			first := uint64(w.Range(int64(max(last, 2)-1), int64(last+1)))
			k := uint64(w.Range(0, 3))
			if w.Chance(0.1) {
				term++
			}
			u := &node.Update{Entries: ents(term, first, first+k-1), HardState: core.HardState{Term: term}, Sync: w.Chance(0.5)}
			if w.Chance(0.05) && last > 3 {
				u.LocalSnapshot = &core.Snapshot{Meta: core.SnapshotMeta{Index: last - 1, Term: term}}
				u.CompactTo = last - 2
			}
			busy = true
			h.Save(u, func(err error) {
				busy = false
				if err != nil {
					restart() // fail-stop, then a new process
					return
				}
				if k > 0 {
					last = first + k - 1
				}
			})
		}
		s.RunUntil(s.Now()+Millisecond, nil)
	}
	if err := checkContiguous(d.Durable()); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	return tr.Hash(), d.Counters()
}

func checkContiguous(p core.Persisted) error {
	for i := 1; i < len(p.Entries); i++ {
		if p.Entries[i].Index != p.Entries[i-1].Index+1 {
			return errors.New("durable log not contiguous")
		}
	}
	return nil
}

func TestDiskDeterminism(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		h1, c1 := diskWorkload(t, seed)
		h2, c2 := diskWorkload(t, seed)
		if h1 != h2 || c1 != c2 {
			t.Fatalf("seed %d: two runs differ: %x %+v vs %x %+v", seed, h1, c1, h2, c2)
		}
		if h3, _ := diskWorkload(t, seed+100); h3 == h1 {
			t.Fatalf("seeds %d and %d give the same trace hash", seed, seed+100)
		}
		if c1.Syncs == 0 || c1.Errors == 0 || c1.Torn == 0 || c1.LostOnCrash == 0 {
			t.Fatalf("seed %d: workload missed a fault class: %+v", seed, c1)
		}
	}
}

func TestDiskSetFaults(t *testing.T) {
	o := DiskOptions{WriteMean: Millisecond, WriteErrorRate: 1, ReadErrorRate: 1, TornRate: 1, StallRate: 1, StallMean: Second}
	f := newDiskFixture(t, o, 12)
	f.d.SetFaults(false)
	f.load(t)
	f.write(t, node.Update{Entries: ents(1, 1, 1), Sync: true})
	if f.s.Now() >= 100*Millisecond {
		t.Fatalf("faults off, the write still stalled until %d", f.s.Now())
	}
	f.save(node.Update{Entries: ents(1, 2, 2), Sync: true})
	f.d.Crash()
	if c := f.d.Counters(); c.Torn != 0 || c.LostOnCrash != 1 {
		t.Fatalf("faults off, counters %+v", c)
	}
	f.d.SetFaults(true)
	f.h = f.d.Open()
	if _, err := f.h.Load(); !errors.Is(err, ErrDiskRead) {
		t.Fatalf("faults back on, Load: %v", err)
	}
}
