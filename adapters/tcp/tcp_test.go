package tcp

import (
	"bytes"
	"errors"
	"github.com/forge-consensus/consensus/internal/logtest"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/core"
)

func newForTest(t *testing.T, cfg transport.Config) transport.Transport {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("tcp.New: %v", err)
	}
	return tr
}

func TestConformance(t *testing.T) {
	transporttest.Run(t, newForTest, transporttest.Options{RawGarbage: true})
}

// recorder collects delivered messages.
type recorder = transporttest.Recorder

// start returns a started transport for node id, closed when the test
// ends.
func start(t testing.TB, id uint64, r *recorder, tweak func(*transport.Config)) *Transport {
	t.Helper()
	cfg := transport.Config{
		ID: id, ListenAddr: "127.0.0.1:0", Deliver: r.Deliver,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heartbeat(from, to, seq uint64) core.Message {
	return core.Message{Type: core.MsgHeartbeat, From: from, To: to, Term: 1, Index: seq}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(transport.Config{ListenAddr: "127.0.0.1:0", Deliver: func(core.Message) {}}); !errors.Is(err, transport.ErrInvalidConfig) {
		t.Fatalf("ID 0: err = %v, want ErrInvalidConfig", err)
	}
	a := start(t, 1, new(recorder), nil)
	_, err := New(transport.Config{ID: 2, ListenAddr: a.Addr(), Deliver: func(core.Message) {}})
	if err == nil {
		t.Fatal("listening on a busy address succeeded")
	}
}

// TestOversizeKeepsConnection: an oversize frame is skipped on the same
// connection, so the message right after it arrives without a reconnect.
func TestOversizeKeepsConnection(t *testing.T) {
	ra, rb := new(recorder), new(recorder)
	a := start(t, 1, ra, nil)
	b := start(t, 2, rb, func(c *transport.Config) { c.MaxMessageBytes = 1 << 16 })
	a.SetPeer(2, b.Addr())
	a.Send([]core.Message{heartbeat(1, 2, 1)})
	waitFor(t, func() bool { return rb.Count() == 1 }, "first message")
	big := core.Message{Type: core.MsgApp, From: 1, To: 2, Term: 1, LogTerm: 1, Index: 1,
		Entries: []core.Entry{{Term: 1, Index: 2, Data: make([]byte, 1<<17)}}}
	a.Send([]core.Message{big, heartbeat(1, 2, 3)})
	waitFor(t, func() bool { return rb.Count() == 2 }, "message after the oversize one")
	if got := rb.All()[1]; got.Index != 3 {
		t.Fatalf("delivered %v index %d", got.Type, got.Index)
	}
	if st := b.Stats(); st.Rejected != 1 {
		t.Fatalf("receiver Stats = %+v, want 1 rejected", st)
	}
	waitFor(t, func() bool { return a.Stats().Sent >= 3 }, "the sender to count 3 sent")
	if st := a.Stats(); st.Reconnects != 0 || st.Sent != 3 {
		t.Fatalf("sender Stats = %+v, want 3 sent on one connection", st)
	}
}

// closingListener accepts connections and closes them at once, counting
// them: every handshake with it fails.
func closingListener(t *testing.T) (addr string, accepts *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepts = new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	return l.Addr().String(), accepts
}

// TestBreakerStopsDialing: after BreakerFailures failed handshakes the
// breaker opens and no more dials happen during the cool-down; sends are
// dropped.
func TestBreakerStopsDialing(t *testing.T) {
	addr, accepts := closingListener(t)
	var unreachable atomic.Int64
	a := start(t, 1, new(recorder), func(c *transport.Config) {
		c.BreakerFailures = 3
		c.BackoffMin = time.Millisecond
		c.BackoffMax = time.Minute // the cool-down outlasts the test
		c.Unreachable = func(id uint64) {
			if id == 2 {
				unreachable.Add(1)
			}
		}
	})
	a.SetPeer(2, addr)
	seq := uint64(0)
	waitFor(t, func() bool {
		seq++
		a.Send([]core.Message{heartbeat(1, 2, seq)})
		return a.peers.Load() != nil && (*a.peers.Load())[2].breaker.State(time.Now()) == transport.BreakerOpen
	}, "the breaker to open")
	dropped := a.Stats().Dropped
	for i := range 1000 {
		a.Send([]core.Message{heartbeat(1, 2, uint64(i))})
	}
	time.Sleep(100 * time.Millisecond)
	if n := accepts.Load(); n != 3 {
		t.Errorf("%d connection attempts, want 3 (the breaker threshold)", n)
	}
	if n := unreachable.Load(); n != 3 {
		t.Errorf("Unreachable called %d times, want 3", n)
	}
	if d := a.Stats().Dropped - dropped; d != 1000 {
		t.Errorf("%d of 1000 sends with the breaker open dropped", d)
	}
}

// TestBreakerRecovers: once the peer comes up, the half-open probe
// succeeds and messages flow.
func TestBreakerRecovers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	ra, rb := new(recorder), new(recorder)
	a := start(t, 1, ra, func(c *transport.Config) {
		c.BreakerFailures = 2
		c.BackoffMax = 200 * time.Millisecond
	})
	a.SetPeer(2, addr)
	seq := uint64(0)
	waitFor(t, func() bool {
		seq++
		a.Send([]core.Message{heartbeat(1, 2, seq)})
		return (*a.peers.Load())[2].breaker.State(time.Now()) == transport.BreakerOpen
	}, "the breaker to open")
	start(t, 2, rb, func(c *transport.Config) { c.ListenAddr = addr })
	waitFor(t, func() bool {
		seq++
		a.Send([]core.Message{heartbeat(1, 2, seq)})
		return rb.Count() > 0
	}, "messages after the peer came up")
	if st := (*a.peers.Load())[2].breaker.State(time.Now()); st != transport.BreakerClosed {
		t.Fatalf("breaker %v after a successful probe", st)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	b := start(t, 2, new(recorder), nil)
	cases := []struct {
		name   string
		hello  hello
		status byte
	}{
		{"ok", hello{version: ProtocolVersion, from: 1, to: 2}, statusOK},
		{"version", hello{version: ProtocolVersion + 1, from: 1, to: 2}, statusBadVersion},
		{"wrong node", hello{version: ProtocolVersion, from: 1, to: 3}, statusWrongNode},
		{"sender 0", hello{version: ProtocolVersion, from: 0, to: 2}, statusBadSender},
		{"sender self", hello{version: ProtocolVersion, from: 2, to: 2}, statusBadSender},
	}
	for i, c := range cases {
		conn, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(transport.AppendFrame(nil, appendHello(nil, c.hello))); err != nil {
			t.Fatal(err)
		}
		p, err := transport.ReadFrame(conn, maxHandshakeBytes)
		if err != nil {
			t.Fatalf("%s: read ack: %v", c.name, err)
		}
		a, err := parseAck(p)
		if err != nil || a.status != c.status || a.id != 2 || a.version != ProtocolVersion {
			t.Errorf("%s: ack %+v, %v; want status %d (%s)", c.name, a, err, c.status, statusText(c.status))
		}
		if c.status != statusOK {
			if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("%s: connection not closed after a refusal: %v", c.name, err)
			}
		}
		_ = conn.Close()
		if got := b.Stats().Rejected; got != uint64(i) {
			t.Errorf("after %s: Rejected = %d, want %d", c.name, got, i)
		}
	}
}

func TestHandshakeEncoding(t *testing.T) {
	h := hello{version: 1, from: 1<<64 - 1, to: 7}
	if got, err := parseHello(appendHello(nil, h)); err != nil || got != h {
		t.Fatalf("hello round trip: %+v, %v", got, err)
	}
	a := ack{version: 1, status: statusWrongNode, id: 1 << 40}
	if got, err := parseAck(appendAck(nil, a)); err != nil || got != a {
		t.Fatalf("ack round trip: %+v, %v", got, err)
	}
	if len(appendHello(nil, h)) > maxHandshakeBytes || len(appendAck(nil, ack{id: 1<<64 - 1})) > maxHandshakeBytes {
		t.Fatal("handshake frames exceed maxHandshakeBytes")
	}
	full := appendHello(nil, h)
	for n := range len(full) {
		if _, err := parseHello(full[:n]); !errors.Is(err, errHandshake) {
			t.Errorf("hello cut at %d: err = %v", n, err)
		}
	}
	bad := [][]byte{
		append(bytes.Clone(full), 0),             // trailing
		append([]byte("XXXX"), full[4:]...),      // magic
		appendAck(nil, a),                        // wrong kind
		{'F', 'C', 'T', 'P', 1, kindHello, 0x80}, // bad varint
	}
	for i, p := range bad {
		if _, err := parseHello(p); !errors.Is(err, errHandshake) {
			t.Errorf("bad hello %d: err = %v", i, err)
		}
	}
	if _, err := parseAck(full); !errors.Is(err, errHandshake) {
		t.Errorf("hello parsed as ack: %v", err)
	}
}

// TestSendToSelfAndUnknown: messages that cannot be routed are dropped.
func TestSendToSelfAndUnknown(t *testing.T) {
	a := start(t, 1, new(recorder), nil)
	a.SetPeer(1, a.Addr()) // ignored
	a.Send([]core.Message{heartbeat(1, 1, 1), heartbeat(1, 5, 1), heartbeat(1, 0, 1)})
	if st := a.Stats(); st.Dropped != 3 {
		t.Fatalf("Stats = %+v, want 3 dropped", st)
	}
}

// FuzzInbound feeds arbitrary bytes to an inbound connection: it must not
// panic, and whatever is delivered is a valid message to this node from
// the peer of the handshake.
func FuzzInbound(f *testing.F) {
	hs := transport.AppendFrame(nil, appendHello(nil, hello{version: ProtocolVersion, from: 1, to: 2}))
	frame := func(m core.Message) []byte {
		b, _, err := transport.AppendMessageFrame(nil, &m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	valid := append(bytes.Clone(hs), frame(heartbeat(1, 2, 1))...)
	f.Add(valid)
	f.Add(append(bytes.Clone(valid), frame(heartbeat(3, 2, 1))...))
	f.Add(append(bytes.Clone(hs), frame(heartbeat(1, 3, 1))...))
	f.Add(append(bytes.Clone(hs), transport.AppendFrame(nil, []byte{1, 7, 0xff})...))
	f.Add(append(bytes.Clone(hs), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0))
	f.Add([]byte("garbage"))

	r := new(recorder)
	tr, err := New(transport.Config{ID: 2, ListenAddr: "127.0.0.1:0", Deliver: r.Deliver, MaxMessageBytes: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = tr.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		before := r.Count()
		client, server := net.Pipe()
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = io.Copy(io.Discard, client) })
		wg.Go(func() {
			_, _ = client.Write(data)
			_ = client.Close()
		})
		adm, err := tr.limits.Admit(server.RemoteAddr())
		if err != nil {
			t.Fatal(err)
		}
		tr.serve(server, adm)
		wg.Wait()
		for _, m := range r.All()[before:] {
			if m.To != 2 || m.From != 1 {
				t.Fatalf("delivered %v from %d to %d", m.Type, m.From, m.To)
			}
			b, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			again, err := core.DecodeMessage(b)
			if err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("delivered message does not round-trip: %v", err)
			}
		}
	})
}

