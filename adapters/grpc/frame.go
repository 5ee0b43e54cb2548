package grpc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame kinds and the wire version; the format is described in the
// package documentation (doc.go).
const (
	frameHello    byte = 1
	frameHelloAck byte = 2
	frameBatch    byte = 3
	frameChunk    byte = 4

	wireVersion byte = 1

	// frameHeaderMax bounds the bytes a batch or chunk frame adds to its
	// payload: a kind byte and up to three varints.
	frameHeaderMax = 1 + 3*binary.MaxVarintLen64
)

// errFrame marks a malformed frame.
var errFrame = errors.New("malformed frame")

// hello is the first frame of a stream: who sends, to whom, and the
// sender's cluster (transport.Config.ClusterID; absent in a hello of an
// earlier build, read as 0: not checked).
type hello struct {
	from, to, cluster uint64
}

func appendHello(b []byte, h hello) []byte {
	b = append(b, frameHello, wireVersion)
	b = binary.AppendUvarint(b, h.from)
	b = binary.AppendUvarint(b, h.to)
	return binary.AppendUvarint(b, h.cluster)
}

func parseHello(f []byte) (hello, error) {
	r := reader{b: f}
	if k := r.byte(); k != frameHello {
		return hello{}, fmt.Errorf("%w: first frame has kind %d, want hello", errFrame, k)
	}
	if v := r.byte(); v != wireVersion {
		return hello{}, fmt.Errorf("%w: hello has version %d, want %d", errFrame, v, wireVersion)
	}
	h := hello{from: r.uvarint(), to: r.uvarint()}
	if r.err == nil && len(r.b) > 0 {
		h.cluster = r.uvarint()
	}
	if err := r.done("hello"); err != nil {
		return hello{}, err
	}
	return h, nil
}

func appendHelloAck(b []byte, id uint64) []byte {
	b = append(b, frameHelloAck, wireVersion)
	return binary.AppendUvarint(b, id)
}

func parseHelloAck(f []byte) (uint64, error) {
	r := reader{b: f}
	if k := r.byte(); k != frameHelloAck {
		return 0, fmt.Errorf("%w: answer has kind %d, want hello ack", errFrame, k)
	}
	if v := r.byte(); v != wireVersion {
		return 0, fmt.Errorf("%w: hello ack has version %d, want %d", errFrame, v, wireVersion)
	}
	id := r.uvarint()
	if err := r.done("hello ack"); err != nil {
		return 0, err
	}
	return id, nil
}

// batchEntrySize is the bytes one encoded message of length n takes in a
// batch frame.
func batchEntrySize(n int) int {
	return uvarintLen(uint64(n)) + n
}

// parseBatch calls fn with each message of a batch frame, in order, once
// the whole frame is known to be well formed (a malformed frame delivers
// nothing). The slices alias f.
func parseBatch(f []byte, fn func(msg []byte)) error {
	if len(f) < 2 {
		return fmt.Errorf("%w: empty batch", errFrame)
	}
	for pass := 0; pass < 2; pass++ {
		r := reader{b: f[1:]}
		for len(r.b) > 0 {
			m := r.bytes(r.uvarint())
			if r.err != nil {
				return fmt.Errorf("batch: %w", r.err)
			}
			if pass == 1 {
				fn(m)
			}
		}
	}
	return nil
}

// chunk is one piece of a large message.
type chunk struct {
	total, offset uint64
	data          []byte
}

func appendChunk(b []byte, c chunk) []byte {
	b = append(b, frameChunk)
	b = binary.AppendUvarint(b, c.total)
	b = binary.AppendUvarint(b, c.offset)
	return append(b, c.data...)
}

func parseChunk(f []byte) (chunk, error) {
	r := reader{b: f[1:]}
	c := chunk{total: r.uvarint(), offset: r.uvarint()}
	if r.err != nil {
		return chunk{}, fmt.Errorf("chunk header: %w", r.err)
	}
	c.data = r.b
	switch {
	case len(c.data) == 0:
		return chunk{}, fmt.Errorf("%w: empty chunk", errFrame)
	case c.offset > c.total || uint64(len(c.data)) > c.total-c.offset:
		return chunk{}, fmt.Errorf("%w: chunk [%d, +%d) overruns total %d", errFrame, c.offset, len(c.data), c.total)
	}
	return c, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// reader decodes a frame body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = fmt.Errorf("%w: truncated", errFrame)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad varint", errFrame)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: length %d overruns %d remaining bytes", errFrame, n, len(r.b))
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) done(what string) error {
	if r.err != nil {
		return fmt.Errorf("%s: %w", what, r.err)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%s: %w: %d trailing bytes", what, errFrame, len(r.b))
	}
	return nil
}
