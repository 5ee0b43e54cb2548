package core

import (
	"bytes"
	"encoding"
	"errors"
	"testing"
)

// Fuzz properties, for every type: decoding any input never panics; it
// either fails with an error wrapping ErrInvalidMessage or yields a value
// that passes validation, whose encoding is exactly the input (the encoding
// is canonical), that does not alias the input, and that decodes back to
// an equal value.

type codecPtr[T any] interface {
	*T
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

func codecCheckDecode[T any, P codecPtr[T]](t *testing.T, data []byte, validate func(P) error, equal func(a, b P) bool) {
	in := bytes.Clone(data)
	var v T
	p := P(&v)
	if err := p.UnmarshalBinary(in); err != nil {
		if !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("decode %x: error %v does not wrap ErrInvalidMessage", data, err)
		}
		return
	}
	if err := validate(p); err != nil {
		t.Fatalf("decode %x: result fails validation: %v", data, err)
	}
	enc, err := p.MarshalBinary()
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if !bytes.Equal(enc, data) {
		t.Fatalf("decode %x then encode gave %x: encoding not canonical", data, enc)
	}
	for i := range in {
		in[i] ^= 0xFF
	}
	if enc2, _ := p.MarshalBinary(); !bytes.Equal(enc2, data) {
		t.Fatalf("decoded value aliases its input: %x became %x", data, enc2)
	}
	var w T
	if err := P(&w).UnmarshalBinary(enc); err != nil {
		t.Fatalf("decode of re-encoding %x: %v", enc, err)
	}
	if !equal(p, &w) {
		t.Fatalf("decode(encode(decode(%x))) differs", data)
	}
}

// codecAddSeeds adds valid encodings plus a few generic malformed inputs.
func codecAddSeeds(f *testing.F, kind byte, valid [][]byte) {
	for _, b := range valid {
		f.Add(b)
		if len(b) > 3 {
			f.Add(b[:len(b)-1])
		}
	}
	f.Add([]byte{})
	f.Add(codecHdr(kind))
	f.Add(codecCat(codecHdr(kind), codecUv(1<<60), codecUv(1<<60), codecUv(1<<60)))
	f.Add(codecCat(codecHdr(kind), bytes.Repeat([]byte{0xFF}, 12)))
}

func codecEncodings[T any, P interface {
	*T
	encoding.BinaryMarshaler
}](vs []T) [][]byte {
	var out [][]byte
	for i := range vs {
		out = append(out, codecMust(P(&vs[i]).MarshalBinary()))
	}
	return out
}

func FuzzDecodeMessage(f *testing.F) {
	codecAddSeeds(f, kindMessage, codecEncodings(codecSampleMessages()))
	f.Add(codecCat(codecHdr(kindMessage), []byte{byte(MsgApp), 0, 1, 2, 0, 0, 0, 0, 0}, codecUv(1<<60), []byte{0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		codecCheckDecode(t, data, validateMessage, codecEqMessage)
		var m Message
		if m.UnmarshalBinary(data) == nil && m.EncodedSize() != len(data) {
			t.Fatalf("EncodedSize %d, encoding %d bytes", m.EncodedSize(), len(data))
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	codecAddSeeds(f, kindEntry, codecEncodings(codecSampleEntries()))
	f.Fuzz(func(t *testing.T, data []byte) {
		codecCheckDecode(t, data, validateEntry, codecEqEntry)
	})
}

func FuzzDecodeHardState(f *testing.F) {
	codecAddSeeds(f, kindHardState, codecEncodings(codecSampleHardStates()))
	f.Fuzz(func(t *testing.T, data []byte) {
		codecCheckDecode(t, data, func(*HardState) error { return nil },
			func(a, b *HardState) bool { return *a == *b })
	})
}

func FuzzDecodeConfState(f *testing.F) {
	codecAddSeeds(f, kindConfState, codecEncodings(codecSampleConfStates()))
	f.Fuzz(func(t *testing.T, data []byte) {
		codecCheckDecode(t, data, validateConfState, codecEqConfState)
	})
}

func FuzzDecodeSnapshotMeta(f *testing.F) {
	codecAddSeeds(f, kindSnapshotMeta, codecEncodings(codecSampleSnapshotMetas()))
	f.Fuzz(func(t *testing.T, data []byte) {
		codecCheckDecode(t, data, validateSnapshotMeta, codecEqSnapshotMeta)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	codecAddSeeds(f, kindSnapshot, codecEncodings(codecSampleSnapshots()))
	f.Fuzz(func(t *testing.T, data []byte) {
		codecCheckDecode(t, data, validateSnapshot, codecEqSnapshot)
	})
}

func FuzzDecodeConfChange(f *testing.F) {
	codecAddSeeds(f, kindConfChange, codecEncodings(codecSampleConfChanges()))
	f.Fuzz(func(t *testing.T, data []byte) {
		codecCheckDecode(t, data, validateConfChange, codecEqConfChange)
		// The convenience wrapper agrees with UnmarshalBinary.
		cc, err := DecodeConfChange(data)
		var want ConfChange
		if err2 := want.UnmarshalBinary(data); (err == nil) != (err2 == nil) ||
			(err == nil && !codecEqConfChange(&cc, &want)) {
			t.Fatalf("DecodeConfChange(%x) = %v, %v; UnmarshalBinary: %v", data, cc, err, err2)
		}
	})
}
