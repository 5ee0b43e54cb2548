package sim

// Time is virtual time in nanoseconds since the start of a run.
type Time = int64

// Virtual time units.
const (
	Microsecond Time = 1000
	Millisecond Time = 1000 * Microsecond
	Second      Time = 1000 * Millisecond
)

// Scheduler is the discrete-event queue of a run: events run in time order,
// ties in the order they were scheduled. Nothing else orders anything.
type Scheduler struct {
	now  Time
	seq  uint64
	q    eventHeap
	runs uint64
}

type event struct {
	at  Time
	seq uint64
	fn  func()
}

// eventHeap is a binary min-heap of events by (at, seq), written out
// rather than through container/heap so that events are not boxed.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].seq < h[j].seq)
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q[i], q[parent] = q[parent], q[i]
		i = parent
	}
}

func (h *eventHeap) pop() event {
	q := *h
	e := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = event{}
	q = q[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(q) {
			break
		}
		m := l
		if r := l + 1; r < len(q) && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return e
}

// Now returns the current virtual time.
func (s *Scheduler) Now() Time { return s.now }

// At schedules fn at time t (not before now).
func (s *Scheduler) At(t Time, fn func()) {
	if t < s.now {
		t = s.now
	}
	s.seq++
	s.q.push(event{at: t, seq: s.seq, fn: fn})
}

// After schedules fn d after now.
func (s *Scheduler) After(d Time, fn func()) { s.At(s.now+d, fn) }

// Pending returns the number of scheduled events.
func (s *Scheduler) Pending() int { return len(s.q) }

// Events returns how many events have run.
func (s *Scheduler) Events() uint64 { return s.runs }

// Step runs the next event if it is due at or before until; it reports
// whether one ran.
func (s *Scheduler) Step(until Time) bool {
	if len(s.q) == 0 || s.q[0].at > until {
		return false
	}
	e := s.q.pop()
	s.now = e.at
	s.runs++
	e.fn()
	return true
}

// RunUntil runs events up to time until (or until stop returns true) and
// leaves the clock at until.
func (s *Scheduler) RunUntil(until Time, stop func() bool) {
	for s.Step(until) {
		if stop != nil && stop() {
			return
		}
	}
	if s.now < until {
		s.now = until
	}
}
