package groupcommit

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait for Next: a deadlock guard, not a timing
// assertion.
const waitTimeout = 30 * time.Second

// result is what Next returned.
type result struct {
	g  []int
	ok bool
}

// start runs q.Next on another goroutine and returns where its result
// will be.
func start(q *Queue[int]) <-chan result {
	ch := make(chan result, 1)
	go func() {
		g, ok := q.Next()
		ch <- result{g, ok}
	}()
	return ch
}

// await returns the result of a Next started by start, failing the test if
// it does not come within waitTimeout.
func await(t *testing.T, ch <-chan result) ([]int, bool) {
	t.Helper()
	select {
	case r := <-ch:
		return r.g, r.ok
	case <-time.After(waitTimeout):
		t.Fatalf("Next did not return within %v", waitTimeout)
		return nil, false
	}
}

// next calls q.Next, failing the test if it does not return within
// waitTimeout.
func next(t *testing.T, q *Queue[int]) ([]int, bool) {
	t.Helper()
	return await(t, start(q))
}

func push(t *testing.T, q *Queue[int], v, size int) {
	t.Helper()
	if !q.Push(v, size) {
		t.Fatalf("Push(%d) refused on an open queue", v)
	}
}

// TestGroupTakesWhatIsQueued: without a delay, Next takes everything
// queued (under the byte limit) in Push order, and the next group starts
// where the last one stopped.
func TestGroupTakesWhatIsQueued(t *testing.T) {
	q := New[int](0, 1<<20)
	for i := range 5 {
		push(t, q, i, 10)
	}
	g, ok := next(t, q)
	if !ok || !slices.Equal(g, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("Next = %v, %v; want [0 1 2 3 4], true", g, ok)
	}
	push(t, q, 5, 10)
	g, ok = next(t, q)
	if !ok || !slices.Equal(g, []int{5}) {
		t.Fatalf("Next = %v, %v; want [5], true", g, ok)
	}
}

// TestGroupByteLimit: a group takes requests while its size is under the
// limit (so the request that reaches it is the last), and always takes the
// first request, however large.
func TestGroupByteLimit(t *testing.T) {
	q := New[int](0, 100)
	for i, size := range []int{40, 40, 40, 40, 500, 1, 99, 1} {
		push(t, q, i, size)
	}
	for _, want := range [][]int{{0, 1, 2}, {3, 4}, {5, 6}, {7}} {
		g, ok := next(t, q)
		if !ok || !slices.Equal(g, want) {
			t.Fatalf("Next = %v, %v; want %v, true", g, ok, want)
		}
	}
	q = New[int](0, 0)
	push(t, q, 1, 0)
	push(t, q, 2, 0)
	if g, _ := next(t, q); !slices.Equal(g, []int{1}) {
		t.Fatalf("with no byte limit, Next = %v; want one request, [1]", g)
	}
}

// TestDelayEndsWhenFull: with a delay far longer than the test, Next
// returns as soon as the queued bytes reach the limit, with them all.
func TestDelayEndsWhenFull(t *testing.T) {
	q := New[int](time.Hour, 100)
	push(t, q, 0, 30)
	ch := start(q)
	push(t, q, 1, 30)
	push(t, q, 2, 40) // 100 bytes: full
	if g, ok := await(t, ch); !ok || !slices.Equal(g, []int{0, 1, 2}) {
		t.Fatalf("Next = %v, %v; want [0 1 2], true", g, ok)
	}
}

// TestDelayEndsOnClose: Close ends the wait for more; the queued requests
// are still handed out, then Next reports the end.
func TestDelayEndsOnClose(t *testing.T) {
	q := New[int](time.Hour, 100)
	push(t, q, 7, 1)
	ch := start(q)
	q.Close()
	if g, ok := await(t, ch); !ok || !slices.Equal(g, []int{7}) {
		t.Fatalf("Next = %v, %v; want [7], true", g, ok)
	}
	if g, ok := next(t, q); ok || g != nil {
		t.Fatalf("Next on a closed, empty queue = %v, %v; want nil, false", g, ok)
	}
}

