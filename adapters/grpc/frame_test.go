package grpc

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"

	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/core"
)

func TestHelloRoundTrip(t *testing.T) {
	h := hello{from: 1 << 40, to: 3, cluster: 1<<64 - 1}
	got, err := parseHello(appendHello(nil, h))
	if err != nil || got != h {
		t.Fatalf("parseHello = %+v, %v; want %+v", got, err, h)
	}
	// A hello of an earlier build has no cluster: read as 0, not checked.
	if got, err := parseHello([]byte{frameHello, wireVersion, 1, 2}); err != nil || got != (hello{from: 1, to: 2}) {
		t.Fatalf("hello without a cluster: %+v, %v", got, err)
	}
	id, err := parseHelloAck(appendHelloAck(nil, 9))
	if err != nil || id != 9 {
		t.Fatalf("parseHelloAck = %d, %v; want 9", id, err)
	}
	for _, bad := range [][]byte{
		nil,
		{frameHello},
		{frameHello, wireVersion + 1, 1, 2},
		{frameHello, wireVersion, 1},
		{frameHello, wireVersion, 1, 2, 0, 0},
		{frameHello, wireVersion, 1, 2, 0x80},
		{frameBatch, wireVersion, 1, 2},
		{frameHello, wireVersion, 0x80, 0x80},
	} {
		if _, err := parseHello(bad); !errors.Is(err, errFrame) {
			t.Errorf("parseHello(%x) = %v, want a frame error", bad, err)
		}
	}
}

func TestBatchParsing(t *testing.T) {
	frame := []byte{frameBatch}
	msgs := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 300), {}}
	for _, m := range msgs {
		frame = appendUvarintBytes(frame, m)
	}
	var got [][]byte
	if err := parseBatch(frame, func(m []byte) { got = append(got, m) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("got %d messages, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
	// A malformed frame delivers nothing, not even its good prefix.
	for _, bad := range [][]byte{
		{frameBatch},
		append(append([]byte{}, frame...), 5, 1),
		append(append([]byte{}, frame...), 0x80),
	} {
		n := 0
		if err := parseBatch(bad, func([]byte) { n++ }); !errors.Is(err, errFrame) || n != 0 {
			t.Errorf("parseBatch(%x) = %v after %d messages, want a frame error and none", bad, err, n)
		}
	}
}

func appendUvarintBytes(b, p []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(p))), p...)
}

func TestChunkParsing(t *testing.T) {
	c := chunk{total: 10, offset: 4, data: []byte("efgh")}
	got, err := parseChunk(appendChunk(nil, c))
	if err != nil || got.total != 10 || got.offset != 4 || string(got.data) != "efgh" {
		t.Fatalf("parseChunk = %+v, %v", got, err)
	}
	for _, bad := range []chunk{
		{total: 10, offset: 8, data: []byte("xyz")}, // overruns
		{total: 10, offset: 11, data: []byte("x")},  // starts past the end
		{total: 10, offset: 0},                      // empty
	} {
		if _, err := parseChunk(appendChunk(nil, bad)); !errors.Is(err, errFrame) {
			t.Errorf("parseChunk(%+v) = %v, want a frame error", bad, err)
		}
	}
}

// FuzzFrames feeds arbitrary frames to a stream's receiving side: nothing
// panics, and nothing malformed is delivered.
func FuzzFrames(f *testing.F) {
	m := core.Message{Type: core.MsgHeartbeat, From: 1, To: 2, Term: 1}
	enc, _ := m.MarshalBinary()
	f.Add(appendUvarintBytes([]byte{frameBatch}, enc))
	f.Add(appendChunk(nil, chunk{total: uint64(len(enc)), data: enc}))
	f.Add(appendChunk(nil, chunk{total: 1 << 40, data: []byte{1}}))
	f.Add([]byte{frameHello, wireVersion, 1, 2})
	f.Fuzz(func(t *testing.T, frame []byte) {
		tr := &Transport{cfg: transport.Config{ID: 2, MaxMessageBytes: 4 << 10, Deliver: func(got core.Message) {
			if got.From != 1 || got.To != 2 {
				t.Fatalf("delivered %+v", got)
			}
		}}.WithDefaults(), blocked: map[uint64]bool{}}
		tr.log = tr.cfg.Logger
		in := inbound{t: tr, from: 1}
		_ = in.frame(frame)
		_ = in.frame(frame) // twice: chunk sequences
	})
}

