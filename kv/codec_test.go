package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func sampleCommands() []Command {
	big := bytes.Repeat([]byte{0xAB}, MaxValueLen)
	return []Command{
		{Op: OpGet, Key: "k"},
		{Op: OpGet, Key: "", ClientID: 1 << 63, Seq: 1<<64 - 1},
		{Op: OpSet, Key: "key", Value: []byte("value"), ClientID: 7, Seq: 300},
		{Op: OpSet, Key: "empty-value", ClientID: 1, Seq: 1},
		{Op: OpSet, Key: strings.Repeat("k", MaxKeyLen), Value: big},
		{Op: OpDelete, Key: "gone", ClientID: 128, Seq: 127},
		{Op: OpCAS, Key: "c", Expected: []byte("old"), Value: []byte("new"), ClientID: 2, Seq: 9},
		{Op: OpCAS, Key: "c", Expected: big, Value: nil},
	}
}

func commandEqual(a, b Command) bool {
	return a.Op == b.Op && a.Key == b.Key && bytes.Equal(a.Value, b.Value) &&
		bytes.Equal(a.Expected, b.Expected) && a.ClientID == b.ClientID && a.Seq == b.Seq
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		enc := EncodeCommand(c)
		if enc[0] != 1 {
			t.Fatalf("%v: first byte %d, want version 1", c.Op, enc[0])
		}
		got, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("%v %q: decode: %v", c.Op, c.Key[:min(len(c.Key), 10)], err)
		}
		if !commandEqual(got, c) {
			t.Fatalf("%v: round trip gave %+v", c.Op, got)
		}
		if again := EncodeCommand(got); !bytes.Equal(again, enc) {
			t.Fatalf("%v: re-encoding differs", c.Op)
		}
		// AppendBinary appends after existing bytes.
		prefix := []byte("xyz")
		app, err := c.AppendBinary(append([]byte(nil), prefix...))
		if err != nil {
			t.Fatalf("%v: AppendBinary: %v", c.Op, err)
		}
		if !bytes.Equal(app[:3], prefix) || !bytes.Equal(app[3:], enc) {
			t.Fatalf("%v: AppendBinary did not append the encoding", c.Op)
		}
	}
}

func TestCommandEncodingIsCompact(t *testing.T) {
	enc := EncodeCommand(Command{Op: OpSet, Key: "k", Value: []byte("v"), ClientID: 1, Seq: 1})
	// version, op, client, seq, key len, key, value len, value, expected len
	if len(enc) != 9 {
		t.Fatalf("Set encoding is %d bytes, want 9: % x", len(enc), enc)
	}
}

func TestDecodeCommandDoesNotAlias(t *testing.T) {
	enc := EncodeCommand(Command{Op: OpCAS, Key: "key", Expected: []byte("old"), Value: []byte("new")})
	c, err := DecodeCommand(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 0
	}
	if c.Key != "key" || string(c.Value) != "new" || string(c.Expected) != "old" {
		t.Fatalf("decoded command changed with its input: %+v", c)
	}
}

// rawCommand builds a command encoding by hand.
func rawCommand(version, op byte, client, seq uint64, rest ...[]byte) []byte {
	b := []byte{version, op}
	b = binary.AppendUvarint(b, client)
	b = binary.AppendUvarint(b, seq)
	for _, r := range rest {
		b = append(b, r...)
	}
	return b
}

func lenPrefixed(s string) []byte { return appendString(nil, s) }

