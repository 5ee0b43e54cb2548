package transporttest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// suite is the state shared by the tests of one Run.
type suite struct {
	newTransport func(t *testing.T, cfg transport.Config) transport.Transport
	opts         Options
}

// inbox records what a transport delivers.
type inbox struct {
	mu     sync.Mutex
	msgs   []core.Message
	closed atomic.Bool  // set once the transport's Close has returned
	late   atomic.Int64 // Deliver calls after closed was set
}

func (b *inbox) deliver(m core.Message) {
	if b.closed.Load() {
		b.late.Add(1)
	}
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

// from returns a copy of the messages delivered from peer id, in order.
func (b *inbox) from(id uint64) []core.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []core.Message
	for _, m := range b.msgs {
		if m.From == id {
			out = append(out, m)
		}
	}
	return out
}

// count returns the number of messages delivered from peer id (0: from
// anyone).
func (b *inbox) count(id uint64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id == 0 {
		return len(b.msgs)
	}
	n := 0
	for i := range b.msgs {
		if b.msgs[i].From == id {
			n++
		}
	}
	return n
}

// member is one transport under test with what it received.
type member struct {
	id  uint64
	cfg transport.Config
	tr  transport.Transport
	in  *inbox

	unreachableMu sync.Mutex
	unreachable   map[uint64]int
}

func (m *member) unreachableCount(id uint64) int {
	m.unreachableMu.Lock()
	defer m.unreachableMu.Unlock()
	return m.unreachable[id]
}

// close closes m's transport and marks its inbox so that later deliveries
// are detected.
func (m *member) close(t *testing.T) {
	t.Helper()
	if err := m.tr.Close(); err != nil {
		t.Errorf("node %d: Close: %v", m.id, err)
	}
	m.in.closed.Store(true)
}

// testLogWriter forwards log lines to t until the test's cleanup starts
// running, then discards them (logging to t after the test is over
// panics).
type testLogWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func (w testLogWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

// baseConfig is the configuration of node id in tests: short back-offs
// and timeouts so that recoveries take milliseconds.
func baseConfig(t *testing.T, id uint64, in *inbox, done *atomic.Bool) transport.Config {
	return transport.Config{
		ID:           id,
		ListenAddr:   "127.0.0.1:0",
		Deliver:      in.deliver,
		DialTimeout:  time.Second,
		WriteTimeout: 2 * time.Second,
		BackoffMin:   5 * time.Millisecond,
		BackoffMax:   100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t: t, done: done},
			&slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// start creates node id with the test configuration, changed by tweak if
// not nil. Its transport is closed when the test ends.
func (s *suite) start(t *testing.T, id uint64, tweak func(*transport.Config)) *member {
	t.Helper()
	done := new(atomic.Bool)
	m := &member{id: id, in: new(inbox), unreachable: make(map[uint64]int)}
	cfg := baseConfig(t, id, m.in, done)
	cfg.Unreachable = func(peer uint64) {
		m.unreachableMu.Lock()
		m.unreachable[peer]++
		m.unreachableMu.Unlock()
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m.cfg = cfg
	m.tr = s.newTransport(t, cfg)
	if m.tr == nil {
		t.Fatalf("node %d: newTransport returned nil", id)
	}
	// Registered after newTransport so that it runs before any cleanup the
	// constructor registered; the log writer goes quiet after Close.
	t.Cleanup(func() {
		if err := m.tr.Close(); err != nil {
			t.Errorf("node %d: Close at cleanup: %v", id, err)
		}
		done.Store(true)
	})
	return m
}

// cluster starts nodes 1..n and tells each of every other.
func (s *suite) cluster(t *testing.T, n int, tweak func(*transport.Config)) []*member {
	t.Helper()
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = s.start(t, uint64(i+1), tweak)
	}
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				a.tr.SetPeer(b.id, b.tr.Addr())
			}
		}
	}
	return ms
}

