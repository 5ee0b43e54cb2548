// Package guard implements the commit guard file of the storage adapters
// (adapters/pebble and the engines built on adapters/internal/kvlog).
//
// The guard file records, outside the storage engine, the commit sequence
// number of the latest synced commit and a summary of the state it left.
// An engine that falls back to an older commit when its newest is damaged
// (Pebble treating a bad record in its last WAL file as the end of the
// log, Bolt's two meta pages, Badger's write-ahead log cut at a bad
// record) opens without an error; the guard is how an adapter's Open
// notices that the engine holds less than was acknowledged.
//
// The file holds SlotCount slots of SlotSize bytes, written alternately in
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
//	84  zeros up to SlotSize
//
// All integers are big-endian.
//
// Errors carry no adapter prefix: callers wrap them with their own
// ("pebble storage: ...", "bolt storage: ...").
package guard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/core"
)

// The file's name and layout.
const (
	// Name is the guard file's name in an adapter's data directory.
	Name = "commit.guard"
	// Magic starts every slot.
	Magic = "FCGUARD1"
	// SlotSize is the size of a slot: a slot per page, so that a torn
	// write damages one slot.
	SlotSize = 4096
	// BodySize is the size of the part of a slot covered by its
	// checksum; the CRC-32C follows it, then zeros up to SlotSize.
	BodySize = 80
	// SlotCount is the number of slots; the file is SlotCount*SlotSize
	// bytes.
	SlotCount = 2
)

// crc returns the CRC-32C (Castagnoli) of b.
func crc(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// State is what a guard slot records: the commit sequence number and a
// summary of the stored state after that commit.
type State struct {
	Seq         uint64 // commit sequence number
	First, Last uint64 // the log is First..Last; 0, 0: no entries
	LastTerm    uint64 // the term of entry Last
	HardState   core.HardState
	SnapIndex   uint64 // the snapshot's index (0: no snapshot)
	SnapTerm    uint64 // the snapshot's term
}

// String describes g for error messages.
func (g State) String() string {
	return fmt.Sprintf("commit %d: log %d..%d (last term %d), hard state term %d vote %d commit %d, snapshot %d/%d",
		g.Seq, g.First, g.Last, g.LastTerm, g.HardState.Term, g.HardState.Vote, g.HardState.Commit, g.SnapIndex, g.SnapTerm)
}

// Encode returns the slot (SlotSize bytes) holding g.
func (g State) Encode() []byte {
	b := make([]byte, 0, SlotSize)
	b = append(b, Magic...)
	for _, v := range []uint64{g.Seq, g.First, g.Last, g.LastTerm, g.HardState.Term, g.HardState.Vote, g.HardState.Commit, g.SnapIndex, g.SnapTerm} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint32(b, crc(b))
	return b[:SlotSize]
}

// DecodeSlot decodes a slot, or says what is wrong with it.
func DecodeSlot(b []byte) (State, error) {
	var g State
	if len(b) != SlotSize {
		return g, fmt.Errorf("slot of %d bytes", len(b))
	}
	if string(b[:8]) != Magic {
		return g, errors.New("bad magic")
	}
	if got, want := crc(b[:BodySize]), binary.BigEndian.Uint32(b[BodySize:]); got != want {
		return g, fmt.Errorf("checksum %08x, stored %08x", got, want)
	}
	for i, c := range b[BodySize+4:] {
		if c != 0 {
			return g, fmt.Errorf("nonzero padding byte at offset %d", BodySize+4+i)
		}
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[8+8*i:]) }
	return State{
		Seq: u(0), First: u(1), Last: u(2), LastTerm: u(3),
		HardState: core.HardState{Term: u(4), Vote: u(5), Commit: u(6)},
		SnapIndex: u(7), SnapTerm: u(8),
	}, nil
}

// Found is what Read found.
type Found struct {
	State State // the newest valid slot
	Slot  int   // its number
	// Damaged describes a bad slot when the other one is valid ("" if
	// both are valid).
	Damaged string
}

// Read reads the guard file at path. It returns ok false if the file does
// not exist, and an error wrapping corrupt (the caller's ErrCorrupt, which
// must not be nil) and naming the file if neither slot is valid.
func Read(path string, corrupt error) (r Found, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("read guard file: %w", err)
	}
	if len(b) != SlotCount*SlotSize {
		return r, false, fmt.Errorf("corrupt guard file %s: %w: %d bytes, want %d",
			path, corrupt, len(b), SlotCount*SlotSize)
	}
	var (
		states [SlotCount]State
		errs   [SlotCount]error
	)
	for i := range SlotCount {
		states[i], errs[i] = DecodeSlot(b[i*SlotSize : (i+1)*SlotSize])
	}
	switch {
	case errs[0] != nil && errs[1] != nil:
		return r, false, fmt.Errorf("corrupt guard file %s: %w: slot 0: %v; slot 1: %v",
			path, corrupt, errs[0], errs[1])
	case errs[0] != nil:
		r = Found{State: states[1], Slot: 1, Damaged: fmt.Sprintf("slot 0: %v", errs[0])}
	case errs[1] != nil:
		r = Found{State: states[0], Slot: 0, Damaged: fmt.Sprintf("slot 1: %v", errs[1])}
	case states[1].Seq > states[0].Seq:
		r = Found{State: states[1], Slot: 1}
	default:
		r = Found{State: states[0], Slot: 0}
	}
	return r, true, nil
}

// File is an open guard file. It is not safe for concurrent use.
type File struct {
	path   string
	f      *os.File
	next   int // the slot the next write goes to
	noSync bool
}

// Create creates the guard file at path with both slots holding g,
// durably (the file and its directory are fsynced unless noSync), and
// opens it.
func Create(path string, g State, noSync bool) (*File, error) {
	slot := g.Encode()
	if err := durable.WriteFile(path, noSync, slot, slot); err != nil {
		return nil, fmt.Errorf("create guard file: %w", err)
	}
	return Open(path, 1, noSync)
}

// Open opens the guard file at path for writing; next is the slot the
// next write goes to (the one Read did not find newest).
func Open(path string, next int, noSync bool) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open guard file: %w", err)
	}
	return &File{path: path, f: f, next: next, noSync: noSync}, nil
}

// Write records g in the next slot and makes it durable (fdatasync,
// unless noSync).
func (gf *File) Write(g State) error {
	if _, err := gf.f.WriteAt(g.Encode(), int64(gf.next*SlotSize)); err != nil {
		return fmt.Errorf("write guard file %s: %w", gf.path, err)
	}
	if !gf.noSync {
		if err := fdatasync(gf.f); err != nil {
			return fmt.Errorf("sync guard file %s: %w", gf.path, err)
		}
	}
	gf.next = 1 - gf.next
	return nil
}

// Close closes the guard file.
func (gf *File) Close() error {
	if err := gf.f.Close(); err != nil {
		return fmt.Errorf("close guard file: %w", err)
	}
	return nil
}
