package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/forge-consensus/consensus/core"
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

// snapRef is the value of the snapshot key: the metadata and where the data
// is.
type snapRef struct {
	meta core.SnapshotMeta
	file string // base name in the data directory
	crc  uint32 // CRC-32C of the data
	size uint64 // data size
}

// sameFile reports whether r and o describe the same file contents.
func (r *snapRef) sameFile(o *snapRef) bool {
	return r.file == o.file && r.crc == o.crc && r.size == o.size &&
		r.meta.Index == o.meta.Index && r.meta.Term == o.meta.Term
}

// encodeSnapRef returns the sealed value of r.
func encodeSnapRef(r *snapRef) ([]byte, error) {
	meta, err := r.meta.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("pebble storage: encode snapshot metadata: %w", err)
	}
	v := make([]byte, 4, 4+2*binary.MaxVarintLen64+len(meta)+len(r.file)+12)
	v = binary.AppendUvarint(v, uint64(len(meta)))
	v = append(v, meta...)
	v = binary.AppendUvarint(v, uint64(len(r.file)))
	v = append(v, r.file...)
	v = binary.BigEndian.AppendUint32(v, r.crc)
	v = binary.BigEndian.AppendUint64(v, r.size)
	return sealValue(v), nil
}

// decodeSnapRef decodes the (checked) body of a snapshot key value.
func decodeSnapRef(b []byte) (snapRef, error) {
	var r snapRef
	field := func(what string) ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("bad %s length", what)
		}
		f := b[k : k+int(n)]
		b = b[k+int(n):]
		return f, nil
	}
	meta, err := field("metadata")
	if err != nil {
		return r, err
	}
	if err := r.meta.UnmarshalBinary(meta); err != nil {
		return r, err
	}
	name, err := field("file name")
	if err != nil {
		return r, err
	}
	r.file = string(name)
	if !validSnapName(r.file) {
		return r, fmt.Errorf("bad file name %q", r.file)
	}
	if len(b) != 12 {
		return r, fmt.Errorf("%d bytes after the file name, want 12", len(b))
	}
	r.crc = binary.BigEndian.Uint32(b)
	r.size = binary.BigEndian.Uint64(b[4:])
	return r, nil
}

// Snapshot file names and format.
const (
	snapPrefix  = "snap-"
	snapSuffix  = ".snap"
	tmpSuffix   = ".tmp"
	snapMagic   = "FCSNAPv1"
	snapHeader  = 36
	snapTrailer = 12
)

// snapName returns the file name of a snapshot; n > 0 distinguishes a
// second file for the same index and term.
func snapName(index, term uint64, n int) string {
	if n == 0 {
		return fmt.Sprintf("%s%d-%d%s", snapPrefix, index, term, snapSuffix)
	}
	return fmt.Sprintf("%s%d-%d-%d%s", snapPrefix, index, term, n, snapSuffix)
}

// snapNameIndex returns the snapshot index in a snapshot file name.
func snapNameIndex(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, snapPrefix)
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

// validSnapName reports whether name looks like a snapshot file name.
func validSnapName(name string) bool {
	return strings.HasPrefix(name, snapPrefix) && strings.HasSuffix(name, snapSuffix) &&
		!strings.ContainsAny(name, `/\`) && name != "." && name != ".."
}

// snapFileHeader returns the header of a snapshot file.
func snapFileHeader(index, term, size uint64) []byte {
	h := make([]byte, 0, snapHeader)
	h = append(h, snapMagic...)
	h = binary.BigEndian.AppendUint64(h, index)
	h = binary.BigEndian.AppendUint64(h, term)
	h = binary.BigEndian.AppendUint64(h, size)
	return binary.BigEndian.AppendUint32(h, crc(h))
}

// snapFileTrailer returns the trailer of a snapshot file.
func snapFileTrailer(dataCRC uint32) []byte {
	t := binary.BigEndian.AppendUint32(make([]byte, 0, snapTrailer), dataCRC)
	return append(t, snapMagic...)
}

// checkSnapFile checks the contents of a snapshot file against its
// reference and returns the data (aliasing b).
func checkSnapFile(b []byte, r *snapRef) ([]byte, error) {
	if uint64(len(b)) < snapHeader+snapTrailer {
		return nil, fmt.Errorf("%d bytes is too short", len(b))
	}
	h := b[:snapHeader]
	if string(h[:8]) != snapMagic {
		return nil, errors.New("bad header magic")
	}
	if got, want := crc(h[:32]), binary.BigEndian.Uint32(h[32:]); got != want {
		return nil, fmt.Errorf("header checksum %08x, stored %08x", got, want)
	}
	index, term := binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[16:])
	size := binary.BigEndian.Uint64(h[24:])
	if index != r.meta.Index || term != r.meta.Term {
		return nil, fmt.Errorf("header says index %d term %d, want index %d term %d",
			index, term, r.meta.Index, r.meta.Term)
	}
	if size != r.size {
		return nil, fmt.Errorf("header says %d data bytes, want %d", size, r.size)
	}
	if uint64(len(b)) != snapHeader+size+snapTrailer {
		return nil, fmt.Errorf("file is %d bytes, want %d", len(b), snapHeader+size+snapTrailer)
	}
	data := b[snapHeader : snapHeader+size]
	t := b[snapHeader+size:]
	if string(t[4:]) != snapMagic {
		return nil, errors.New("bad trailer magic")
	}
	got := crc(data)
	if stored := binary.BigEndian.Uint32(t); got != stored {
		return nil, fmt.Errorf("data checksum %08x, trailer says %08x", got, stored)
	}
	if got != r.crc {
		return nil, fmt.Errorf("data checksum %08x, database says %08x", got, r.crc)
	}
	return data, nil
}
