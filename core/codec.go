package core

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

// Binary encoding of the wire types.
//
// A top-level encoding is a header of two bytes, the format version
// (codecVersion) and a kind tag naming the type, followed by the body of the
// value. Bodies of nested values (entries and snapshot inside a message,
// configuration inside snapshot metadata) follow without a header.
//
// Integers are unsigned varints (encoding/binary), enums one byte each,
// booleans bits of a flags byte. A byte string is its length as a varint
// followed by its bytes; a list is its count as a varint followed by its
// elements. Bodies, field by field:
//
//	Entry:        Term, Index, Type, Data
//	HardState:    Term, Vote, Commit
//	ConfState:    flags (bit 0 AutoLeave), Voters, Learners, VotersOutgoing,
//	              LearnersNext (each a list of IDs)
//	SnapshotMeta: Index, Term, ConfState
//	Snapshot:     SnapshotMeta, Data
//	ConfChange:   Transition, Changes (each Type, NodeID), Context
//	Message:      Type, flags (bit 0 Reject, bit 1 Force, bit 2 Snapshot
//	              present), From, To, Term, LogTerm, Index, Commit,
//	              RejectHint, Entries, Snapshot (only if present), Context
//
// Inside a message, entry i stores its Index as the zigzag-encoded
// difference from Message.Index+1+i and its Term as the zigzag-encoded
// difference from the previous entry's term (Message.Term for the first), so
// the entries of a well-formed MsgApp cost one byte each for both. All
// arithmetic wraps, so any value round-trips.
//
// The encoding is canonical: the decoder rejects unknown versions, kinds and
// flag bits, varints that are overlong or overflow, and trailing bytes, so a
// value has exactly one encoding. Decoded values are validated (see
// validate.go) and never alias the input.

const codecVersion byte = 1

// Kind tags of top-level encodings.
const (
	kindEntry        byte = 1
	kindHardState    byte = 2
	kindConfState    byte = 3
	kindSnapshotMeta byte = 4
	kindSnapshot     byte = 5
	kindConfChange   byte = 6
	kindMessage      byte = 7
)

// Flag bits.
const (
	confFlagAutoLeave byte = 1 << 0
	confFlagsKnown         = confFlagAutoLeave

	msgFlagReject   byte = 1 << 0
	msgFlagForce    byte = 1 << 1
	msgFlagSnapshot byte = 1 << 2
	msgFlagsKnown        = msgFlagReject | msgFlagForce | msgFlagSnapshot
)

// Minimum encoded sizes of list elements, used to bound a decoded count by
// the bytes remaining before anything is allocated.
const (
	minEncodedEntrySize  = 4 // index, term, type, data length
	minEncodedChangeSize = 2 // type, node ID
	minEncodedIDSize     = 1
)

const headerSize = 2

// ---- encoding ----

// AppendBinary appends the encoding of e to b.
func (e *Entry) AppendBinary(b []byte) ([]byte, error) {
	if e == nil {
		return b, fmt.Errorf("core: encode entry: %w: nil entry", ErrInvalidMessage)
	}
	return appendEntry(append(b, codecVersion, kindEntry), e), nil
}

// MarshalBinary returns the encoding of e.
func (e *Entry) MarshalBinary() ([]byte, error) {
	if e == nil {
		return e.AppendBinary(nil)
	}
	return e.AppendBinary(make([]byte, 0, headerSize+entrySize(e)))
}

// AppendBinary appends the encoding of hs to b.
func (hs *HardState) AppendBinary(b []byte) ([]byte, error) {
	if hs == nil {
		return b, fmt.Errorf("core: encode hard state: %w: nil hard state", ErrInvalidMessage)
	}
	return appendHardState(append(b, codecVersion, kindHardState), hs), nil
}

// MarshalBinary returns the encoding of hs.
func (hs *HardState) MarshalBinary() ([]byte, error) {
	if hs == nil {
		return hs.AppendBinary(nil)
	}
	return hs.AppendBinary(make([]byte, 0, headerSize+hardStateSize(hs)))
}

