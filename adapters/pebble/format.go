package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/forge-consensus/consensus/adapters/snapfile"
)

// ErrCorrupt is wrapped by the errors of Open and Load when stored data
// fails verification.
var ErrCorrupt = errors.New("corrupt data")

// ErrClosed is wrapped by the errors of operations on a closed Storage.
var ErrClosed = errors.New("storage closed")

// crc returns the CRC-32C (Castagnoli) of b.
func crc(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

// Keys.
const (
	entryPrefix  = 'e'
	entryKeyLen  = 9
	hardStateKey = "h"
	snapshotKey  = "s"
	seqKey       = "q"
	entryLower   = "e"
	entryUpper   = "f" // above every entry key
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

// corruptKey returns the error for a bad value at key.
func corruptKey(key []byte, format string, args ...any) error {
	return fmt.Errorf("pebble storage: corrupt value at key %s: %w: %s",
		keyName(key), ErrCorrupt, fmt.Sprintf(format, args...))
}

// sealValue fills the first 4 bytes of v, reserved by the caller, with the
// CRC-32C of the rest.
func sealValue(v []byte) []byte {
	binary.BigEndian.PutUint32(v, crc(v[4:]))
	return v
}

// openValue checks the CRC of a value read at key and returns what it
// covers (aliasing v).
func openValue(key, v []byte) ([]byte, error) {
	if len(v) < 4 {
		return nil, corruptKey(key, "value of %d bytes is too short", len(v))
	}
	if got, want := crc(v[4:]), binary.BigEndian.Uint32(v); got != want {
		return nil, corruptKey(key, "checksum %08x, stored %08x", got, want)
	}
	return v[4:], nil
}

// encodeSnapRef returns the sealed value of the snapshot key: r in
// snapfile's encoding.
func encodeSnapRef(r *snapfile.Ref) ([]byte, error) {
	v, err := r.AppendBinary(make([]byte, 4, 128))
	if err != nil {
		return nil, fmt.Errorf("pebble storage: %w", err)
	}
	return sealValue(v), nil
}

// decodeSnapRef decodes the (checked) body of a snapshot key value, which
// holds the reference and nothing after it.
func decodeSnapRef(b []byte) (snapfile.Ref, error) {
	r, rest, err := snapfile.DecodeRef(b)
	if err != nil {
		return r, err
	}
	if len(rest) != 0 {
		return r, fmt.Errorf("%d bytes after the reference", len(rest))
	}
	return r, nil
}

// snapNameIndex returns the snapshot index in a snapshot file name.
func snapNameIndex(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, snapfile.Prefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	index, err := strconv.ParseUint(digits, 10, 64)
	return index, err == nil
}