// TestDelayEndsOnTimer: under the byte limit, Next waits out the delay
// (it cannot return sooner: a lower bound, which a correct queue always
// meets), then returns whatever is queued.
func TestDelayEndsOnTimer(t *testing.T) {
	const delay = 20 * time.Millisecond
	q := New[int](delay, 1<<20)
	start := time.Now()
	push(t, q, 1, 1)
	g, ok := next(t, q)
	if waited := time.Since(start); waited < delay {
		t.Fatalf("Next returned after %v, before the delay of %v", waited, delay)
	}
	if !ok || !slices.Equal(g, []int{1}) {
		t.Fatalf("Next = %v, %v; want [1], true", g, ok)
	}
}

// TestClose: Push fails after Close; Next hands out what was queued, in
// groups, then reports the end; Close twice is harmless and Closing is
// closed.
func TestClose(t *testing.T) {
	q := New[int](0, 10)
	select {
	case <-q.Closing():
		t.Fatal("Closing closed before Close")
	default:
	}
	push(t, q, 1, 10)
	push(t, q, 2, 10)
	q.Close()
	q.Close()
	if q.Push(3, 1) {
		t.Fatal("Push succeeded after Close")
	}
	select {
	case <-q.Closing():
	default:
		t.Fatal("Closing not closed after Close")
	}
	for _, want := range [][]int{{1}, {2}} {
		if g, ok := next(t, q); !ok || !slices.Equal(g, want) {
			t.Fatalf("Next after Close = %v, %v; want %v, true", g, ok, want)
		}
	}
	if g, ok := next(t, q); ok || g != nil {
		t.Fatalf("Next on a closed, empty queue = %v, %v; want nil, false", g, ok)
	}
}

// TestNextWaitsForPush: a Next started on an empty queue returns the
// request pushed later.
func TestNextWaitsForPush(t *testing.T) {
	q := New[int](0, 100)
	ch := start(q)
	push(t, q, 42, 1)
	if g, ok := await(t, ch); !ok || !slices.Equal(g, []int{42}) {
		t.Fatalf("Next = %v, %v; want [42], true", g, ok)
	}
}

// TestConcurrentPushers: requests pushed from many goroutines come out
// exactly once each, every goroutine's in its Push order, and the byte
// accounting ends at zero.
func TestConcurrentPushers(t *testing.T) {
	const pushers, each = 8, 500
	for _, delay := range []time.Duration{0, 50 * time.Microsecond} {
		q := New[int](delay, 64)
		var wg sync.WaitGroup
		for p := range pushers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					q.Push(p*each+i, 1+i%7)
				}
			}()
		}
		done := make(chan [][]int, 1)
		go func() {
			var groups [][]int
			for {
				g, ok := q.Next()
				if !ok {
					done <- groups
					return
				}
				groups = append(groups, g)
			}
		}()
		wg.Wait()
		q.Close()
		var groups [][]int
		select {
		case groups = <-done:
		case <-time.After(waitTimeout):
			t.Fatal("committer did not finish")
		}
		last := make([]int, pushers)
		for p := range last {
			last[p] = -1
		}
		n := 0
		for _, g := range groups {
			if len(g) == 0 {
				t.Fatal("empty group")
			}
			for _, v := range g {
				p, i := v/each, v%each
				if i != last[p]+1 {
					t.Fatalf("pusher %d: request %d after %d", p, i, last[p])
				}
				last[p] = i
				n++
			}
		}
		if n != pushers*each {
			t.Fatalf("%d requests came out, want %d", n, pushers*each)
		}
		q.mu.Lock()
		b, items := q.bytes, len(q.items)
		q.mu.Unlock()
		if b != 0 || items != 0 {
			t.Fatalf("after draining: %d bytes, %d items queued", b, items)
		}
	}
}