func TestCertIdentity(t *testing.T) {
	for _, tc := range []struct {
		cn   string
		dns  []string
		want bool
	}{
		{"node-7", nil, true},
		{"x", []string{"a", "node-7"}, true},
		{"node-70", []string{"node-07", "node-7.example"}, false},
		{"", nil, false},
	} {
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.dns}
		if got := certHasIdentity(cert, 7); got != tc.want {
			t.Errorf("certHasIdentity(CN %q, DNS %v, 7) = %v, want %v", tc.cn, tc.dns, got, tc.want)
		}
	}
	if certHasIdentity(nil, 7) {
		t.Errorf("nil certificate has an identity")
	}
}

// rawClient opens a stream to tr by hand, as a misbehaving peer would.
func rawClient(t *testing.T, tr *Transport) grpc.ClientStream {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+tr.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(func() {
		cancel()
		_ = cc.Close()
	})
	cs, err := cc.NewStream(ctx, clientStreamDesc(), streamMethod, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// greet sends a hello from node from and waits for the answer.
func greet(t *testing.T, cs grpc.ClientStream, from, to uint64) error {
	t.Helper()
	if err := cs.SendMsg(appendHello(nil, hello{from: from, to: to})); err != nil {
		t.Fatal(err)
	}
	var ack []byte
	if err := cs.RecvMsg(&ack); err != nil {
		return err
	}
	if id, err := parseHelloAck(ack); err != nil || id != to {
		t.Fatalf("hello ack %x: %d, %v", ack, id, err)
	}
	return nil
}

func newTestTransport(t *testing.T, id uint64, limit int) (*Transport, *transporttest.Recorder) {
	t.Helper()
	c := new(transporttest.Recorder)
	tr, err := New(transport.Config{ID: id, ListenAddr: "127.0.0.1:0", Deliver: c.Deliver, MaxMessageBytes: limit,
		DialTimeout: 500 * time.Millisecond}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr, c
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHostilePeer speaks the protocol badly on purpose: every malformed,
// oversize, spoofed or misaddressed thing is rejected, counted and never
// delivered, and good messages on the same stream still are.
func TestHostilePeer(t *testing.T) {
	const limit = 64 << 10
	tr, got := newTestTransport(t, 2, limit)
	enc := func(m core.Message) []byte {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := enc(core.Message{Type: core.MsgHeartbeat, From: 1, To: 2, Term: 1})
	// step sends frames on a fresh stream from node 1 and checks the
	// rejection count, the deliveries and whether the stream survives.
	step := func(name string, delivered int, rejected uint64, survives bool, frames ...[]byte) {
		t.Run(name, func(t *testing.T) {
			cs := rawClient(t, tr)
			if err := greet(t, cs, 1, 2); err != nil {
				t.Fatalf("hello refused: %v", err)
			}
			d0, r0 := got.Count(), tr.Stats().Rejected
			for _, f := range frames {
				if err := cs.SendMsg(f); err != nil {
					break
				}
			}
			// A good message last: delivered only if the stream survives.
			_ = cs.SendMsg(appendUvarintBytes([]byte{frameBatch}, good))
			want := d0 + delivered
			if survives {
				want++
			}
			waitFor(t, func() bool { return tr.Stats().Rejected >= r0+rejected && got.Count() >= want }, "rejections and deliveries")
			time.Sleep(50 * time.Millisecond)
			if n := got.Count(); n != want {
				t.Fatalf("delivered %d messages, want %d", n-d0, want-d0)
			}
			if r := tr.Stats().Rejected; r != r0+rejected {
				t.Fatalf("Rejected grew by %d, want %d", r-r0, rejected)
			}
			if !survives {
				var f []byte
				if err := cs.RecvMsg(&f); status.Code(err) != codes.InvalidArgument {
					t.Fatalf("stream ended with %v, want InvalidArgument", err)
				}
			}
		})
	}
	batch := func(msgs ...[]byte) []byte {
		f := []byte{frameBatch}
		for _, m := range msgs {
			f = appendUvarintBytes(f, m)
		}
		return f
	}
	big := enc(core.Message{Type: core.MsgSnap, From: 1, To: 2, Term: 1,
		Snapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 1, Term: 1}, Data: make([]byte, 2*limit)}})

	step("GoodBatch", 2, 0, true, batch(good, good))
	step("GarbageMessage", 1, 1, true, batch([]byte("not a message"), good))
	step("SpoofedFrom", 0, 1, true, batch(enc(core.Message{Type: core.MsgHeartbeat, From: 3, To: 2, Term: 1})))
	step("WrongTo", 0, 1, true, batch(enc(core.Message{Type: core.MsgHeartbeat, From: 1, To: 5, Term: 1})))
	step("OversizeInBatch", 0, 1, true, batch(big))
	step("OversizeChunked", 0, 1, true,
		appendChunk(nil, chunk{total: uint64(len(big)), offset: 0, data: big[:limit]}),
		appendChunk(nil, chunk{total: uint64(len(big)), offset: limit, data: big[limit:]}))
	// 1 TiB announced: refused before any allocation, its chunks skipped;
	// the batch that interrupts it ends the stream.
	step("HugeAnnouncedChunk", 0, 2, false,
		appendChunk(nil, chunk{total: 1 << 40, offset: 0, data: []byte{1}}),
		appendChunk(nil, chunk{total: 1 << 40, offset: 1, data: []byte{2}}))
	step("TruncatedBatch", 0, 1, false, append(batch(good), 9, 1))
	step("UnknownKind", 0, 1, false, []byte{42, 1, 2})
	step("ChunkOutOfOrder", 0, 1, false, appendChunk(nil, chunk{total: 10, offset: 5, data: []byte("x")}))
	step("SecondHello", 0, 1, false, appendHello(nil, hello{from: 1, to: 2}))

	t.Run("HelloForAnotherNode", func(t *testing.T) {
		r0 := tr.Stats().Rejected
		if err := greet(t, rawClient(t, tr), 1, 3); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("hello for node 3 answered %v, want FailedPrecondition", err)
		}
		if r := tr.Stats().Rejected; r != r0+1 {
			t.Fatalf("Rejected grew by %d, want 1", r-r0)
		}
	})
	t.Run("HelloClaimingReceiver", func(t *testing.T) {
		if err := greet(t, rawClient(t, tr), 2, 2); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("hello from the receiver itself answered %v, want PermissionDenied", err)
		}
	})
	t.Run("NoHello", func(t *testing.T) {
		cs := rawClient(t, tr)
		r0 := tr.Stats().Rejected
		var f []byte
		if err := cs.RecvMsg(&f); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("silent stream ended with %v, want InvalidArgument after DialTimeout", err)
		}
		if r := tr.Stats().Rejected; r != r0+1 {
			t.Fatalf("Rejected grew by %d, want 1", r-r0)
		}
	})
	t.Run("BadHello", func(t *testing.T) {
		cs := rawClient(t, tr)
		if err := cs.SendMsg(append(batch(good), 0)); err != nil {
			t.Fatal(err)
		}
		var f []byte
		if err := cs.RecvMsg(&f); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("stream without hello ended with %v, want InvalidArgument", err)
		}
	})
}
