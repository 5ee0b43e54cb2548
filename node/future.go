package node

import (
	"errors"
	"fmt"
)

// Errors that resolve a Future.
var (
	// ErrNotLeader is matched (errors.Is) by every *NotLeaderError.
	ErrNotLeader = errors.New("node: not the leader")
	// ErrDropped means the request was refused before it entered the log
	// (or before a read point was taken): it certainly had no effect. The
	// error wraps the core's reason.
	ErrDropped = errors.New("node: request dropped")
	// ErrTimeout means the request did not complete within its time-out.
	// A timed-out proposal may still commit: its outcome is unknown.
	ErrTimeout = errors.New("node: request timed out")
	// ErrStopped means the node stopped (shut down, crashed or failed)
	// before the request completed. A stopped proposal may still commit.
	ErrStopped = errors.New("node: stopped")
	// ErrStorage means a storage write failed and the node stopped.
	ErrStorage = errors.New("node: storage failed")
	// ErrNoSpace means the node refused a write because its storage is
	// (nearly) out of space (see Config.AdmitWrite). The write certainly
	// did not happen; the node keeps serving reads and takes writes again
	// once space returns.
	ErrNoSpace = errors.New("node: no space left on device")
	// ErrLeaseReadsDisabled means a lease read was asked of a node whose
	// Config.LeaseReads is off.
	ErrLeaseReadsDisabled = errors.New("node: lease reads are disabled")
)

// NotLeaderError says a request needs the leader and this node is not it.
// LeaderID is the leader this node knows of (0 if none) and Address its
// address when Config.PeerAddress knows it.
type NotLeaderError struct {
	LeaderID uint64
	Address  string
}

// Error describes the error and names the leader when known.
func (e *NotLeaderError) Error() string {
	switch {
	case e.LeaderID == 0:
		return "node: not the leader (leader unknown)"
	case e.Address == "":
		return fmt.Sprintf("node: not the leader (leader is %d)", e.LeaderID)
	}
	return fmt.Sprintf("node: not the leader (leader is %d at %s)", e.LeaderID, e.Address)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Future is the eventual result of a proposal or read. It resolves exactly
// once. A Future is resolved by the goroutine that drives the node; Done
// lets other goroutines wait for it.
type Future struct {
	done   bool
	result any
	err    error
	ch     chan struct{}
	notify func(*Future)
}

// Resolved reports whether the future has its result.
func (f *Future) Resolved() bool { return f.done }

// Result returns the result and error. Before the future resolves both are
// nil; check Resolved or wait on Done first.
func (f *Future) Result() (any, error) { return f.result, f.err }

// Err returns the error the future resolved with.
func (f *Future) Err() error { return f.err }

// OnResolve arranges for fn to run (on the driving goroutine) when the
// future resolves, or at once if it already has. It replaces any earlier
// function.
func (f *Future) OnResolve(fn func(*Future)) {
	if f.done {
		fn(f)
		return
	}
	f.notify = fn
}

// Done returns a channel closed when the future resolves, for a host that
// waits from another goroutine. Call it on the driving goroutine (for
// instance before handing the future over): it creates the channel.
func (f *Future) Done() <-chan struct{} {
	if f.ch == nil {
		f.ch = make(chan struct{})
		if f.done {
			close(f.ch)
		}
	}
	return f.ch
}

func (f *Future) resolve(result any, err error) {
	if f.done {
		return
	}
	f.done, f.result, f.err = true, result, err
	if f.ch != nil {
		close(f.ch)
	}
	if f.notify != nil {
		fn := f.notify
		f.notify = nil
		fn(f)
	}
}

func resolved(result any, err error) *Future {
	return &Future{done: true, result: result, err: err}
}
