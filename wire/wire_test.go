package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func sampleRequests() []Request {
	return []Request{
		{ID: 1, Op: OpGet, Key: []byte("k")},
		{ID: 2, Op: OpGet, Consistency: Lease, Key: []byte("key")},
		{ID: 3, Op: OpGet, Consistency: Stale, Key: bytes.Repeat([]byte("k"), MaxKeyLen)},
		{ID: 1 << 40, Op: OpPut, ClientID: 1<<63 - 1, Seq: 7, Key: []byte("a/b"), Value: []byte("hello")},
		{ID: 5, Op: OpPut, Key: []byte("empty-value")},
		{ID: 6, Op: OpPut, ClientID: 9, Seq: 1, Key: []byte("big"), Value: bytes.Repeat([]byte{0xff}, MaxValueLen)},
		{ID: 0, Op: OpDelete, ClientID: 3, Seq: 300, Key: []byte("gone")},
		{ID: 8, Op: OpAuth, Value: []byte("s3cret-token")},
		{ID: 9, Op: OpAuth, Value: bytes.Repeat([]byte{'t'}, MaxTokenLen)},
	}
}

func sampleResponses() []Response {
	return []Response{
		{ID: 1, Status: StatusOK, Value: []byte("v")},
		{ID: 2, Status: StatusNotFound},
		{ID: 3, Status: StatusNotLeader, LeaderID: 2, LeaderAddr: "127.0.0.1:7202"},
		{ID: 4, Status: StatusNotLeader},
		{ID: 5, Status: StatusRefused, Value: []byte("StaleSeq")},
		{ID: 6, Status: StatusUnknown, Value: []byte("timed out")},
		{ID: 7, Status: StatusDropped},
		{ID: 8, Status: StatusBadRequest, Value: []byte("empty key")},
		{ID: 1<<64 - 1, Status: StatusOverloaded},
		{ID: 9, Status: StatusOK, Value: bytes.Repeat([]byte("x"), MaxValueLen)},
		{ID: 10, Status: StatusUnauthorized, Value: []byte("invalid token")},
		{ID: 11, Status: StatusForbidden, Value: []byte("role reader may not write")},
		{ID: 12, Status: StatusOK, Value: []byte("writer")},
	}
}

// TestRequestRoundTrip: every valid request decodes to itself, aliasing the
// input, and the decoder consumes exactly its bytes.
func TestRequestRoundTrip(t *testing.T) {
	var all []byte
	reqs := sampleRequests()
	for i := range reqs {
		if err := reqs[i].Check(); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		all = AppendRequest(all, &reqs[i])
	}
	all = append(all, "trailer"...)
	rest := all
	for i, want := range reqs {
		got, r, err := DecodeRequest(rest)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("request %d: got %+v, want %+v", i, got, want)
		}
		rest = r
	}
	if string(rest) != "trailer" {
		t.Fatalf("rest %q", rest)
	}
	// Zero-copy: the key aliases the input.
	b := AppendRequest(nil, &reqs[3])
	got, _, _ := DecodeRequest(b)
	clear(b)
	if got.Key[0] != 0 || got.Value[0] != 0 {
		t.Fatalf("key %q or value %q does not alias the input", got.Key, got.Value)
	}
}

// TestResponseRoundTrip: every response decodes to itself.
func TestResponseRoundTrip(t *testing.T) {
	var all []byte
	resps := sampleResponses()
	for i := range resps {
		all = AppendResponse(all, &resps[i])
	}
	rest := all
	for i, want := range resps {
		got, r, err := DecodeResponse(rest)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("response %d: got %+v, want %+v", i, got, want)
		}
		rest = r
	}
	if len(rest) != 0 {
		t.Fatalf("rest %q", rest)
	}
}