func TestDecodeCommandRejects(t *testing.T) {
	valid := rawCommand(1, byte(OpSet), 5, 6, lenPrefixed("k"), lenPrefixed("v"), lenPrefixed(""))
	if _, err := DecodeCommand(valid); err != nil {
		t.Fatalf("the valid base case is rejected: %v", err)
	}
	cases := map[string][]byte{
		"empty":              nil,
		"version 0":          rawCommand(0, byte(OpSet), 5, 6, lenPrefixed("k"), lenPrefixed("v"), lenPrefixed("")),
		"version 2":          rawCommand(2, byte(OpSet), 5, 6, lenPrefixed("k"), lenPrefixed("v"), lenPrefixed("")),
		"op 0":               rawCommand(1, 0, 5, 6, lenPrefixed("k"), lenPrefixed(""), lenPrefixed("")),
		"op 6":               rawCommand(1, 6, 5, 6, lenPrefixed("k"), lenPrefixed(""), lenPrefixed("")),
		"op 255":             rawCommand(1, 255, 5, 6, lenPrefixed("k"), lenPrefixed(""), lenPrefixed("")),
		"trailing byte":      append(append([]byte(nil), valid...), 0),
		"overlong client id": append([]byte{1, byte(OpGet), 0x85, 0x00}, 0, 1, 'k', 0, 0),
		"overlong length":    append([]byte{1, byte(OpGet), 0, 0, 0x81, 0x00}, 'k', 0, 0),
		"varint overflow":    append([]byte{1, byte(OpGet)}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 1, 'k', 0, 0),
		"key beyond input":   rawCommand(1, byte(OpGet), 0, 0, []byte{5, 'a', 'b'}),
		"key too long": rawCommand(1, byte(OpGet), 0, 0,
			lenPrefixed(strings.Repeat("k", MaxKeyLen+1)), lenPrefixed(""), lenPrefixed("")),
		"value too long": rawCommand(1, byte(OpSet), 0, 0, lenPrefixed("k"),
			lenPrefixed(strings.Repeat("v", MaxValueLen+1)), lenPrefixed("")),
		"expected too long": rawCommand(1, byte(OpCAS), 0, 0, lenPrefixed("k"), lenPrefixed(""),
			lenPrefixed(strings.Repeat("v", MaxValueLen+1))),
		"huge key claim":        rawCommand(1, byte(OpGet), 0, 0, binary.AppendUvarint(nil, 1<<62)),
		"huge value claim":      rawCommand(1, byte(OpSet), 0, 0, lenPrefixed("k"), binary.AppendUvarint(nil, MaxValueLen)),
		"value on get":          rawCommand(1, byte(OpGet), 0, 0, lenPrefixed("k"), lenPrefixed("v"), lenPrefixed("")),
		"value on delete":       rawCommand(1, byte(OpDelete), 0, 0, lenPrefixed("k"), lenPrefixed("v"), lenPrefixed("")),
		"expected on set":       rawCommand(1, byte(OpSet), 0, 0, lenPrefixed("k"), lenPrefixed("v"), lenPrefixed("e")),
		"expected on get":       rawCommand(1, byte(OpGet), 0, 0, lenPrefixed("k"), lenPrefixed(""), lenPrefixed("e")),
		"missing expected":      rawCommand(1, byte(OpSet), 0, 0, lenPrefixed("k"), lenPrefixed("v")),
		"missing value, expect": rawCommand(1, byte(OpSet), 0, 0, lenPrefixed("k")),
	}
	for name, b := range cases {
		if c, err := DecodeCommand(b); err == nil {
			t.Errorf("%s: decoded as %+v, want an error", name, c)
		} else if !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: error %v does not wrap ErrInvalidCommand", name, err)
		} else if !strings.HasPrefix(err.Error(), "kv: decode command: ") {
			t.Errorf("%s: error %q lacks context", name, err)
		}
	}
}

func TestDecodeCommandRejectsEveryTruncation(t *testing.T) {
	for _, c := range sampleCommands() {
		if len(c.Value)+len(c.Expected) > 1000 {
			continue // every prefix of a megabyte is slow and adds nothing
		}
		enc := EncodeCommand(c)
		for n := 0; n < len(enc); n++ {
			if _, err := DecodeCommand(enc[:n]); err == nil {
				t.Fatalf("%v: prefix of %d/%d bytes decoded", c.Op, n, len(enc))
			}
		}
	}
}

