package sim

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// DiskOptions are a run's disk faults (drawn per seed by Draw).
type DiskOptions struct {
	// WriteMean is the mean of the exponential write latency.
	WriteMean Time `json:"write_mean"`
	// SyncMean is the mean of the extra, exponential fsync latency of an
	// Update with Sync.
	SyncMean Time `json:"sync_mean"`
	// StallRate is the probability that a write stalls for an extra
	// Exp(StallMean).
	StallRate float64 `json:"stall_rate"`
	StallMean Time    `json:"stall_mean"`
	// WriteErrorRate is the probability that a Save fails: done gets an
	// error and nothing is written (the node then fail-stops).
	WriteErrorRate float64 `json:"write_error_rate"`
	// ReadErrorRate is the probability that a Load fails (the process
	// cannot start; the caller retries later).
	ReadErrorRate float64 `json:"read_error_rate"`
	// TornRate is the probability that a write in flight at a crash is torn
	// (a prefix of its entries survives) instead of lost entirely.
	TornRate float64 `json:"torn_rate"`
}

// DiskCounters count what happened on one disk.
type DiskCounters struct {
	Writes      uint64 // Saves started
	Syncs       uint64 // Saves with Sync completed (everything written is durable)
	Errors      uint64 // failed Saves and Loads
	Torn        uint64 // writes torn by a crash
	LostOnCrash uint64 // writes lost by a crash: in flight (not torn) or completed but unsynced
	// Silent faults (see storage.go).
	Flips       uint64 // records with a flipped bit
	Unreadable  uint64 // records made unreadable
	LostWrites  uint64 // fsynced writes that never landed
	Misdirected uint64 // fsynced writes that landed on another record
}

// Errors of a simulated disk. Returned errors wrap one of them.
var (
	// ErrDiskWrite is the injected failure of a Save.
	ErrDiskWrite = errors.New("injected write error")
	// ErrDiskRead is the injected failure of a Load.
	ErrDiskRead = errors.New("injected read error")
	// ErrDiskClosed is returned by Load on a handle from an earlier
	// lifetime (before a Crash or a later Open).
	ErrDiskClosed = errors.New("storage handle of a dead process")
)

// Disk is the simulated disk of one node. It outlives the node's process:
// each Open starts a new process lifetime with a fresh node.Storage, and
// Crash ends a lifetime as a power loss would.
//
// The disk keeps two states. The durable state survives a crash. The
// volatile state is what Load sees when no crash happens: the durable state
// plus writes that completed without an fsync. A Save with Sync makes the
// whole volatile state durable when it completes.
type Disk struct {
	id   uint64
	o    DiskOptions // in force (faults off after SetFaults(false))
	base DiskOptions // as configured
	rng  *Rand
	s    *Scheduler
	tr   *Trace

	durable  diskState
	volatile diskState
	unsynced []*diskWrite // completed writes not yet durable, in order
	inflight *diskWrite   // the write in progress, if any
	epoch    uint64       // lifetime; closures and handles of older ones are dead
	c        DiskCounters

	// Silent faults (storage.go).
	damage    []damage       // damaged durable records
	prevHS    core.HardState // the durable hard state before the current one
	arm       *armed         // a write fault waiting for the next fsync
	bugs      uint64         // planted storage bugs
	sinceLoad bool           // damage was done since the last successful Load
	recovered bool           // the last successful Load came after damage
}

// diskState is a stored hard state, snapshot and log. The snapshot is
// never mutated once stored, so states and writes may share it.
type diskState struct {
	hs   core.HardState
	snap *core.Snapshot
	ents []core.Entry
}

// diskWrite is a private copy of one Update.
type diskWrite struct {
	snap      *core.Snapshot
	local     *core.Snapshot
	compactTo uint64
	ents      []core.Entry
	hs        core.HardState
	sync      bool
}