// AppendBinary appends the encoding of cs to b.
func (cs *ConfState) AppendBinary(b []byte) ([]byte, error) {
	if cs == nil {
		return b, fmt.Errorf("core: encode conf state: %w: nil conf state", ErrInvalidMessage)
	}
	return appendConfState(append(b, codecVersion, kindConfState), cs), nil
}

// MarshalBinary returns the encoding of cs.
func (cs *ConfState) MarshalBinary() ([]byte, error) {
	if cs == nil {
		return cs.AppendBinary(nil)
	}
	return cs.AppendBinary(make([]byte, 0, headerSize+confStateSize(cs)))
}

// AppendBinary appends the encoding of m to b.
func (m *SnapshotMeta) AppendBinary(b []byte) ([]byte, error) {
	if m == nil {
		return b, fmt.Errorf("core: encode snapshot meta: %w: nil snapshot meta", ErrInvalidMessage)
	}
	return appendSnapshotMeta(append(b, codecVersion, kindSnapshotMeta), m), nil
}

// MarshalBinary returns the encoding of m.
func (m *SnapshotMeta) MarshalBinary() ([]byte, error) {
	if m == nil {
		return m.AppendBinary(nil)
	}
	return m.AppendBinary(make([]byte, 0, headerSize+snapshotMetaSize(m)))
}

// AppendBinary appends the encoding of s to b.
func (s *Snapshot) AppendBinary(b []byte) ([]byte, error) {
	if s == nil {
		return b, fmt.Errorf("core: encode snapshot: %w: nil snapshot", ErrInvalidMessage)
	}
	return appendSnapshot(append(b, codecVersion, kindSnapshot), s), nil
}

// MarshalBinary returns the encoding of s.
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	if s == nil {
		return s.AppendBinary(nil)
	}
	return s.AppendBinary(make([]byte, 0, headerSize+snapshotSize(s)))
}

// AppendBinary appends the encoding of cc to b.
func (cc *ConfChange) AppendBinary(b []byte) ([]byte, error) {
	if cc == nil {
		return b, fmt.Errorf("core: encode conf change: %w: nil conf change", ErrInvalidMessage)
	}
	return appendConfChange(append(b, codecVersion, kindConfChange), cc), nil
}

// MarshalBinary returns the encoding of cc.
func (cc *ConfChange) MarshalBinary() ([]byte, error) {
	if cc == nil {
		return cc.AppendBinary(nil)
	}
	return cc.AppendBinary(make([]byte, 0, headerSize+confChangeSize(cc)))
}

// EncodeConfChange returns the encoding of cc, as carried in the Data of an
// EntryConfChange entry.
func EncodeConfChange(cc ConfChange) []byte {
	return appendConfChange(append(make([]byte, 0, headerSize+confChangeSize(&cc)),
		codecVersion, kindConfChange), &cc)
}

// AppendBinary appends the encoding of m to b.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	if m == nil {
		return b, fmt.Errorf("core: encode message: %w: nil message", ErrInvalidMessage)
	}
	// One allocation at most, instead of growing b step by step while a
	// large append is encoded.
	b = slices.Grow(b, headerSize+messageSize(m))
	return appendMessage(append(b, codecVersion, kindMessage), m), nil
}

// EncodedSize returns the number of bytes AppendBinary appends for m, so
// that a caller can size its buffer first.
func (m *Message) EncodedSize() int { return headerSize + messageSize(m) }

