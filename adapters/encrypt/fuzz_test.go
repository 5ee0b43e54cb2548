package encrypt

import (
	"bytes"
	"errors"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// fuzzKeyring is a keyring with a fixed key and salt, its nonces from
// epoch 1.
func fuzzKeyring(t testing.TB) *keyring {
	k, err := NewKey(bytes.Repeat([]byte{9}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := newKeyring(k, nil, bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	kr.epoch = func() (uint32, error) { return 1, nil }
	return kr
}

// FuzzDecode feeds arbitrary stored data to the entry and snapshot
// decoders: they never panic, refuse with ErrCorrupt (or ErrKey for an
// unknown key ID), and accept only what was sealed for that place (the
// seeds, sealed again in each fuzzing process with a new file ID and
// nonce), which decrypts to what was sealed.
func FuzzDecode(f *testing.F) {
	kr := fuzzKeyring(f)
	e := core.Entry{Index: 5, Term: 2, Data: []byte("hello")}
	sealed, err := kr.sealEntry(&e)
	if err != nil {
		f.Fatal(err)
	}
	snap, err := kr.sealSnapshot(bytes.Repeat([]byte("s"), ChunkSize+10), 5, 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, uint64(5), uint64(2), byte(0))
	f.Add(snap, uint64(5), uint64(2), byte(0))
	f.Add(snap[:snapHeader+frameHeader], uint64(5), uint64(2), byte(0))
	f.Add([]byte{entryMagic}, uint64(0), uint64(0), byte(1))
	f.Add([]byte{snapMagic, 1, 2, 3, 4}, uint64(1), uint64(1), byte(0))
	f.Fuzz(func(t *testing.T, data []byte, index, term uint64, typ byte) {
		e := core.Entry{Index: index, Term: term, Type: core.EntryType(typ), Data: data}
		pt, _, err := kr.openEntry(&e)
		switch {
		case err == nil && !(index == 5 && term == 2 && typ == 0):
			t.Fatalf("entry decoder accepted data not sealed for index %d term %d type %d", index, term, typ)
		case err == nil && string(pt) != "hello":
			t.Fatalf("entry decoded to %q", pt)
		case err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrKey):
			t.Fatalf("entry decoder: %v", err)
		}
		pt, _, err = kr.openSnapshot(data, index, term)
		switch {
		case err == nil && !(index == 5 && term == 2):
			t.Fatalf("snapshot decoder accepted data not sealed for index %d term %d", index, term)
		case err == nil && !bytes.Equal(pt, bytes.Repeat([]byte("s"), ChunkSize+10)):
			t.Fatalf("snapshot decoded to %d bytes", len(pt))
		case err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrKey):
			t.Fatalf("snapshot decoder: %v", err)
		}
	})
}
