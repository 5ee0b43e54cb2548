package backup

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func sample(t *testing.T, data string) []byte {
	t.Helper()
	h := &Header{ClusterID: "c", Node: 1, Index: 9, Term: 2, Voters: []uint64{1, 2, 3},
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), DataLength: int64(len(data))}
	var b bytes.Buffer
	if _, err := Write(&b, h, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if size, _ := h.Size(); size != int64(b.Len()) {
		t.Fatalf("Size %d, wrote %d", size, b.Len())
	}
	return b.Bytes()
}

// TestRoundTrip: Read returns what Write wrote, and its checksum.
func TestRoundTrip(t *testing.T) {
	raw := sample(t, "the state")
	var data bytes.Buffer
	info, err := Read(bytes.NewReader(raw), &data)
	if err != nil {
		t.Fatal(err)
	}
	if data.String() != "the state" || info.Index != 9 || info.Term != 2 || info.ClusterID != "c" ||
		info.Size != int64(len(raw)) || len(info.SHA256) != 64 {
		t.Errorf("read back %+v, data %q", info, data.String())
	}
}

// TestEveryDamageRefused: a flip of any one byte, any truncation and any
// trailing byte is refused as damaged or foreign, never read as valid.
func TestEveryDamageRefused(t *testing.T) {
	raw := sample(t, "some data to protect")
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		_, err := Read(bytes.NewReader(bad), nil)
		if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrForeign) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
		if i >= len(Magic)+1 && !errors.Is(err, ErrDamaged) {
			t.Errorf("byte %d flipped: %v, want damaged", i, err)
		}
	}
	for n := range len(raw) {
		if _, err := Read(bytes.NewReader(raw[:n]), nil); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	if _, err := Read(bytes.NewReader(append(bytes.Clone(raw), 0)), nil); !errors.Is(err, ErrDamaged) {
		t.Errorf("a trailing byte: %v", err)
	}
	if _, err := Read(strings.NewReader("PK\x03\x04 a zip file, say"), nil); !errors.Is(err, ErrForeign) {
		t.Errorf("foreign: %v", err)
	}
}