// bytesAllocated runs f n times and returns the bytes allocated.
func bytesAllocated(n int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDecodeDoesNotAllocateClaimedLengths(t *testing.T) {
	claims := [][]byte{
		rawCommand(1, byte(OpSet), 0, 0, lenPrefixed("k"), binary.AppendUvarint(nil, MaxValueLen)),
		rawCommand(1, byte(OpCAS), 0, 0, lenPrefixed("k"), lenPrefixed(""), binary.AppendUvarint(nil, MaxValueLen)),
		rawCommand(1, byte(OpGet), 0, 0, binary.AppendUvarint(nil, MaxKeyLen)),
	}
	for _, b := range claims {
		if got := bytesAllocated(20, func() { _, _ = DecodeCommand(b) }); got > 64<<10 {
			t.Fatalf("20 decodes of % x allocated %d bytes", b, got)
		}
	}
	res := []byte{1, 0, 0}
	res = binary.AppendUvarint(res, MaxValueLen)
	if got := bytesAllocated(20, func() { _, _ = DecodeResult(res) }); got > 64<<10 {
		t.Fatalf("20 result decodes allocated %d bytes", got)
	}
	// The internal decoder used by Apply allocates nothing at all, even
	// when failing.
	var r reader
	if n := testing.AllocsPerRun(100, func() { decodeCommandView(claims[0], &r) }); n != 0 {
		t.Fatalf("decodeCommandView allocates %v times", n)
	}
}

func TestAppendBinaryReportsInvalid(t *testing.T) {
	invalid := []Command{
		{Op: 0, Key: "k"},
		{Op: 9, Key: "k"},
		{Op: OpGet, Key: strings.Repeat("k", MaxKeyLen+1)},
		{Op: OpGet, Key: "k", Value: []byte("v")},
		{Op: OpSet, Key: "k", Expected: []byte("e")},
		{Op: OpSet, Key: "k", Value: make([]byte, MaxValueLen+1)},
	}
	for _, c := range invalid {
		b, err := c.AppendBinary(nil)
		if !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%v: AppendBinary error %v, want ErrInvalidCommand", c.Op, err)
		}
		if !bytes.Equal(b, EncodeCommand(c)) {
			t.Errorf("%v: AppendBinary and EncodeCommand differ on an invalid command", c.Op)
		}
		if _, err := DecodeCommand(b); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%v: decoder accepted an invalid command: %v", c.Op, err)
		}
	}
}

func sampleResults() []Result {
	return []Result{
		{},
		{Status: StatusOK, Value: []byte("v"), Found: true, OK: true},
		{Status: StatusOK, Value: []byte("cur"), Found: true},
		{Status: StatusOK, Value: bytes.Repeat([]byte{1}, 300), Found: true, OK: true, Deduplicated: true},
		{Status: StatusStaleSeq},
		{Status: StatusBadCommand},
		{Status: StatusOK, Value: make([]byte, MaxValueLen)},
	}
}

func TestResultRoundTrip(t *testing.T) {
	for i, r := range sampleResults() {
		enc := EncodeResult(r)
		got, err := DecodeResult(enc)
		if err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		if !resultEqual(got, r) {
			t.Fatalf("result %d: round trip gave %+v, want %+v", i, got, r)
		}
		if !bytes.Equal(EncodeResult(got), enc) {
			t.Fatalf("result %d: re-encoding differs", i)
		}
		if len(r.Value) < 1000 {
			for n := 0; n < len(enc); n++ {
				if _, err := DecodeResult(enc[:n]); err == nil {
					t.Fatalf("result %d: prefix of %d bytes decoded", i, n)
				}
			}
		}
	}
}

func TestDecodeResultRejects(t *testing.T) {
	cases := map[string][]byte{
		"empty":          nil,
		"version 0":      {0, 0, 0, 0},
		"version 2":      {2, 0, 0, 0},
		"status 3":       {1, 3, 0, 0},
		"unknown flag":   {1, 0, 8, 0},
		"trailing":       {1, 0, 0, 0, 0},
		"overlong len":   {1, 0, 0, 0x80, 0x00},
		"value beyond":   {1, 0, 0, 3, 'a'},
		"value too long": append(binary.AppendUvarint([]byte{1, 0, 0}, MaxValueLen+1), make([]byte, MaxValueLen+1)...),
	}
	for name, b := range cases {
		if r, err := DecodeResult(b); err == nil {
			t.Errorf("%s: decoded as %+v", name, r)
		} else if !errors.Is(err, ErrInvalidResult) {
			t.Errorf("%s: error %v does not wrap ErrInvalidResult", name, err)
		}
	}
	if _, err := (Result{Status: 7}).AppendBinary(nil); !errors.Is(err, ErrInvalidResult) {
		t.Errorf("AppendBinary of an unknown status: %v", err)
	}
}
