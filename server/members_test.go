package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
)

func newMachine() *machine {
	return &machine{kv: newStore(), dir: newDirectory([]PeerConfig{{ID: "1", Address: "10.0.0.1", Port: 7001}})}
}

func TestMachineSnapshotCarriesTheDirectory(t *testing.T) {
	m := newMachine()
	m.kv.Apply(1, kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "k", Value: []byte("v")}))
	m.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddVoter, NodeID: 4}},
		Context: encodeMember(memberOf(4, "", "10.0.0.4", 7004, 0, 0))})
	m.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.RemoveNode, NodeID: 1}}})
	// A change whose context does not name the node adds no address.
	m.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddLearner, NodeID: 5}},
		Context: encodeMember(memberOf(6, "", "10.0.0.6", 7006, 0, 0))})
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	r := newMachine()
	synced := 0
	r.restored = func() { synced++ }
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if synced != 1 {
		t.Fatalf("restored hook ran %d times", synced)
	}
	if v, ok := r.kv.Get("k"); !ok || string(v) != "v" {
		t.Fatalf("store not restored: %q %v", v, ok)
	}
	if got := r.dir.all(); len(got) != 1 || got[0] != memberOf(4, "", "10.0.0.4", 7004, 0, 0) {
		t.Fatalf("directory after restore: %+v (node 1 removed, node 4 added)", got)
	}
	again, _ := r.Snapshot()
	if !bytes.Equal(again, snap) {
		t.Fatal("snapshot of a restored machine differs: the encoding is not canonical")
	}

	// A snapshot from before the directory existed restores the store.
	old, _ := m.kv.Snapshot()
	o := newMachine()
	if err := o.Restore(old); err != nil {
		t.Fatal(err)
	}
	if v, _ := o.kv.Get("k"); string(v) != "v" {
		t.Fatal("old-format snapshot not restored")
	}
	if got := o.dir.all(); len(got) != 1 || got[0].ID != 1 {
		t.Fatalf("old-format snapshot changed the directory: %+v", got)
	}
}

func FuzzMachineRestore(f *testing.F) {
	m := newMachine()
	m.kv.Apply(1, kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "k", Value: []byte("v")}))
	m.dir.add(memberOf(4, "", "h", 1, 2, 3))
	m.dir.remove(2)
	good, _ := m.Snapshot()
	f.Add(good)
	f.Add([]byte(machineMagic))
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newMachine()
		r.kv.Apply(1, kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "x", Value: []byte("y")}))
		before := r.dir.all()
		if err := r.Restore(data); err != nil {
			if v, ok := r.kv.Get("x"); !ok || string(v) != "y" {
				t.Fatal("a failed restore changed the store")
			}
			if !slices.Equal(r.dir.all(), before) {
				t.Fatal("a failed restore changed the directory")
			}
		}
	})
}

// countApp counts the application commands it applied.
type countApp struct{ n int }

func (a *countApp) Apply(_ uint64, cmd []byte) any { a.n++; return string(cmd) }
func (a *countApp) Snapshot() ([]byte, error)      { return []byte{byte(a.n)}, nil }
func (a *countApp) Restore(data []byte) error {
	a.n = 0
	if len(data) > 0 {
		a.n = int(data[0])
	}
	return nil
}