// MarshalBinary returns the encoding of m.
func (m *Message) MarshalBinary() ([]byte, error) {
	if m == nil {
		return m.AppendBinary(nil)
	}
	return m.AppendBinary(make([]byte, 0, headerSize+messageSize(m)))
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendIDs(b []byte, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

// zigzag maps a difference taken modulo 2^64, read as signed, to an unsigned
// value that is small when the difference is small in magnitude.
func zigzag(d uint64) uint64 { return d<<1 ^ uint64(int64(d)>>63) }

// unzigzag inverts zigzag.
func unzigzag(u uint64) uint64 { return u>>1 ^ -(u & 1) }

func appendEntry(b []byte, e *Entry) []byte {
	b = binary.AppendUvarint(b, e.Term)
	b = binary.AppendUvarint(b, e.Index)
	b = append(b, byte(e.Type))
	return appendBytes(b, e.Data)
}

// appendMsgEntry appends e as an entry of a message, relative to the index
// it would have in a MsgApp and to the term of the entry before it.
func appendMsgEntry(b []byte, e *Entry, wantIndex, prevTerm uint64) []byte {
	b = binary.AppendUvarint(b, zigzag(e.Index-wantIndex))
	b = binary.AppendUvarint(b, zigzag(e.Term-prevTerm))
	b = append(b, byte(e.Type))
	return appendBytes(b, e.Data)
}

func appendHardState(b []byte, hs *HardState) []byte {
	b = binary.AppendUvarint(b, hs.Term)
	b = binary.AppendUvarint(b, hs.Vote)
	return binary.AppendUvarint(b, hs.Commit)
}

func appendConfState(b []byte, cs *ConfState) []byte {
	var flags byte
	if cs.AutoLeave {
		flags |= confFlagAutoLeave
	}
	b = append(b, flags)
	b = appendIDs(b, cs.Voters)
	b = appendIDs(b, cs.Learners)
	b = appendIDs(b, cs.VotersOutgoing)
	return appendIDs(b, cs.LearnersNext)
}

func appendSnapshotMeta(b []byte, m *SnapshotMeta) []byte {
	b = binary.AppendUvarint(b, m.Index)
	b = binary.AppendUvarint(b, m.Term)
	return appendConfState(b, &m.Config)
}

func appendSnapshot(b []byte, s *Snapshot) []byte {
	b = appendSnapshotMeta(b, &s.Meta)
	return appendBytes(b, s.Data)
}

func appendConfChange(b []byte, cc *ConfChange) []byte {
	b = append(b, byte(cc.Transition))
	b = binary.AppendUvarint(b, uint64(len(cc.Changes)))
	for _, c := range cc.Changes {
		b = append(b, byte(c.Type))
		b = binary.AppendUvarint(b, c.NodeID)
	}
	return appendBytes(b, cc.Context)
}

func appendMessage(b []byte, m *Message) []byte {
	var flags byte
	if m.Reject {
		flags |= msgFlagReject
	}
	if m.Force {
		flags |= msgFlagForce
	}
	if m.Snapshot != nil {
		flags |= msgFlagSnapshot
	}
	b = append(b, byte(m.Type), flags)
	b = binary.AppendUvarint(b, m.From)
	b = binary.AppendUvarint(b, m.To)
	b = binary.AppendUvarint(b, m.Term)
	b = binary.AppendUvarint(b, m.LogTerm)
	b = binary.AppendUvarint(b, m.Index)
	b = binary.AppendUvarint(b, m.Commit)
	b = binary.AppendUvarint(b, m.RejectHint)
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	prevTerm := m.Term
	for i := range m.Entries {
		e := &m.Entries[i]
		b = appendMsgEntry(b, e, m.Index+1+uint64(i), prevTerm)
		prevTerm = e.Term
	}
	if m.Snapshot != nil {
		b = appendSnapshot(b, m.Snapshot)
	}
	return appendBytes(b, m.Context)
}

// ---- sizes (exact body sizes, used to allocate once when marshalling) ----

func uvarintSize(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func bytesSize(p []byte) int { return uvarintSize(uint64(len(p))) + len(p) }

func idsSize(ids []uint64) int {
	n := uvarintSize(uint64(len(ids)))
	for _, id := range ids {
		n += uvarintSize(id)
	}
	return n
}

func entrySize(e *Entry) int {
	return uvarintSize(e.Term) + uvarintSize(e.Index) + 1 + bytesSize(e.Data)
}

func hardStateSize(hs *HardState) int {
	return uvarintSize(hs.Term) + uvarintSize(hs.Vote) + uvarintSize(hs.Commit)
}

func confStateSize(cs *ConfState) int {
	return 1 + idsSize(cs.Voters) + idsSize(cs.Learners) + idsSize(cs.VotersOutgoing) +
		idsSize(cs.LearnersNext)
}

func snapshotMetaSize(m *SnapshotMeta) int {
	return uvarintSize(m.Index) + uvarintSize(m.Term) + confStateSize(&m.Config)
}

func snapshotSize(s *Snapshot) int { return snapshotMetaSize(&s.Meta) + bytesSize(s.Data) }

func confChangeSize(cc *ConfChange) int {
	n := 1 + uvarintSize(uint64(len(cc.Changes))) + bytesSize(cc.Context)
	for _, c := range cc.Changes {
		n += 1 + uvarintSize(c.NodeID)
	}
	return n
}

func messageSize(m *Message) int {
	n := 2 + uvarintSize(m.From) + uvarintSize(m.To) + uvarintSize(m.Term) +
		uvarintSize(m.LogTerm) + uvarintSize(m.Index) + uvarintSize(m.Commit) +
		uvarintSize(m.RejectHint) + uvarintSize(uint64(len(m.Entries))) + bytesSize(m.Context)
	prevTerm := m.Term
	for i := range m.Entries {
		e := &m.Entries[i]
		n += uvarintSize(zigzag(e.Index-(m.Index+1+uint64(i)))) +
			uvarintSize(zigzag(e.Term-prevTerm)) + 1 + bytesSize(e.Data)
		prevTerm = e.Term
	}
	if m.Snapshot != nil {
		n += snapshotSize(m.Snapshot)
	}
	return n
}

// ---- decoding ----

// UnmarshalBinary decodes and validates an Entry encoded by AppendBinary.
// On error e is left unchanged.
func (e *Entry) UnmarshalBinary(data []byte) error {
	var v Entry
	d := decoder{data: data}
	d.header(kindEntry)
	d.entry(&v)
	err := d.finish()
	if err == nil {
		err = validateEntry(&v)
	}
	if err != nil {
		return fmt.Errorf("core: decode entry: %w", err)
	}
	*e = v
	return nil
}

// UnmarshalBinary decodes a HardState encoded by AppendBinary. On error hs
// is left unchanged.
func (hs *HardState) UnmarshalBinary(data []byte) error {
	var v HardState
	d := decoder{data: data}
	d.header(kindHardState)
	d.hardState(&v)
	if err := d.finish(); err != nil {
		return fmt.Errorf("core: decode hard state: %w", err)
	}
	*hs = v
	return nil
}

// UnmarshalBinary decodes and validates a ConfState encoded by
// AppendBinary. On error cs is left unchanged.
func (cs *ConfState) UnmarshalBinary(data []byte) error {
	var v ConfState
	d := decoder{data: data}
	d.header(kindConfState)
	d.confState(&v)
	err := d.finish()
	if err == nil {
		err = validateConfState(&v)
	}
	if err != nil {
		return fmt.Errorf("core: decode conf state: %w", err)
	}
	*cs = v
	return nil
}

// UnmarshalBinary decodes and validates a SnapshotMeta encoded by
// AppendBinary. On error m is left unchanged.
func (m *SnapshotMeta) UnmarshalBinary(data []byte) error {
	var v SnapshotMeta
	d := decoder{data: data}
	d.header(kindSnapshotMeta)
	d.snapshotMeta(&v)
	err := d.finish()
	if err == nil {
		err = validateSnapshotMeta(&v)
	}
	if err != nil {
		return fmt.Errorf("core: decode snapshot meta: %w", err)
	}
	*m = v
	return nil
}

// UnmarshalBinary decodes and validates a Snapshot encoded by AppendBinary.
// On error s is left unchanged.
func (s *Snapshot) UnmarshalBinary(data []byte) error {
	var v Snapshot
	d := decoder{data: data}
	d.header(kindSnapshot)
	d.snapshot(&v)
	err := d.finish()
	if err == nil {
		err = validateSnapshot(&v)
	}
	if err != nil {
		return fmt.Errorf("core: decode snapshot: %w", err)
	}
	*s = v
	return nil
}

// UnmarshalBinary decodes and validates a ConfChange encoded by
// AppendBinary. On error cc is left unchanged.
func (cc *ConfChange) UnmarshalBinary(data []byte) error {
	var v ConfChange
	d := decoder{data: data}
	d.header(kindConfChange)
	d.confChange(&v)
	err := d.finish()
	if err == nil {
		err = validateConfChange(&v)
	}
	if err != nil {
		return fmt.Errorf("core: decode conf change: %w", err)
	}
	*cc = v
	return nil
}

// DecodeConfChange decodes and validates a ConfChange, as carried in the
// Data of an EntryConfChange entry.
func DecodeConfChange(data []byte) (ConfChange, error) {
	var cc ConfChange
	err := cc.UnmarshalBinary(data)
	return cc, err
}

// UnmarshalBinary decodes and validates a Message encoded by AppendBinary.
// On error m is left unchanged.
func (m *Message) UnmarshalBinary(data []byte) error {
	var v Message
	d := decoder{data: data}
	d.header(kindMessage)
	d.message(&v)
	err := d.finish()
	if err == nil {
		err = validateMessage(&v)
	}
	if err != nil {
		return fmt.Errorf("core: decode message: %w", err)
	}
	*m = v
	return nil
}

// DecodeMessage decodes and validates a Message.
func DecodeMessage(data []byte) (Message, error) {
	var m Message
	err := m.UnmarshalBinary(data)
	return m, err
}

// decoder reads a body from data. The first error sticks: later reads
// return zero values and consume nothing, so callers check d.err (through
// finish) once at the end.
//
// Decoded byte strings must not alias data, so on the first non-empty one
// the rest of data is copied once into cp, and that string and all later
// ones are sub-slices of the copy (with capacity clipped to their length).
type decoder struct {
	data  []byte
	off   int
	cp    []byte // copy of data[cpOff:], made lazily
	cpOff int
	err   error
}

func (d *decoder) fail(field, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d: %s",
			ErrInvalidMessage, field, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) remaining() int { return len(d.data) - d.off }

// header reads and checks the version and kind bytes.
func (d *decoder) header(kind byte) {
	v := d.u8("version")
	if d.err == nil && v != codecVersion {
		d.off--
		d.fail("version", "unknown format version %d", v)
		return
	}
	k := d.u8("kind")
	if d.err == nil && k != kind {
		d.off--
		d.fail("kind", "kind %d, want %d", k, kind)
	}
}

// finish returns the first error, or an error if bytes remain.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.data) {
		d.fail("end", "%d trailing bytes", d.remaining())
	}
	return d.err
}

func (d *decoder) u8(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.data) {
		d.fail(field, "truncated")
		return 0
	}
	b := d.data[d.off]
	d.off++
	return b
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	switch {
	case n == 0:
		d.fail(field, "truncated varint")
		return 0
	case n < 0:
		d.fail(field, "varint overflows 64 bits")
		return 0
	case n > 1 && d.data[d.off+n-1] == 0:
		d.fail(field, "overlong varint")
		return 0
	}
	d.off += n
	return v
}

