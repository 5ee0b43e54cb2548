package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/core"
)

// The guard file records, outside Pebble, the commit sequence number of the
// latest synced commit and a summary of the state it left. Pebble treats a
// bad record in its last WAL file as the end of the log and opens without
// an error; the guard is how Open notices that the database replayed less
// than was acknowledged.
//
// The file holds two slots of guardSlotSize bytes, written alternately in
// place (pwrite and fdatasync), so that a crash during one write leaves the
// other intact. A slot is:
//
//	0   magic "FCGUARD1"
//	8   commit sequence number
//	16  first log index (0: no entries)
//	24  last log index
//	32  term of the last entry
//	40  hard state term, vote, commit (3 x 8 bytes)
//	64  snapshot index, snapshot term (2 x 8 bytes)
//	80  CRC-32C of bytes 0..80
//	84  zeros up to guardSlotSize
//
// All integers are big-endian.
const (
	guardName      = "commit.guard"
	guardMagic     = "FCGUARD1"
	guardSlotSize  = 4096 // a slot per page, so a torn write damages one slot
	guardBodySize  = 80
	guardSlotCount = 2
)

// guardState is what a guard slot records: the commit sequence number and
// a summary of the stored state after that commit.
type guardState struct {
	seq                 uint64
	first, last         uint64 // 0, 0: no entries
	lastTerm            uint64
	hs                  core.HardState
	snapIndex, snapTerm uint64
}

// String describes g for error messages.
func (g guardState) String() string {
	return fmt.Sprintf("commit %d: log %d..%d (last term %d), hard state term %d vote %d commit %d, snapshot %d/%d",
		g.seq, g.first, g.last, g.lastTerm, g.hs.Term, g.hs.Vote, g.hs.Commit, g.snapIndex, g.snapTerm)
}

// summary returns the guard state of p at commit seq.
func summary(seq uint64, p *core.Persisted) guardState {
	g := guardState{seq: seq, hs: p.HardState}
	if n := len(p.Entries); n > 0 {
		g.first, g.last, g.lastTerm = p.Entries[0].Index, p.Entries[n-1].Index, p.Entries[n-1].Term
	}
	if p.Snapshot != nil {
		g.snapIndex, g.snapTerm = p.Snapshot.Meta.Index, p.Snapshot.Meta.Term
	}
	return g
}

// encode returns the slot holding g.
func (g guardState) encode() []byte {
	b := make([]byte, 0, guardSlotSize)
	b = append(b, guardMagic...)
	for _, v := range []uint64{g.seq, g.first, g.last, g.lastTerm, g.hs.Term, g.hs.Vote, g.hs.Commit, g.snapIndex, g.snapTerm} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint32(b, crc(b))
	return b[:guardSlotSize]
}

// decodeGuardSlot decodes a slot, or says what is wrong with it.
func decodeGuardSlot(b []byte) (guardState, error) {
	var g guardState
	if len(b) != guardSlotSize {
		return g, fmt.Errorf("slot of %d bytes", len(b))
	}
	if string(b[:8]) != guardMagic {
		return g, errors.New("bad magic")
	}
	if got, want := crc(b[:guardBodySize]), binary.BigEndian.Uint32(b[guardBodySize:]); got != want {
		return g, fmt.Errorf("checksum %08x, stored %08x", got, want)
	}
	for i, c := range b[guardBodySize+4:] {
		if c != 0 {
			return g, fmt.Errorf("nonzero padding byte at offset %d", guardBodySize+4+i)
		}
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[8+8*i:]) }
	g = guardState{
		seq: u(0), first: u(1), last: u(2), lastTerm: u(3),
		hs:        core.HardState{Term: u(4), Vote: u(5), Commit: u(6)},
		snapIndex: u(7), snapTerm: u(8),
	}
	return g, nil
}

// guard is the open guard file.
type guard struct {
	path   string
	f      *os.File
	next   int // the slot the next write goes to
	noSync bool
}

// guardRead is what readGuard found.
type guardRead struct {
	state guardState // the newest valid slot
	slot  int        // its number
	// damaged describes a bad slot when the other one is valid ("" if
	// both are valid).
	damaged string
}

// readGuard reads the guard file at path. It returns ok false if the file
// does not exist, and an error wrapping ErrCorrupt if neither slot is
// valid.
func readGuard(path string) (r guardRead, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("pebble storage: read guard file: %w", err)
	}
	if len(b) != guardSlotCount*guardSlotSize {
		return r, false, fmt.Errorf("pebble storage: corrupt guard file %s: %w: %d bytes, want %d",
			path, ErrCorrupt, len(b), guardSlotCount*guardSlotSize)
	}
	var (
		states [guardSlotCount]guardState
		errs   [guardSlotCount]error
	)
	for i := range guardSlotCount {
		states[i], errs[i] = decodeGuardSlot(b[i*guardSlotSize : (i+1)*guardSlotSize])
	}
	switch {
	case errs[0] != nil && errs[1] != nil:
		return r, false, fmt.Errorf("pebble storage: corrupt guard file %s: %w: slot 0: %v; slot 1: %v",
			path, ErrCorrupt, errs[0], errs[1])
	case errs[0] != nil:
		r = guardRead{state: states[1], slot: 1, damaged: fmt.Sprintf("slot 0: %v", errs[0])}
	case errs[1] != nil:
		r = guardRead{state: states[0], slot: 0, damaged: fmt.Sprintf("slot 1: %v", errs[1])}
	case states[1].seq > states[0].seq:
		r = guardRead{state: states[1], slot: 1}
	default:
		r = guardRead{state: states[0], slot: 0}
	}
	return r, true, nil
}

// createGuard creates the guard file at path with both slots holding g,
// durably (the file and its directory are fsynced unless noSync).
func createGuard(path string, g guardState, noSync bool) (*guard, error) {
	slot := g.encode()
	if err := durable.WriteFile(path, noSync, slot, slot); err != nil {
		return nil, fmt.Errorf("pebble storage: create guard file: %w", err)
	}
	return openGuard(path, 1, noSync)
}

// openGuard opens the guard file for writing; next is the slot the next
// write goes to.
func openGuard(path string, next int, noSync bool) (*guard, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("pebble storage: open guard file: %w", err)
	}
	return &guard{path: path, f: f, next: next, noSync: noSync}, nil
}

// write records g in the next slot and makes it durable (unless noSync).
func (gd *guard) write(g guardState) error {
	if _, err := gd.f.WriteAt(g.encode(), int64(gd.next*guardSlotSize)); err != nil {
		return fmt.Errorf("pebble storage: write guard file %s: %w", gd.path, err)
	}
	if !gd.noSync {
		if err := fdatasync(gd.f); err != nil {
			return fmt.Errorf("pebble storage: sync guard file %s: %w", gd.path, err)
		}
	}
	gd.next = 1 - gd.next
	return nil
}

// close closes the guard file.
func (gd *guard) close() error {
	if err := gd.f.Close(); err != nil {
		return fmt.Errorf("pebble storage: close guard file: %w", err)
	}
	return nil
}
