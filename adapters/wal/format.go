package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
)

// ErrCorrupt is wrapped by the errors of Open and Load when stored data
// fails verification.
var ErrCorrupt = errors.New("corrupt write-ahead log")

// ErrClosed is wrapped by the errors of operations on a closed Storage.
var ErrClosed = errors.New("storage closed")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Format constants (see the package documentation).
const (
	segMagic = "FCWALSEG"
	// formatVersion is the version of the segments this package writes.
	// Version 2 ends every write with a write-end record; version 1
	// segments (which have none) are still read, each record standing
	// alone.
	formatVersion = 2
	// minFormatVersion is the oldest version read.
	minFormatVersion = 1
	headerSize       = 64
	frameSize        = 16
	trailerSize      = 8
	sectorSize       = 512
	// sealReserve is the room kept at the end of every segment for its
	// seal record.
	sealReserve = 64
)

// recType is the type of a record.
type recType uint8

const (
	recState     recType = 1 // opening state of a segment
	recEntries   recType = 2 // consecutive log entries
	recHardState recType = 3 // the hard state
	recSnapshot  recType = 4 // a snapshot reference (leader snapshot or local compaction)
	recTruncate  recType = 5 // drop the entries at and above an index
	recSeal      recType = 6 // the segment ends; names the next one
	recWriteEnd  recType = 7 // the write the records before it belong to is whole
)

