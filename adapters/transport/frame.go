package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/forge-consensus/consensus/core"
)

// Frames.
//
// A frame is a header of FrameHeaderSize bytes followed by a payload: the
// payload length as a big-endian uint32, then the CRC-32C (Castagnoli) of
// the payload as a big-endian uint32. A reader checks the length against
// its limit before reading (or allocating) anything of the payload.

// FrameHeaderSize is the size of a frame header.
const FrameHeaderSize = 8

// Errors of frame reading. Every error ReadFrame and FrameReader.Next return
// other than io.EOF matches one of these or io.ErrUnexpectedEOF (a stream
// cut inside a frame), or is the underlying reader's error.
var (
	// ErrFrameTooLarge means a frame header announced a payload above the
	// reader's limit (the error is a *FrameSizeError).
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrFrameChecksum means a payload did not match its CRC-32C.
	ErrFrameChecksum = errors.New("transport: frame checksum mismatch")
)

// FrameSizeError reports a frame whose announced payload size is above the
// reader's limit. It matches ErrFrameTooLarge.
type FrameSizeError struct {
	Size uint32 // announced payload size
	Max  int    // the reader's limit
}

// Error describes the sizes.
func (e *FrameSizeError) Error() string {
	return fmt.Sprintf("transport: frame of %d bytes exceeds the limit of %d", e.Size, e.Max)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *FrameSizeError) Is(target error) bool { return target == ErrFrameTooLarge }

func crc32c(p []byte) uint32 { return crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)) }

// AppendFrame appends a frame carrying payload to dst. payload must not be
// larger than MaxFrameLimit (readers reject it).
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32c(payload))
	return append(dst, payload...)
}

// AppendMessageFrame appends a frame carrying the encoding of m to dst,
// encoding m in place (without an intermediate copy). It returns the
// extended buffer and the payload size. On error dst is returned unchanged.
func AppendMessageFrame(dst []byte, m *core.Message) ([]byte, int, error) {
	start := len(dst)
	b := append(dst, make([]byte, FrameHeaderSize)...)
	b, err := m.AppendBinary(b)
	if err != nil {
		return dst[:start], 0, fmt.Errorf("transport: encode frame: %w", err)
	}
	payload := b[start+FrameHeaderSize:]
	if len(payload) > MaxFrameLimit {
		return dst[:start], 0, fmt.Errorf("transport: encode frame: %w", &FrameSizeError{Size: uint32(min(len(payload), 1<<32-1)), Max: MaxFrameLimit})
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32c(payload))
	return b, len(payload), nil
}

// ReadFrame reads one frame from r and returns its payload, in a new
// buffer. It returns io.EOF when r ends before the first header byte,
// io.ErrUnexpectedEOF (wrapped) when r ends inside a frame, a
// *FrameSizeError when the announced size exceeds max (nothing of the
// payload is read), and ErrFrameChecksum (wrapped) on a CRC mismatch.
// Memory grows with the bytes actually received, never to the announced
// size up front.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	fr := FrameReader{r: r, max: max}
	return fr.Next()
}

// FrameReader reads successive frames from a stream, reusing its buffer.
type FrameReader struct {
	r       io.Reader
	max     int
	hdr     [FrameHeaderSize]byte
	buf     []byte
	pending uint32 // payload bytes of a rejected oversize frame not yet read
	// onHeader, if set, is called with each header's announced size
	// before any of the payload is read.
	onHeader func(size int) error
}

// OnHeader makes Next call f with the payload size each frame header
// announces (oversize ones too), before reading the payload: a reader
// sets the deadline of the frame's arrival there. An error of f is
// returned by Next, with the payload unread.
func (fr *FrameReader) OnHeader(f func(size int) error) { fr.onHeader = f }

// NewFrameReader returns a reader of frames from r whose payloads are at
// most max bytes.
func NewFrameReader(r io.Reader, max int) *FrameReader {
	return &FrameReader{r: r, max: max}
}

// Next reads the next frame and returns its payload, which is valid until
// the next call. Errors are those of ReadFrame. After a *FrameSizeError the
// stream is positioned at the oversize payload: call Discard to skip it and
// go on, or give up on the stream.
func (fr *FrameReader) Next() ([]byte, error) {
	if fr.pending > 0 {
		return nil, errors.New("transport: read frame: oversize payload not discarded")
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("transport: read frame header: %w", err)
	}
	size := binary.BigEndian.Uint32(fr.hdr[:4])
	sum := binary.BigEndian.Uint32(fr.hdr[4:])
	if fr.onHeader != nil {
		if err := fr.onHeader(int(size)); err != nil {
			return nil, err
		}
	}
	if uint64(size) > uint64(max(fr.max, 0)) {
		fr.pending = size
		return nil, &FrameSizeError{Size: size, Max: fr.max}
	}
	n := int(size)
	// Drop a large buffer kept from an earlier big frame when this one is
	// small, so one snapshot does not pin its size for the connection's life.
	if cap(fr.buf) > 4<<20 && n < 1<<20 {
		fr.buf = nil
	}
	buf, err := readPayload(fr.r, fr.buf[:0], n)
	fr.buf = buf
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("transport: read frame payload (%d bytes): %w", n, err)
	}
	if got := crc32c(buf); got != sum {
		return nil, fmt.Errorf("%w: crc %#08x, header says %#08x", ErrFrameChecksum, got, sum)
	}
	return buf, nil
}

// Discard skips the payload of the oversize frame the last Next rejected,
// so the next frame can be read.
func (fr *FrameReader) Discard() error {
	n := int64(fr.pending)
	fr.pending = 0
	if _, err := io.CopyN(io.Discard, fr.r, n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("transport: discard oversize frame (%d bytes): %w", n, err)
	}
	return nil
}

// readPayload reads n bytes into buf (reused when large enough), growing it
// at most to double the bytes received so far (from 64 KiB), so a peer that
// announces a large frame and sends little costs little memory.
func readPayload(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) >= n {
		buf = buf[:n]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	for len(buf) < n {
		want := min(n-len(buf), max(len(buf), 64<<10))
		buf = slices.Grow(buf, want)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+want])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}