// count reads a list length and checks that the bytes remaining can hold
// that many elements of at least minSize bytes each.
func (d *decoder) count(field string, minSize int) int {
	c := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if limit := uint64(d.remaining() / minSize); c > limit {
		d.fail(field, "count %d exceeds the %d bytes remaining", c, d.remaining())
		return 0
	}
	return int(c)
}

// bytes reads a length-prefixed byte string. An empty string decodes as nil.
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil || n == 0 {
		return nil
	}
	if n > uint64(d.remaining()) {
		d.fail(field, "length %d exceeds the %d bytes remaining", n, d.remaining())
		return nil
	}
	if d.cp == nil {
		d.cp = append([]byte(nil), d.data[d.off:]...)
		d.cpOff = d.off
	}
	i := d.off - d.cpOff
	j := i + int(n)
	d.off += int(n)
	return d.cp[i:j:j]
}

func (d *decoder) ids(field string) []uint64 {
	n := d.count(field, minEncodedIDSize)
	if n == 0 {
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = d.uvarint(field)
	}
	return ids
}

func (d *decoder) entry(e *Entry) {
	e.Term = d.uvarint("entry term")
	e.Index = d.uvarint("entry index")
	e.Type = EntryType(d.u8("entry type"))
	e.Data = d.bytes("entry data")
}

