package kvlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
)

// ErrCorrupt is wrapped by the errors of Open and Load when stored data
// fails verification.
var ErrCorrupt = errors.New("corrupt data")

// ErrNeedsRecovery is wrapped by an engine's read-only open that cannot
// proceed before a read-write open recovers the engine (cuts its log after
// a crash); Open then skips its read-only verification pass.
var ErrNeedsRecovery = errors.New("the database needs recovery by a read-write open")

// ErrClosed is wrapped by the errors of operations on a closed Storage.
var ErrClosed = errors.New("storage closed")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc returns the CRC-32C (Castagnoli) of b.
func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Keys.
const (
	entryPrefix = 'e'
	entryKeyLen = 9
	metaKey     = "m"
)

// EntryLower and EntryUpper bound every entry key: EntryLower <= key <
// EntryUpper.
var (
	entryLower = []byte("e")
	entryUpper = []byte("f")
)

// entryKey returns the key of the entry at index.
func entryKey(index uint64) []byte {
	k := make([]byte, entryKeyLen)
	k[0] = entryPrefix
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

// keyName returns the name of key used in error messages.
func keyName(key []byte) string {
	if len(key) == entryKeyLen && key[0] == entryPrefix {
		return fmt.Sprintf("e/%016x (index %d)", key[1:], binary.BigEndian.Uint64(key[1:]))
	}
	if len(key) == 1 {
		return string(key)
	}
	return fmt.Sprintf("%q", key)
}

// seal fills the first 4 bytes of v, reserved by the caller, with the
// CRC-32C of the rest.
func seal(v []byte) []byte {
	binary.BigEndian.PutUint32(v, crc(v[4:]))
	return v
}

// unseal checks the CRC of a value and returns what it covers (aliasing v).
func unseal(v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, fmt.Errorf("value of %d bytes is too short", len(v))
	}
	if got, want := crc(v[4:]), binary.BigEndian.Uint32(v); got != want {
		return nil, fmt.Errorf("checksum %08x, stored %08x", got, want)
	}
	return v[4:], nil
}

// state is the stored state apart from the entries' contents: the value of
// the meta key, and what the guard file records. It is everything a commit
// needs to check and apply an update as node.MemoryStorage does.
type state struct {
	seq         uint64 // commit sequence number of the last commit
	hasEntries  bool
	first, last uint64 // the log is first..last, when hasEntries
	lastTerm    uint64
	hs          core.HardState
	hasSnap     bool
	ref         snapfile.Ref // the snapshot file in use, when hasSnap
}

// String describes st for error messages.
func (st *state) String() string {
	s := fmt.Sprintf("commit %d: ", st.seq)
	if st.hasEntries {
		s += fmt.Sprintf("log %d..%d (last term %d)", st.first, st.last, st.lastTerm)
	} else {
		s += "no log entries"
	}
	s += fmt.Sprintf(", hard state term %d vote %d commit %d", st.hs.Term, st.hs.Vote, st.hs.Commit)
	if st.hasSnap {
		s += fmt.Sprintf(", snapshot %d/%d", st.ref.Meta.Index, st.ref.Meta.Term)
	}
	return s
}

// summary is what the guard file records of st (the snapshot's index and
// term, not its file).
func (st *state) summary() guardState {
	g := guardState{seq: st.seq, hs: st.hs}
	if st.hasEntries {
		g.first, g.last, g.lastTerm = st.first, st.last, st.lastTerm
	}
	if st.hasSnap {
		g.snapIndex, g.snapTerm = st.ref.Meta.Index, st.ref.Meta.Term
	}
	return g
}

// Meta value layout (after the 4-byte CRC): version byte 1, flags byte
// (1: entries, 2: snapshot), then seq, first, last, lastTerm, hard state
// term, vote, commit (7 x 8 bytes big-endian), then, with a snapshot, its
// reference in snapfile's encoding. Nothing follows.
const (
	metaVersion   = 1
	flagEntries   = 1
	flagSnapshot  = 2
	metaFixedSize = 2 + 7*8
)

// encodeMeta returns the sealed meta value of st.
func encodeMeta(st *state) ([]byte, error) {
	v := make([]byte, 4, 4+metaFixedSize+64)
	var flags byte
	if st.hasEntries {
		flags |= flagEntries
	}
	if st.hasSnap {
		flags |= flagSnapshot
	}
	v = append(v, metaVersion, flags)
	for _, u := range []uint64{st.seq, st.first, st.last, st.lastTerm, st.hs.Term, st.hs.Vote, st.hs.Commit} {
		v = binary.BigEndian.AppendUint64(v, u)
	}
	if st.hasSnap {
		var err error
		if v, err = st.ref.AppendBinary(v); err != nil {
			return nil, err
		}
	}
	return seal(v), nil
}