// BenchmarkSendLoopback measures messages per second from one transport to
// another over loopback, each a MsgApp with one 128-byte entry, sent in
// batches of 64 with at most half a queue in flight.
func BenchmarkSendLoopback(b *testing.B) {
	var received atomic.Int64
	deliver := func(core.Message) { received.Add(1) }
	const queue = 1 << 16
	cfg := func(id uint64) transport.Config {
		return transport.Config{ID: id, ListenAddr: "127.0.0.1:0", Deliver: deliver, QueueSize: queue}
	}
	ta, err := New(cfg(1))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ta.Close() }()
	tb, err := New(cfg(2))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tb.Close() }()
	ta.SetPeer(2, tb.Addr())

	const batchSize = 64
	batch := make([]core.Message, batchSize)
	data := bytes.Repeat([]byte{0xab}, 128)
	for i := range batch {
		batch[i] = core.Message{Type: core.MsgApp, From: 1, To: 2, Term: 7, LogTerm: 7, Index: uint64(1000 + i), Commit: 999,
			Entries: []core.Entry{{Term: 7, Index: uint64(1001 + i), Data: data}}}
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		for sent-int(received.Load()) > queue/2 {
			time.Sleep(20 * time.Microsecond)
		}
		n := min(batchSize, b.N-sent)
		ta.Send(batch[:n])
		sent += n
	}
	for int(received.Load()) < b.N {
		if ta.Stats().Dropped > 0 {
			b.Fatalf("messages dropped: %+v", ta.Stats())
		}
		time.Sleep(20 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// TestBreakerLogsOncePerOutage: a peer that stays down opens its breaker
// again after every cool-down; the outage is one warning and one "breaker
// open" line, the rest is debug.
func TestBreakerLogsOncePerOutage(t *testing.T) {
	addr, _ := closingListener(t)
	logs := &logtest.Counter{}
	a := start(t, 1, new(recorder), func(c *transport.Config) {
		c.BreakerFailures = 1
		c.BackoffMin = time.Millisecond
		c.BackoffMax = 20 * time.Millisecond
		c.Logger = slog.New(logs)
	})
	a.SetPeer(2, addr)
	seq := uint64(0)
	waitFor(t, func() bool {
		seq++
		a.Send([]core.Message{heartbeat(1, 2, seq)})
		return logs.Count(slog.LevelDebug, "circuit breaker open again") >= 3
	}, "the breaker to open three more times")
	if w, i := logs.Count(slog.LevelWarn, "peer unreachable"), logs.Count(slog.LevelInfo, "circuit breaker open"); w != 1 || i != 1 {
		t.Fatalf("%d warnings and %d 'breaker open' lines for one outage, want 1 and 1", w, i)
	}
}
