// Package lograte keeps a flood of one kind of warning (bad connections,
// bad frames) out of the log: at most one warning per interval, with a
// count of those held back.
package lograte

import (
	"sync"
	"time"
)

// Limiter lets through at most one warning per Interval. Its zero value
// uses DefaultInterval. It is safe for concurrent use.
type Limiter struct {
	// Interval is the least time between two warnings (0: DefaultInterval).
	Interval time.Duration

	mu         sync.Mutex
	next       time.Time // no warning before
	suppressed uint64    // held back since the last warning
}

// DefaultInterval is a Limiter's interval when it sets none.
const DefaultInterval = time.Second

// Allow reports whether a warning may be logged at now and, if so, how
// many were held back since the previous one (log those at Debug).
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	iv := l.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	l.next = now.Add(iv)
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
