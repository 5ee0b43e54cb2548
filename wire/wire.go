// Package wire is the client protocol of a node: a lean, batched and
// pipelined binary protocol over a byte stream (TCP).
//
// # Frames
//
// The stream is a sequence of frames:
//
//	length  4 bytes, big-endian: the payload's length (at most MaxFrameBytes)
//	crc     4 bytes, big-endian: CRC-32C (Castagnoli) of the payload
//	payload length bytes
//
// A client's payload is one or more requests, a server's one or more
// responses, concatenated. A client may send many frames without waiting
// (pipelining); the server answers each request once, in any order, echoing
// its ID. Responses to the requests of one frame may come in several frames,
// and one frame may answer requests of several frames.
//
// # Messages
//
// Integers are unsigned varints (encoding/binary, canonical: no overlong
// forms) and byte strings are a length (an unsigned varint) followed by the
// bytes.
//
//	Request:  ID, Op (1 byte), Consistency (1 byte), ClientID, Seq, Key, Value
//	Response: ID, Status (1 byte), LeaderID, LeaderAddr, Value
//
// ID is chosen by the client and echoed in the response. A Put or Delete
// with Seq > 0 belongs to the session of ClientID (see package kv): the
// client numbers its writes with increasing Seq, has at most one in flight
// per ClientID, and retries a write whose outcome it does not know with the
// same ClientID and Seq; the retry is then applied at most once.
//
// Decoders never panic. A message that cannot be parsed (truncated,
// overlong varint, a length beyond the input) is an error wrapping
// ErrMalformed: the rest of its frame cannot be read. A request that parses
// but is invalid (an unknown Op, a key that is empty or too long, ...) is an
// error wrapping ErrInvalidRequest: its ID and the rest of the frame are
// still good, so a server answers it with StatusBadRequest and carries on.
//
// # Authentication
//
// A node that has data-plane tokens (security.tokens with role reader or
// writer) serves a connection only once it has presented one: the client
// sends an Auth request (Op OpAuth, the token as Value, no Key, no session)
// before, or in the same frame as, its other requests. The node answers it
// StatusOK, with the role the token grants as Value ("reader" or "writer";
// empty if the node needs no token, which it then ignores), or
// StatusUnauthorized (the token is wrong) or StatusForbidden (the token is
// valid but grants nothing on the data plane). The connection keeps the
// role of its last Auth; requests it does not allow are answered
// StatusUnauthorized or StatusForbidden and not carried out. A connection
// that never sent Auth is answered StatusRefused instead, with a message
// that says a token is needed, so that clients older than Auth see a clear
// error. A node that answers too many wrong tokens from one address closes
// that address's connections for a while.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/forge-consensus/consensus/kv"
)

// Limits.
const (
	// HeaderLen is the length of a frame header: payload length and CRC.
	HeaderLen = 8
	// MaxFrameBytes is the longest frame payload.
	MaxFrameBytes = 4 << 20
	// MaxKeyLen is the longest key (kv.MaxKeyLen).
	MaxKeyLen = kv.MaxKeyLen
	// MaxValueLen is the longest value (kv.MaxValueLen), in a request or a
	// response.
	MaxValueLen = kv.MaxValueLen
	// MaxAddrLen is the longest LeaderAddr.
	MaxAddrLen = 1024
	// MaxTokenLen is the longest token an Auth request carries.
	MaxTokenLen = 4096
)

// Errors matched with errors.Is. Every error of the package wraps one of
// them (or io.EOF / io.ErrUnexpectedEOF from a stream).
var (
	// ErrFrameTooLarge means a frame header announced more than
	// MaxFrameBytes.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrChecksum means a frame's payload does not match its CRC.
	ErrChecksum = errors.New("wire: frame checksum mismatch")
	// ErrMalformed means bytes cannot be parsed as a message; nothing after
	// them in the frame can be read.
	ErrMalformed = errors.New("wire: malformed message")
	// ErrInvalidRequest means a request parsed but is invalid; DecodeRequest
	// still returns its fields and the rest of the input.
	ErrInvalidRequest = errors.New("wire: invalid request")
)

// castagnoli is the CRC-32C table (read-only after initialisation).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Op is what a request does.
type Op uint8

// Operations.
const (
	// OpGet reads a key at the request's Consistency.
	OpGet Op = 1
	// OpPut writes Value to Key.
	OpPut Op = 2
	// OpDelete removes Key.
	OpDelete Op = 3
	// OpAuth presents a token (the request's Value) for the connection: see
	// Authentication in the package documentation.
	OpAuth Op = 4
)

