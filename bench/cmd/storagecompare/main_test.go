//go:build linux

package main

import (
	"testing"
	"time"
)

// TestParse reads the result lines of loadgen and commitfloor -drive.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		out  string
		ops  float64
		p99  time.Duration
		errs int
	}{
		{"write proto=wire clients=100 n=50000 errors=3  24666 ops/s  p50 3.33ms  p99 14.5ms  p999 17.9ms\n", 24666, 14500 * time.Microsecond, 3},
		{"commit floor clients=1 conns=1 n=3000 size=128  927 writes/s  p50 910µs  p99 7.6ms  p999 9.9ms\n", 927, 7600 * time.Microsecond, 0},
	} {
		s, err := parse(tc.out)
		if err != nil {
			t.Fatalf("%q: %v", tc.out, err)
		}
		if s.ops != tc.ops || s.p99 != tc.p99 || s.errors != tc.errs || s.p50 <= 0 || s.p999 < s.p99 {
			t.Errorf("%q: got %+v", tc.out, s)
		}
	}
	if _, err := parse("loadgen: no leader"); err == nil {
		t.Error("a line without figures parsed")
	}
}

// TestMedian checks odd and even counts.
func TestMedian(t *testing.T) {
	ops := func(x sample) float64 { return x.ops }
	if m := median([]sample{{ops: 3}, {ops: 1}, {ops: 2}}, ops); m != 2 {
		t.Errorf("median of 3, 1, 2 = %v", m)
	}
	if m := median([]sample{{ops: 4}, {ops: 1}}, ops); m != 2.5 {
		t.Errorf("median of 4, 1 = %v", m)
	}
}
