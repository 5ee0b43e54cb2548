// Package snapfile writes snapshot files atomically and verifies them
// against the reference a log keeps to them.
//
// A snapshot file is a 36-byte header (magic "FCSNAPv1", index, term and
// data size as 8-byte big-endian integers, CRC-32C of those 32 bytes), the
// data, and a 12-byte trailer (CRC-32C of the data, the magic again). Write
// puts it in <name>.tmp, fsyncs it, renames it and fsyncs the directory
// (adapters/internal/durable), then reads it back and verifies it (Verify),
// so a Ref it returns names a durable file that was checked. Read returns
// the data of a file that passes the same checks.
//
// Create streams a snapshot instead: its Writer takes the data in pieces
// into a uniquely named temporary file (one IsTemp recognises, so recovery
// removes it after a crash), and its Commit writes the header and trailer,
// fsyncs, renames, fsyncs the directory and verifies, giving the file and
// Ref that Write gives for the same snapshot.
package snapfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/core"
)

// ErrCorrupt is wrapped by the errors of Read when a file does not match its
// reference.
var ErrCorrupt = errors.New("corrupt snapshot file")

// File name and format constants.
const (
	Prefix     = "snap-"
	Suffix     = ".snap"
	TempSuffix = durable.TempSuffix
	magic      = "FCSNAPv1"
	// HeaderSize is the size of a snapshot file's header, which the data
	// follows.
	HeaderSize = 36
	// TrailerSize is the size of a snapshot file's trailer, after the
	// data.
	TrailerSize = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC returns the CRC-32C (Castagnoli) of b.
func CRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Ref is what a log keeps of a snapshot: its metadata and where its data is.
type Ref struct {
	Meta core.SnapshotMeta
	File string // base name in the data directory
	CRC  uint32 // CRC-32C of the data
	Size uint64 // data size
}

// Same reports whether r and o describe the same file contents.
func (r *Ref) Same(o *Ref) bool {
	return r.File == o.File && r.CRC == o.CRC && r.Size == o.Size &&
		r.Meta.Index == o.Meta.Index && r.Meta.Term == o.Meta.Term
}

// Equal reports whether r and o are equal in every field, including the
// configuration.
func (r *Ref) Equal(o *Ref) bool {
	if !r.Same(o) {
		return false
	}
	a, errA := r.Meta.MarshalBinary()
	b, errB := o.Meta.MarshalBinary()
	return errA == nil && errB == nil && string(a) == string(b)
}

// AppendBinary appends the encoding of r to b: uvarint length + metadata
// (core encoding), uvarint length + file name, CRC (4 bytes big-endian),
// size (8 bytes big-endian).
func (r *Ref) AppendBinary(b []byte) ([]byte, error) {
	meta, err := r.Meta.MarshalBinary()
	if err != nil {
		return b, fmt.Errorf("snapfile: encode snapshot metadata: %w", err)
	}
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	b = binary.AppendUvarint(b, uint64(len(r.File)))
	b = append(b, r.File...)
	b = binary.BigEndian.AppendUint32(b, r.CRC)
	return binary.BigEndian.AppendUint64(b, r.Size), nil
}

// DecodeRef decodes a reference encoded by AppendBinary at the start of b
// and returns it with the bytes that follow it.
func DecodeRef(b []byte) (Ref, []byte, error) {
	var r Ref
	field := func(what string) ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("snapfile: bad %s length", what)
		}
		f := b[k : k+int(n)]
		b = b[k+int(n):]
		return f, nil
	}
	meta, err := field("metadata")
	if err != nil {
		return r, nil, err
	}
	if err := r.Meta.UnmarshalBinary(meta); err != nil {
		return r, nil, fmt.Errorf("snapfile: %w", err)
	}
	name, err := field("file name")
	if err != nil {
		return r, nil, err
	}
	r.File = string(name)
	if !ValidName(r.File) {
		return r, nil, fmt.Errorf("snapfile: bad file name %q", r.File)
	}
	if len(b) < 12 {
		return r, nil, fmt.Errorf("snapfile: %d bytes after the file name, want at least 12", len(b))
	}
	r.CRC = binary.BigEndian.Uint32(b)
	r.Size = binary.BigEndian.Uint64(b[4:])
	return r, b[12:], nil
}