// TestRequestValidation: each invalid request is refused with
// ErrInvalidRequest, yet its ID and the rest of the input are returned.
func TestRequestValidation(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"unknown op 0", Request{Op: 0, Key: []byte("k")}, "unknown op"},
		{"unknown op 5", Request{Op: 5, Key: []byte("k")}, "unknown op"},
		{"key on auth", Request{Op: OpAuth, Key: []byte("k"), Value: []byte("t")}, "key is not for Auth"},
		{"empty token", Request{Op: OpAuth}, "empty token"},
		{"long token", Request{Op: OpAuth, Value: make([]byte, MaxTokenLen+1)}, "token longer"},
		{"consistency on auth", Request{Op: OpAuth, Consistency: Stale, Value: []byte("t")}, "only for Get"},
		{"session on auth", Request{Op: OpAuth, ClientID: 1, Seq: 1, Value: []byte("t")}, "session"},
		{"empty key", Request{Op: OpGet}, "empty key"},
		{"long key", Request{Op: OpPut, Key: make([]byte, MaxKeyLen+1)}, "key longer"},
		{"long value", Request{Op: OpPut, Key: []byte("k"), Value: make([]byte, MaxValueLen+1)}, "value longer"},
		{"unknown consistency", Request{Op: OpGet, Consistency: 3, Key: []byte("k")}, "unknown consistency"},
		{"consistency on put", Request{Op: OpPut, Consistency: Stale, Key: []byte("k")}, "only for Get"},
		{"consistency on delete", Request{Op: OpDelete, Consistency: Lease, Key: []byte("k")}, "only for Get"},
		{"value on get", Request{Op: OpGet, Key: []byte("k"), Value: []byte("v")}, "only for Put"},
		{"value on delete", Request{Op: OpDelete, Key: []byte("k"), Value: []byte("v")}, "only for Put"},
		{"session on get", Request{Op: OpGet, Key: []byte("k"), ClientID: 1, Seq: 1}, "session"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.ID = 42
			if err := tc.req.Check(); !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want %q", err, tc.want)
			}
			b := AppendRequest(nil, &tc.req)
			b = append(b, "next"...)
			got, rest, err := DecodeRequest(b)
			if !errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode: %v, want ErrInvalidRequest %q", err, tc.want)
			}
			if got.ID != 42 || string(rest) != "next" {
				t.Fatalf("decode: ID %d rest %q", got.ID, rest)
			}
		})
	}
}

// TestDecodeMalformed: truncations, overlong varints and lengths beyond
// the input are ErrMalformed, at every cut.
func TestDecodeMalformed(t *testing.T) {
	reqs := sampleRequests()
	for i := range reqs {
		b := AppendRequest(nil, &reqs[i])
		for cut := range len(b) {
			if cut > 64 && cut < len(b)-64 {
				continue // the long values: the ends suffice
			}
			if _, rest, err := DecodeRequest(b[:cut]); !errors.Is(err, ErrMalformed) || rest != nil {
				t.Fatalf("request %d cut at %d: err %v rest %v", i, cut, err, rest)
			}
		}
	}
	resps := sampleResponses()
	for i := range resps {
		b := AppendResponse(nil, &resps[i])
		for cut := range len(b) {
			if cut > 64 && cut < len(b)-64 {
				continue
			}
			if _, _, err := DecodeResponse(b[:cut]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("response %d cut at %d: %v", i, cut, err)
			}
		}
	}
	bad := map[string][]byte{
		"overlong id":       {0x81, 0x00, 1, 0, 0, 0, 1, 'k', 0},
		"overflowing id":    {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 1, 'k', 0},
		"key beyond input":  {1, 1, 0, 0, 0, 5, 'k', 0},
		"overlong key len":  {1, 1, 0, 0, 0, 0x81, 0x00, 'k', 0},
		"value beyond end":  {1, 2, 0, 0, 0, 1, 'k', 3, 'v'},
		"missing value len": {1, 2, 0, 0, 0, 1, 'k'},
	}
	for name, b := range bad {
		if _, _, err := DecodeRequest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	badResp := map[string]Response{
		"unknown status": {ID: 1, Status: maxStatus + 1},
		"long addr":      {ID: 1, Status: StatusNotLeader, LeaderAddr: strings.Repeat("a", MaxAddrLen+1)},
		"long value":     {ID: 1, Value: make([]byte, MaxValueLen+1)},
	}
	for name, r := range badResp {
		if _, _, err := DecodeResponse(AppendResponse(nil, &r)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), strings.Fields(name)[1]) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func reader(b []byte) *bufio.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 16) }

// TestFrames: frames round-trip, in sequence, reusing the buffer; a clean
// end is io.EOF.
func TestFrames(t *testing.T) {
	payloads := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte("z"), 1000), []byte("last")}
	var stream []byte
	for _, p := range payloads {
		stream = AppendFrame(stream, p)
	}
	r := reader(stream)
	buf := make([]byte, 0, 8)
	for i, want := range payloads {
		got, err := ReadFrame(r, buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %q", i, got)
		}
		buf = got
	}
	if _, err := ReadFrame(r, buf); err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
}

