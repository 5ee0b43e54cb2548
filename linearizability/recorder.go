package linearizability

import (
	"fmt"
	"sync"
)

// opStatus is where a recorded operation stands.
type opStatus uint8

const (
	pending  opStatus = iota // invoked, not yet returned or failed
	returned                 // completed with a known output
	failed                   // outcome unknown
)

// Recorder collects a history. It is safe for concurrent use.
//
// Recording mistakes — an unknown id, completing an operation twice, a
// return before the call, an invalid kind — are bugs in the test harness and
// panic.
type Recorder struct {
	mu     sync.Mutex
	ops    []Op
	status []opStatus
	notes  []Annotation
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{}
}

// Invoke records that client invoked in at time t and returns the
// operation's id, for Return or Fail.
func (r *Recorder) Invoke(client int, in Input, t int64) int {
	if !in.Kind.Valid() {
		panic(fmt.Sprintf("linearizability: Invoke: invalid kind %v", in.Kind))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	id := len(r.ops)
	r.ops = append(r.ops, Op{ID: id, Client: client, Input: in, Call: t})
	r.status = append(r.status, pending)
	return id
}

// Return records that operation id completed at time t with output out.
func (r *Recorder) Return(id int, out Output, t int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mustBePending("Return", id)
	op := &r.ops[id]
	if t < op.Call {
		panic(fmt.Sprintf("linearizability: Return(%d): returns at %d before its call at %d", id, t, op.Call))
	}
	op.Output = out
	op.Return = t
	r.status[id] = returned
}

// Fail records that the outcome of operation id is unknown: the request
// timed out, the client gave up or something crashed. The operation stays
// open: it may take effect at any time after its call, or never. Failing an
// operation again does nothing. An operation that is neither returned nor
// failed when History is called is open too.
func (r *Recorder) Fail(id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id >= 0 && id < len(r.status) && r.status[id] == failed {
		return
	}
	r.mustBePending("Fail", id)
	r.ops[id].Open = true
	r.status[id] = failed
}

// mustBePending panics unless id is a pending operation.
func (r *Recorder) mustBePending(method string, id int) {
	if id < 0 || id >= len(r.ops) {
		panic(fmt.Sprintf("linearizability: %s(%d): unknown operation", method, id))
	}
	switch r.status[id] {
	case returned:
		panic(fmt.Sprintf("linearizability: %s(%d): operation already returned", method, id))
	case failed:
		panic(fmt.Sprintf("linearizability: %s(%d): operation already failed", method, id))
	}
}

// Annotate records an event to show on the HTML timeline.
func (r *Recorder) Annotate(a Annotation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, a)
}

// Len returns the number of operations invoked so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// History returns a copy of what has been recorded so far. Operations still
// pending are open in it.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := History{
		Ops:         make([]Op, len(r.ops)),
		Annotations: make([]Annotation, len(r.notes)),
	}
	copy(h.Ops, r.ops)
	copy(h.Annotations, r.notes)
	for i, s := range r.status {
		if s == pending {
			h.Ops[i].Open = true
		}
	}
	return h
}
