package core

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"
)

// Interface conformance.
var (
	_ encoding.BinaryAppender    = (*Entry)(nil)
	_ encoding.BinaryMarshaler   = (*Message)(nil)
	_ encoding.BinaryUnmarshaler = (*Message)(nil)
	_ encoding.BinaryAppender    = (*HardState)(nil)
	_ encoding.BinaryAppender    = (*ConfState)(nil)
	_ encoding.BinaryAppender    = (*SnapshotMeta)(nil)
	_ encoding.BinaryAppender    = (*Snapshot)(nil)
	_ encoding.BinaryAppender    = (*ConfChange)(nil)
	_ encoding.BinaryAppender    = (*Message)(nil)
	_ encoding.BinaryUnmarshaler = (*Entry)(nil)
	_ encoding.BinaryUnmarshaler = (*HardState)(nil)
	_ encoding.BinaryUnmarshaler = (*ConfState)(nil)
	_ encoding.BinaryUnmarshaler = (*SnapshotMeta)(nil)
	_ encoding.BinaryUnmarshaler = (*Snapshot)(nil)
	_ encoding.BinaryUnmarshaler = (*ConfChange)(nil)
)

// ---- equality helpers (nil and empty slices compare equal) ----

func codecEqEntry(a, b *Entry) bool {
	return a.Term == b.Term && a.Index == b.Index && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

func codecEqEntries(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool { return codecEqEntry(&x, &y) })
}

func codecEqConfState(a, b *ConfState) bool {
	return slices.Equal(a.Voters, b.Voters) && slices.Equal(a.Learners, b.Learners) &&
		slices.Equal(a.VotersOutgoing, b.VotersOutgoing) &&
		slices.Equal(a.LearnersNext, b.LearnersNext) && a.AutoLeave == b.AutoLeave
}

func codecEqSnapshotMeta(a, b *SnapshotMeta) bool {
	return a.Index == b.Index && a.Term == b.Term && codecEqConfState(&a.Config, &b.Config)
}

func codecEqSnapshot(a, b *Snapshot) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return codecEqSnapshotMeta(&a.Meta, &b.Meta) && bytes.Equal(a.Data, b.Data)
}

func codecEqConfChange(a, b *ConfChange) bool {
	return a.Transition == b.Transition && slices.Equal(a.Changes, b.Changes) &&
		bytes.Equal(a.Context, b.Context)
}

func codecEqMessage(a, b *Message) bool {
	return a.Type == b.Type && a.From == b.From && a.To == b.To && a.Term == b.Term &&
		a.LogTerm == b.LogTerm && a.Index == b.Index && a.Commit == b.Commit &&
		a.Reject == b.Reject && a.Force == b.Force && a.RejectHint == b.RejectHint &&
		codecEqEntries(a.Entries, b.Entries) && codecEqSnapshot(a.Snapshot, b.Snapshot) &&
		bytes.Equal(a.Context, b.Context)
}

// ---- representative valid values ----

const codecMaxU = math.MaxUint64

func codecSampleEntries() []Entry {
	return []Entry{
		{},
		{Term: 1, Index: 1, Type: EntryNormal, Data: []byte("hello")},
		{Term: 7, Index: 12345, Type: EntryConfChange, Data: EncodeConfChange(ConfChange{
			Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 4}}})},
		{Term: codecMaxU, Index: codecMaxU, Type: EntryNormal, Data: bytes.Repeat([]byte{0xAB}, 300)},
		{Term: 3, Index: 0, Type: EntryNormal},
	}
}

func codecSampleHardStates() []HardState {
	return []HardState{
		{},
		{Term: 1, Vote: 2, Commit: 3},
		{Term: codecMaxU, Vote: codecMaxU, Commit: codecMaxU},
		{Term: 128, Vote: 0, Commit: 1 << 63},
	}
}

func codecSampleConfStates() []ConfState {
	return []ConfState{
		{},
		{Voters: []uint64{1}},
		{Voters: []uint64{1, 2, 3}, Learners: []uint64{4, 5}},
		// Joint: 3 is being demoted to learner, 4 added, 5 stays a learner.
		{
			Voters:         []uint64{1, 2, 4},
			VotersOutgoing: []uint64{1, 2, 3},
			Learners:       []uint64{5},
			LearnersNext:   []uint64{3},
			AutoLeave:      true,
		},
		{Voters: []uint64{1, codecMaxU - 1, codecMaxU}, VotersOutgoing: []uint64{codecMaxU}},
	}
}

