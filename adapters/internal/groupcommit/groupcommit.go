// Package groupcommit is the queue behind the group commit of the durable
// storage adapters (adapters/wal, adapters/pebble).
//
// Any goroutine queues requests with Push, each with an estimate of the
// bytes it will write. One committer goroutine takes them off with Next, a
// group at a time, writes the group with one fsync and only then completes
// its requests. The queue decides only what goes into a group, in Push
// order:
//
//   - Next waits for a first request (or Close).
//   - With a maximum delay d > 0 it then waits up to d for more, ending the
//     wait early once the queued bytes reach the byte limit or on Close.
//   - It takes requests off the front while the group is under the byte
//     limit; the first request is always taken, however large.
//
// After Close, Push refuses requests and Next hands out what is still
// queued, then reports the end. The queue does no I/O and calls no
// callbacks: writing, fsyncing and completing are the committer's.
package groupcommit

import (
	"sync"
	"time"
)

// Queue is a first-in first-out queue of requests of type T, taken off in
// groups. Push and Close may be called from any goroutine; Next from one
// goroutine at a time (the committer).
type Queue[T any] struct {
	maxDelay time.Duration
	maxBytes int
	signal   chan struct{} // a request was queued (capacity 1)
	closing  chan struct{} // closed by Close

	mu     sync.Mutex
	items  []item[T]
	bytes  int // the sum of the sizes of items
	closed bool
}

// item is one queued request and its estimated size in bytes.
type item[T any] struct {
	v    T
	size int
}

// New returns an empty queue whose groups are gathered for up to maxDelay
// (0: no waiting, a group is whatever is queued when Next is called) and
// hold requests until their sizes add up to maxBytes (0 or less: one
// request a group).
func New[T any](maxDelay time.Duration, maxBytes int) *Queue[T] {
	return &Queue[T]{
		maxDelay: maxDelay,
		maxBytes: maxBytes,
		signal:   make(chan struct{}, 1),
		closing:  make(chan struct{}),
	}
}

// Push queues v, whose write is estimated at size bytes, and wakes the
// committer. It returns false, queuing nothing, once the queue is closed.
func (q *Queue[T]) Push(v T, size int) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, item[T]{v: v, size: size})
	q.bytes += size
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return true
}

// Close makes later Pushes fail and ends Next's waits; Next still hands
// out what is queued. Calling Close again does nothing.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	q.mu.Unlock()
	close(q.closing)
}

// Closing returns a channel closed by Close: the committer selects on it
// to give up waits of its own (for disk space, say) when the store closes.
func (q *Queue[T]) Closing() <-chan struct{} { return q.closing }

// Next waits for queued requests and takes the next group off the queue,
// in Push order (see the package documentation for what makes a group). It
// returns false once the queue is closed and empty.
func (q *Queue[T]) Next() ([]T, bool) {
	for {
		q.mu.Lock()
		n, closed := len(q.items), q.closed
		q.mu.Unlock()
		if n > 0 {
			break
		}
		if closed {
			return nil, false
		}
		select {
		case <-q.signal:
		case <-q.closing:
		}
	}
	if q.maxDelay > 0 {
		q.gather()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	size, k := 0, 0
	for k < len(q.items) && (k == 0 || size < q.maxBytes) {
		size += q.items[k].size
		k++
	}
	group := make([]T, k)
	for i := range group {
		group[i] = q.items[i].v
	}
	clear(q.items[:k])
	q.items = q.items[k:]
	if len(q.items) == 0 {
		q.items = nil
	}
	q.bytes -= size
	return group, true
}

// gather waits up to maxDelay for the queued bytes to reach maxBytes,
// returning early on Close.
func (q *Queue[T]) gather() {
	timer := time.NewTimer(q.maxDelay)
	defer timer.Stop()
	for {
		q.mu.Lock()
		full := q.bytes >= q.maxBytes || q.closed
		q.mu.Unlock()
		if full {
			return
		}
		select {
		case <-q.signal:
		case <-timer.C:
			return
		case <-q.closing:
			return
		}
	}
}
