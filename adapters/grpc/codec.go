package grpc

import (
	"compress/gzip"
	"fmt"
	"io"
	"strconv"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// rawCodec passes frames through gRPC unchanged: a frame is sent as a
// []byte or mem.Buffer and received into a *[]byte. It is forced on every call and on
// the server (grpc.ForceCodecV2, grpc.ForceServerCodecV2), so nothing is
// registered globally and no protobuf is involved.
type rawCodec struct{}

// codecName is the content-subtype: "application/grpc+forge-frame".
const codecName = "forge-frame"

// Marshal returns the frame v without copying it: a []byte, or a
// mem.Buffer whose reference passes to gRPC.
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch b := v.(type) {
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	case mem.Buffer:
		return mem.BufferSlice{b}, nil
	}
	return nil, fmt.Errorf("grpc transport: codec cannot marshal %T, want []byte or mem.Buffer", v)
}

// Unmarshal copies the received frame into v (*[]byte): gRPC frees data
// when Unmarshal returns.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("grpc transport: codec cannot unmarshal into %T, want *[]byte", v)
	}
	*p = data.Materialize()
	return nil
}

// Name returns the codec's content-subtype.
func (rawCodec) Name() string { return codecName }

// Compression.
//
// gRPC's own gzip compressor has one process-wide level that may only be
// set at init time, so this package registers its own gzip compressors, one
// per level, named "forge-gzip-<level>". A transport with Compression
// "gzip" sends with the one of its level; any receiver decompresses every
// level, and gRPC bounds the decompressed size by the receive limit.
const gzipNamePrefix = "forge-gzip-"

func init() {
	for level := gzip.BestSpeed; level <= gzip.BestCompression; level++ {
		encoding.RegisterCompressor(newGzipCompressor(level))
	}
}

// compressorName returns the registered compressor name of a gzip level,
// 0 meaning the default level.
func compressorName(level int) (string, error) {
	if level == 0 {
		level = gzip.DefaultCompression
	}
	if level == gzip.DefaultCompression {
		level = 6 // what compress/flate's default means
	}
	if level < gzip.BestSpeed || level > gzip.BestCompression {
		return "", fmt.Errorf("grpc transport: gzip compression level %d outside [%d, %d]", level, gzip.BestSpeed, gzip.BestCompression)
	}
	return gzipNamePrefix + strconv.Itoa(level), nil
}

// gzipCompressor is a gRPC compressor of one gzip level, pooling its
// writers and readers.
type gzipCompressor struct {
	name    string
	level   int
	writers sync.Pool // of *gzipWriter
	readers sync.Pool // of *gzipReader
}

func newGzipCompressor(level int) *gzipCompressor {
	return &gzipCompressor{name: gzipNamePrefix + strconv.Itoa(level), level: level}
}

// Name returns the registered name.
func (c *gzipCompressor) Name() string { return c.name }

// Compress returns a writer that gzips into w; closing it returns it to
// the pool.
func (c *gzipCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	if z, ok := c.writers.Get().(*gzipWriter); ok {
		z.Reset(w)
		return z, nil
	}
	zw, err := gzip.NewWriterLevel(w, c.level)
	if err != nil {
		return nil, fmt.Errorf("grpc transport: gzip writer: %w", err)
	}
	return &gzipWriter{Writer: zw, pool: &c.writers}, nil
}

// Decompress returns a reader of r's gunzipped bytes.
func (c *gzipCompressor) Decompress(r io.Reader) (io.Reader, error) {
	if z, ok := c.readers.Get().(*gzipReader); ok {
		if err := z.Reset(r); err != nil {
			c.readers.Put(z)
			return nil, fmt.Errorf("grpc transport: gzip header: %w", err)
		}
		return z, nil
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("grpc transport: gzip header: %w", err)
	}
	return &gzipReader{Reader: zr, pool: &c.readers}, nil
}

type gzipWriter struct {
	*gzip.Writer
	pool *sync.Pool
}

// Close flushes the gzip stream and returns the writer to its pool.
func (z *gzipWriter) Close() error {
	err := z.Writer.Close()
	z.pool.Put(z)
	if err != nil {
		return fmt.Errorf("grpc transport: gzip close: %w", err)
	}
	return nil
}

type gzipReader struct {
	*gzip.Reader
	pool *sync.Pool
}

// Close returns the reader to its pool; gRPC calls it exactly once.
func (z *gzipReader) Close() error {
	z.pool.Put(z)
	return nil
}