func TestMachineRoutesApplicationCommands(t *testing.T) {
	m := newMachine()
	app := &countApp{}
	m.app = app
	if got := m.Apply(1, EncodeAppCommand([]byte("inc"))); got != "inc" || app.n != 1 {
		t.Fatalf("application command: %v, count %d", got, app.n)
	}
	if res, _ := m.Apply(2, kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "k", Value: []byte("v")})).(kv.Result); res.Status != kv.StatusOK {
		t.Fatalf("key-value command: %+v", res)
	}
	m.Apply(3, EncodeAppCommand([]byte("inc")))
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := newMachine()
	r.app = &countApp{n: 9}
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if r.app.(*countApp).n != 2 {
		t.Fatalf("application state after restore: %d, want 2", r.app.(*countApp).n)
	}
	if v, _ := r.kv.Get("k"); string(v) != "v" {
		t.Fatal("store not restored beside the application")
	}
	// Without an application, its commands fail and its state is refused.
	if got := newMachine().Apply(4, EncodeAppCommand(nil)); got != errNoApp {
		t.Fatalf("application command without an application: %v", got)
	}
	if err := newMachine().Restore(snap); err == nil {
		t.Fatal("a snapshot with application state restored where no application is configured")
	}
	// A snapshot from before application state existed (format 1).
	old := append([]byte(machineMagic1), 0, 0) // no added, no removed
	kvSnap, _ := m.kv.Snapshot()
	if err := r.Restore(append(old, kvSnap...)); err != nil || r.app.(*countApp).n != 0 {
		t.Fatalf("format-1 snapshot: %v, application count %d (want reset to 0)", err, r.app.(*countApp).n)
	}
}

// TestMachineSnapshotWhileWritesGoOn: the node keeps a snapshot's bytes
// (to send to peers) while the store goes on applying writes, and the
// store shares those bytes (kv.Config.ShareSnapshots). Every snapshot must
// still restore exactly the state at its index, and a machine restored
// from one goes on exactly like the machine it was taken from.
func TestMachineSnapshotWhileWritesGoOn(t *testing.T) {
	m := newMachine()
	set := func(_ uint64, key, value string, client, seq uint64) []byte {
		return kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: key, Value: []byte(value), ClientID: client, Seq: seq})
	}
	type taken struct {
		index      uint64
		data, copy []byte
		hash       uint64
	}
	var snaps []taken
	for i := uint64(1); i <= 2000; i++ {
		key := fmt.Sprint("key", i%50)
		m.Apply(i, set(i, key, fmt.Sprint("value ", i), i%7+1, i/7+1))
		if i%10 == 0 {
			m.Apply(i, kv.EncodeCommand(kv.Command{Op: kv.OpDelete, Key: fmt.Sprint("key", (i/10)%50)}))
		}
		if i%150 == 0 {
			data, err := m.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			snaps = append(snaps, taken{i, data, bytes.Clone(data), m.Hash()})
		}
	}
	for _, s := range snaps {
		if !bytes.Equal(s.data, s.copy) {
			t.Fatalf("the snapshot at %d changed while writes went on", s.index)
		}
		r := newMachine()
		if err := r.Restore(s.data); err != nil {
			t.Fatalf("restore the snapshot at %d: %v", s.index, err)
		}
		if r.kv.Applied() != s.index || r.Hash() != s.hash {
			t.Fatalf("restored at %d: applied %d, hash %#x; want %d, %#x", s.index, r.kv.Applied(), r.Hash(), s.index,
				s.hash)
		}
	}
	// Restored from the latest, a machine continues like the original.
	last := snaps[len(snaps)-1]
	r := newMachine()
	if err := r.Restore(last.data); err != nil {
		t.Fatal(err)
	}
	// m is at 2000; replay onto r what m applied after last.index.
	for i := last.index + 1; i <= 2000; i++ {
		r.Apply(i, set(i, fmt.Sprint("key", i%50), fmt.Sprint("value ", i), i%7+1, i/7+1))
		if i%10 == 0 {
			r.Apply(i, kv.EncodeCommand(kv.Command{Op: kv.OpDelete, Key: fmt.Sprint("key", (i/10)%50)}))
		}
	}
	a, _ := m.Snapshot()
	b, _ := r.Snapshot()
	if !bytes.Equal(a, b) || m.Hash() != r.Hash() {
		t.Fatal("a machine restored from a shared snapshot diverged from the original")
	}
	if !bytes.Equal(last.data, last.copy) {
		t.Fatal("the restored machine modified the snapshot it shares")
	}
}