// String names the operation.
func (o Op) String() string {
	switch o {
	case OpGet:
		return "Get"
	case OpPut:
		return "Put"
	case OpDelete:
		return "Delete"
	case OpAuth:
		return "Auth"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Consistency is the consistency of a Get (see node.ReadLevel).
type Consistency uint8

// Consistency levels.
const (
	// Linearizable reads see every write acknowledged before they began.
	Linearizable Consistency = 0
	// Lease reads are answered by the leader on its lease, without a
	// confirmation round (the node must have raft.lease_reads on).
	Lease Consistency = 1
	// Stale reads return the answering node's local state, however old.
	Stale Consistency = 2
)

// String names the level.
func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case Lease:
		return "lease"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("Consistency(%d)", uint8(c))
}

// Status is the outcome of a request.
type Status uint8

// Statuses.
const (
	// StatusOK: done. A Get carries the value; a Delete carries "1" if the
	// key existed and "0" if not; a Put carries nothing.
	StatusOK Status = 0
	// StatusNotFound: a Get of a key that is absent.
	StatusNotFound Status = 1
	// StatusNotLeader: the node is not the leader; the request was certainly
	// not applied. LeaderID and LeaderAddr name the leader when known.
	StatusNotLeader Status = 2
	// StatusRefused: the node refused the request (for instance the key-value
	// store found a write's session Seq stale, or lease reads are off); it
	// was not applied, and retrying it will not help. Value says why.
	StatusRefused Status = 3
	// StatusUnknown: the request timed out or the node stopped; a write may
	// or may not be applied. A session retry (same ClientID and Seq) is safe.
	StatusUnknown Status = 4
	// StatusDropped: the request was certainly not applied; retry.
	StatusDropped Status = 5
	// StatusBadRequest: the request is invalid; Value says why.
	StatusBadRequest Status = 6
	// StatusOverloaded: the node is too busy to take the request, which was
	// not applied; retry later.
	StatusOverloaded Status = 7
	// StatusNoSpace: the node is out of storage space and refuses writes;
	// the write certainly did not happen. Value says where and how much is
	// free. Reads still work; writes are taken again once space returns.
	StatusNoSpace Status = 8
	// StatusUnauthorized: the connection presented no valid token (an Auth
	// with a wrong token, or a request after one); not applied. Value says
	// why. Sent only on connections that sent an Auth request.
	StatusUnauthorized Status = 9
	// StatusForbidden: the connection's token is valid but its role may not
	// do this (a reader's Put, say); not applied. Value says why. Sent only
	// on connections that sent an Auth request.
	StatusForbidden Status = 10
)

// maxStatus is the highest known status.
const maxStatus = StatusForbidden

// String names the status.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusNotFound:
		return "NotFound"
	case StatusNotLeader:
		return "NotLeader"
	case StatusRefused:
		return "Refused"
	case StatusUnknown:
		return "Unknown"
	case StatusDropped:
		return "Dropped"
	case StatusBadRequest:
		return "BadRequest"
	case StatusNoSpace:
		return "NoSpace"
	case StatusOverloaded:
		return "Overloaded"
	case StatusUnauthorized:
		return "Unauthorized"
	case StatusForbidden:
		return "Forbidden"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Request is one client request.
//
// A valid request has a known Op; a Key of 1 to MaxKeyLen bytes; for a Get,
// a known Consistency, no Value and no session (ClientID and Seq 0); for a
// Put, a Value of at most MaxValueLen bytes (possibly empty); for a Delete,
// no Value; and for Put and Delete, Consistency 0. An Auth has no Key, a
// Value (the token) of 1 to MaxTokenLen bytes, Consistency 0 and no
// session.
type Request struct {
	ID          uint64
	Op          Op
	Consistency Consistency
	ClientID    uint64
	Seq         uint64 // 0: no session
	Key         []byte
	Value       []byte
}

// Response is the answer to the request with the same ID.
type Response struct {
	ID       uint64
	Status   Status
	LeaderID uint64 // StatusNotLeader: the leader's node ID (0: unknown)
	// LeaderAddr is the leader's client-protocol host:port when known
	// (StatusNotLeader), at most MaxAddrLen bytes.
	LeaderAddr string
	// Value is a Get's value, a Delete's "1" or "0", or the message of an
	// error status; at most MaxValueLen bytes.
	Value []byte
}

// Check reports what makes r invalid, as an error wrapping
// ErrInvalidRequest, or nil.
func (r *Request) Check() error {
	reason := r.check()
	if reason == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidRequest, reason)
}

