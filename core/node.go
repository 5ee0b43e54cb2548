package core

// Node is a Raft node as a pure state machine. It is not safe for
// concurrent use: one goroutine drives it.
type Node struct {
	r *raft
}

type raft struct{}

// New returns a node restored from st (empty for a new node).
func New(cfg Config, st Persisted) (*Node, error) { panic("unimplemented") }

// Tick advances the node's logical clock by one tick.
func (n *Node) Tick() { panic("unimplemented") }

// Step feeds a message received from the network into the node.
func (n *Node) Step(m Message) error { panic("unimplemented") }

// Propose proposes data to be appended to the log.
func (n *Node) Propose(data []byte) error { panic("unimplemented") }

// ProposeConfChange proposes a membership change.
func (n *Node) ProposeConfChange(cc ConfChange) error { panic("unimplemented") }

// ReadIndex requests a linearizable read point, answered in Ready.ReadStates.
func (n *Node) ReadIndex(ctx []byte) error { panic("unimplemented") }

// TransferLeadership starts a transfer of leadership to the voter to.
func (n *Node) TransferLeadership(to uint64) error { panic("unimplemented") }

// StepDown hands leadership to the most up-to-date voter.
func (n *Node) StepDown() error { panic("unimplemented") }

// Campaign starts an election now.
func (n *Node) Campaign() error { panic("unimplemented") }

// Compact records a snapshot of the application state at index and discards
// the log up to it.
func (n *Node) Compact(index uint64, data []byte) error { panic("unimplemented") }

// ReportUnreachable tells the node that a message to id could not be sent.
func (n *Node) ReportUnreachable(id uint64) { panic("unimplemented") }

// ReportSnapshot tells the node whether a snapshot sent to id was installed.
func (n *Node) ReportSnapshot(id uint64, ok bool) { panic("unimplemented") }

// HasReady reports whether Ready would return work.
func (n *Node) HasReady() bool { panic("unimplemented") }

// Ready returns the work pending for the host.
func (n *Node) Ready() Ready { panic("unimplemented") }

// Advance acknowledges that the last Ready has been handled.
func (n *Node) Advance() error { panic("unimplemented") }

// BasicStatus returns the node's state without allocating.
func (n *Node) BasicStatus() BasicStatus { panic("unimplemented") }

// Status returns the node's full status.
func (n *Node) Status() Status { panic("unimplemented") }
