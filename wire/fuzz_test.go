package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecodeRequest: decoding never panics; a request that decodes (valid
// or merely invalid) re-encodes to exactly the bytes it was decoded from.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		if len(r.Value) > 1000 {
			r.Value = r.Value[:1000]
		}
		f.Add(AppendRequest(nil, &r))
	}
	f.Add(AppendRequest(nil, &Request{ID: 1, Op: 7, Consistency: 9, Key: []byte("k")}))
	f.Add(AppendRequest(nil, &Request{ID: 2, Op: OpAuth, Key: []byte("k"), Value: []byte("token")}))
	f.Add(AppendRequest(nil, &Request{ID: 3, Op: OpAuth, ClientID: 1, Value: []byte("token")}))
	f.Add([]byte{0x81, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, rest, err := DecodeRequest(b)
		if err != nil && !errors.Is(err, ErrInvalidRequest) {
			if !errors.Is(err, ErrMalformed) || rest != nil {
				t.Fatalf("error %v, rest %v", err, rest)
			}
			return
		}
		if (err == nil) != (r.Check() == nil) {
			t.Fatalf("decode error %v but Check %v", err, r.Check())
		}
		// A valid Auth carries a token within its limits and nothing else;
		// a valid data request is never taken for one.
		if err == nil && r.Op == OpAuth &&
			(len(r.Key) != 0 || len(r.Value) == 0 || len(r.Value) > MaxTokenLen || r.ClientID != 0 || r.Seq != 0 || r.Consistency != 0) {
			t.Fatalf("accepted Auth %+v", r)
		}
		if err == nil && r.Op != OpAuth && len(r.Key) == 0 {
			t.Fatalf("accepted keyless %v", r.Op)
		}
		used := b[:len(b)-len(rest)]
		if enc := AppendRequest(nil, &r); !bytes.Equal(enc, used) {
			t.Fatalf("re-encoding %x of %x", enc, used)
		}
	})
}

// FuzzDecodeResponse: decoding never panics; a response that decodes
// re-encodes to exactly the bytes it was decoded from.
func FuzzDecodeResponse(f *testing.F) {
	for _, r := range sampleResponses() {
		if len(r.Value) > 1000 {
			r.Value = r.Value[:1000]
		}
		f.Add(AppendResponse(nil, &r))
	}
	f.Add([]byte{1, 9, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, rest, err := DecodeResponse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || rest != nil {
				t.Fatalf("error %v, rest %v", err, rest)
			}
			return
		}
		used := b[:len(b)-len(rest)]
		if enc := AppendResponse(nil, &r); !bytes.Equal(enc, used) {
			t.Fatalf("re-encoding %x of %x", enc, used)
		}
	})
}

// FuzzReadFrame: reading frames never panics; every frame read re-encodes
// to the bytes it was read from, and the stream ends with io.EOF only at a
// frame boundary.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("one")), []byte("two")))
	f.Add(AppendFrame(nil, nil))
	f.Add([]byte{0, 0, 0, 3, 0, 0, 0, 0, 'a'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(b), 16)
		var buf []byte
		off := 0
		for {
			p, err := ReadFrame(r, buf)
			if err != nil {
				if off == len(b) && err != io.EOF {
					t.Fatalf("at the end: %v", err)
				}
				if off < len(b) && err == io.EOF {
					t.Fatalf("EOF at %d of %d", off, len(b))
				}
				return
			}
			frame := AppendFrame(nil, p)
			if !bytes.Equal(frame, b[off:off+len(frame)]) {
				t.Fatalf("frame at %d re-encodes differently", off)
			}
			off += len(frame)
			buf = p
		}
	})
}
