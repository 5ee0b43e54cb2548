package sim

import (
	"errors"
	"fmt"
	"strings"

	"github.com/forge-consensus/consensus/core"
)

// Silent storage faults
//
// The simulated disk stands for a correct production storage: every stored
// record (each log entry, the hard state, the snapshot) carries a checksum
// and its own identity (type, index), log records are chained (each
// record's checksum covers the previous one's), and a durable high-water
// mark (the last durable index and term and the hard state), written with
// every fsync but kept apart from the records it covers, says what the
// last fsync made durable. That is what adapters/wal and adapters/pebble
// keep. The model does not store bytes: it knows which stored records are
// damaged, and Load, like such a storage, refuses with an error wrapping
// ErrCorrupt while any damage is left (fail-stop). A record that is
// rewritten (the entry at its index replaced, truncated or compacted away,
// a new hard state or snapshot made durable) is whole again.
//
// The damage it models, and why a correct storage detects it:
//   - a bit flip in a stored entry, hard state or snapshot: the record's
//     checksum fails. A flip in the very last record of the log, with
//     nothing valid after it, looks like a torn write; only the high-water
//     mark tells them apart (it says that record was fsynced), so the
//     model, whose storage keeps one, detects it;
//   - a lost write (an fsync reports success, the write never lands, which
//     shows after a crash): the records of the write are missing or stale
//     where the chain and the high-water mark say they must be;
//   - a misdirected write: the write lands on another stored record, which
//     then fails its checksum or carries the wrong identity, and the
//     intended records are missing as after a lost write;
//   - a latent read error: a stored record cannot be read back at Load.
//
// What no storage can detect, and the model therefore never injects: a
// write lost together with the high-water mark that covers it (an fsync
// that lies about everything it did, with nothing durable after it) is
// indistinguishable from a crash before that fsync, so a node would start
// with less than it acknowledged; and damage that turns a record into
// another valid record with a matching checksum (a collision). Damage to
// data no fsync covered is not damage: a crash loses it anyway.
//
// The simulator damages at most a minority of the nodes at a time (see
// Options.Storage): recovering a damaged node is the cluster's job (the
// harness replaces it by a fresh node, see repair.go).

// ErrCorrupt is wrapped by the error of a Load that meets damaged storage:
// the node must not start from it (fail-stop).
var ErrCorrupt = errors.New("corrupt storage")

// StorageOptions are a run's silent storage faults (drawn per seed by
// Draw). Rates are events per simulated second for the whole cluster; 0
// turns the class off.
type StorageOptions struct {
	// FlipRate: a bit flips in a stored record of one node.
	FlipRate float64 `json:"flip_rate,omitempty"`
	// LostWriteRate: the next fsync of one node reports success, but its
	// write never lands.
	LostWriteRate float64 `json:"lost_write_rate,omitempty"`
	// MisdirectRate: the next fsync of one node lands its write on another
	// stored record.
	MisdirectRate float64 `json:"misdirect_rate,omitempty"`
	// LatentRate: a stored record of one node becomes unreadable.
	LatentRate float64 `json:"latent_rate,omitempty"`
	// CrashAfter is the share of damage faults followed, within
	// CrashAfterMax, by a crash of the damaged node (so that it meets the
	// damage at its restart while it is fresh).
	CrashAfter    float64 `json:"crash_after,omitempty"`
	CrashAfterMax Time    `json:"crash_after_max,omitempty"`
	// MaxDamaged bounds the nodes damaged at a time: a node once damaged
	// counts until it is removed from the cluster. It is also never more
	// than a minority of any voter set.
	MaxDamaged int `json:"max_damaged,omitempty"`
	// RepairShare is the probability that a node that refused its storage
	// is repaired (removed, replaced by a fresh node as a learner, then
	// promoted) after a delay of up to RepairMax; otherwise it stays down.
	RepairShare float64 `json:"repair_share,omitempty"`
	RepairMax   Time    `json:"repair_max,omitempty"`
}

// On reports whether any storage fault class is on.
func (o *StorageOptions) On() bool {
	return o.FlipRate > 0 || o.LostWriteRate > 0 || o.MisdirectRate > 0 || o.LatentRate > 0
}

// DamageKind is a class of silent storage damage.
type DamageKind uint8

// Damage kinds.
const (
	DamageFlip       DamageKind = iota + 1 // a bit flipped in the record
	DamageLost                             // the record's write never landed
	DamageMisdirect                        // another write landed on the record
	DamageUnreadable                       // the record cannot be read
)

var damageKindNames = [...]string{
	DamageFlip: "bit flip (checksum mismatch)", DamageLost: "lost write (missing below the high-water mark)",
	DamageMisdirect: "overwritten by a misdirected write", DamageUnreadable: "latent read error",
}

