package transport

import (
	"errors"
	"net"
	"strings"
	"testing"
)

// TestConnLimiter: each limit refuses, naming its configuration key, and
// places come back on Authenticated and Release (once).
func TestConnLimiter(t *testing.T) {
	a1 := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	a2 := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 1}
	l := NewConnLimiter(3, 2, 2)
	x, err := l.Admit(a1)
	if err != nil {
		t.Fatal(err)
	}
	y, err := l.Admit(a1)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(addr net.Addr, key string) {
		t.Helper()
		_, err := l.Admit(addr)
		if !errors.Is(err, ErrConnLimit) || !strings.Contains(err.Error(), key) {
			t.Fatalf("Admit(%v) = %v, want a refusal naming %s", addr, err, key)
		}
	}
	refused(a1, "transport.max_inbound_conns_per_ip")
	refused(a2, "transport.max_handshakes")
	x.Authenticated()
	x.Authenticated() // once only
	z, err := l.Admit(a2)
	if err != nil {
		t.Fatal(err)
	}
	refused(a2, "transport.max_inbound_conns")
	if n, h := l.Counts(); n != 3 || h != 2 {
		t.Fatalf("Counts = %d, %d; want 3, 2", n, h)
	}
	y.Release()
	y.Release() // once only
	x.Release()
	z.Release()
	if n, h := l.Counts(); n != 0 || h != 0 {
		t.Fatalf("Counts after release = %d, %d; want 0, 0", n, h)
	}
}