func (d *decoder) msgEntry(e *Entry, wantIndex, prevTerm uint64) {
	e.Index = wantIndex + unzigzag(d.uvarint("entry index"))
	e.Term = prevTerm + unzigzag(d.uvarint("entry term"))
	e.Type = EntryType(d.u8("entry type"))
	e.Data = d.bytes("entry data")
}

func (d *decoder) hardState(hs *HardState) {
	hs.Term = d.uvarint("term")
	hs.Vote = d.uvarint("vote")
	hs.Commit = d.uvarint("commit")
}

func (d *decoder) confState(cs *ConfState) {
	flags := d.u8("config flags")
	if d.err == nil && flags&^confFlagsKnown != 0 {
		d.off--
		d.fail("config flags", "unknown flags %#x", flags)
		return
	}
	cs.AutoLeave = flags&confFlagAutoLeave != 0
	cs.Voters = d.ids("voters")
	cs.Learners = d.ids("learners")
	cs.VotersOutgoing = d.ids("outgoing voters")
	cs.LearnersNext = d.ids("next learners")
}

func (d *decoder) snapshotMeta(m *SnapshotMeta) {
	m.Index = d.uvarint("snapshot index")
	m.Term = d.uvarint("snapshot term")
	d.confState(&m.Config)
}

func (d *decoder) snapshot(s *Snapshot) {
	d.snapshotMeta(&s.Meta)
	s.Data = d.bytes("snapshot data")
}