// timeout is how long conditions are waited for.
func (s *suite) timeout() time.Duration {
	if s.opts.Timeout > 0 {
		return s.opts.Timeout
	}
	return 10 * time.Second
}

// eventually polls cond until it holds, failing the test if it does not
// within timeout. It is a condition with a generous failure guard, not a
// timing assertion.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustReturn runs f in the calling goroutine. If f has not returned after
// a guard of a minute, the test binary panics with what (a blocked call
// cannot be failed any other way).
func mustReturn(what string, f func()) {
	timer := time.AfterFunc(time.Minute, func() {
		panic(fmt.Sprintf("transporttest: %s did not return within a minute: Send must never block", what))
	})
	defer timer.Stop()
	f()
}

// settle gives a transport time to (wrongly) deliver something that must
// not arrive before absence is checked. Correct implementations pass
// whatever the duration.
func settle() { time.Sleep(150 * time.Millisecond) }

// roundTrip returns m as it reads after an encode and decode: what a
// receiver must deliver.
func roundTrip(t *testing.T, m core.Message) core.Message {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("encode %v: %v", m.Type, err)
	}
	out, err := core.DecodeMessage(b)
	if err != nil {
		t.Fatalf("test message %v does not decode: %v", m.Type, err)
	}
	return out
}

// heartbeat is a small message whose Index carries seq.
func heartbeat(from, to, seq uint64) core.Message {
	return core.Message{Type: core.MsgHeartbeat, From: from, To: to, Term: 1, Index: seq}
}

// app is a MsgApp with one entry of size bytes whose Index is seq.
func app(from, to, seq uint64, size int) core.Message {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(seq + uint64(i))
	}
	return core.Message{
		Type: core.MsgApp, From: from, To: to, Term: 1, LogTerm: 1, Index: seq, Commit: seq,
		Entries: []core.Entry{{Term: 1, Index: seq + 1, Data: data}},
	}
}

// snap is a MsgSnap carrying size bytes of snapshot data.
func snap(from, to, seq uint64, size int) core.Message {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + int(seq))
	}
	return core.Message{
		Type: core.MsgSnap, From: from, To: to, Term: 3,
		Snapshot: &core.Snapshot{
			Meta: core.SnapshotMeta{Index: seq + 1, Term: 2, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
			Data: data,
		},
	}
}

// sample returns a varied valid message numbered seq.
func sample(from, to, seq uint64) core.Message {
	switch seq % 6 {
	case 0:
		n := int(seq%3) + 1
		m := core.Message{Type: core.MsgApp, From: from, To: to, Term: 3, LogTerm: 2, Index: seq, Commit: seq / 2}
		for i := range n {
			term := uint64(2)
			if i > 0 {
				term = 3
			}
			m.Entries = append(m.Entries, core.Entry{
				Term: term, Index: seq + 1 + uint64(i), Type: core.EntryNormal,
				Data: []byte(fmt.Sprintf("entry %d/%d of message %d %s", i, n, seq, make([]byte, seq%200))),
			})
		}
		return m
	case 1:
		return core.Message{Type: core.MsgHeartbeat, From: from, To: to, Term: 3, Index: seq, Commit: seq / 2}
	case 2:
		return core.Message{Type: core.MsgVoteResp, From: from, To: to, Term: 3 + seq, Reject: seq%4 == 2}
	case 3:
		return core.Message{Type: core.MsgReadIndex, From: from, To: to, Term: 3, Context: []byte(fmt.Sprint("read ", seq))}
	case 4:
		return snap(from, to, seq, 1024+int(seq%512))
	default:
		return core.Message{Type: core.MsgAppResp, From: from, To: to, Term: 3, Index: seq, Reject: true, RejectHint: seq - 1, LogTerm: 2}
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}
	return addr
}

// stalledListener accepts connections and never reads from or writes to
// them, until the test ends.
func stalledListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			if ctx.Err() != nil {
				return
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		_ = l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}