// Trace texts.
const (
	textDiskStart     = "start"
	textDiskStartSync = "start-sync"
	textDiskDone      = "done"
	textDiskLost      = "lost"
	textDiskWrite     = "write"
	textDiskRead      = "read"
)

// NewDisk returns the empty disk of node id. tr may be nil.
func NewDisk(id uint64, o DiskOptions, rng *Rand, s *Scheduler, tr *Trace) *Disk {
	if rng == nil || s == nil {
		panic("sim: NewDisk: nil Rand or Scheduler")
	}
	return &Disk{id: id, o: o, base: o, rng: rng, s: s, tr: tr}
}

// SetFaults switches the disk's faults (stalls, write and read errors, torn
// writes) on or off; they are on from the start. Latencies stay, and a
// crash still loses what no fsync covered.
func (d *Disk) SetFaults(on bool) {
	d.o = d.base
	if !on {
		d.o.StallRate, d.o.WriteErrorRate, d.o.ReadErrorRate, d.o.TornRate = 0, 0, 0, 0
		d.arm = nil // damage already done stays
	}
}

// SetBugs plants the storage bugs of bugs (simbugs builds only).
func (d *Disk) SetBugs(bugs uint64) { d.bugs = bugs }

func (d *Disk) trace(e Event) {
	if d.tr != nil {
		e.At, e.Node = d.s.Now(), d.id
		d.tr.Add(e)
	}
}

// Open starts a new process lifetime and returns its storage. Any earlier
// handle is dead: its pending completion never fires, and a write it had
// in flight is abandoned (without a Crash, completed unsynced writes stay
// visible, as after a process restart without a power loss).
func (d *Disk) Open() node.Storage {
	d.epoch++
	d.inflight = nil
	return &diskHandle{d: d, epoch: d.epoch}
}

// Crash kills the current lifetime as a power loss: everything not covered
// by a completed fsync is lost, and a write in flight is lost or, with
// probability TornRate, torn: its snapshot parts and a random prefix
// (possibly empty) of its entries survive, its hard state does not.
func (d *Disk) Crash() {
	d.epoch++
	lost := uint64(len(d.unsynced))
	clear(d.unsynced)
	d.unsynced = d.unsynced[:0]
	if w := d.inflight; w != nil {
		d.inflight = nil
		if d.rng.Chance(d.o.TornRate) {
			keep := d.rng.Intn(len(w.ents) + 1)
			kept := d.land(w, keep, false)
			d.c.Torn++
			d.trace(Event{Kind: EvDiskTorn, A: uint64(kept), B: uint64(len(w.ents))})
		} else {
			lost++
		}
	}
	if lost > 0 {
		d.c.LostOnCrash += lost
		d.trace(Event{Kind: EvDiskWrite, A: lost, Text: textDiskLost})
	}
	d.volatile = d.durable.clone()
	d.uncache()
}

// Durable returns a deep copy of what would survive a crash now.
func (d *Disk) Durable() core.Persisted { return d.durable.persisted() }

// Counters returns what happened on the disk so far.
func (d *Disk) Counters() DiskCounters { return d.c }

// WriteInFlight reports whether a Save of the current lifetime has not
// completed yet.
func (d *Disk) WriteInFlight() bool { return d.inflight != nil }

// diskHandle is the node.Storage of one process lifetime.
type diskHandle struct {
	d     *Disk
	epoch uint64
}

// Load returns a copy of the volatile state, an injected read error, or,
// while stored records are damaged, an error wrapping ErrCorrupt.
func (h *diskHandle) Load() (core.Persisted, error) {
	d := h.d
	if h.epoch != d.epoch {
		return core.Persisted{}, fmt.Errorf("sim: disk %d: load: %w", d.id, ErrDiskClosed)
	}
	if d.rng.Chance(d.o.ReadErrorRate) {
		d.c.Errors++
		d.trace(Event{Kind: EvDiskError, Text: textDiskRead})
		return core.Persisted{}, fmt.Errorf("sim: disk %d: load: %w", d.id, ErrDiskRead)
	}
	if len(d.damage) > 0 && d.visibleDamage() {
		p, err := d.loadDamaged()
		if err != nil {
			return p, err
		}
		d.recovered, d.sinceLoad = true, false
		return p, nil
	}
	d.recovered, d.sinceLoad = d.sinceLoad, false
	return d.volatile.persisted(), nil
}

