package transport

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff computes reconnect delays: exponential from Min to Max, each
// with jitter (a delay d is drawn uniformly from [d/2, d]) so that peers
// do not reconnect in lockstep. The zero value uses the defaults. A
// Backoff is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns the delay before the next attempt and advances the
// exponent.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultBackoffMin
	}
	if hi < lo {
		hi = max(lo, DefaultBackoffMax)
	}
	d := lo
	for i := 0; i < b.attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d < hi {
		b.attempt++
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// Reset starts the back-off over from Min (after a success).
func (b *Backoff) Reset() { b.attempt = 0 }

// BreakerState is the state of a circuit breaker.
type BreakerState uint8

const (
	// BreakerClosed lets every attempt through.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses attempts until its cool-down has passed.
	BreakerOpen
	// BreakerHalfOpen lets one probe attempt through, whose outcome closes
	// or reopens the breaker.
	BreakerHalfOpen
)

// String returns the state's name.
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", uint8(s))
}

// Breaker is a per-peer circuit breaker. It opens after Failures
// consecutive failures; while open, attempts are refused; once Cooldown has
// passed it is half-open and Allow grants exactly one probe, whose Success
// closes it and whose Failure opens it again for another Cooldown. A
// Breaker is safe for concurrent use.
type Breaker struct {
	mu       sync.Mutex
	failures int // threshold
	cooldown time.Duration
	state    BreakerState
	count    int       // consecutive failures while closed
	openedAt time.Time // when it last opened
	probing  bool      // a half-open probe is outstanding
}

// NewBreaker returns a closed breaker that opens after failures consecutive
// failures (at least 1) and stays open for cooldown.
func NewBreaker(failures int, cooldown time.Duration) *Breaker {
	return &Breaker{failures: max(failures, 1), cooldown: cooldown}
}

// State returns the state at time now. An open breaker whose cool-down has
// passed reports BreakerHalfOpen.
func (b *Breaker) State(now time.Time) BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stateLocked(now)
}

func (b *Breaker) stateLocked(now time.Time) BreakerState {
	if b.state == BreakerOpen && now.Sub(b.openedAt) >= b.cooldown {
		b.state = BreakerHalfOpen
	}
	return b.state
}

// Allow reports whether an attempt may be made at time now: always when
// closed, never when open, and once (the probe) when half-open until the
// probe reports Success or Failure.
func (b *Breaker) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.stateLocked(now) {
	case BreakerClosed:
		return true
	case BreakerHalfOpen:
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
	return false
}

// Success records a successful attempt: the breaker closes.
func (b *Breaker) Success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state, b.count, b.probing = BreakerClosed, 0, false
}

// Failure records a failed attempt at time now and reports whether the
// breaker opened because of it.
func (b *Breaker) Failure(now time.Time) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.stateLocked(now) {
	case BreakerOpen:
		return false
	case BreakerHalfOpen:
		b.state, b.openedAt, b.probing = BreakerOpen, now, false
		return true
	}
	b.count++
	if b.count >= b.failures {
		b.state, b.openedAt, b.count = BreakerOpen, now, 0
		return true
	}
	return false
}

// Reset closes the breaker and forgets past failures (e.g. when a peer's
// address changes).
func (b *Breaker) Reset() { b.Success() }
