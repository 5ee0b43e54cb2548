package server

import (
	"fmt"
	"testing"
	"time"
)

// TestAuthLimiter: an address is refused after AuthMaxFailures wrong
// tokens within the window, for the window; failures older than the window
// are forgotten; other addresses are not affected; memory stays bounded.
func TestAuthLimiter(t *testing.T) {
	l := newAuthLimiter()
	t0 := time.Unix(1000, 0)
	for i := range AuthMaxFailures - 1 {
		if l.fail("10.0.0.1", t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("refused after %d failures", i+1)
		}
	}
	if _, b := l.blocked("10.0.0.1", t0.Add(10*time.Second)); b {
		t.Fatal("refused below the limit")
	}
	if !l.fail("10.0.0.1", t0.Add(10*time.Second)) {
		t.Fatal("not refused at the limit")
	}
	if wait, b := l.blocked("10.0.0.1", t0.Add(11*time.Second)); !b || wait != AuthFailureWindow-time.Second {
		t.Fatalf("blocked %v for %v", b, wait)
	}
	if _, b := l.blocked("10.0.0.2", t0.Add(11*time.Second)); b {
		t.Fatal("another address refused")
	}
	if _, b := l.blocked("10.0.0.1", t0.Add(10*time.Second+AuthFailureWindow)); b {
		t.Fatal("still refused after the window")
	}
	// Failures spread wider than the window never add up to the limit.
	for i := range 3 * AuthMaxFailures {
		if l.fail("10.0.0.3", t0.Add(time.Duration(i)*(AuthFailureWindow/time.Duration(AuthMaxFailures-2)))) {
			t.Fatalf("slow failures refused at %d", i)
		}
	}
	for i := range 2 * authMaxTracked {
		l.fail(fmt.Sprintf("10.1.%d.%d", i/256, i%256), t0)
	}
	if n := len(l.addrs); n > authMaxTracked {
		t.Fatalf("%d addresses tracked", n)
	}
}