// check returns what makes r invalid (a constant string), or "".
func (r *Request) check() string {
	if r.Op == OpAuth {
		switch {
		case len(r.Key) > 0:
			return "key is not for Auth"
		case len(r.Value) == 0:
			return "empty token"
		case len(r.Value) > MaxTokenLen:
			return "token longer than MaxTokenLen"
		case r.Consistency != Linearizable:
			return "consistency is only for Get"
		case r.ClientID != 0 || r.Seq != 0:
			return "session is only for Put and Delete"
		}
		return ""
	}
	switch {
	case r.Op < OpGet || r.Op > OpDelete:
		return "unknown op"
	case len(r.Key) == 0:
		return "empty key"
	case len(r.Key) > MaxKeyLen:
		return "key longer than MaxKeyLen"
	case len(r.Value) > MaxValueLen:
		return "value longer than MaxValueLen"
	case r.Op == OpGet && r.Consistency > Stale:
		return "unknown consistency"
	case r.Op != OpGet && r.Consistency != Linearizable:
		return "consistency is only for Get"
	case r.Op != OpPut && len(r.Value) > 0:
		return "value is only for Put"
	case r.Op == OpGet && (r.ClientID != 0 || r.Seq != 0):
		return "session is only for Put and Delete"
	}
	return ""
}

// AppendRequest appends the encoding of r to dst. It does not validate r
// (see Request.Check): an invalid request is encoded as it is, and refused
// by the decoder.
func AppendRequest(dst []byte, r *Request) []byte {
	dst = binary.AppendUvarint(dst, r.ID)
	dst = append(dst, byte(r.Op), byte(r.Consistency))
	dst = binary.AppendUvarint(dst, r.ClientID)
	dst = binary.AppendUvarint(dst, r.Seq)
	dst = binary.AppendUvarint(dst, uint64(len(r.Key)))
	dst = append(dst, r.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Value)))
	return append(dst, r.Value...)
}

// AppendResponse appends the encoding of r to dst. It does not validate r.
func AppendResponse(dst []byte, r *Response) []byte {
	dst = binary.AppendUvarint(dst, r.ID)
	dst = append(dst, byte(r.Status))
	dst = binary.AppendUvarint(dst, r.LeaderID)
	dst = binary.AppendUvarint(dst, uint64(len(r.LeaderAddr)))
	dst = append(dst, r.LeaderAddr...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Value)))
	return append(dst, r.Value...)
}

// DecodeRequest decodes the request at the start of b and returns it with
// the bytes after it. Key and Value alias b (empty ones are nil).
//
// If the request cannot be parsed, the error wraps ErrMalformed and rest is
// nil. If it parses but is invalid, the error wraps ErrInvalidRequest and
// the request's fields and rest are still returned, so that the caller can
// answer it (by ID) and go on with rest.
func DecodeRequest(b []byte) (r Request, rest []byte, err error) {
	d := decoder{b: b}
	r.ID = d.uvarint("id")
	r.Op = Op(d.u8("op"))
	r.Consistency = Consistency(d.u8("consistency"))
	r.ClientID = d.uvarint("client id")
	r.Seq = d.uvarint("seq")
	r.Key = d.bytes("key")
	r.Value = d.bytes("value")
	if d.reason != "" {
		return Request{}, nil, fmt.Errorf("wire: decode request: %w: %s: %s", ErrMalformed, d.field, d.reason)
	}
	if reason := r.check(); reason != "" {
		return r, d.b, fmt.Errorf("wire: decode request %d: %w: %s", r.ID, ErrInvalidRequest, reason)
	}
	return r, d.b, nil
}

// DecodeResponse decodes the response at the start of b and returns it with
// the bytes after it. Value aliases b (an empty one is nil); LeaderAddr is
// a copy. Any error wraps ErrMalformed: an unknown Status, or a LeaderAddr
// or Value over its limit, is as fatal as a truncation.
func DecodeResponse(b []byte) (r Response, rest []byte, err error) {
	d := decoder{b: b}
	r.ID = d.uvarint("id")
	r.Status = Status(d.u8("status"))
	r.LeaderID = d.uvarint("leader id")
	addr := d.bytes("leader addr")
	r.Value = d.bytes("value")
	switch {
	case d.reason != "":
	case r.Status > maxStatus:
		d.fail("status", "unknown status")
	case len(addr) > MaxAddrLen:
		d.fail("leader addr", "longer than MaxAddrLen")
	case len(r.Value) > MaxValueLen:
		d.fail("value", "longer than MaxValueLen")
	}
	if d.reason != "" {
		return Response{}, nil, fmt.Errorf("wire: decode response: %w: %s: %s", ErrMalformed, d.field, d.reason)
	}
	if len(addr) > 0 {
		r.LeaderAddr = string(addr)
	}
	return r, d.b, nil
}

// decoder reads canonical encodings from b, consuming it. The first failure
// is recorded (as constant strings: failing allocates nothing) and every
// later read returns zero values.
type decoder struct {
	b      []byte
	field  string
	reason string
}

func (d *decoder) fail(field, reason string) {
	if d.reason == "" {
		d.field, d.reason = field, reason
	}
}

