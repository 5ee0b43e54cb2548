package sim

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// storedFixture is a disk holding a synced snapshot at 10, entries 11..20
// of term 2 and hard state (term 2, vote 1, commit 15).
func storedFixture(t *testing.T) *diskFixture {
	t.Helper()
	f := newDiskFixture(t, testDiskOptions(), 1)
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: 10, Term: 1}, Data: []byte("s")}
	f.write(t, node.Update{Snapshot: snap, Entries: ents(2, 11, 20),
		HardState: core.HardState{Term: 2, Vote: 1, Commit: 15}, Sync: true})
	return f
}

// wantRefusal loads after a crash and fails unless Load refuses with an
// error wrapping ErrCorrupt that contains want.
func wantRefusal(t *testing.T, f *diskFixture, want string) {
	t.Helper()
	f.d.Crash()
	f.h = f.d.Open()
	_, err := f.h.Load()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Load: %v, want an error wrapping ErrCorrupt naming %q", err, want)
	}
}

// TestStorageFlipRefused: a bit flip in any stored record makes Load
// refuse, naming the record, until the record is rewritten.
func TestStorageFlipRefused(t *testing.T) {
	seen := map[uint8]bool{}
	for seed := uint64(1); seed <= 40; seed++ {
		f := storedFixture(t)
		if !f.d.Flip(NewRand(seed, "flip")) {
			t.Fatal("Flip found nothing stored")
		}
		if len(f.d.damage) != 1 || !f.d.Damaged() || f.d.Counters().Flips != 1 {
			t.Fatalf("damage %v, counters %+v", f.d.damage, f.d.Counters())
		}
		m := f.d.damage[0]
		seen[m.rec] = true
		if m.rec == recEntry && (m.index < 11 || m.index > 20) {
			t.Fatalf("flipped entry %d, stored 11..20", m.index)
		}
		wantRefusal(t, f, m.String())
	}
	if !seen[recEntry] || !seen[recHardState] || !seen[recSnapshot] {
		t.Fatalf("40 flips hit record kinds %v, want all three", seen)
	}
}

// TestStorageRewriteRepairs: damage goes with the record: a rewritten
// entry, a new hard state, a new snapshot or a compaction make the disk
// whole again, and the next Load reports a recovery.
func TestStorageRewriteRepairs(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    damage
		fix  node.Update
	}{
		{"entry rewritten", damage{rec: recEntry, index: 18, kind: DamageFlip},
			node.Update{Entries: ents(3, 17, 17), Sync: true}},
		{"entry compacted", damage{rec: recEntry, index: 12, kind: DamageUnreadable},
			node.Update{LocalSnapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 15, Term: 2}}, CompactTo: 13, Sync: true}},
		{"hard state", damage{rec: recHardState, kind: DamageFlip},
			node.Update{HardState: core.HardState{Term: 2, Vote: 1, Commit: 16}, Sync: true}},
		{"snapshot installed", damage{rec: recSnapshot, kind: DamageLost},
			node.Update{Snapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 30, Term: 3}}, Sync: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := storedFixture(t)
			f.d.addDamage(tc.m)
			f.write(t, tc.fix)
			if f.d.Damaged() {
				t.Fatalf("still damaged after the rewrite: %s", f.d.DamageReport())
			}
			f.d.Crash()
			f.h = f.d.Open()
			f.load(t)
			if !f.d.Recovered() {
				t.Fatal("Load after repaired damage does not report a recovery")
			}
			f.h = f.d.Open()
			f.load(t)
			if f.d.Recovered() {
				t.Fatal("a second Load still reports a recovery")
			}
		})
	}
	// An unsynced rewrite does not repair: the damaged record is what a
	// crash leaves.
	f := storedFixture(t)
	f.d.addDamage(damage{rec: recEntry, index: 18, kind: DamageFlip})
	f.write(t, node.Update{Entries: ents(3, 17, 17)})
	wantRefusal(t, f, "entry 18")
}

