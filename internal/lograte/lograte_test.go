package lograte

import (
	"testing"
	"time"
)

// TestLimiter: one warning per interval, the ones held back counted and
// reported with the next one let through.
func TestLimiter(t *testing.T) {
	l := &Limiter{Interval: time.Second}
	t0 := time.Unix(1000, 0)
	if ok, n := l.Allow(t0); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for i := range 5 {
		if ok, _ := l.Allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("warning %d within the interval let through", i)
		}
	}
	if ok, n := l.Allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d held back, want true, 5", ok, n)
	}
	// Steps of the zero Limiter (DefaultInterval, one second).
	var d Limiter
	for _, step := range []struct {
		at         time.Duration
		ok         bool
		suppressed uint64
	}{
		{0, true, 0},
		{100 * time.Millisecond, false, 0},
		{999 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{1500 * time.Millisecond, false, 0},
		{5 * time.Second, true, 1},
		{5*time.Second + time.Millisecond, false, 0},
	} {
		ok, suppressed := d.Allow(t0.Add(step.at))
		if ok != step.ok || suppressed != step.suppressed {
			t.Fatalf("Allow at +%v = %v, %d; want %v, %d", step.at, ok, suppressed, step.ok, step.suppressed)
		}
	}
	var z Limiter
	z.Allow(t0)
	if ok, _ := z.Allow(t0.Add(DefaultInterval - time.Nanosecond)); ok {
		t.Fatal("the zero Limiter does not use DefaultInterval")
	}
}