// TestFrameErrors: corrupt CRC, oversize frames and truncation.
func TestFrameErrors(t *testing.T) {
	good := AppendFrame(nil, []byte("payload"))
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-1] ^= 1
	if _, err := ReadFrame(reader(corrupt), nil); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupt payload: %v", err)
	}
	badSum := bytes.Clone(good)
	badSum[5] ^= 0x80
	if _, err := ReadFrame(reader(badSum), nil); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupt CRC: %v", err)
	}
	huge := binary.BigEndian.AppendUint32(nil, MaxFrameBytes+1)
	huge = append(huge, 0, 0, 0, 0)
	if _, err := ReadFrame(reader(huge), nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
	// The largest frame is fine.
	max := AppendFrame(nil, make([]byte, MaxFrameBytes))
	if p, err := ReadFrame(bufio.NewReader(bytes.NewReader(max)), nil); err != nil || len(p) != MaxFrameBytes {
		t.Fatalf("max frame: %d %v", len(p), err)
	}
	for cut := 1; cut < len(good); cut++ {
		if _, err := ReadFrame(reader(good[:cut]), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
}

// TestBatch: a Batch's frames hold its messages in order, split into
// frames of bounded size.
func TestBatch(t *testing.T) {
	var b Batch
	if b.Bytes() != nil || b.Len() != 0 {
		t.Fatal("zero Batch not empty")
	}
	value := make([]byte, 1000)
	const n = 500
	for i := range n {
		b.AppendResponse(&Response{ID: uint64(i), Value: value})
	}
	if b.Len() != n {
		t.Fatalf("Len %d", b.Len())
	}
	r := bufio.NewReader(bytes.NewReader(b.Bytes()))
	var id uint64
	frames := 0
	for {
		p, err := ReadFrame(r, nil)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
		if len(p) > batchFrameBytes+1100 {
			t.Fatalf("frame of %d bytes", len(p))
		}
		for len(p) > 0 {
			resp, rest, err := DecodeResponse(p)
			if err != nil || resp.ID != id {
				t.Fatalf("response %d: %+v %v", id, resp, err)
			}
			id++
			p = rest
		}
	}
	if id != n || frames < 2 {
		t.Fatalf("%d responses in %d frames", id, frames)
	}
	b.Reset()
	b.AppendRequest(&Request{ID: 9, Op: OpGet, Key: []byte("k")})
	p, err := ReadFrame(bufio.NewReader(bytes.NewReader(b.Bytes())), nil)
	if err != nil {
		t.Fatal(err)
	}
	if req, rest, err := DecodeRequest(p); err != nil || req.ID != 9 || len(rest) != 0 {
		t.Fatalf("after Reset: %+v %v", req, err)
	}
}

// TestNames: every enum value has a name.
func TestNames(t *testing.T) {
	for s := StatusOK; s <= maxStatus; s++ {
		if strings.HasPrefix(s.String(), "Status(") {
			t.Errorf("status %d has no name", s)
		}
	}
	if (maxStatus+1).String() != "Status(11)" || Op(9).String() != "Op(9)" || Consistency(7).String() != "Consistency(7)" {
		t.Error("unknown values")
	}
	if OpDelete.String() != "Delete" || OpAuth.String() != "Auth" || Lease.String() != "lease" {
		t.Error("names")
	}
}

// BenchmarkDecodeRequest measures decoding a small Put.
func BenchmarkDecodeRequest(b *testing.B) {
	buf := AppendRequest(nil, &Request{ID: 1234, Op: OpPut, ClientID: 1 << 60, Seq: 99, Key: []byte("key123"),
		Value: make([]byte, 128)})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeRequest(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReadFrameIncremental: a frame that announces MaxFrameBytes but
// delivers only a little takes memory for what arrived, not for what it
// announced (issue 13: a client that announces 4 MiB frames and stalls
// must not make the server reserve 4 MiB per connection).
func TestReadFrameIncremental(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, MaxFrameBytes)
	hdr = append(hdr, 0, 0, 0, 0)
	sent := append(hdr, make([]byte, 10<<10)...) // 10 KiB of 4 MiB, then EOF
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(sent)), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut frame: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 10*256<<10 {
		t.Fatalf("10 reads of a 4 MiB frame cut after 10 KiB allocated %d bytes, want at most %d", got, 10*256<<10)
	}
	// The buffer grows as bytes arrive, and grow sees each new capacity.
	var caps []int
	payload := bytes.Repeat([]byte("x"), 300<<10)
	p, err := ReadFrameGrow(bufio.NewReader(bytes.NewReader(AppendFrame(nil, payload))), nil,
		func(c int) error { caps = append(caps, c); return nil })
	if err != nil || !bytes.Equal(p, payload) {
		t.Fatalf("ReadFrameGrow: %d bytes, %v", len(p), err)
	}
	if want := []int{64 << 10, 128 << 10, 256 << 10, 300 << 10}; !reflect.DeepEqual(caps, want) {
		t.Fatalf("grow saw capacities %v, want %v", caps, want)
	}
	// An error from grow aborts the read.
	stop := errors.New("over budget")
	if _, err := ReadFrameGrow(bufio.NewReader(bytes.NewReader(AppendFrame(nil, payload))), nil,
		func(c int) error {
			if c > 64<<10 {
				return stop
			}
			return nil
		}); !errors.Is(err, stop) {
		t.Fatalf("grow's error: got %v", err)
	}
}