func codecSampleSnapshotMetas() []SnapshotMeta {
	var out []SnapshotMeta
	for i, cs := range codecSampleConfStates() {
		out = append(out, SnapshotMeta{Index: uint64(i) * 1000, Term: uint64(i), Config: cs})
	}
	out = append(out, SnapshotMeta{Index: codecMaxU, Term: codecMaxU, Config: ConfState{Voters: []uint64{1}}})
	return out
}

func codecSampleSnapshots() []Snapshot {
	var out []Snapshot
	for i, m := range codecSampleSnapshotMetas() {
		s := Snapshot{Meta: m}
		if i%2 == 1 {
			s.Data = bytes.Repeat([]byte{byte(i)}, 10*i)
		}
		out = append(out, s)
	}
	return out
}

func codecSampleConfChanges() []ConfChange {
	return []ConfChange{
		{}, // leave joint
		{Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 1}}},
		{
			Transition: TransitionJointExplicit,
			Changes: []ConfChangeSingle{
				{Type: AddVoter, NodeID: 4}, {Type: AddLearner, NodeID: 3},
				{Type: RemoveNode, NodeID: codecMaxU},
			},
			Context: []byte("10.0.0.4:7000"),
		},
		{Transition: TransitionJointImplicit, Changes: []ConfChangeSingle{{Type: RemoveNode, NodeID: 2}}},
	}
}

func codecSampleMessages() []Message {
	snap := codecSampleSnapshots()[3]
	return []Message{
		{Type: MsgHeartbeat, From: 1, To: 2, Term: 5, Commit: 10, Index: 3},
		{Type: MsgHeartbeatResp, From: 2, To: 1, Term: 5, Index: 3},
		{
			Type: MsgApp, From: 1, To: 2, Term: 5, LogTerm: 4, Index: 100, Commit: 99,
			Entries: []Entry{
				{Term: 4, Index: 101, Data: []byte("a")},
				{Term: 5, Index: 102, Type: EntryConfChange, Data: EncodeConfChange(codecSampleConfChanges()[2])},
				{Term: 5, Index: 103},
			},
		},
		{Type: MsgApp, From: 1, To: 2, Term: 5, LogTerm: 5, Index: 103, Commit: 103},
		{
			Type: MsgApp, From: codecMaxU, To: codecMaxU - 1, Term: codecMaxU, LogTerm: codecMaxU, Index: codecMaxU - 2,
			Commit: codecMaxU, Entries: []Entry{{Term: codecMaxU, Index: codecMaxU - 1}, {Term: codecMaxU, Index: codecMaxU}},
		},
		{Type: MsgAppResp, From: 2, To: 1, Term: 5, Index: 100, Reject: true, RejectHint: 90, LogTerm: 3},
		{Type: MsgAppResp, From: 2, To: 1, Term: 5, Index: 103},
		{Type: MsgVote, From: 3, To: 1, Term: 6, LogTerm: 5, Index: 103, Force: true},
		{Type: MsgVoteResp, From: 1, To: 3, Term: 6, Reject: true},
		{Type: MsgPreVote, From: 3, To: 1, Term: 7, LogTerm: 5, Index: 103},
		{Type: MsgPreVoteResp, From: 1, To: 3, Term: 7},
		{Type: MsgSnap, From: 1, To: 2, Term: 5, Snapshot: &snap},
		{
			Type: MsgProp, From: 2, To: 1, Term: 5,
			Entries: []Entry{{Data: []byte("x")}, {Data: []byte("y")}, {Type: EntryConfChange, Data: []byte{1}}},
		},
		{Type: MsgReadIndex, From: 2, To: 1, Term: 5, Context: []byte("read-1")},
		{Type: MsgReadIndexResp, From: 1, To: 2, Term: 5, Index: 103, Context: []byte("read-1")},
		{Type: MsgTimeoutNow, From: 1, To: 3, Term: 5},
		{Type: MsgTransferLeader, From: 3, To: 1, Term: 5, Index: 3},
	}
}

// ---- generic test plumbing ----

// codecCase bundles encode/decode/compare for one value, so that the
// malformed-input tests can run over every type.
type codecCase struct {
	name   string
	kind   byte
	encode func() []byte
	// decode decodes data into a fresh value and returns a function that
	// reports whether the decoded value equals the original.
	decode func(data []byte) (equal func() bool, err error)
}