// Recovered reports whether the last successful Load came after damage
// (which rewrites had repaired, or a planted bug served).
func (d *Disk) Recovered() bool { return d.recovered }

// Save starts writing u; done runs from the scheduler when the write
// completes (never on a dead handle). Its random draws happen here, in
// this order: write latency, sync latency (if u.Sync), stall, error.
func (h *diskHandle) Save(u *node.Update, done func(error)) {
	d := h.d
	if h.epoch != d.epoch {
		return // a dead process writes nothing
	}
	if d.inflight != nil {
		panic(fmt.Sprintf("sim: disk %d: Save while another Save is outstanding", d.id))
	}
	w := newDiskWrite(d.id, u)
	d.volatile.checkAppend(d.id, w)
	lat := d.rng.Exp(d.o.WriteMean)
	if w.sync {
		lat += d.rng.Exp(d.o.SyncMean)
	}
	if d.rng.Chance(d.o.StallRate) {
		lat += d.rng.Exp(d.o.StallMean)
	}
	fail := d.rng.Chance(d.o.WriteErrorRate)
	d.inflight = w
	d.c.Writes++
	text := textDiskStart
	if w.sync {
		text = textDiskStartSync
	}
	d.trace(Event{Kind: EvDiskWrite, A: uint64(len(w.ents)), B: w.lastIndex(), Text: text})
	epoch := h.epoch
	writes := d.c.Writes
	d.s.After(lat, func() {
		if d.epoch != epoch {
			return // the process died: done never runs
		}
		d.inflight = nil
		if fail {
			d.c.Errors++
			d.trace(Event{Kind: EvDiskError, A: writes, Text: textDiskWrite})
			done(fmt.Errorf("sim: disk %d: write %d: %w", d.id, writes, ErrDiskWrite))
			return
		}
		d.complete(w)
		done(nil)
	})
}

// complete applies a finished write to the volatile state and, if it
// syncs, folds every unsynced write into the durable state.
func (d *Disk) complete(w *diskWrite) {
	d.volatile.apply(d.id, w, len(w.ents), true)
	if !w.sync {
		d.unsynced = append(d.unsynced, w)
		d.trace(Event{Kind: EvDiskWrite, A: uint64(len(w.ents)), B: w.lastIndex(), Text: textDiskDone})
		return
	}
	for i, p := range d.unsynced {
		d.land(p, len(p.ents), true)
		d.unsynced[i] = nil
	}
	d.unsynced = d.unsynced[:0]
	prev := d.durable.hs
	d.land(w, len(w.ents), true)
	if d.arm != nil && d.loseWrite(w, d.arm, prev) {
		d.arm = nil
	}
	d.c.Syncs++
	d.trace(Event{Kind: EvDiskSync, A: d.durable.lastIndex(), B: d.durable.hs.Term})
}

// newDiskWrite copies u (entry Data and snapshot Data are shared: they are
// immutable).
func newDiskWrite(id uint64, u *node.Update) *diskWrite {
	w := &diskWrite{
		snap:      cloneSnapshot(u.Snapshot),
		local:     cloneSnapshot(u.LocalSnapshot),
		compactTo: u.CompactTo,
		ents:      slices.Clone(u.Entries),
		hs:        u.HardState,
		sync:      u.Sync,
	}
	for i := 1; i < len(w.ents); i++ {
		if w.ents[i].Index != w.ents[0].Index+uint64(i) {
			panic(fmt.Sprintf("sim: disk %d: Save: entries not contiguous: index %d at position %d after %d",
				id, w.ents[i].Index, i, w.ents[0].Index))
		}
	}
	return w
}