// String describes the kind.
func (k DamageKind) String() string {
	if k > 0 && int(k) < len(damageKindNames) {
		return damageKindNames[k]
	}
	return "damage?"
}

// record kinds of a damage mark.
const (
	recEntry uint8 = iota + 1
	recHardState
	recSnapshot
)

// damage marks one damaged durable record.
type damage struct {
	rec   uint8
	index uint64 // of an entry
	kind  DamageKind
	// prev is, for a hard state, the one stored before (what a recovery
	// that trusts damage falls back to).
	prev core.HardState
	// cached: the page cache still holds what the write meant to store (a
	// lost or misdirected write shows only after a crash drops it).
	cached bool
}

func (m *damage) String() string {
	switch m.rec {
	case recEntry:
		return fmt.Sprintf("entry %d: %v", m.index, m.kind)
	case recHardState:
		return fmt.Sprintf("hard state: %v", m.kind)
	}
	return fmt.Sprintf("snapshot: %v", m.kind)
}

// armed is a write fault waiting for the disk's next fsync.
type armed struct {
	kind DamageKind // DamageLost or DamageMisdirect
	r    *Rand      // chooses the record a misdirected write lands on
}

// Damaged reports whether damage is left on the disk (Load would refuse).
func (d *Disk) Damaged() bool { return len(d.damage) > 0 }

// DamageReport describes the damage left on the disk.
func (d *Disk) DamageReport() string {
	if len(d.damage) == 0 {
		return "none"
	}
	parts := make([]string, 0, min(len(d.damage), 4))
	for i := range d.damage {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(d.damage)-3))
			break
		}
		parts = append(parts, d.damage[i].String())
	}
	return strings.Join(parts, "; ")
}

// Flip flips a bit in one durable record chosen with r (the record class
// first: hard state, snapshot or log, then an entry). It reports false when
// nothing is stored.
func (d *Disk) Flip(r *Rand) bool {
	if !d.damageRecord(r, DamageFlip, nil) {
		return false
	}
	d.c.Flips++
	return true
}

// MakeUnreadable gives one durable record chosen with r a latent read
// error. It reports false when nothing is stored.
func (d *Disk) MakeUnreadable(r *Rand) bool {
	if !d.damageRecord(r, DamageUnreadable, nil) {
		return false
	}
	d.c.Unreadable++
	return true
}

// ArmWriteFault makes the disk's next fsync lose its write (DamageLost) or
// land it on another record chosen with r (DamageMisdirect), while it
// reports success. SetFaults(false) disarms it.
func (d *Disk) ArmWriteFault(kind DamageKind, r *Rand) {
	d.arm = &armed{kind: kind, r: r}
}

// damageRecord marks one durable record chosen with r as damaged, skipping
// records skip reports true for.
func (d *Disk) damageRecord(r *Rand, kind DamageKind, skip func(rec uint8, index uint64) bool) bool {
	s := &d.durable
	var classes [3]uint8
	n := 0
	if !s.hs.IsEmpty() {
		classes[n] = recHardState
		n++
	}
	if s.snap != nil {
		classes[n] = recSnapshot
		n++
	}
	if len(s.ents) > 0 {
		classes[n] = recEntry
		n++
	}
	if n == 0 {
		return false
	}
	m := damage{rec: classes[r.Intn(n)], kind: kind, cached: kind == DamageMisdirect}
	switch m.rec {
	case recEntry:
		m.index = s.ents[r.Intn(len(s.ents))].Index
	case recHardState:
		m.prev = d.prevHS
	}
	if skip != nil && skip(m.rec, m.index) {
		return false
	}
	d.addDamage(m)
	return true
}

func (d *Disk) addDamage(m damage) {
	d.damage = append(d.damage, m)
	d.sinceLoad = true
	d.trace(Event{Kind: EvDiskDamage, A: uint64(m.kind), B: m.index, Text: recName(m.rec)})
}

func recName(rec uint8) string {
	switch rec {
	case recEntry:
		return "entry"
	case recHardState:
		return "hard-state"
	}
	return "snapshot"
}

// land applies w (keep entries; its hard state if full) to the durable
// state, and forgets the damage of every record it rewrites.
func (d *Disk) land(w *diskWrite, keep int, full bool) int {
	old := d.durable.hs
	kept := d.durable.apply(d.id, w, keep, full)
	if d.durable.hs != old {
		d.prevHS = old
	}
	if len(d.damage) == 0 {
		return kept
	}
	k := 0
	for _, m := range d.damage {
		if !rewrites(w, full, &m) {
			d.damage[k] = m
			k++
		}
	}
	d.damage = d.damage[:k]
	return kept
}

