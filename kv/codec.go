package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Limits enforced by the decoders (and reported by AppendBinary).
const (
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 4096
	// MaxValueLen is the longest value (Command.Value, Command.Expected,
	// Result.Value), in bytes.
	MaxValueLen = 1 << 20
)

// Errors matched with errors.Is. Every error of the package wraps one.
var (
	// ErrInvalidCommand means bytes are not the canonical encoding of a
	// valid Command, or a Command cannot be encoded validly.
	ErrInvalidCommand = errors.New("kv: invalid command")
	// ErrInvalidResult means bytes are not the canonical encoding of a
	// valid Result.
	ErrInvalidResult = errors.New("kv: invalid result")
	// ErrInvalidSnapshot means bytes are not a valid snapshot: truncated,
	// corrupted (checksum mismatch) or not canonical.
	ErrInvalidSnapshot = errors.New("kv: invalid snapshot")
	// ErrNotReadOnly means Query was given a command other than OpGet.
	ErrNotReadOnly = errors.New("kv: query is not a read-only command")
)

// encodingVersion is the first byte of every encoding.
const encodingVersion byte = 1

// Op is a command kind.
type Op uint8

// Command kinds.
const (
	// OpGet reads a key.
	OpGet Op = 1
	// OpSet writes a key.
	OpSet Op = 2
	// OpDelete removes a key.
	OpDelete Op = 3
	// OpCAS is compare-and-set: it writes Value iff the key is present and
	// its value equals Expected (an empty Expected matches an empty value).
	OpCAS Op = 4
	// OpCreate writes Value iff the key is absent (create-if-absent in one
	// command, as Consul's cas=0). Every node must know it before a client
	// sends it: a node of an earlier release refuses it (StatusBadCommand)
	// while the others apply it, and cross-replica verification then
	// reports the divergence.
	OpCreate Op = 5
)

// String returns the name of op.
func (op Op) String() string {
	switch op {
	case OpGet:
		return "Get"
	case OpSet:
		return "Set"
	case OpDelete:
		return "Delete"
	case OpCAS:
		return "CAS"
	case OpCreate:
		return "Create"
	}
	return "Op(" + itoa(uint64(op)) + ")"
}

// Command is one client request. ClientID and Seq form the client session:
// Seq > 0 enables exactly-once (see the package documentation).
//
// A valid command has a known Op, a Key of at most MaxKeyLen bytes, Value
// and Expected of at most MaxValueLen bytes, no Value or Expected for OpGet
// and OpDelete, and no Expected for OpSet. A nil and an empty byte string
// are the same.
type Command struct {
	Op       Op
	Key      string
	Value    []byte // OpSet, OpCAS, OpCreate: the new value
	Expected []byte // OpCAS: the value expected
	ClientID uint64
	Seq      uint64 // 0 = no session (no deduplication), used e.g. for reads
}

// Status of a result.
type Status uint8

// Result statuses.
const (
	// StatusOK means the command was applied (or answered).
	StatusOK Status = 0
	// StatusStaleSeq means Seq was below the session's last applied Seq:
	// an old retry, not applied.
	StatusStaleSeq Status = 1
	// StatusBadCommand means the command in the log was undecodable or
	// invalid: not applied, state unchanged.
	StatusBadCommand Status = 2
)

// String returns the name of st.
func (st Status) String() string {
	switch st {
	case StatusOK:
		return "OK"
	case StatusStaleSeq:
		return "StaleSeq"
	case StatusBadCommand:
		return "BadCommand"
	}
	return "Status(" + itoa(uint64(st)) + ")"
}

// Result is what applying (or querying) a command returns.
//
// The Value of a Result returned by Store.Apply may share memory with the
// Store (its session cache or its data) and must not be modified.
type Result struct {
	Status Status
	// Value: OpGet the value; OpSet, OpDelete and successful OpCAS the
	// previous value; failed OpCAS and failed OpCreate the current value
	// (nil if absent).
	Value []byte
	// Found reports whether the key existed before the command.
	Found bool
	// OK is true for OpGet, OpSet and OpDelete when Status is StatusOK;
	// for OpCAS, true iff the swap happened; for OpCreate, true iff the key
	// was absent and is now set.
	OK bool
	// Deduplicated is true when the result was answered from the session
	// cache (a retry of an applied command).
	Deduplicated bool
}

// Result flag bits.
const (
	flagFound        byte = 1 << 0
	flagOK           byte = 1 << 1
	flagDeduplicated byte = 1 << 2
	flagsKnown            = flagFound | flagOK | flagDeduplicated
)