// must returns b, or panics on an encoding error (encoding a non-nil value
// never fails).
func codecMust(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func codecCases() []codecCase {
	var cs []codecCase
	for _, v := range codecSampleEntries() {
		cs = append(cs, codecCase{"entry", kindEntry,
			func() []byte { return codecMust(v.MarshalBinary()) },
			func(data []byte) (func() bool, error) {
				var got Entry
				err := got.UnmarshalBinary(data)
				return func() bool { return codecEqEntry(&got, &v) }, err
			}})
	}
	for _, v := range codecSampleHardStates() {
		cs = append(cs, codecCase{"hardstate", kindHardState,
			func() []byte { return codecMust(v.MarshalBinary()) },
			func(data []byte) (func() bool, error) {
				var got HardState
				err := got.UnmarshalBinary(data)
				return func() bool { return got == v }, err
			}})
	}
	for _, v := range codecSampleConfStates() {
		cs = append(cs, codecCase{"confstate", kindConfState,
			func() []byte { return codecMust(v.MarshalBinary()) },
			func(data []byte) (func() bool, error) {
				var got ConfState
				err := got.UnmarshalBinary(data)
				return func() bool { return codecEqConfState(&got, &v) }, err
			}})
	}
	for _, v := range codecSampleSnapshotMetas() {
		cs = append(cs, codecCase{"snapshotmeta", kindSnapshotMeta,
			func() []byte { return codecMust(v.MarshalBinary()) },
			func(data []byte) (func() bool, error) {
				var got SnapshotMeta
				err := got.UnmarshalBinary(data)
				return func() bool { return codecEqSnapshotMeta(&got, &v) }, err
			}})
	}
	for _, v := range codecSampleSnapshots() {
		cs = append(cs, codecCase{"snapshot", kindSnapshot,
			func() []byte { return codecMust(v.MarshalBinary()) },
			func(data []byte) (func() bool, error) {
				var got Snapshot
				err := got.UnmarshalBinary(data)
				return func() bool { return codecEqSnapshot(&got, &v) }, err
			}})
	}
	for _, v := range codecSampleConfChanges() {
		cs = append(cs, codecCase{"confchange", kindConfChange,
			func() []byte { return codecMust(v.MarshalBinary()) },
			func(data []byte) (func() bool, error) {
				got, err := DecodeConfChange(data)
				return func() bool { return codecEqConfChange(&got, &v) }, err
			}})
	}
	for _, v := range codecSampleMessages() {
		cs = append(cs, codecCase{"message " + v.Type.String(), kindMessage,
			func() []byte { return codecMust(v.MarshalBinary()) },
			func(data []byte) (func() bool, error) {
				got, err := DecodeMessage(data)
				return func() bool { return codecEqMessage(&got, &v) }, err
			}})
	}
	return cs
}

// codecDecodeAny decodes data as the type of the given kind and returns the
// canonical re-encoding of the result.
func codecDecodeAny(kind byte, data []byte) ([]byte, error) {
	var v interface {
		encoding.BinaryUnmarshaler
		encoding.BinaryMarshaler
	}
	switch kind {
	case kindEntry:
		v = new(Entry)
	case kindHardState:
		v = new(HardState)
	case kindConfState:
		v = new(ConfState)
	case kindSnapshotMeta:
		v = new(SnapshotMeta)
	case kindSnapshot:
		v = new(Snapshot)
	case kindConfChange:
		v = new(ConfChange)
	case kindMessage:
		v = new(Message)
	default:
		panic("unknown kind")
	}
	if err := v.UnmarshalBinary(data); err != nil {
		return nil, err
	}
	return v.MarshalBinary()
}

var codecKinds = []byte{kindEntry, kindHardState, kindConfState, kindSnapshotMeta, kindSnapshot,
	kindConfChange, kindMessage}

// ---- round trips ----

func TestCodecRoundTrip(t *testing.T) {
	for _, c := range codecCases() {
		data := c.encode()
		if data[0] != codecVersion || data[1] != c.kind {
			t.Errorf("%s: header %x, want %x %x", c.name, data[:2], codecVersion, c.kind)
		}
		equal, err := c.decode(data)
		if err != nil {
			t.Errorf("%s: decode %x: %v", c.name, data, err)
			continue
		}
		if !equal() {
			t.Errorf("%s: round trip of %x changed the value", c.name, data)
		}
		// Canonical: re-encoding gives the same bytes.
		again, err := codecDecodeAny(c.kind, data)
		if err != nil || !bytes.Equal(again, data) {
			t.Errorf("%s: re-encoding %x gave %x, %v", c.name, data, again, err)
		}
	}
}

func TestCodecMarshalSizeExact(t *testing.T) {
	for _, c := range codecCases() {
		data := c.encode()
		if len(data) != cap(data) {
			t.Errorf("%s: len %d cap %d: size precomputation is off", c.name, len(data), cap(data))
		}
	}
}

func TestCodecAppendBinaryAppends(t *testing.T) {
	prefix := []byte("prefix")
	for _, m := range codecSampleMessages() {
		want := codecMust(m.MarshalBinary())
		got := codecMust(m.AppendBinary(bytes.Clone(prefix)))
		if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
			t.Errorf("%v: AppendBinary = %x, want prefix + %x", m.Type, got, want)
		}
	}
	e := codecSampleEntries()[1]
	got := codecMust(e.AppendBinary(bytes.Clone(prefix)))
	if want := codecMust(e.MarshalBinary()); !bytes.Equal(got[len(prefix):], want) {
		t.Errorf("entry: AppendBinary = %x, want prefix + %x", got, want)
	}
}

