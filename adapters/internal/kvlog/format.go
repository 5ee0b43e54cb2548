package kvlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/forge-consensus/consensus/adapters/internal/guard"
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
func (st *state) summary() guard.State {
	g := guard.State{Seq: st.seq, HardState: st.hs}
	if st.hasEntries {
		g.First, g.Last, g.LastTerm = st.first, st.last, st.lastTerm
	}
	if st.hasSnap {
		g.SnapIndex, g.SnapTerm = st.ref.Meta.Index, st.ref.Meta.Term
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
