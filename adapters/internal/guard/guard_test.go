package guard

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// TestEncodeFixedBytes: the on-disk encoding of a slot is fixed (these
// bytes were produced by the encoders this package replaced).
func TestEncodeFixedBytes(t *testing.T) {
	for _, tc := range []struct {
		g    State
		head string // hex of bytes 0..84; the rest are zeros
	}{
		{State{}, "4643475541524431" + strings.Repeat("0", 9*16) + "c7fcf037"},
		{
			State{Seq: 7, First: 3, Last: 9, LastTerm: 2, HardState: core.HardState{Term: 2, Vote: 1, Commit: 8}, SnapIndex: 5, SnapTerm: 1},
			"4643475541524431" +
				"0000000000000007" + "0000000000000003" + "0000000000000009" + "0000000000000002" +
				"0000000000000002" + "0000000000000001" + "0000000000000008" +
				"0000000000000005" + "0000000000000001" + "c67420b0",
		},
		{
			State{Seq: 1<<64 - 1, First: 0x0102030405060708, Last: 0x1112131415161718, LastTerm: 0x2122232425262728,
				HardState: core.HardState{Term: 0x3132333435363738, Vote: 0x4142434445464748, Commit: 0x5152535455565758},
				SnapIndex: 0x6162636465666768, SnapTerm: 0x7172737475767778},
			"4643475541524431" +
				"ffffffffffffffff" + "0102030405060708" + "1112131415161718" + "2122232425262728" +
				"3132333435363738" + "4142434445464748" + "5152535455565758" +
				"6162636465666768" + "7172737475767778" + "4919f7e3",
		},
	} {
		head, err := hex.DecodeString(tc.head)
		if err != nil {
			t.Fatal(err)
		}
		want := append(head, make([]byte, SlotSize-len(head))...)
		got := tc.g.Encode()
		if !bytes.Equal(got, want) {
			t.Fatalf("encoding of %v:\n got %x\nwant %x", tc.g, got[:BodySize+4], want[:BodySize+4])
		}
		d, err := DecodeSlot(want)
		if err != nil || d != tc.g {
			t.Fatalf("decoded %v, %v; want %v", d, err, tc.g)
		}
	}
}