func TestCodecEncodeConfChange(t *testing.T) {
	for _, cc := range codecSampleConfChanges() {
		got := EncodeConfChange(cc)
		if want := codecMust(cc.MarshalBinary()); !bytes.Equal(got, want) {
			t.Errorf("EncodeConfChange = %x, MarshalBinary = %x", got, want)
		}
	}
}

func TestCodecNilSnapshotRoundTrip(t *testing.T) {
	m := Message{Type: MsgHeartbeat, From: 1, To: 2}
	got, err := DecodeMessage(codecMust(m.MarshalBinary()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Snapshot != nil {
		t.Errorf("nil snapshot decoded as %+v", got.Snapshot)
	}
	m = codecSampleMessages()[11] // MsgSnap
	got, err = DecodeMessage(codecMust(m.MarshalBinary()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Snapshot == nil || !codecEqSnapshot(got.Snapshot, m.Snapshot) {
		t.Errorf("snapshot decoded as %+v, want %+v", got.Snapshot, m.Snapshot)
	}
}

func TestCodecEmptyDecodesAsNil(t *testing.T) {
	m := Message{Type: MsgProp, From: 1, To: 2, Entries: []Entry{}, Context: []byte{}}
	got, err := DecodeMessage(codecMust(m.MarshalBinary()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Entries != nil || got.Context != nil {
		t.Errorf("empty slices decoded as non-nil: %#v", got)
	}
	m = Message{Type: MsgProp, From: 1, To: 2, Entries: []Entry{{Data: []byte{}}}}
	got, err = DecodeMessage(codecMust(m.MarshalBinary()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Entries[0].Data != nil {
		t.Errorf("empty entry data decoded as %#v", got.Entries[0].Data)
	}
	cs := ConfState{Voters: []uint64{}, Learners: []uint64{}}
	var gotCS ConfState
	if err := gotCS.UnmarshalBinary(codecMust(cs.MarshalBinary())); err != nil {
		t.Fatal(err)
	}
	if gotCS.Voters != nil || gotCS.Learners != nil {
		t.Errorf("empty ID lists decoded as non-nil: %#v", gotCS)
	}
	cc, err := DecodeConfChange(EncodeConfChange(ConfChange{Changes: []ConfChangeSingle{}, Context: []byte{}}))
	if err != nil {
		t.Fatal(err)
	}
	if cc.Changes != nil || cc.Context != nil {
		t.Errorf("empty conf change decoded as %#v", cc)
	}
}

func TestCodecMsgAppEntriesAreCompact(t *testing.T) {
	// In a well-formed MsgApp each entry costs 4 bytes plus its data, however
	// large its index and term.
	m := Message{Type: MsgApp, From: 1, To: 2, Term: 1 << 40, Index: 1 << 50, LogTerm: 1 << 40}
	base := len(codecMust(m.MarshalBinary()))
	for i := range 10 {
		m.Entries = append(m.Entries, Entry{Term: 1 << 40, Index: 1<<50 + 1 + uint64(i), Data: []byte("ab")})
	}
	if got, want := len(codecMust(m.MarshalBinary())), base+10*(4+2); got != want {
		t.Errorf("MsgApp with 10 entries: %d bytes, want %d", got, want)
	}
}

func TestCodecEncodeNilReceiver(t *testing.T) {
	var (
		e  *Entry
		hs *HardState
		cs *ConfState
		sm *SnapshotMeta
		s  *Snapshot
		cc *ConfChange
		m  *Message
	)
	for name, f := range map[string]func() ([]byte, error){
		"entry": e.MarshalBinary, "hardstate": hs.MarshalBinary, "confstate": cs.MarshalBinary,
		"snapshotmeta": sm.MarshalBinary, "snapshot": s.MarshalBinary, "confchange": cc.MarshalBinary,
		"message": m.MarshalBinary,
	} {
		if _, err := f(); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: nil MarshalBinary error = %v", name, err)
		}
	}
}

// ---- malformed input ----

func TestCodecRejectsEveryPrefix(t *testing.T) {
	for _, c := range codecCases() {
		data := c.encode()
		for n := range len(data) {
			if _, err := c.decode(data[:n]); err == nil {
				t.Errorf("%s: prefix %x of %x decoded without error", c.name, data[:n], data)
			} else if !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("%s: prefix error %v does not wrap ErrInvalidMessage", c.name, err)
			}
		}
	}
}

func TestCodecRejectsTrailingBytes(t *testing.T) {
	for _, c := range codecCases() {
		data := append(c.encode(), 0)
		if _, err := c.decode(data); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: trailing byte: err = %v", c.name, err)
		}
	}
}

func TestCodecRejectsWrongVersionAndKind(t *testing.T) {
	for _, c := range codecCases() {
		data := c.encode()
		for _, v := range []byte{0, 2, 0xFF} {
			bad := bytes.Clone(data)
			bad[0] = v
			if _, err := c.decode(bad); !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("%s: version %d: err = %v", c.name, v, err)
			}
		}
		for _, k := range append(codecKinds, 0, 8, 0xFF) {
			if k == c.kind {
				continue
			}
			bad := bytes.Clone(data)
			bad[1] = k
			if _, err := c.decode(bad); !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("%s: kind %d: err = %v", c.name, k, err)
			}
		}
		// Nor may the bytes decode as the type of another kind.
		for _, k := range codecKinds {
			if _, err := codecDecodeAny(k, data); k != c.kind && !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("%s: decoding as kind %d: err = %v", c.name, k, err)
			}
		}
	}
}

func TestCodecRejectsEmptyInput(t *testing.T) {
	for _, k := range codecKinds {
		for _, in := range [][]byte{nil, {}, {codecVersion}} {
			if _, err := codecDecodeAny(k, in); !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("kind %d: input %x: err = %v", k, in, err)
			}
		}
	}
}

func codecHdr(kind byte) []byte { return []byte{codecVersion, kind} }

func codecUv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func codecCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCodecMalformed(t *testing.T) {
	// A valid heartbeat body after the header, for reference:
	// type, flags, from, to, term, logterm, index, commit, hint, #entries, context.
	hb := func(typ, flags byte) []byte {
		return codecCat(codecHdr(kindMessage), []byte{typ, flags, 1, 2, 0, 0, 0, 0, 0, 0, 0})
	}
	if _, err := DecodeMessage(hb(byte(MsgHeartbeat), 0)); err != nil {
		t.Fatalf("reference heartbeat: %v", err)
	}
	tests := []struct {
		name string
		kind byte
		in   []byte
	}{
		{"overlong varint", kindHardState, codecCat(codecHdr(kindHardState), []byte{0x81, 0x00, 0, 0})},
		{"overlong zero", kindHardState, codecCat(codecHdr(kindHardState), []byte{0x80, 0x00, 0, 0})},
		{"varint 11 bytes", kindHardState, codecCat(codecHdr(kindHardState),
			bytes.Repeat([]byte{0xFF}, 10), []byte{0x01, 0, 0})},
		{"varint overflows", kindHardState, codecCat(codecHdr(kindHardState),
			bytes.Repeat([]byte{0xFF}, 9), []byte{0x02, 0, 0})},
		{"truncated varint", kindHardState, codecCat(codecHdr(kindHardState), []byte{0, 0, 0x80})},
		{"unknown message type 0", kindMessage, hb(0, 0)},
		{"unknown message type 15", kindMessage, hb(15, 0)},
		{"unknown message type 255", kindMessage, hb(255, 0)},
		{"unknown message flag", kindMessage, hb(byte(MsgHeartbeat), 0x08)},
		{"snapshot flag without snapshot", kindMessage, hb(byte(MsgHeartbeat), msgFlagSnapshot)},
		{"reject on heartbeat", kindMessage, hb(byte(MsgHeartbeat), msgFlagReject)},
		{"unknown entry type", kindEntry, codecCat(codecHdr(kindEntry), []byte{1, 1, 2, 0})},
		{"unknown conf flag", kindConfState, codecCat(codecHdr(kindConfState), []byte{2, 0, 0, 0, 0})},
		{"unknown transition", kindConfChange, codecCat(codecHdr(kindConfChange), []byte{3, 0, 0})},
		{"unknown change type", kindConfChange, codecCat(codecHdr(kindConfChange), []byte{0, 1, 3, 1, 0})},
		{"zero node ID in change", kindConfChange, codecCat(codecHdr(kindConfChange), []byte{0, 1, 0, 0, 0})},
		{"data length past end", kindEntry, codecCat(codecHdr(kindEntry), []byte{1, 1, 0, 5, 'a', 'b'})},
		{"data length huge", kindEntry, codecCat(codecHdr(kindEntry), []byte{1, 1, 0}, codecUv(codecMaxU))},
		{"snapshot index without term", kindSnapshot, codecCat(codecHdr(kindSnapshot), []byte{5, 0, 0, 0, 0, 0, 0, 0})},
		{"unsorted voters", kindConfState, codecCat(codecHdr(kindConfState), []byte{0, 2, 2, 1, 0, 0, 0})},
		{"duplicate voters", kindConfState, codecCat(codecHdr(kindConfState), []byte{0, 2, 1, 1, 0, 0, 0})},
		{"zero voter", kindConfState, codecCat(codecHdr(kindConfState), []byte{0, 1, 0, 0, 0, 0})},
		{"auto leave not joint", kindConfState, codecCat(codecHdr(kindConfState), []byte{1, 1, 1, 0, 0, 0})},
	}
	for _, tt := range tests {
		if _, err := codecDecodeAny(tt.kind, tt.in); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: decode %x: err = %v", tt.name, tt.in, err)
		}
	}
}

