package connlimit

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/internal/logtest"
)

func listen(t *testing.T, cfg Config) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, cfg)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// accepted runs l's Accept loop, sending what it accepts on a channel.
func accepted(l *Listener) chan net.Conn {
	ch := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	return ch
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedByPeer reports whether the server closed c (it reads EOF or a reset
// within a few seconds).
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func waitOpen(t *testing.T, l *Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("open connections = %d, want %d", l.Open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMax: beyond Max connections a new one is closed at accept, logged
// once (rate-limited) however many are refused; closing one frees its
// place.
func TestMax(t *testing.T) {
	h := &logtest.Counter{}
	l := listen(t, Config{Max: 3, Name: "test", Logger: slog.New(h)})
	ch := accepted(l)
	var kept []net.Conn
	for range 3 {
		dial(t, l.Addr().String())
		kept = append(kept, <-ch)
	}
	for range 5 {
		if c := dial(t, l.Addr().String()); !closedByPeer(c) {
			t.Fatal("a connection over the cap was not closed")
		}
	}
	if l.Open() != 3 {
		t.Fatalf("open = %d, want 3", l.Open())
	}
	if n := h.Count(slog.LevelWarn, "test: too many connections; closing a new one"); n != 1 {
		t.Fatalf("%d warnings for 5 refused connections within a second, want 1", n)
	}
	_ = kept[0].Close()
	_ = kept[0].Close() // twice: released once
	waitOpen(t, l, 2)
	dial(t, l.Addr().String())
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection under the cap again was not accepted")
	}
	waitOpen(t, l, 3)
}

// TestMaxPerIP: the per-address cap counts connections per remote IP.
func TestMaxPerIP(t *testing.T) {
	l := listen(t, Config{MaxPerIP: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ch := accepted(l)
	for range 2 {
		dial(t, l.Addr().String())
		<-ch
	}
	if c := dial(t, l.Addr().String()); !closedByPeer(c) {
		t.Fatal("a third connection from 127.0.0.1 was not closed")
	}
	if got := l.OpenFrom("127.0.0.1"); got != 2 {
		t.Fatalf("OpenFrom(127.0.0.1) = %d, want 2", got)
	}
	// Another address (127.0.0.2 is loopback too on Linux) has its own count.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("cannot dial from 127.0.0.2: %v", err)
	}
	defer c.Close()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("a connection from another address was refused")
	}
	if got := l.OpenFrom("127.0.0.2"); got != 1 {
		t.Fatalf("OpenFrom(127.0.0.2) = %d, want 1", got)
	}
}

// TestWriteTimeout: a write to a peer that does not read fails within the
// write timeout instead of blocking for ever.
func TestWriteTimeout(t *testing.T) {
	l := listen(t, Config{WriteTimeout: 200 * time.Millisecond})
	ch := accepted(l)
	dial(t, l.Addr().String()) // never reads
	sc := <-ch
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := sc.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write failed with %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writes to a peer that never reads did not time out")
	}
}