func (d *decoder) u8(field string) byte {
	if d.reason != "" {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(field, "truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(field string) uint64 {
	if d.reason != "" {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail(field, "truncated varint")
		return 0
	case n < 0:
		d.fail(field, "varint overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail(field, "overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed byte string, aliasing the input (nil if
// empty).
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.reason != "" || n == 0 {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(field, "length exceeds the bytes remaining")
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

// AppendFrame appends a frame holding payload to dst. The payload must be
// at most MaxFrameBytes long (a reader refuses a longer frame).
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	return append(dst, payload...)
}

// ReadFrame reads one frame from r and returns its payload, in buf if it
// is large enough (otherwise in a new slice): the payload is valid until buf
// is reused. At the end of the stream, between frames, it returns io.EOF;
// a frame cut short is io.ErrUnexpectedEOF; a frame announcing more than
// MaxFrameBytes is ErrFrameTooLarge (its payload is not read); a payload
// that fails its CRC is ErrChecksum.
//
// A payload larger than buf is read in chunks into a buffer that grows as
// bytes arrive (at most doubling): the memory a frame takes follows the
// bytes received, not the length its header announces.
func ReadFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	return ReadFrameGrow(r, buf, nil)
}

// readChunk is the least a growing frame buffer grows by.
const readChunk = 64 << 10

// ReadFrameGrow is ReadFrame calling grow (if not nil) before the payload
// buffer grows beyond cap(buf), with the buffer's new capacity: an error
// from grow aborts the read with that error (wrapped). The caller can so
// account for, and bound, the memory of frames being read.
func ReadFrameGrow(r *bufio.Reader, buf []byte, grow func(newCap int) error) ([]byte, error) {
	h, err := r.Peek(HeaderLen)
	if err != nil {
		if len(h) == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("wire: read frame header: %w", err)
	}
	n := int(binary.BigEndian.Uint32(h[:4]))
	sum := binary.BigEndian.Uint32(h[4:])
	if n > MaxFrameBytes {
		return nil, fmt.Errorf("wire: read frame: %w: %d bytes", ErrFrameTooLarge, n)
	}
	_, _ = r.Discard(HeaderLen) // cannot fail: the bytes are buffered
	buf = buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			c := min(n, max(2*cap(buf), readChunk))
			if grow != nil {
				if err := grow(c); err != nil {
					return nil, fmt.Errorf("wire: read frame payload: %w", err)
				}
			}
			nb := make([]byte, len(buf), c)
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("wire: read frame payload: %w", err)
		}
	}
	if crc32.Checksum(buf, castagnoli) != sum {
		return nil, fmt.Errorf("wire: read frame of %d bytes: %w", n, ErrChecksum)
	}
	return buf, nil
}

// batchFrameBytes is the payload size at which a Batch closes a frame and
// opens another.
const batchFrameBytes = 64 << 10

// Batch builds a run of frames in one buffer, so that many messages go out
// with one write: append messages, then write Bytes. A frame is closed once
// its payload reaches 64 KiB, so frames stay well under MaxFrameBytes for
// valid messages. The zero Batch is empty and ready to use. A Batch is not
// safe for concurrent use.
type Batch struct {
	buf   []byte
	start int  // offset of the open frame's header
	open  bool // a frame is open
	n     int  // messages appended since Reset
}

// AppendRequest appends the encoding of r.
func (b *Batch) AppendRequest(r *Request) {
	b.reserve()
	b.buf = AppendRequest(b.buf, r)
	b.n++
}

// AppendResponse appends the encoding of r.
func (b *Batch) AppendResponse(r *Response) {
	b.reserve()
	b.buf = AppendResponse(b.buf, r)
	b.n++
}

// Len returns the number of messages appended since Reset.
func (b *Batch) Len() int { return b.n }

// Size returns the number of bytes of the frames built so far.
func (b *Batch) Size() int { return len(b.buf) }

// Bytes closes the open frame and returns the frames, valid until the next
// call of another method. It returns nil if the Batch is empty.
func (b *Batch) Bytes() []byte {
	b.close()
	return b.buf
}

// Reset empties the Batch, keeping its buffer.
func (b *Batch) Reset() {
	b.buf, b.start, b.open, b.n = b.buf[:0], 0, false, 0
}

// reserve makes sure a frame with room is open.
func (b *Batch) reserve() {
	if b.open && len(b.buf)-b.start-HeaderLen >= batchFrameBytes {
		b.close()
	}
	if !b.open {
		b.start, b.open = len(b.buf), true
		b.buf = append(b.buf, 0, 0, 0, 0, 0, 0, 0, 0)
	}
}

// close fills in the open frame's header.
func (b *Batch) close() {
	if !b.open {
		return
	}
	b.open = false
	h, payload := b.buf[b.start:b.start+HeaderLen], b.buf[b.start+HeaderLen:]
	binary.BigEndian.PutUint32(h[:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(payload, castagnoli))
}