// ---- encoding ----

// AppendBinary appends the encoding of c to b. The encoding is appended
// even when c is invalid, so that the decoder's validation can be exercised;
// the error (wrapping ErrInvalidCommand) then says what DecodeCommand will
// reject.
func (c Command) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, encodingVersion, byte(c.Op))
	b = binary.AppendUvarint(b, c.ClientID)
	b = binary.AppendUvarint(b, c.Seq)
	b = appendString(b, c.Key)
	b = appendBytes(b, c.Value)
	b = appendBytes(b, c.Expected)
	if field, reason := c.check(); reason != "" {
		return b, fmt.Errorf("kv: encode command: %w: %s: %s", ErrInvalidCommand, field, reason)
	}
	return b, nil
}

// EncodeCommand returns the encoding of c. It never panics; an invalid
// command is still encoded (and rejected by DecodeCommand).
func EncodeCommand(c Command) []byte {
	n := 2 + uvarintLen(c.ClientID) + uvarintLen(c.Seq) +
		uvarintLen(uint64(len(c.Key))) + len(c.Key) +
		uvarintLen(uint64(len(c.Value))) + len(c.Value) +
		uvarintLen(uint64(len(c.Expected))) + len(c.Expected)
	b, _ := c.AppendBinary(make([]byte, 0, n))
	return b
}

// check returns what makes c invalid, or an empty reason.
func (c Command) check() (field, reason string) {
	return checkCommand(c.Op, len(c.Key), len(c.Value), len(c.Expected))
}

func checkCommand(op Op, keyLen, valueLen, expectedLen int) (field, reason string) {
	switch {
	case op < OpGet || op > OpCreate:
		return "op", "unknown op"
	case keyLen > MaxKeyLen:
		return "key", "longer than MaxKeyLen"
	case valueLen > MaxValueLen:
		return "value", "longer than MaxValueLen"
	case expectedLen > MaxValueLen:
		return "expected", "longer than MaxValueLen"
	case valueLen > 0 && (op == OpGet || op == OpDelete):
		return "value", "not allowed for " + op.String()
	case expectedLen > 0 && op != OpCAS:
		return "expected", "not allowed for " + op.String()
	}
	return "", ""
}

// AppendBinary appends the encoding of r to b. The encoding is appended even
// when r is invalid (unknown Status, Value longer than MaxValueLen); the
// error (wrapping ErrInvalidResult) then says what DecodeResult will reject.
func (r Result) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, encodingVersion, byte(r.Status), r.flags())
	b = appendBytes(b, r.Value)
	switch {
	case r.Status > StatusBadCommand:
		return b, fmt.Errorf("kv: encode result: %w: unknown status %d", ErrInvalidResult, r.Status)
	case len(r.Value) > MaxValueLen:
		return b, fmt.Errorf("kv: encode result: %w: value longer than MaxValueLen", ErrInvalidResult)
	}
	return b, nil
}

// EncodeResult returns the encoding of r. It never panics.
func EncodeResult(r Result) []byte {
	b, _ := r.AppendBinary(make([]byte, 0, 3+uvarintLen(uint64(len(r.Value)))+len(r.Value)))
	return b
}

func (r Result) flags() byte {
	var f byte
	if r.Found {
		f |= flagFound
	}
	if r.OK {
		f |= flagOK
	}
	if r.Deduplicated {
		f |= flagDeduplicated
	}
	return f
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// itoa formats x in decimal without fmt.
func itoa(x uint64) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + x%10)
		x /= 10
		if x == 0 {
			break
		}
	}
	return string(buf[i:])
}

// ---- decoding ----

// reader decodes canonical encodings. The first failure is recorded (as
// constant strings, so that failing costs no allocation) and every later
// read returns zero values.
type reader struct {
	data   []byte
	off    int
	field  string
	reason string
}

func (r *reader) fail(field, reason string) {
	if r.reason == "" {
		r.field, r.reason = field, reason
	}
}

func (r *reader) failed() bool { return r.reason != "" }

func (r *reader) remaining() int { return len(r.data) - r.off }

// err returns the recorded failure wrapped for the operation what, or nil.
func (r *reader) err(what string, kind error) error {
	if !r.failed() {
		return nil
	}
	return fmt.Errorf("kv: %s: %w: %s: %s", what, kind, r.field, r.reason)
}

// finish records a failure if bytes remain.
func (r *reader) finish() {
	if !r.failed() && r.off != len(r.data) {
		r.fail("end", "trailing bytes")
	}
}

