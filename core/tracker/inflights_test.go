package tracker

import (
	"math/rand/v2"
	"testing"
)

// mustPanic fails t unless f panics.
func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", name)
		}
	}()
	f()
}

// checkInflights compares in against the expected count, bytes and fullness.
func checkInflights(t *testing.T, in *Inflights, count int, bytes uint64, full bool) {
	t.Helper()
	if in.Count() != count || in.Bytes() != bytes || in.Full() != full {
		t.Fatalf("Count, Bytes, Full = %d, %d, %t; want %d, %d, %t",
			in.Count(), in.Bytes(), in.Full(), count, bytes, full)
	}
}

func TestNewInflights(t *testing.T) {
	in := NewInflights(256, 0)
	checkInflights(t, in, 0, 0, false)
	if in.buffer != nil {
		t.Errorf("new Inflights allocated %d slots up front", len(in.buffer))
	}
	in.FreeLE(100)
	in.Reset()
	if in.buffer != nil {
		t.Error("FreeLE or Reset on an empty Inflights allocated storage")
	}
	mustPanic(t, "NewInflights(0, 0)", func() { NewInflights(0, 0) })
	mustPanic(t, "NewInflights(-1, 0)", func() { NewInflights(-1, 0) })
}

func TestInflightsFullByCount(t *testing.T) {
	in := NewInflights(3, 0)
	in.Add(1, 100)
	checkInflights(t, in, 1, 100, false)
	in.Add(2, 100)
	checkInflights(t, in, 2, 200, false)
	in.Add(5, 1<<40) // no byte limit
	checkInflights(t, in, 3, 200+1<<40, true)
	mustPanic(t, "Add on a full buffer", func() { in.Add(6, 1) })
	checkInflights(t, in, 3, 200+1<<40, true)

	in.FreeLE(0) // acknowledges nothing in flight
	checkInflights(t, in, 3, 200+1<<40, true)
	in.FreeLE(1)
	checkInflights(t, in, 2, 100+1<<40, false)
	in.FreeLE(4) // frees 2, not 5
	checkInflights(t, in, 1, 1<<40, false)
	in.FreeLE(5)
	checkInflights(t, in, 0, 0, false)
	in.FreeLE(100) // nothing left
	checkInflights(t, in, 0, 0, false)
}

func TestInflightsFullByBytes(t *testing.T) {
	in := NewInflights(10, 100)
	in.Add(1, 40)
	checkInflights(t, in, 1, 40, false)
	in.Add(2, 59)
	checkInflights(t, in, 2, 99, false)
	in.Add(3, 1) // exactly the limit
	checkInflights(t, in, 3, 100, true)
	mustPanic(t, "Add over the byte limit", func() { in.Add(4, 0) })
	in.FreeLE(1)
	checkInflights(t, in, 2, 60, false)
	in.Add(4, 500) // one message may overshoot the limit
	checkInflights(t, in, 3, 560, true)
	in.FreeLE(3)
	checkInflights(t, in, 1, 500, true)
	in.FreeLE(4)
	checkInflights(t, in, 0, 0, false)

	// Zero-byte messages are limited by count alone.
	in = NewInflights(2, 1)
	in.Add(1, 0)
	in.Add(2, 0)
	checkInflights(t, in, 2, 0, true)
}

func TestInflightsAddNonIncreasingPanics(t *testing.T) {
	in := NewInflights(10, 0)
	in.Add(5, 1)
	mustPanic(t, "Add of an equal index", func() { in.Add(5, 1) })
	mustPanic(t, "Add of a smaller index", func() { in.Add(4, 1) })
	checkInflights(t, in, 1, 1, false)
	in.FreeLE(5)
	in.Add(3, 1) // nothing in flight: any index will do
	checkInflights(t, in, 1, 1, false)
}

func TestInflightsReset(t *testing.T) {
	in := NewInflights(4, 10)
	for i := uint64(1); i <= 4; i++ {
		in.Add(i, 3)
	}
	checkInflights(t, in, 4, 12, true)
	buf := in.buffer
	in.Reset()
	checkInflights(t, in, 0, 0, false)
	if &in.buffer[0] != &buf[0] {
		t.Error("Reset dropped the storage")
	}
	in.Add(2, 1) // indexes may start over after Reset
	checkInflights(t, in, 1, 1, false)
}

func TestInflightsLazyGrowth(t *testing.T) {
	in := NewInflights(10, 0)
	wantLens := []int{4, 4, 4, 4, 8, 8, 8, 8, 10, 10}
	for i, want := range wantLens {
		in.Add(uint64(i+1), 1)
		if got := len(in.buffer); got != want {
			t.Errorf("after %d adds the storage has %d slots, want %d", i+1, got, want)
		}
	}
	checkInflights(t, in, 10, 10, true)

	// A buffer of size 1 never allocates more than one slot.
	in = NewInflights(1, 0)
	in.Add(1, 1)
	if len(in.buffer) != 1 {
		t.Errorf("size-1 buffer has %d slots", len(in.buffer))
	}
}