// TestStateString: the description used in error messages.
func TestStateString(t *testing.T) {
	g := State{Seq: 7, First: 3, Last: 9, LastTerm: 2, HardState: core.HardState{Term: 2, Vote: 1, Commit: 8}, SnapIndex: 5, SnapTerm: 1}
	want := "commit 7: log 3..9 (last term 2), hard state term 2 vote 1 commit 8, snapshot 5/1"
	if got := g.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// TestDecodeSlotErrors: each kind of damage is reported.
func TestDecodeSlotErrors(t *testing.T) {
	good := State{Seq: 3, Last: 2}.Encode()
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:SlotSize-1], "slot of 4095 bytes"},
		{"magic", mod(func(b []byte) []byte { b[0] ^= 1; return b }), "bad magic"},
		{"body", mod(func(b []byte) []byte { b[20] ^= 1; return b }), "checksum"},
		{"crc", mod(func(b []byte) []byte { b[BodySize] ^= 1; return b }), "checksum"},
		{"padding", mod(func(b []byte) []byte { b[SlotSize-1] = 1; return b }), "nonzero padding byte at offset 4095"},
	} {
		if _, err := DecodeSlot(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestFile: a created file holds the state in both slots; writes
// alternate between the slots, and Read finds the newest.
func TestFile(t *testing.T) {
	errCorrupt := errors.New("test corrupt")
	path := filepath.Join(t.TempDir(), Name)
	if _, ok, err := Read(path, errCorrupt); ok || err != nil {
		t.Fatalf("Read of a missing file: ok %v, err %v", ok, err)
	}
	g1 := State{Seq: 1, First: 1, Last: 1, LastTerm: 1}
	f, err := Create(path, g1, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(g1.Encode(), g1.Encode()...); !bytes.Equal(b, want) {
		t.Fatal("created file does not hold the state in both slots")
	}
	r, ok, err := Read(path, errCorrupt)
	if err != nil || !ok || r.State != g1 || r.Slot != 0 || r.Damaged != "" {
		t.Fatalf("Read after Create: %+v %v %v", r, ok, err)
	}
	for _, step := range []struct {
		seq  uint64
		slot int
	}{{2, 1}, {3, 0}, {4, 1}} {
		g := State{Seq: step.seq, First: 1, Last: step.seq, LastTerm: 1}
		if err := f.Write(g); err != nil {
			t.Fatal(err)
		}
		r, ok, err := Read(path, errCorrupt)
		if err != nil || !ok || r.State != g || r.Slot != step.slot {
			t.Fatalf("Read after writing commit %d: %+v %v %v, want slot %d", step.seq, r, ok, err, step.slot)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened for the slot Read did not find newest, the next write
	// goes there.
	r, _, _ = Read(path, errCorrupt)
	f, err = Open(path, 1-r.Slot, false)
	if err != nil {
		t.Fatal(err)
	}
	g5 := State{Seq: 5}
	if err := f.Write(g5); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if r, _, err := Read(path, errCorrupt); err != nil || r.State != g5 || r.Slot != 0 {
		t.Fatalf("Read after reopening: %+v %v", r, err)
	}
	if err := f.Close(); err == nil || !strings.HasPrefix(err.Error(), "close guard file: ") {
		t.Fatalf("second Close: %v", err)
	}
}

// TestReadDamaged: one bad slot is reported and the other used; two bad
// slots, or a file of the wrong size, are corruption naming the file.
func TestReadDamaged(t *testing.T) {
	errCorrupt := errors.New("test corrupt")
	dir := t.TempDir()
	path := filepath.Join(dir, Name)
	g0, g1 := State{Seq: 8}, State{Seq: 9}
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := append(g0.Encode(), g1.Encode()...)
	flip := func(offs ...int) []byte {
		b := append([]byte(nil), good...)
		for _, o := range offs {
			b[o] ^= 1
		}
		return b
	}

	write(flip(20))
	r, ok, err := Read(path, errCorrupt)
	if err != nil || !ok || r.State != g1 || r.Slot != 1 || !strings.HasPrefix(r.Damaged, "slot 0: checksum") {
		t.Fatalf("slot 0 damaged: %+v %v %v", r, ok, err)
	}
	write(flip(SlotSize + 3))
	r, ok, err = Read(path, errCorrupt)
	if err != nil || !ok || r.State != g0 || r.Slot != 0 || r.Damaged != "slot 1: bad magic" {
		t.Fatalf("slot 1 damaged: %+v %v %v", r, ok, err)
	}

	for name, b := range map[string][]byte{"both slots": flip(9, SlotSize+9), "short": good[:SlotSize]} {
		write(b)
		_, ok, err := Read(path, errCorrupt)
		if ok || !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "corrupt guard file "+path) {
			t.Fatalf("%s: ok %v, error %v: want one wrapping the corrupt error and naming %s", name, ok, err, path)
		}
	}
}

// FuzzDecodeGuardSlot: any bytes either fail to decode or decode to the
// state whose encoding they are.
func FuzzDecodeGuardSlot(f *testing.F) {
	f.Add(State{}.Encode())
	f.Add(State{Seq: 7, First: 3, Last: 9, LastTerm: 2, HardState: core.HardState{Term: 2, Vote: 1, Commit: 8}, SnapIndex: 5, SnapTerm: 1}.Encode())
	f.Add([]byte("FCGUARD1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := DecodeSlot(b)
		if err != nil {
			return
		}
		if !bytes.Equal(g.Encode(), b) {
			t.Fatalf("decoded %v from bytes that are not its encoding", g)
		}
	})
}