func (w *diskWrite) lastIndex() uint64 {
	if len(w.ents) == 0 {
		return 0
	}
	return w.ents[len(w.ents)-1].Index
}

func cloneSnapshot(s *core.Snapshot) *core.Snapshot {
	if s == nil {
		return nil
	}
	c := *s
	c.Meta.Config = s.Meta.Config.Clone()
	return &c
}

// lastIndex returns the index of the last stored entry, or the snapshot's
// index when the log is empty.
func (s *diskState) lastIndex() uint64 {
	if k := len(s.ents); k > 0 {
		return s.ents[k-1].Index
	}
	if s.snap != nil {
		return s.snap.Meta.Index
	}
	return 0
}

// checkAppend panics if w's entries would leave a gap after the state that
// w's snapshot parts leave behind.
func (s *diskState) checkAppend(id uint64, w *diskWrite) {
	if len(w.ents) == 0 {
		return
	}
	last := s.lastIndex()
	if w.snap != nil {
		last = w.snap.Meta.Index // the log is replaced
	}
	if w.local != nil {
		// Entries after CompactTo stay; without any, the log ends at the
		// snapshot.
		if k := len(s.ents); w.snap == nil && k > 0 && s.ents[k-1].Index > w.compactTo {
			last = s.ents[k-1].Index
		} else {
			last = w.local.Meta.Index
		}
	}
	if first := w.ents[0].Index; first > last+1 {
		panic(fmt.Sprintf("sim: disk %d: Save: entries from %d leave a gap after last index %d", id, first, last))
	}
}

// apply applies w to s, with only the first keep entries of w and, if
// full, its hard state. An entry gap panics when full and keeps no entries
// otherwise (a torn write whose entries do not reach the durable log).
// Entry structs are copied; entry and snapshot data are shared.
func (s *diskState) apply(id uint64, w *diskWrite, keep int, full bool) int {
	if w.snap != nil {
		s.snap = w.snap
		s.truncateFrom(0)
	}
	if w.local != nil {
		s.snap = w.local
		s.compact(w.compactTo)
	}
	if len(w.ents) > 0 {
		first := w.ents[0].Index
		if last := s.lastIndex(); first > last+1 {
			if full {
				panic(fmt.Sprintf("sim: disk %d: apply: entries from %d leave a gap after last index %d", id, first, last))
			}
			keep = 0
		}
		s.truncateFrom(first)
		s.ents = append(s.ents, w.ents[:keep]...)
	}
	if full && !w.hs.IsEmpty() {
		s.hs = w.hs
	}
	return keep
}

// truncateFrom deletes the entries with index >= i.
func (s *diskState) truncateFrom(i uint64) {
	k, _ := slices.BinarySearchFunc(s.ents, i, func(e core.Entry, i uint64) int {
		return cmp.Compare(e.Index, i)
	})
	clear(s.ents[k:])
	s.ents = s.ents[:k]
}

// compact deletes the entries with index <= i, in place.
func (s *diskState) compact(i uint64) {
	if i == math.MaxUint64 {
		s.truncateFrom(0)
		return
	}
	k, _ := slices.BinarySearchFunc(s.ents, i+1, func(e core.Entry, i uint64) int {
		return cmp.Compare(e.Index, i)
	})
	if k == 0 {
		return
	}
	n := copy(s.ents, s.ents[k:])
	clear(s.ents[n:])
	s.ents = s.ents[:n]
}

// clone returns a copy of s that shares no entry slice with it.
func (s *diskState) clone() diskState {
	return diskState{hs: s.hs, snap: s.snap, ents: slices.Clone(s.ents)}
}

// persisted returns a copy of s that the caller may mutate freely.
func (s *diskState) persisted() core.Persisted {
	return core.Persisted{HardState: s.hs, Snapshot: cloneSnapshot(s.snap), Entries: slices.Clone(s.ents)}
}