func (r *reader) u8(field string) byte {
	if r.failed() {
		return 0
	}
	if r.off >= len(r.data) {
		r.fail(field, "truncated")
		return 0
	}
	c := r.data[r.off]
	r.off++
	return c
}

func (r *reader) uvarint(field string) uint64 {
	if r.failed() {
		return 0
	}
	v, n := binary.Uvarint(r.data[r.off:])
	switch {
	case n == 0:
		r.fail(field, "truncated varint")
		return 0
	case n < 0:
		r.fail(field, "varint overflows 64 bits")
		return 0
	case n > 1 && r.data[r.off+n-1] == 0:
		r.fail(field, "overlong varint")
		return 0
	}
	r.off += n
	return v
}

// bytes reads a length-prefixed byte string of at most max bytes. The result
// aliases the input; an empty string is nil.
func (r *reader) bytes(field string, max int) []byte {
	n := r.uvarint(field)
	if r.failed() || n == 0 {
		return nil
	}
	if n > uint64(max) {
		r.fail(field, "length exceeds the limit")
		return nil
	}
	if n > uint64(r.remaining()) {
		r.fail(field, "length exceeds the bytes remaining")
		return nil
	}
	s := r.data[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return s
}

// count reads a list length and checks that the bytes remaining can hold
// that many elements of at least minSize bytes each.
func (r *reader) count(field string, minSize int) int {
	c := r.uvarint(field)
	if r.failed() {
		return 0
	}
	if c > uint64(r.remaining()/minSize) {
		r.fail(field, "count exceeds the bytes remaining")
		return 0
	}
	return int(c)
}

// commandView is a decoded command whose byte strings alias the input.
type commandView struct {
	op       Op
	key      []byte
	value    []byte
	expected []byte
	clientID uint64
	seq      uint64
}

// decodeCommandView decodes and validates a command without copying. On
// failure r records why.
func decodeCommandView(data []byte, r *reader) commandView {
	*r = reader{data: data}
	var c commandView
	if r.u8("version") != encodingVersion && !r.failed() {
		r.fail("version", "unknown version")
	}
	c.op = Op(r.u8("op"))
	if !r.failed() && (c.op < OpGet || c.op > OpCreate) {
		r.fail("op", "unknown op")
	}
	c.clientID = r.uvarint("client ID")
	c.seq = r.uvarint("seq")
	c.key = r.bytes("key", MaxKeyLen)
	c.value = r.bytes("value", MaxValueLen)
	c.expected = r.bytes("expected", MaxValueLen)
	r.finish()
	if !r.failed() {
		if field, reason := checkCommand(c.op, len(c.key), len(c.value), len(c.expected)); reason != "" {
			r.fail(field, reason)
		}
	}
	return c
}

// DecodeCommand decodes and validates a command encoded by EncodeCommand.
// The result does not alias b.
func DecodeCommand(b []byte) (Command, error) {
	var r reader
	v := decodeCommandView(b, &r)
	if err := r.err("decode command", ErrInvalidCommand); err != nil {
		return Command{}, err
	}
	return Command{
		Op:       v.op,
		Key:      string(v.key),
		Value:    cloneBytes(v.value),
		Expected: cloneBytes(v.expected),
		ClientID: v.clientID,
		Seq:      v.seq,
	}, nil
}

// DecodeResult decodes and validates a result encoded by EncodeResult. The
// result does not alias b.
func DecodeResult(b []byte) (Result, error) {
	r := reader{data: b}
	if r.u8("version") != encodingVersion && !r.failed() {
		r.fail("version", "unknown version")
	}
	res, _ := r.result()
	r.finish()
	if err := r.err("decode result", ErrInvalidResult); err != nil {
		return Result{}, err
	}
	res.Value = cloneBytes(res.Value)
	return res, nil
}

// result reads the body of a result (status, flags, value; the value
// aliasing the input) and returns it with its flags byte.
func (r *reader) result() (Result, byte) {
	var res Result
	res.Status = Status(r.u8("status"))
	if !r.failed() && res.Status > StatusBadCommand {
		r.fail("status", "unknown status")
	}
	f := r.u8("flags")
	if !r.failed() && f&^flagsKnown != 0 {
		r.fail("flags", "unknown flag bits")
	}
	res.Found = f&flagFound != 0
	res.OK = f&flagOK != 0
	res.Deduplicated = f&flagDeduplicated != 0
	res.Value = r.bytes("value", MaxValueLen)
	return res, f
}

// cloneBytes copies b; empty becomes nil.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