func TestCodecHugeCountsFailFast(t *testing.T) {
	huge := codecUv(1 << 60)
	inputs := []struct {
		kind byte
		in   []byte
	}{
		// Heartbeat-shaped message claiming 2^60 entries.
		{kindMessage, codecCat(codecHdr(kindMessage), []byte{byte(MsgApp), 0, 1, 2, 0, 0, 0, 0, 0}, huge, []byte{0, 0})},
		{kindConfState, codecCat(codecHdr(kindConfState), []byte{0}, huge, []byte{1, 2, 3})},
		{kindConfState, codecCat(codecHdr(kindConfState), []byte{0, 0, 0, 0}, huge)},
		{kindConfChange, codecCat(codecHdr(kindConfChange), []byte{0}, huge, []byte{0, 1})},
		{kindSnapshot, codecCat(codecHdr(kindSnapshot), []byte{1, 1, 0}, huge)},
		// Counts just one too many for the bytes that follow.
		{kindMessage, codecCat(codecHdr(kindMessage), []byte{byte(MsgProp), 0, 1, 2, 0, 0, 0, 0, 0, 3},
			bytes.Repeat([]byte{0}, 3*minEncodedEntrySize-1))},
		{kindConfState, codecCat(codecHdr(kindConfState), []byte{0, 4, 1, 2, 3})},
		{kindConfChange, codecCat(codecHdr(kindConfChange), []byte{0, 3, 0, 1, 0, 2})},
	}
	for _, in := range inputs {
		if _, err := codecDecodeAny(in.kind, in.in); !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("%x: err = %v", in.in, err)
		}
		var err error
		allocs := testing.AllocsPerRun(20, func() { _, err = codecDecodeAny(in.kind, in.in) })
		if err == nil {
			t.Fatalf("%x decoded", in.in)
		}
		// Only the error value and its formatting allocate.
		if allocs > 12 {
			t.Errorf("%x: %v allocations for a failing decode", in.in, allocs)
		}
	}
}