func (d *decoder) confChange(cc *ConfChange) {
	cc.Transition = ConfChangeTransition(d.u8("transition"))
	if n := d.count("changes", minEncodedChangeSize); n > 0 {
		cc.Changes = make([]ConfChangeSingle, n)
		for i := range cc.Changes {
			c := &cc.Changes[i]
			c.Type = ConfChangeType(d.u8("change type"))
			c.NodeID = d.uvarint("change node")
		}
	}
	cc.Context = d.bytes("context")
}

func (d *decoder) message(m *Message) {
	m.Type = MessageType(d.u8("type"))
	flags := d.u8("flags")
	if d.err == nil && flags&^msgFlagsKnown != 0 {
		d.off--
		d.fail("flags", "unknown flags %#x", flags)
		return
	}
	m.Reject = flags&msgFlagReject != 0
	m.Force = flags&msgFlagForce != 0
	m.From = d.uvarint("from")
	m.To = d.uvarint("to")
	m.Term = d.uvarint("term")
	m.LogTerm = d.uvarint("log term")
	m.Index = d.uvarint("index")
	m.Commit = d.uvarint("commit")
	m.RejectHint = d.uvarint("reject hint")
	if n := d.count("entries", minEncodedEntrySize); n > 0 {
		m.Entries = make([]Entry, n)
		prevTerm := m.Term
		for i := range m.Entries {
			e := &m.Entries[i]
			d.msgEntry(e, m.Index+1+uint64(i), prevTerm)
			prevTerm = e.Term
		}
	}
	if flags&msgFlagSnapshot != 0 && d.err == nil {
		m.Snapshot = new(Snapshot)
		d.snapshot(m.Snapshot)
	}
	m.Context = d.bytes("context")
}