// rewrites reports whether landing w replaces the record m marks.
func rewrites(w *diskWrite, full bool, m *damage) bool {
	switch m.rec {
	case recEntry:
		switch {
		case w.snap != nil:
			return true // the whole log is replaced
		case w.local != nil && m.index <= w.compactTo:
			return true
		case len(w.ents) > 0 && m.index >= w.ents[0].Index:
			return true // truncated, and rewritten if the write reaches it
		}
	case recHardState:
		return full && !w.hs.IsEmpty()
	case recSnapshot:
		return w.snap != nil || w.local != nil
	}
	return false
}

// loseWrite makes w, which an fsync just made durable, a lost or
// misdirected write: every record it wrote is damaged, and a misdirected
// write damages one more record that it landed on. prev is the hard state
// stored before w.
func (d *Disk) loseWrite(w *diskWrite, a *armed, prev core.HardState) bool {
	s := &d.durable
	n := len(d.damage)
	if w.snap != nil || w.local != nil {
		d.addDamage(damage{rec: recSnapshot, kind: DamageLost, cached: true})
	}
	if len(w.ents) > 0 && len(s.ents) > 0 {
		base := s.ents[0].Index
		for i := range w.ents {
			idx := w.ents[i].Index
			if idx >= base && idx-base < uint64(len(s.ents)) {
				d.addDamage(damage{rec: recEntry, index: idx, kind: DamageLost, cached: true})
			}
		}
	}
	if !w.hs.IsEmpty() {
		d.addDamage(damage{rec: recHardState, kind: DamageLost, prev: prev, cached: true})
	}
	if len(d.damage) == n {
		return false // nothing durable to lose: stay armed
	}
	d.trace(Event{Kind: EvDiskWrite, A: uint64(len(w.ents)), B: w.lastIndex(), Text: "lost-" + a.kind.short()})
	if a.kind == DamageMisdirect {
		d.c.Misdirected++
		d.damageRecord(a.r, DamageMisdirect, func(rec uint8, index uint64) bool {
			for _, m := range d.damage[n:] {
				if m.rec == rec && m.index == index {
					return true // one of the records the write missed
				}
			}
			return false
		})
	} else {
		d.c.LostWrites++
	}
	return true
}

func (k DamageKind) short() string {
	if k == DamageMisdirect {
		return "misdirected"
	}
	return "write"
}

// uncache drops the page cache (a crash): lost and misdirected writes
// show from now on.
func (d *Disk) uncache() {
	for i := range d.damage {
		d.damage[i].cached = false
	}
}

// visibleDamage reports whether a Load now meets damage.
func (d *Disk) visibleDamage() bool {
	for i := range d.damage {
		if !d.damage[i].cached {
			return true
		}
	}
	return false
}

// corruptError is Load's refusal: it names the first damaged record.
func (d *Disk) corruptError() error {
	return fmt.Errorf("sim: disk %d: load: %w: %s", d.id, ErrCorrupt, d.DamageReport())
}

// loadDamaged returns what Load gives while damage is left: a refusal, or,
// with a planted storage bug, the damaged state served as the bug would.
func (d *Disk) loadDamaged() (core.Persisted, error) {
	switch {
	case core.BugStorageIgnoresChecksums.In(d.bugs):
		return d.serveIgnoringChecksums(), nil
	case core.BugTrustDamagedHardState.In(d.bugs):
		for _, m := range d.damage {
			if m.rec != recHardState {
				return core.Persisted{}, d.corruptError()
			}
		}
		p := d.volatile.persisted()
		p.HardState = d.damage[0].prev // the hard state stored before
		return p, nil
	}
	return core.Persisted{}, d.corruptError()
}

// serveIgnoringChecksums is BugStorageIgnoresChecksums: a flipped entry
// is served flipped, the log ends before a lost, overwritten or unreadable
// entry, a damaged hard state loses its vote (or, without one, its term's
// low bit), a lost one is the one stored before, and a damaged snapshot is
// dropped.
func (d *Disk) serveIgnoringChecksums() core.Persisted {
	p := d.volatile.persisted()
	cut := uint64(0)
	for _, m := range d.damage {
		switch m.rec {
		case recSnapshot:
			p.Snapshot = nil
		case recHardState:
			switch {
			case m.kind == DamageLost:
				p.HardState = m.prev
			case p.HardState.Vote != 0:
				p.HardState.Vote = 0
			default:
				p.HardState.Term ^= 1
			}
		case recEntry:
			if m.kind != DamageFlip {
				if cut == 0 || m.index < cut {
					cut = m.index
				}
				continue
			}
			for i := range p.Entries {
				if e := &p.Entries[i]; e.Index == m.index {
					if len(e.Data) > 0 {
						data := append([]byte(nil), e.Data...)
						data[len(data)/2] ^= 0x10
						e.Data = data
					} else {
						e.Term ^= 1
					}
				}
			}
		}
	}
	if cut != 0 {
		for i := range p.Entries {
			if p.Entries[i].Index >= cut {
				p.Entries = p.Entries[:i]
				break
			}
		}
	}
	return p
}