// decodeMeta decodes a checked meta value.
func decodeMeta(b []byte) (state, error) {
	var st state
	if len(b) < metaFixedSize {
		return st, fmt.Errorf("%d bytes, want at least %d", len(b), metaFixedSize)
	}
	if b[0] != metaVersion {
		return st, fmt.Errorf("unknown version %d", b[0])
	}
	flags := b[1]
	if flags&^(flagEntries|flagSnapshot) != 0 {
		return st, fmt.Errorf("unknown flags %#x", flags)
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[2+8*i:]) }
	st = state{
		seq: u(0), hasEntries: flags&flagEntries != 0, first: u(1), last: u(2), lastTerm: u(3),
		hs:      core.HardState{Term: u(4), Vote: u(5), Commit: u(6)},
		hasSnap: flags&flagSnapshot != 0,
	}
	rest := b[metaFixedSize:]
	if st.hasSnap {
		r, tail, err := snapfile.DecodeRef(rest)
		if err != nil {
			return st, fmt.Errorf("snapshot reference: %w", err)
		}
		st.ref, rest = r, tail
	}
	if len(rest) != 0 {
		return st, fmt.Errorf("%d bytes after the value", len(rest))
	}
	if st.hasEntries && (st.first == 0 || st.last < st.first) {
		return st, fmt.Errorf("log bounds %d..%d", st.first, st.last)
	}
	if !st.hasEntries && (st.first|st.last|st.lastTerm) != 0 {
		return st, errors.New("log bounds without a log")
	}
	return st, nil
}

// The guard file records, outside the engine, the commit sequence number
// of the latest synced commit and a summary of the state it left. An
// engine that falls back to an older commit when its newest is damaged
// (Bolt's two meta pages, Badger's write-ahead log cut at a bad record)
// opens without an error; the guard is how Open notices that it holds less
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
// All integers are big-endian. The format is the one of adapters/pebble.
const (
	guardName      = "commit.guard"
	guardMagic     = "FCGUARD1"
	guardSlotSize  = 4096
	guardBodySize  = 80
	guardSlotCount = 2
)

// guardState is what a guard slot records.
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
	return guardState{
		seq: u(0), first: u(1), last: u(2), lastTerm: u(3),
		hs:        core.HardState{Term: u(4), Vote: u(5), Commit: u(6)},
		snapIndex: u(7), snapTerm: u(8),
	}, nil
}

// guardRead is what readGuard found.
type guardRead struct {
	state   guardState // the newest valid slot
	slot    int        // its number
	damaged string     // a bad slot when the other one is valid
}

// readGuard reads the guard file at path. It returns ok false if the file
// does not exist, and an error wrapping ErrCorrupt if neither slot is
// valid.
func readGuard(name, path string) (r guardRead, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("%s: read guard file: %w", name, err)
	}
	if len(b) != guardSlotCount*guardSlotSize {
		return r, false, fmt.Errorf("%s: corrupt guard file %s: %w: %d bytes, want %d",
			name, path, ErrCorrupt, len(b), guardSlotCount*guardSlotSize)
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
		return r, false, fmt.Errorf("%s: corrupt guard file %s: %w: slot 0: %v; slot 1: %v",
			name, path, ErrCorrupt, errs[0], errs[1])
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

// guard is the open guard file.
type guard struct {
	path   string
	f      *os.File
	next   int // the slot the next write goes to
	noSync bool
}

// createGuard creates the guard file at path with both slots holding g,
// durably (unless noSync), and opens it.
func createGuard(path string, g guardState, noSync bool) (*guard, error) {
	slot := g.encode()
	if err := durable.WriteFile(path, noSync, slot, slot); err != nil {
		return nil, fmt.Errorf("create guard file: %w", err)
	}
	return openGuard(path, 1, noSync)
}

// openGuard opens the guard file for writing; next is the slot the next
// write goes to.
func openGuard(path string, next int, noSync bool) (*guard, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open guard file: %w", err)
	}
	return &guard{path: path, f: f, next: next, noSync: noSync}, nil
}

// write records g in the next slot and makes it durable (unless noSync).
func (gd *guard) write(g guardState) error {
	if _, err := gd.f.WriteAt(g.encode(), int64(gd.next*guardSlotSize)); err != nil {
		return fmt.Errorf("write guard file %s: %w", gd.path, err)
	}
	if !gd.noSync {
		if err := fdatasync(gd.f); err != nil {
			return fmt.Errorf("sync guard file %s: %w", gd.path, err)
		}
	}
	gd.next = 1 - gd.next
	return nil
}

// close closes the guard file.
func (gd *guard) close() error {
	if err := gd.f.Close(); err != nil {
		return fmt.Errorf("close guard file: %w", err)
	}
	return nil
}