func TestInflightsGrowWhileWrapped(t *testing.T) {
	in := NewInflights(16, 0)
	for i := uint64(1); i <= 4; i++ {
		in.Add(i, i)
	}
	in.FreeLE(2) // start moves to slot 2
	in.Add(5, 5)
	in.Add(6, 6) // wraps around into slots 0 and 1
	if len(in.buffer) != 4 || in.start != 2 {
		t.Fatalf("setup: %d slots, start %d; want 4 slots, start 2", len(in.buffer), in.start)
	}
	in.Add(7, 7) // grows while wrapped
	if len(in.buffer) != 8 {
		t.Fatalf("storage has %d slots after growth, want 8", len(in.buffer))
	}
	checkInflights(t, in, 5, 3+4+5+6+7, false)
	// The messages must still be in order: free them one by one.
	want := uint64(3 + 4 + 5 + 6 + 7)
	for i := uint64(3); i <= 7; i++ {
		in.FreeLE(i)
		want -= i
		checkInflights(t, in, int(7-i), want, false)
	}
}

// TestInflightsModel drives Inflights with random adds and frees and
// compares it with a plain slice after every step.
func TestInflightsModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	type msg struct{ index, bytes uint64 }
	for _, cfg := range []struct {
		size     int
		maxBytes uint64
	}{
		{1, 0}, {2, 0}, {3, 0}, {5, 0}, {8, 0}, {13, 0}, {64, 0}, {256, 0},
		{7, 50}, {32, 100}, {256, 1000},
	} {
		in := NewInflights(cfg.size, cfg.maxBytes)
		var model []msg
		var next uint64 = 1
		maxLen := 0
		for step := 0; step < 20000; step++ {
			var mb uint64
			for _, m := range model {
				mb += m.bytes
			}
			full := len(model) == cfg.size || (cfg.maxBytes > 0 && mb >= cfg.maxBytes)
			if in.Count() != len(model) || in.Bytes() != mb || in.Full() != full {
				t.Fatalf("size %d maxBytes %d step %d: Count, Bytes, Full = %d, %d, %t; model %d, %d, %t",
					cfg.size, cfg.maxBytes, step, in.Count(), in.Bytes(), in.Full(), len(model), mb, full)
			}
			if len(in.buffer) > cfg.size {
				t.Fatalf("size %d: storage grew to %d slots", cfg.size, len(in.buffer))
			}
			maxLen = max(maxLen, len(model))

			switch op := r.IntN(10); {
			case op < 6 && !full: // add, sometimes skipping indexes
				next += 1 + r.Uint64N(3)
				b := r.Uint64N(20)
				in.Add(next, b)
				model = append(model, msg{next, b})
			case op < 9: // acknowledge somewhere around the window
				var ack uint64
				if len(model) > 0 {
					lo := model[0].index - 1
					hi := model[len(model)-1].index + 1
					ack = lo + r.Uint64N(hi-lo+1)
				} else {
					ack = next
				}
				in.FreeLE(ack)
				i := 0
				for i < len(model) && model[i].index <= ack {
					i++
				}
				model = model[i:]
			default:
				if r.IntN(20) == 0 {
					in.Reset()
					model = model[:0]
				}
			}
		}
		if maxLen == cfg.size && len(in.buffer) != cfg.size {
			t.Errorf("size %d: reached %d in flight with %d slots", cfg.size, maxLen, len(in.buffer))
		}
	}
}

func TestInflightsAllocs(t *testing.T) {
	in := NewInflights(64, 0)
	// Warm up: grow the storage to its full size.
	for i := uint64(1); i <= 64; i++ {
		in.Add(i, 10)
	}
	in.Reset()
	next := uint64(1)
	allocs := testing.AllocsPerRun(1000, func() {
		for range 5 {
			in.Add(next, 10)
			next++
		}
		in.FreeLE(next - 3)
		in.FreeLE(next - 1)
		_ = in.Full()
	})
	if allocs != 0 {
		t.Errorf("Add/FreeLE allocate %v times per run after warm-up", allocs)
	}
}

func TestInflightsFreeFirstOne(t *testing.T) {
	in := NewInflights(3, 0)
	in.FreeFirstOne() // empty: nothing to do
	if in.Count() != 0 {
		t.Fatalf("count = %d, want 0", in.Count())
	}
	in.Add(5, 10)
	in.Add(7, 20)
	in.Add(9, 30)
	if !in.Full() {
		t.Fatal("want full after 3 adds")
	}
	in.FreeFirstOne()
	if in.Full() || in.Count() != 2 || in.Bytes() != 50 {
		t.Fatalf("after FreeFirstOne: full=%v count=%d bytes=%d, want false 2 50", in.Full(), in.Count(), in.Bytes())
	}
	in.FreeLE(7)
	if in.Count() != 1 || in.Bytes() != 30 {
		t.Fatalf("after FreeLE(7): count=%d bytes=%d, want 1 30", in.Count(), in.Bytes())
	}
}