func (t recType) String() string {
	switch t {
	case recState:
		return "state"
	case recEntries:
		return "entries"
	case recHardState:
		return "hard state"
	case recSnapshot:
		return "snapshot"
	case recTruncate:
		return "truncation"
	case recSeal:
		return "seal"
	case recWriteEnd:
		return "write end"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Snapshot record kinds.
const (
	snapReplace = 1 // a leader's snapshot: replaces the whole log
	snapLocal   = 2 // a local snapshot: compacts up to compactTo
)

// pad8 rounds n up to a multiple of 8.
func pad8(n int) int { return (n + 7) &^ 7 }

// writeEndSize is the size on disk of a write-end record (no payload).
const writeEndSize = frameSize + trailerSize

// recordSize is the size on disk of a record with n payload bytes.
func recordSize(n int) int { return frameSize + pad8(n) + trailerSize }

// segHeader is the header of a segment file.
type segHeader struct {
	cluster, node uint64
	seq           uint64
	first         uint64 // index the segment's first appended entry would have
	prevChain     uint32 // chain value of the previous segment before its seal
	version       uint32 // format version (0 when encoding: formatVersion)
}

// encode returns the header bytes and the header CRC, which starts the
// segment's record chain.
func (h *segHeader) encode() ([]byte, uint32) {
	b := make([]byte, headerSize)
	copy(b, segMagic)
	v := h.version
	if v == 0 {
		v = formatVersion
	}
	binary.LittleEndian.PutUint32(b[8:], v)
	binary.LittleEndian.PutUint64(b[16:], h.cluster)
	binary.LittleEndian.PutUint64(b[24:], h.node)
	binary.LittleEndian.PutUint64(b[32:], h.seq)
	binary.LittleEndian.PutUint64(b[40:], h.first)
	binary.LittleEndian.PutUint32(b[48:], h.prevChain)
	c := crc(b[:56])
	binary.LittleEndian.PutUint32(b[56:], c)
	return b, c
}

// decodeHeader decodes and checks a segment header.
func decodeHeader(b []byte) (segHeader, uint32, error) {
	var h segHeader
	if len(b) < headerSize {
		return h, 0, fmt.Errorf("file of %d bytes is shorter than a segment header", len(b))
	}
	if string(b[:8]) != segMagic {
		return h, 0, fmt.Errorf("bad segment magic %q", b[:8])
	}
	c := crc(b[:56])
	if stored := binary.LittleEndian.Uint32(b[56:]); c != stored {
		return h, 0, fmt.Errorf("segment header checksum %08x, stored %08x", c, stored)
	}
	h.version = binary.LittleEndian.Uint32(b[8:])
	if h.version < minFormatVersion || h.version > formatVersion {
		return h, 0, fmt.Errorf("unknown format version %d", h.version)
	}
	if binary.LittleEndian.Uint32(b[12:]) != 0 || binary.LittleEndian.Uint32(b[52:]) != 0 ||
		binary.LittleEndian.Uint32(b[60:]) != 0 {
		return h, 0, errors.New("non-zero reserved header bytes")
	}
	h.cluster = binary.LittleEndian.Uint64(b[16:])
	h.node = binary.LittleEndian.Uint64(b[24:])
	h.seq = binary.LittleEndian.Uint64(b[32:])
	h.first = binary.LittleEndian.Uint64(b[40:])
	h.prevChain = binary.LittleEndian.Uint32(b[48:])
	return h, c, nil
}

// beginRecord reserves a frame in buf; the payload is appended after it and
// endRecord completes the record.
func beginRecord(buf []byte) ([]byte, int) {
	start := len(buf)
	return append(buf, make([]byte, frameSize)...), start
}

// endRecord pads the record started at start, fills its frame and trailer,
// and returns buf and the new chain value.
func endRecord(buf []byte, start int, t recType, batchStart uint32, chain uint32) ([]byte, uint32) {
	n := len(buf) - start - frameSize
	for range pad8(n) - n {
		buf = append(buf, 0)
	}
	f := buf[start : start+frameSize]
	binary.LittleEndian.PutUint32(f[0:], uint32(n))
	f[4] = byte(t)
	binary.LittleEndian.PutUint32(f[8:], batchStart)
	binary.LittleEndian.PutUint32(f[12:], crc(f[:12]))
	dc := crc(buf[start:])
	var tr [4]byte
	binary.LittleEndian.PutUint32(tr[:], dc)
	chain = crc32.Update(chain, castagnoli, tr[:])
	buf = binary.LittleEndian.AppendUint32(buf, dc)
	buf = binary.LittleEndian.AppendUint32(buf, chain)
	return buf, chain
}

// badKind says how a record failed to decode.
type badKind uint8

const (
	badNone  badKind = iota
	badZero          // an all-zero frame: where the written part ends
	badFrame         // the frame's own check fails: length and type unknown
	badShort         // the record runs past the end of the data
	badCRC           // the record's checksum fails
	badChain         // a complete, self-consistent record out of place
)

// rawRecord is a record read from a segment.
type rawRecord struct {
	typ        recType
	payload    []byte // aliases the segment data
	batchStart uint32
	chain      uint32
	size       int
}

// readRecord reads the record at off of data, continuing prevChain. On
// failure it reports how the record is bad, and, when the frame could be
// read, the extent the record claims (end may exceed len(data)).
func readRecord(data []byte, off int, prevChain uint32) (r rawRecord, kind badKind, end int, why string) {
	if off+frameSize > len(data) {
		if allZero(data[off:]) {
			return r, badZero, len(data), "end of file"
		}
		return r, badShort, off + frameSize, "frame runs past the end of the file"
	}
	f := data[off : off+frameSize]
	if allZero(f) {
		return r, badZero, off + frameSize, "zero frame"
	}
	if got, want := crc(f[:12]), binary.LittleEndian.Uint32(f[12:]); got != want || f[5] != 0 || f[6] != 0 || f[7] != 0 {
		return r, badFrame, off + frameSize, fmt.Sprintf("frame check %08x, stored %08x", got, want)
	}
	n := int(binary.LittleEndian.Uint32(f))
	r.typ = recType(f[4])
	r.batchStart = binary.LittleEndian.Uint32(f[8:])
	r.size = recordSize(n)
	end = off + r.size
	if n > len(data) || end > len(data) {
		return r, badShort, end, fmt.Sprintf("%s record of %d bytes runs past the end of the file", r.typ, n)
	}
	body := data[off : end-trailerSize]
	tr := data[end-trailerSize : end]
	dc := binary.LittleEndian.Uint32(tr)
	if got := crc(body); got != dc {
		return r, badCRC, end, fmt.Sprintf("%s record checksum %08x, stored %08x", r.typ, got, dc)
	}
	r.chain = crc32.Update(prevChain, castagnoli, tr[:4])
	if stored := binary.LittleEndian.Uint32(tr[4:]); stored != r.chain {
		return r, badChain, end, fmt.Sprintf("%s record is out of place: chain %08x, stored %08x", r.typ, r.chain, stored)
	}
	r.payload = body[frameSize : frameSize+n]
	return r, badNone, end, ""
}

// standaloneValid reports whether a self-consistent record (frame check and
// record checksum, not the chain) starts at off, and its batch start.
func standaloneValid(data []byte, off int) (bool, uint32) {
	if off+frameSize+trailerSize > len(data) {
		return false, 0
	}
	f := data[off : off+frameSize]
	if crc(f[:12]) != binary.LittleEndian.Uint32(f[12:]) || allZero(f) {
		return false, 0
	}
	end := off + recordSize(int(binary.LittleEndian.Uint32(f)))
	if end > len(data) || end < off {
		return false, 0
	}
	if crc(data[off:end-trailerSize]) != binary.LittleEndian.Uint32(data[end-trailerSize:]) {
		return false, 0
	}
	return true, binary.LittleEndian.Uint32(f[8:])
}

var zeroPage [4096]byte

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if string(b[:n]) != string(zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// ---- payloads ----

// openState is the payload of a state record: what a segment starts from,
// so that it stands alone once older segments are removed.
type openState struct {
	hs        core.HardState
	snap      *snapfile.Ref
	holeFirst uint64 // first live entry index at rotation, 0 if none
	next      uint64 // index the next appended entry has
	lastTerm  uint64 // term of entry next-1
	termKnown bool
}

func appendHS(b []byte, hs core.HardState) []byte {
	b = binary.AppendUvarint(b, hs.Term)
	b = binary.AppendUvarint(b, hs.Vote)
	return binary.AppendUvarint(b, hs.Commit)
}

func appendState(b []byte, o *openState) ([]byte, error) {
	b = appendHS(b, o.hs)
	var flags byte
	if o.snap != nil {
		flags |= 1
	}
	if o.termKnown {
		flags |= 2
	}
	b = append(b, flags)
	if o.snap != nil {
		var err error
		if b, err = o.snap.AppendBinary(b); err != nil {
			return b, err
		}
	}
	b = binary.AppendUvarint(b, o.holeFirst)
	b = binary.AppendUvarint(b, o.next)
	return binary.AppendUvarint(b, o.lastTerm), nil
}

// decoder reads uvarints and bytes strictly.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("missing %s", what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) ref() *snapfile.Ref {
	if d.err != nil {
		return nil
	}
	r, rest, err := snapfile.DecodeRef(d.b)
	if err != nil {
		d.err = err
		return nil
	}
	d.b = rest
	return &r
}

func (d *decoder) hs() core.HardState {
	return core.HardState{Term: d.uvarint("term"), Vote: d.uvarint("vote"), Commit: d.uvarint("commit")}
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	return d.err
}

func decodeState(p []byte) (openState, error) {
	d := decoder{b: p}
	var o openState
	o.hs = d.hs()
	flags := d.byte("flags")
	if flags&^3 != 0 {
		return o, fmt.Errorf("unknown state flags %#x", flags)
	}
	if flags&1 != 0 {
		o.snap = d.ref()
	}
	o.termKnown = flags&2 != 0
	o.holeFirst = d.uvarint("hole start")
	o.next = d.uvarint("next index")
	o.lastTerm = d.uvarint("last term")
	return o, d.finish()
}

// appendEntries appends the payload of an entries record.
func appendEntries(b []byte, ents []core.Entry) []byte {
	b = binary.AppendUvarint(b, ents[0].Index)
	b = binary.AppendUvarint(b, uint64(len(ents)))
	for i := range ents {
		e := &ents[i]
		b = binary.AppendUvarint(b, e.Term)
		b = append(b, byte(e.Type))
		b = binary.AppendUvarint(b, uint64(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

// decodeEntries decodes an entries payload; entry data aliases p.
func decodeEntries(p []byte) ([]core.Entry, error) {
	ents, err := appendDecodedEntries(nil, p)
	if err != nil {
		return nil, err
	}
	return ents, nil
}

// appendDecodedEntries decodes an entries payload and appends the entries
// to dst, whose capacity it uses rather than allocate; entry data aliases
// p. On error the entries appended so far may hold anything.
func appendDecodedEntries(dst []core.Entry, p []byte) ([]core.Entry, error) {
	d := decoder{b: p}
	first := d.uvarint("first index")
	n := d.uvarint("entry count")
	if d.err != nil {
		return dst, d.err
	}
	if first == 0 {
		return dst, errors.New("entries from index 0")
	}
	if n == 0 || n > uint64(len(d.b))/3 {
		return dst, fmt.Errorf("bad entry count %d", n)
	}
	if first+n < first {
		return dst, errors.New("entry indexes overflow")
	}
	start := len(dst)
	dst = slices.Grow(dst, int(n))[:start+int(n)]
	ents := dst[start:]
	for i := range ents {
		e := &ents[i]
		e.Index = first + uint64(i)
		e.Term = d.uvarint("entry term")
		e.Type = core.EntryType(d.byte("entry type"))
		l := d.uvarint("entry data length")
		if d.err != nil {
			return dst, d.err
		}
		if e.Type != core.EntryNormal && e.Type != core.EntryConfChange {
			return dst, fmt.Errorf("entry %d has unknown type %d", e.Index, e.Type)
		}
		if l > uint64(len(d.b)) {
			return dst, fmt.Errorf("entry %d data length %d exceeds the record", e.Index, l)
		}
		e.Data = nil
		if l > 0 {
			e.Data = d.b[:l:l]
		}
		d.b = d.b[l:]
	}
	return dst, d.finish()
}

// entryCount returns how many entries the entries records of a segment
// claim, following the chain of record frames from the header up to the
// first frame that fails its check, a seal or the end of data, without
// checking the records themselves: a hint for sizing the replay's entry
// slice, never more than len(data)/3.
func entryCount(data []byte) int {
	n := 0
	for off := headerSize; off+frameSize <= len(data); {
		f := data[off : off+frameSize]
		if crc(f[:12]) != binary.LittleEndian.Uint32(f[12:]) {
			break
		}
		l := int(binary.LittleEndian.Uint32(f))
		end := off + recordSize(l)
		if l > len(data) || end > len(data) {
			break
		}
		switch recType(f[4]) {
		case recSeal:
			return n
		case recEntries:
			p := data[off+frameSize : off+frameSize+l]
			if _, k := binary.Uvarint(p); k > 0 {
				if c, k2 := binary.Uvarint(p[k:]); k2 > 0 && c <= uint64(len(p))/3 {
					n += int(c)
				}
			}
		}
		off = end
	}
	return n
}

func appendSnapRec(b []byte, kind byte, compactTo uint64, r *snapfile.Ref) ([]byte, error) {
	b = append(b, kind)
	b = binary.AppendUvarint(b, compactTo)
	return r.AppendBinary(b)
}

func decodeSnapRec(p []byte) (kind byte, compactTo uint64, r *snapfile.Ref, err error) {
	d := decoder{b: p}
	kind = d.byte("snapshot kind")
	compactTo = d.uvarint("compaction index")
	r = d.ref()
	if err := d.finish(); err != nil {
		return 0, 0, nil, err
	}
	if kind != snapReplace && kind != snapLocal {
		return 0, 0, nil, fmt.Errorf("unknown snapshot kind %d", kind)
	}
	if kind == snapReplace && compactTo != 0 {
		return 0, 0, nil, errors.New("leader snapshot with a compaction index")
	}
	return kind, compactTo, r, nil
}

func decodeHS(p []byte) (core.HardState, error) {
	d := decoder{b: p}
	hs := d.hs()
	return hs, d.finish()
}

func decodeTruncate(p []byte) (uint64, error) {
	d := decoder{b: p}
	i := d.uvarint("truncation index")
	if err := d.finish(); err != nil {
		return 0, err
	}
	if i == 0 {
		return 0, errors.New("truncation at index 0")
	}
	return i, nil
}

func appendSeal(b []byte, nextSeq uint64, nextHeaderCRC uint32) []byte {
	b = binary.AppendUvarint(b, nextSeq)
	return binary.LittleEndian.AppendUint32(b, nextHeaderCRC)
}

func decodeSeal(p []byte) (uint64, uint32, error) {
	d := decoder{b: p}
	seq := d.uvarint("next segment")
	if d.err != nil {
		return 0, 0, d.err
	}
	if len(d.b) != 4 {
		return 0, 0, fmt.Errorf("seal of %d bytes after the segment number, want 4", len(d.b))
	}
	return seq, binary.LittleEndian.Uint32(d.b), nil
}

// decodePayload decodes a record's payload by type, for the fuzzer and
// for checks; the replay decodes each type where it applies it.
func decodePayload(t recType, p []byte) error {
	var err error
	switch t {
	case recState:
		_, err = decodeState(p)
	case recEntries:
		_, err = decodeEntries(p)
	case recHardState:
		_, err = decodeHS(p)
	case recSnapshot:
		_, _, _, err = decodeSnapRec(p)
	case recTruncate:
		_, err = decodeTruncate(p)
	case recSeal:
		_, _, err = decodeSeal(p)
	case recWriteEnd:
		if len(p) != 0 {
			err = fmt.Errorf("write-end record with a %d-byte payload", len(p))
		}
	default:
		err = fmt.Errorf("unknown record type %d", uint8(t))
	}
	return err
}