// TestStorageLostWrite: an armed lost write reports success, the data
// stays visible until a crash, and then Load refuses naming the records
// the write should have stored (entries and hard state).
func TestStorageLostWrite(t *testing.T) {
	f := storedFixture(t)
	f.d.ArmWriteFault(DamageLost, NewRand(1, "x"))
	f.write(t, node.Update{Entries: ents(2, 21, 22), HardState: core.HardState{Term: 2, Vote: 1, Commit: 20}, Sync: true})
	if got := f.load(t); len(got.Entries) != 12 {
		t.Fatalf("before a crash Load has %d entries, want 12", len(got.Entries))
	}
	if c := f.d.Counters(); c.LostWrites != 1 || c.Syncs != 2 {
		t.Fatalf("counters %+v", c)
	}
	want := []damage{
		{rec: recEntry, index: 21, kind: DamageLost, cached: true}, {rec: recEntry, index: 22, kind: DamageLost, cached: true},
		{rec: recHardState, kind: DamageLost, prev: core.HardState{Term: 2, Vote: 1, Commit: 15}, cached: true},
	}
	if !reflect.DeepEqual(f.d.damage, want) {
		t.Fatalf("damage %+v, want %+v", f.d.damage, want)
	}
	if f.d.arm != nil {
		t.Fatal("still armed after the lost write")
	}
	f.h = f.d.Open() // a restart without a power loss reads the page cache
	f.load(t)
	wantRefusal(t, f, "entry 21: lost write")

	// A write with nothing durable to lose (an empty hard state, no
	// entries) leaves the fault armed; SetFaults(false) disarms it.
	g := newDiskFixture(t, testDiskOptions(), 1)
	g.d.ArmWriteFault(DamageLost, NewRand(1, "x"))
	g.d.SetFaults(false)
	g.write(t, node.Update{Entries: ents(1, 1, 2), Sync: true})
	if g.d.Damaged() {
		t.Fatalf("disarmed disk damaged: %s", g.d.DamageReport())
	}
}

// TestStorageMisdirectedWrite: a misdirected write loses its own records
// and damages one other stored record.
func TestStorageMisdirectedWrite(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		f := storedFixture(t)
		f.d.ArmWriteFault(DamageMisdirect, NewRand(seed, "m"))
		f.write(t, node.Update{Entries: ents(2, 21, 21), Sync: true})
		var lost, hit int
		for _, m := range f.d.damage {
			switch m.kind {
			case DamageLost:
				lost++
				if m.rec != recEntry || m.index != 21 {
					t.Fatalf("lost %v", m.String())
				}
			case DamageMisdirect:
				hit++
				if m.rec == recEntry && m.index == 21 {
					t.Fatal("the misdirected write landed on its own record")
				}
			}
		}
		if lost != 1 || hit > 1 || f.d.Counters().Misdirected != 1 {
			t.Fatalf("seed %d: damage %s", seed, f.d.DamageReport())
		}
		wantRefusal(t, f, "lost write")
	}
}

// TestStorageUnreadable: a latent read error refuses the Load; nothing
// stored, nothing to damage.
func TestStorageUnreadable(t *testing.T) {
	f := storedFixture(t)
	if !f.d.MakeUnreadable(NewRand(3, "u")) || f.d.Counters().Unreadable != 1 {
		t.Fatal("MakeUnreadable did nothing")
	}
	wantRefusal(t, f, "latent read error")

	g := newDiskFixture(t, testDiskOptions(), 1)
	g.write(t, node.Update{Entries: ents(1, 1, 3)}) // written, never synced
	if g.d.Flip(NewRand(1, "f")) || g.d.MakeUnreadable(NewRand(1, "u")) || g.d.Damaged() {
		t.Fatal("damaged a disk with nothing durable")
	}
}

// TestDrawStorageIndependent: turning silent storage faults on changes no
// other choice of a seed: the storage profile draws what swarm draws but
// for the storage options, and the fault schedule with storage faults is
// the one without them plus the storage faults.
func TestDrawStorageIndependent(t *testing.T) {
	on := 0
	for seed := uint64(0); seed < 300; seed++ {
		sw, err := Draw(seed, "swarm")
		if err != nil {
			t.Fatal(err)
		}
		st, err := Draw(seed, "storage")
		if err != nil {
			t.Fatal(err)
		}
		if !st.Storage.On() && st.Nodes >= 3 {
			t.Fatalf("seed %d: storage profile without storage faults: %+v", seed, st.Storage)
		}
		if sw.Storage.On() {
			on++
		}
		a, b := sw, st
		a.Profile, b.Profile, a.Storage, b.Storage = "", "", StorageOptions{}, StorageOptions{}
		a.ConfChurn = ConfChurnOptions{} // swarm only (confchurn_test.go)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: swarm and storage profiles differ beyond storage:\n%+v\n%+v", seed, a, b)
		}
		with := drawFaults(&st)
		without := drawFaults(&b)
		var kept []Fault
		for _, f := range with {
			if f.Kind < FaultFlip || f.Kind > FaultLatent {
				kept = append(kept, f)
			}
		}
		if !reflect.DeepEqual(kept, without) {
			t.Fatalf("seed %d: storage faults changed the rest of the schedule", seed)
		}
	}
	if on < 50 || on > 130 {
		t.Fatalf("storage faults on in %d of 300 swarm seeds, want about 90", on)
	}
}
