package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

func TestFrameRoundTrip(t *testing.T) {
	payloads := [][]byte{{}, []byte("x"), bytes.Repeat([]byte("abc"), 100000)}
	var stream []byte
	for _, p := range payloads {
		stream = AppendFrame(stream, p)
	}
	fr := NewFrameReader(bytes.NewReader(stream), 1<<20)
	for i, want := range payloads {
		got, err := fr.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: payload differs", i)
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: err = %v, want io.EOF", err)
	}
}

func TestAppendMessageFrame(t *testing.T) {
	m := core.Message{Type: core.MsgApp, From: 1, To: 2, Term: 3, LogTerm: 3, Index: 9,
		Entries: []core.Entry{{Term: 3, Index: 10, Data: []byte("data")}}}
	prefix := []byte("prefix")
	b, size, err := AppendMessageFrame(append([]byte(nil), prefix...), &m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Fatal("prefix overwritten")
	}
	enc, _ := m.MarshalBinary()
	if size != len(enc) || !bytes.Equal(b[len(prefix):], AppendFrame(nil, enc)) {
		t.Fatalf("AppendMessageFrame differs from AppendFrame of the encoding")
	}
	payload, err := ReadFrame(bytes.NewReader(b[len(prefix):]), 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := CheckInbound(payload, 2, 1, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := core.DecodeMessage(enc)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestReadFrameCorruptChecksum(t *testing.T) {
	frame := AppendFrame(nil, []byte("payload"))
	for i := range frame {
		if i < 4 {
			continue // length bytes: covered by the truncation and size tests
		}
		bad := bytes.Clone(frame)
		bad[i] ^= 0x40
		if _, err := ReadFrame(bytes.NewReader(bad), 100); !errors.Is(err, ErrFrameChecksum) {
			t.Errorf("byte %d flipped: err = %v, want ErrFrameChecksum", i, err)
		}
	}
}

func TestReadFrameTruncated(t *testing.T) {
	frame := AppendFrame(nil, []byte("payload"))
	for n := 1; n < len(frame); n++ {
		_, err := ReadFrame(bytes.NewReader(frame[:n]), 100)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d bytes: err = %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
	if _, err := ReadFrame(bytes.NewReader(nil), 100); err != io.EOF {
		t.Errorf("empty stream: err = %v, want io.EOF", err)
	}
}

func TestReadFrameOversize(t *testing.T) {
	frame := AppendFrame(nil, make([]byte, 101))
	_, err := ReadFrame(bytes.NewReader(frame), 100)
	var se *FrameSizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrFrameTooLarge) || se.Size != 101 || se.Max != 100 {
		t.Fatalf("err = %v, want a FrameSizeError of 101 over 100", err)
	}
	// Discard skips the payload; the next frame reads.
	stream := append(bytes.Clone(frame), AppendFrame(nil, []byte("next"))...)
	fr := NewFrameReader(bytes.NewReader(stream), 100)
	if _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if _, err := fr.Next(); err == nil {
		t.Fatal("Next without Discard after an oversize frame succeeded")
	}
	if err := fr.Discard(); err != nil {
		t.Fatal(err)
	}
	if p, err := fr.Next(); err != nil || string(p) != "next" {
		t.Fatalf("after Discard: %q, %v", p, err)
	}
}

// allocated returns the bytes allocated by f.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestReadFrameDoesNotAllocateClaimedSize(t *testing.T) {
	header := func(size uint32) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, size), 0)
	}
	cases := []struct {
		name   string
		stream []byte
		max    int
		want   error
	}{
		// Over the limit: rejected from the header alone.
		{"oversize 4 GiB", header(1<<32 - 1), MaxFrameLimit, ErrFrameTooLarge},
		// Within the limit but the stream is cut: memory follows the bytes
		// that arrived, not the claim.
		{"truncated 1 GiB claim", append(header(MaxFrameLimit), make([]byte, 1000)...), MaxFrameLimit, io.ErrUnexpectedEOF},
		{"truncated 512 MiB claim", append(header(512<<20), make([]byte, 200<<10)...), MaxFrameLimit, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		var err error
		n := allocated(func() { _, err = ReadFrame(bytes.NewReader(c.stream), c.max) })
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if limit := uint64(4*len(c.stream) + 1<<20); n > limit {
			t.Errorf("%s: allocated %d bytes for a %d-byte stream", c.name, n, len(c.stream))
		}
	}
}

func TestFrameReaderReusesBuffer(t *testing.T) {
	var stream []byte
	for range 100 {
		stream = AppendFrame(stream, make([]byte, 1000))
	}
	fr := NewFrameReader(bytes.NewReader(stream), 1<<20)
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("%v allocations per frame, want 0", allocs)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, []byte("hello")), 100)
	f.Add(AppendFrame(AppendFrame(nil, nil), []byte("two")), 3)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, 1<<20)
	f.Add([]byte{0, 0, 0, 5, 1, 2, 3, 4, 'a'}, 10)
	m := core.Message{Type: core.MsgHeartbeat, From: 1, To: 2, Term: 1}
	b, _, _ := AppendMessageFrame(nil, &m)
	f.Add(b, 1<<10)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		max = int(uint(max) % (1 << 20))
		fr := NewFrameReader(bytes.NewReader(data), max)
		consumed := 0
		for {
			p, err := fr.Next()
			if errors.Is(err, ErrFrameTooLarge) {
				var se *FrameSizeError
				if !errors.As(err, &se) || int64(se.Size) <= int64(max) {
					t.Fatalf("size error %v with limit %d", err, max)
				}
				if err := fr.Discard(); err != nil {
					return
				}
				consumed += FrameHeaderSize + int(se.Size)
				continue
			}
			if err != nil {
				return
			}
			if len(p) > max {
				t.Fatalf("payload of %d bytes over the limit %d", len(p), max)
			}
			// A frame that reads is exactly what AppendFrame writes.
			if frame := AppendFrame(nil, p); !bytes.Equal(frame, data[consumed:consumed+len(frame)]) {
				t.Fatalf("frame does not re-encode to its bytes")
			}
			consumed += FrameHeaderSize + len(p)
			// Whatever the payload, inbound checking never panics.
			_, _ = CheckInbound(p, 2, 1, max)
		}
	})
}