func TestCodecDecodeAllocations(t *testing.T) {
	hb := codecMust((&Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 3, Commit: 4}).MarshalBinary())
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeMessage(hb); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("heartbeat decode: %v allocations, want 0", n)
	}
	app := codecSampleMessages()[2]
	for range 50 {
		app.Entries = append(app.Entries, Entry{Term: 5, Index: app.Index + 1 + uint64(len(app.Entries)),
			Data: []byte("payload")})
	}
	data := codecMust(app.MarshalBinary())
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeMessage(data); err != nil {
			t.Fatal(err)
		}
	}); n > 2 {
		t.Errorf("MsgApp decode: %v allocations, want at most 2 (entries, one data copy)", n)
	}
}

func TestCodecDecodedValuesDoNotAliasInput(t *testing.T) {
	for _, c := range codecCases() {
		data := c.encode()
		equal, err := c.decode(data)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for i := range data {
			data[i] ^= 0xFF
		}
		if !equal() {
			t.Errorf("%s: decoded value changed when the input was overwritten", c.name)
		}
	}
	// Appending to one decoded byte slice must not clobber the next.
	m := Message{Type: MsgProp, From: 1, To: 2,
		Entries: []Entry{{Data: []byte("aa")}, {Data: []byte("bb")}}, Context: []byte("cc")}
	got, err := DecodeMessage(codecMust(m.MarshalBinary()))
	if err != nil {
		t.Fatal(err)
	}
	_ = append(got.Entries[0].Data, "XXXXXXXX"...)
	_ = append(got.Entries[1].Data, "XXXXXXXX"...)
	if !codecEqMessage(&got, &m) {
		t.Errorf("append to a decoded slice clobbered a neighbour: %+v", got)
	}
}

func TestCodecUnmarshalErrorLeavesValue(t *testing.T) {
	m := codecSampleMessages()[2]
	orig := m
	if err := m.UnmarshalBinary([]byte{codecVersion, kindMessage, 0xFF}); err == nil {
		t.Fatal("garbage decoded")
	}
	if !codecEqMessage(&m, &orig) {
		t.Errorf("failed UnmarshalBinary changed the value to %+v", m)
	}
}

