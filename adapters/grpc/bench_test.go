package grpc_test

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// BenchmarkSendLoopback measures throughput between two transports on
// loopback: b.N MsgApps of one 128-byte entry each, sent in Sends of 64,
// with at most 16,384 in flight so that none is dropped. It reports
// messages per second.
func BenchmarkSendLoopback(b *testing.B) {
	b.Run("Plain", func(b *testing.B) { benchSend(b, func(uint64) grpc.Options { return grpc.Options{} }) })
	b.Run("Gzip", func(b *testing.B) {
		benchSend(b, func(uint64) grpc.Options { return grpc.Options{Compression: "gzip", CompressionLevel: 1} })
	})
	b.Run("MutualTLS", func(b *testing.B) {
		ca := newPKI(b, "bench")
		benchSend(b, func(id uint64) grpc.Options { return grpc.Options{TLS: ca.nodeTLS(grpc.NodeIdentity(id))} })
	})
}

func benchSend(b *testing.B, opts func(id uint64) grpc.Options) {
	const (
		perSend  = 64
		inFlight = 16384
	)
	var received atomic.Int64
	newNode := func(id uint64, deliver func(core.Message)) *grpc.Transport {
		tr, err := grpc.New(transport.Config{
			ID: id, ListenAddr: "127.0.0.1:0", Deliver: deliver, QueueSize: 2 * inFlight,
			Logger: slog.New(slog.DiscardHandler),
		}, opts(id))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	dst := newNode(2, func(core.Message) { received.Add(1) })
	src := newNode(1, func(core.Message) {})
	src.SetPeer(2, dst.Addr())

	data := make([]byte, 128)
	batch := make([]core.Message, perSend)
	for i := range batch {
		batch[i] = core.Message{Type: core.MsgApp, From: 1, To: 2, Term: 5, LogTerm: 5, Index: uint64(i), Commit: 1,
			Entries: []core.Entry{{Term: 5, Index: uint64(i) + 1, Data: data}}}
	}
	// Warm up the stream.
	src.Send(batch[:1])
	for received.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	received.Store(0)
	b.SetBytes(128)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		for sent-int(received.Load()) > inFlight {
			time.Sleep(20 * time.Microsecond)
		}
		n := min(perSend, b.N-sent)
		src.Send(batch[:n])
		sent += n
	}
	for received.Load() < int64(b.N) {
		time.Sleep(20 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if st := src.Stats(); st.Dropped != 0 {
		b.Fatalf("sender dropped %d messages", st.Dropped)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