// TestDirectoryNames: a member added with a name is shown by it on every
// node (the name travels in the change and in snapshots) and keeps it once
// removed; a configured peer is shown by its configured name; a member
// added by number, by its ID; a change whose name does not stand for its
// ID records no name; a snapshot of the previous format (FCM v2, no names)
// still restores.
func TestDirectoryNames(t *testing.T) {
	m := &machine{kv: newStore(), dir: newDirectory([]PeerConfig{{ID: "node-1", Address: "10.0.0.1", Port: 7001}})}
	zone := uint64(0xbcc3edcc1ecf38f7) // nodename.ID("us-east-1a")
	add := func(id uint64, name string) {
		m.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.AddVoter, NodeID: id}},
			Context: encodeMember(memberOf(id, name, "10.0.0.9", 7009, 0, 0))})
	}
	add(zone, "us-east-1a")
	add(4, "")
	add(5, "us-east-1a") // not 5's name
	for id, want := range map[uint64]string{1: "node-1", zone: "us-east-1a", 4: "4", 5: "5", 77: "77"} {
		if got := m.dir.name(id); got != want {
			t.Errorf("name(%d) = %q, want %q", id, got, want)
		}
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := newMachine()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := r.dir.name(zone); got != "us-east-1a" {
		t.Fatalf("after restoring a snapshot: name = %q", got)
	}
	r.dir.memberChanged(core.ConfChange{Changes: []core.ConfChangeSingle{{Type: core.RemoveNode, NodeID: zone}}})
	if got := r.dir.name(zone); got != "us-east-1a" {
		t.Fatalf("after removal: name = %q", got)
	}

	// The same directory in the previous format: no names.
	v2 := []byte(machineMagic2)
	v2 = binary.AppendUvarint(v2, 1)
	v2 = binary.AppendUvarint(v2, 4)
	v2 = binary.AppendUvarint(v2, uint64(len("10.0.0.4")))
	v2 = append(v2, "10.0.0.4"...)
	v2 = binary.AppendUvarint(v2, 7004)
	v2 = binary.AppendUvarint(v2, 7104)
	v2 = binary.AppendUvarint(v2, 7204)
	v2 = binary.AppendUvarint(v2, 0) // removed
	v2 = binary.AppendUvarint(v2, 0) // application state
	store, _ := newStore().Snapshot()
	o := newMachine()
	if err := o.Restore(append(v2, store...)); err != nil {
		t.Fatalf("FCM v2 snapshot: %v", err)
	}
	if got, ok := o.dir.get(4); !ok || got.Address != "10.0.0.4" || got.Name != "" || o.dir.name(4) != "4" {
		t.Fatalf("FCM v2 member: %+v %v, name %q", got, ok, o.dir.name(4))
	}
	// A v3 snapshot whose member name does not stand for its ID is refused.
	bad := bytes.Replace(snap, []byte("us-east-1a"), []byte("us-east-1b"), 1)
	if err := newMachine().Restore(bad); err == nil {
		t.Fatal("a snapshot naming a member with another ID's name was restored")
	}
}

// TestDirectoryLearn: discovery records the address of a member the
// directory has none for (one away when the node looked its peers up),
// and never overrides a known or removed member that way.
func TestDirectoryLearn(t *testing.T) {
	d := newDirectory([]PeerConfig{{ID: "node-1", Address: "10.0.0.1", Port: 7001}})
	if !d.learn(memberOf(2, "node-2", "10.0.0.2", 7002, 0, 0)) {
		t.Fatal("an unknown member was not learnt")
	}
	if m, ok := d.get(2); !ok || m.Address != "10.0.0.2" || d.name(2) != "node-2" {
		t.Fatalf("get(2) = %+v, %v; name %q", m, ok, d.name(2))
	}
	if d.learn(memberOf(1, "node-1", "10.0.0.9", 7001, 0, 0)) {
		t.Fatal("a configured member was overridden by learn")
	}
	d.remove(2)
	if d.learn(memberOf(2, "node-2", "10.0.0.2", 7002, 0, 0)) {
		t.Fatal("a removed member was learnt again")
	}
	if m, _ := d.get(1); m.Address != "10.0.0.1" {
		t.Fatalf("node-1 at %s", m.Address)
	}
}