func TestCodecEncodesInvalidValuesFaithfully(t *testing.T) {
	// Encoding never validates; decoding does. Invalid values must be
	// rejected on decode, not corrupted into valid ones.
	bad := []Message{
		{Type: MsgApp, From: 1, To: 2, Term: 5, Index: 10, Entries: []Entry{{Term: 5, Index: 12}}},
		{Type: MsgApp, From: 1, To: 2, Term: 5, Index: codecMaxU, Entries: []Entry{{Term: 5, Index: 0}}},
		{Type: 0, From: 1, To: 2},
		{Type: MsgHeartbeat, From: 1, To: 1},
	}
	for _, m := range bad {
		data, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeMessage(data); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: decode err = %v", m, err)
		}
	}
}

// ---- validation ----

func TestCodecValidateMessage(t *testing.T) {
	for _, m := range codecSampleMessages() {
		if err := validateMessage(&m); err != nil {
			t.Errorf("valid %v rejected: %v", m.Type, err)
		}
	}
	app := func() Message { return codecSampleMessages()[2] } // MsgApp Index 100, Term 5, entries 101..103
	snap := codecSampleSnapshots()[1]
	emptySnap := Snapshot{}
	badSnap := Snapshot{Meta: SnapshotMeta{Index: 5, Term: 1, Config: ConfState{Voters: []uint64{2, 1}}}}
	tests := []struct {
		name string
		m    func() Message
	}{
		{"unknown type 0", func() Message { return Message{From: 1, To: 2} }},
		{"unknown type 15", func() Message { return Message{Type: msgTypeEnd, From: 1, To: 2} }},
		{"no sender", func() Message { return Message{Type: MsgHeartbeat, To: 2} }},
		{"no recipient", func() Message { return Message{Type: MsgHeartbeat, From: 1} }},
		{"to itself", func() Message { return Message{Type: MsgHeartbeat, From: 2, To: 2} }},
		{"reject on MsgVote", func() Message { return Message{Type: MsgVote, From: 1, To: 2, Reject: true} }},
		{"reject on MsgHeartbeatResp", func() Message {
			return Message{Type: MsgHeartbeatResp, From: 1, To: 2, Reject: true}
		}},
		{"entries on heartbeat", func() Message {
			return Message{Type: MsgHeartbeat, From: 1, To: 2, Entries: []Entry{{}}}
		}},
		{"snapshot on MsgApp", func() Message { m := app(); m.Snapshot = &snap; return m }},
		{"MsgSnap without snapshot", func() Message { return Message{Type: MsgSnap, From: 1, To: 2} }},
		{"MsgSnap with empty snapshot", func() Message {
			return Message{Type: MsgSnap, From: 1, To: 2, Snapshot: &emptySnap}
		}},
		{"MsgSnap with bad config", func() Message {
			return Message{Type: MsgSnap, From: 1, To: 2, Snapshot: &badSnap}
		}},
		{"MsgApp gap", func() Message { m := app(); m.Entries[1].Index++; return m }},
		{"MsgApp wrong start", func() Message { m := app(); m.Index = 99; return m }},
		{"MsgApp term decreases", func() Message { m := app(); m.Entries[2].Term = 4; return m }},
		{"MsgApp entry term above message term", func() Message { m := app(); m.Term = 4; return m }},
		{"MsgApp log term above first entry", func() Message { m := app(); m.LogTerm = 5; return m }},
		{"MsgApp unknown entry type", func() Message { m := app(); m.Entries[0].Type = 2; return m }},
		{"MsgProp unknown entry type", func() Message {
			return Message{Type: MsgProp, From: 1, To: 2, Entries: []Entry{{Type: 9}}}
		}},
		{"index overflow", func() Message {
			return Message{Type: MsgProp, From: 1, To: 2, Index: codecMaxU, Entries: []Entry{{}}}
		}},
	}
	for _, tt := range tests {
		m := tt.m()
		err := validateMessage(&m)
		if !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: validateMessage = %v", tt.name, err)
			continue
		}
		// The decoder applies the same check.
		data := codecMust(m.MarshalBinary())
		if _, err := DecodeMessage(data); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: DecodeMessage = %v", tt.name, err)
		}
	}
	if err := validateMessage(nil); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("nil message: %v", err)
	}
	// MsgProp entries may carry any index and term.
	p := Message{Type: MsgProp, From: 1, To: 2, Term: 1, Index: 7,
		Entries: []Entry{{Term: 9, Index: 3}, {Term: 2, Index: 3}}}
	if err := validateMessage(&p); err != nil {
		t.Errorf("MsgProp with arbitrary entry indexes rejected: %v", err)
	}
	// Index + len(Entries) may reach MaxUint64 exactly.
	p = Message{Type: MsgApp, From: 1, To: 2, Term: 1, Index: codecMaxU - 1, Entries: []Entry{{Term: 1, Index: codecMaxU}}}
	if err := validateMessage(&p); err != nil {
		t.Errorf("MsgApp ending at MaxUint64 rejected: %v", err)
	}
}