// Name returns the file name of a snapshot; n > 0 distinguishes another
// file for the same index and term.
func Name(index, term uint64, n int) string {
	if n == 0 {
		return fmt.Sprintf("%s%d-%d%s", Prefix, index, term, Suffix)
	}
	return fmt.Sprintf("%s%d-%d-%d%s", Prefix, index, term, n, Suffix)
}

// ValidName reports whether name looks like a snapshot file name.
func ValidName(name string) bool {
	return strings.HasPrefix(name, Prefix) && strings.HasSuffix(name, Suffix) &&
		!strings.ContainsAny(name, `/\`)
}

// IsTemp reports whether name is a snapshot file left half-written.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, Prefix) && strings.HasSuffix(name, Suffix+TempSuffix)
}

// Write makes snap's data durable in dir under a name for its index and
// term that taken does not refuse, reads it back and verifies it, and returns
// its reference and the bytes written. With noSync (UNSAFE) nothing is
// fsynced. On error the temporary file is removed.
func Write(dir string, snap *core.Snapshot, taken func(name string) bool, noSync bool) (Ref, int64, error) {
	ref := Ref{Meta: snap.Meta, CRC: CRC(snap.Data), Size: uint64(len(snap.Data))}
	for n := 0; ; n++ {
		ref.File = Name(snap.Meta.Index, snap.Meta.Term, n)
		if taken == nil || !taken(ref.File) {
			break
		}
	}
	path := filepath.Join(dir, ref.File)
	// Three parts rather than one buffer: no copy of the data.
	if err := durable.WriteFile(path, noSync, header(ref.Meta.Index, ref.Meta.Term, ref.Size), snap.Data, trailer(ref.CRC)); err != nil {
		return ref, 0, fmt.Errorf("snapfile: %w", err)
	}
	if err := Verify(dir, &ref); err != nil {
		return ref, 0, fmt.Errorf("snapfile: verify after writing: %w", err)
	}
	return ref, HeaderSize + int64(ref.Size) + TrailerSize, nil
}

// Read reads the file of r in dir and checks it against r: header, size,
// trailer and data CRC. A mismatch is an error wrapping ErrCorrupt that
// names the file.
func Read(dir string, r *Ref) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, r.File))
	if err != nil {
		return nil, fmt.Errorf("snapfile: read snapshot file: %w", err)
	}
	defer f.Close()
	return ReadFile(f, r)
}

// ReadFile reads f, a snapshot file opened for reading and not read yet,
// and checks it against r as Read does. A reader that opens the file while
// the file is current may read it after a log has removed it.
func ReadFile(f *os.File, r *Ref) ([]byte, error) {
	path := f.Name()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("snapfile: read snapshot file %s: %w", path, err)
	}
	// One byte more than the file's size: a file that grew meanwhile is
	// seen (and refused) without reading it twice.
	b := make([]byte, 0, fi.Size()+1)
	for {
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("snapfile: read snapshot file %s: %w", path, err)
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
	data, err := check(b, r)
	if err != nil {
		return nil, fmt.Errorf("snapfile: %s: %w: %v", path, ErrCorrupt, err)
	}
	return data, nil
}

func header(index, term, size uint64) []byte {
	h := make([]byte, 0, HeaderSize)
	h = append(h, magic...)
	h = binary.BigEndian.AppendUint64(h, index)
	h = binary.BigEndian.AppendUint64(h, term)
	h = binary.BigEndian.AppendUint64(h, size)
	return binary.BigEndian.AppendUint32(h, CRC(h))
}

func trailer(dataCRC uint32) []byte {
	t := binary.BigEndian.AppendUint32(make([]byte, 0, TrailerSize), dataCRC)
	return append(t, magic...)
}

// check checks the contents of a snapshot file against r and returns the
// data (aliasing b).
func check(b []byte, r *Ref) ([]byte, error) {
	if err := checkHeader(b, int64(len(b)), r); err != nil {
		return nil, err
	}
	data := b[HeaderSize : HeaderSize+r.Size]
	if err := checkTrailer(b[HeaderSize+r.Size:], CRC(data), r); err != nil {
		return nil, err
	}
	return data[:len(data):len(data)], nil
}

// checkHeader checks the start of a snapshot file of fileSize bytes, b (at
// least HeaderSize bytes if fileSize allows), against r: magic, checksum,
// index, term and data size, and the file size that follows from it.
func checkHeader(b []byte, fileSize int64, r *Ref) error {
	if fileSize < HeaderSize+TrailerSize {
		return fmt.Errorf("%d bytes is too short", fileSize)
	}
	h := b[:HeaderSize]
	if string(h[:8]) != magic {
		return errors.New("bad header magic")
	}
	if got, want := CRC(h[:32]), binary.BigEndian.Uint32(h[32:]); got != want {
		return fmt.Errorf("header checksum %08x, stored %08x", got, want)
	}
	index, term := binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint64(h[16:])
	size := binary.BigEndian.Uint64(h[24:])
	if index != r.Meta.Index || term != r.Meta.Term {
		return fmt.Errorf("header says index %d term %d, want index %d term %d",
			index, term, r.Meta.Index, r.Meta.Term)
	}
	if size != r.Size {
		return fmt.Errorf("header says %d data bytes, want %d", size, r.Size)
	}
	if uint64(fileSize) != HeaderSize+size+TrailerSize {
		return fmt.Errorf("file is %d bytes, want %d", fileSize, HeaderSize+size+TrailerSize)
	}
	return nil
}

// checkTrailer checks a snapshot file's trailer t against the CRC of the
// data before it, got, and r.
func checkTrailer(t []byte, got uint32, r *Ref) error {
	if string(t[4:]) != magic {
		return errors.New("bad trailer magic")
	}
	if stored := binary.BigEndian.Uint32(t); got != stored {
		return fmt.Errorf("data checksum %08x, trailer says %08x", got, stored)
	}
	if got != r.CRC {
		return fmt.Errorf("data checksum %08x, reference says %08x", got, r.CRC)
	}
	return nil
}

// Verify checks the file of r in dir as Read does, reading it through a
// small buffer instead of holding its data: for a file written or kept but
// not served.
func Verify(dir string, r *Ref) error {
	path := filepath.Join(dir, r.File)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapfile: read snapshot file: %w", err)
	}
	defer f.Close()
	readErr := func(err error) error { return fmt.Errorf("snapfile: read snapshot file %s: %w", path, err) }
	fi, err := f.Stat()
	if err != nil {
		return readErr(err)
	}
	var h [HeaderSize]byte
	if fi.Size() >= HeaderSize {
		if _, err := io.ReadFull(f, h[:]); err != nil {
			return readErr(err)
		}
	}
	if err := checkHeader(h[:], fi.Size(), r); err != nil {
		return fmt.Errorf("snapfile: %s: %w: %v", path, ErrCorrupt, err)
	}
	c := crc32.New(castagnoli)
	var t [TrailerSize]byte
	if _, err := io.CopyN(c, f, int64(r.Size)); err != nil {
		return readErr(err)
	}
	if _, err := io.ReadFull(f, t[:]); err != nil {
		return readErr(err)
	}
	if err := checkTrailer(t[:], c.Sum32(), r); err != nil {
		return fmt.Errorf("snapfile: %s: %w: %v", path, ErrCorrupt, err)
	}
	return nil
}

// SyncDir fsyncs a directory, making creations, renames and removals in it
// durable.
func SyncDir(dir string) error { return durable.SyncDir(dir) }