func TestCodecValidateConfState(t *testing.T) {
	for _, cs := range codecSampleConfStates() {
		if err := validateConfState(&cs); err != nil {
			t.Errorf("valid %+v rejected: %v", cs, err)
		}
	}
	bad := []ConfState{
		{Voters: []uint64{2, 1}},
		{Voters: []uint64{1, 1}},
		{Voters: []uint64{0, 1}},
		{Learners: []uint64{3, 3}},
		{VotersOutgoing: []uint64{0}},
		{Voters: []uint64{1}, VotersOutgoing: []uint64{1, 2}, LearnersNext: []uint64{2, 2}},
		{Voters: []uint64{1, 2}, Learners: []uint64{2, 3}},
		{Voters: []uint64{1}, VotersOutgoing: []uint64{1, 2}, Learners: []uint64{2}},
		{Voters: []uint64{1}, VotersOutgoing: []uint64{1, 2}, LearnersNext: []uint64{3}},
		{Voters: []uint64{1}, LearnersNext: []uint64{1}},
		{Voters: []uint64{1, 2}, VotersOutgoing: []uint64{1, 2}, LearnersNext: []uint64{2}},
		{Voters: []uint64{1}, VotersOutgoing: []uint64{1, 2}, Learners: []uint64{3},
			LearnersNext: []uint64{2, 3}},
		{Voters: []uint64{1}, AutoLeave: true},
	}
	for _, cs := range bad {
		if err := validateConfState(&cs); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: validateConfState = %v", cs, err)
		}
		var got ConfState
		if err := got.UnmarshalBinary(codecMust(cs.MarshalBinary())); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: decode err = %v", cs, err)
		}
	}
}

func TestCodecValidateConfChange(t *testing.T) {
	for _, cc := range codecSampleConfChanges() {
		if err := validateConfChange(&cc); err != nil {
			t.Errorf("valid %+v rejected: %v", cc, err)
		}
	}
	bad := []ConfChange{
		{Transition: 3},
		{Changes: []ConfChangeSingle{{Type: 3, NodeID: 1}}},
		{Changes: []ConfChangeSingle{{Type: AddVoter, NodeID: 1}, {Type: RemoveNode}}},
	}
	for _, cc := range bad {
		if err := validateConfChange(&cc); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: validateConfChange = %v", cc, err)
		}
		if _, err := DecodeConfChange(EncodeConfChange(cc)); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: decode err = %v", cc, err)
		}
	}
}

func TestCodecValidateSnapshotAndEntry(t *testing.T) {
	for _, s := range codecSampleSnapshots() {
		if err := validateSnapshot(&s); err != nil {
			t.Errorf("valid snapshot %+v rejected: %v", s.Meta, err)
		}
	}
	for _, s := range []*Snapshot{
		nil,
		{Meta: SnapshotMeta{Index: 1}},
		{Meta: SnapshotMeta{Index: 1, Term: 1, Config: ConfState{Learners: []uint64{0}}}},
	} {
		if err := validateSnapshot(s); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: validateSnapshot = %v", s, err)
		}
	}
	for _, e := range codecSampleEntries() {
		if err := validateEntry(&e); err != nil {
			t.Errorf("valid entry rejected: %v", err)
		}
	}
	if err := validateEntry(&Entry{Type: 2}); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("entry type 2: %v", err)
	}
}

func TestCodecZigzag(t *testing.T) {
	for _, v := range []uint64{0, 1, 2, codecMaxU, codecMaxU - 1, 1 << 63, 1<<63 - 1, 12345} {
		if got := unzigzag(zigzag(v)); got != v {
			t.Errorf("unzigzag(zigzag(%d)) = %d", v, got)
		}
	}
	if zigzag(codecMaxU) != 1 || zigzag(1) != 2 {
		t.Errorf("zigzag(-1) = %d, zigzag(1) = %d", zigzag(codecMaxU), zigzag(1))
	}
}

func TestCodecUvarintSize(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1<<63 - 1, 1 << 63, codecMaxU} {
		if got, want := uvarintSize(v), len(codecUv(v)); got != want {
			t.Errorf("uvarintSize(%d) = %d, want %d", v, got, want)
		}
	}
}
