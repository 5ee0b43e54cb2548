package sim

import (
	"encoding/json"
	"fmt"
	"io"
)

// EventKind classifies a trace event.
type EventKind uint8

// Trace event kinds.
const (
	EvSend EventKind = iota + 1
	EvDeliver
	EvDrop
	EvDuplicate
	EvPartition
	EvHeal
	EvClog
	EvCrash
	EvRestart
	EvPause
	EvResume
	EvDiskWrite
	EvDiskSync
	EvDiskError
	EvDiskTorn
	EvRole
	EvCommit
	EvApply
	EvClientCall
	EvClientReturn
	EvMembership
	EvTransfer
	EvPhase
	EvViolation
	EvDiskDamage // A: DamageKind, B: entry index; Text: record kind
	evKindEnd
)

var eventKindNames = [...]string{
	EvSend: "send", EvDeliver: "deliver", EvDrop: "drop", EvDuplicate: "duplicate",
	EvPartition: "partition", EvHeal: "heal", EvClog: "clog", EvCrash: "crash",
	EvRestart: "restart", EvPause: "pause", EvResume: "resume", EvDiskWrite: "disk-write",
	EvDiskSync: "disk-sync", EvDiskError: "disk-error", EvDiskTorn: "disk-torn", EvRole: "role",
	EvCommit: "commit", EvApply: "apply", EvClientCall: "client-call",
	EvClientReturn: "client-return", EvMembership: "membership", EvTransfer: "transfer",
	EvPhase: "phase", EvViolation: "violation", EvDiskDamage: "disk-damage",
}

// String names the kind.
func (k EventKind) String() string {
	if k > 0 && k < evKindEnd {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// MarshalText names the kind in JSON.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Event is one entry of a run's trace. A and B carry kind-specific numbers
// (message type and index, term and commit, client and operation, ...).
type Event struct {
	At   Time      `json:"t"`
	Kind EventKind `json:"kind"`
	Node uint64    `json:"node,omitempty"`
	Peer uint64    `json:"peer,omitempty"`
	A    uint64    `json:"a,omitempty"`
	B    uint64    `json:"b,omitempty"`
	Text string    `json:"text,omitempty"`
}

// Trace hashes every event of a run into one running hash (so two runs can
// be compared in O(1)), and optionally keeps the events, their running
// hashes (to find the first divergence) or writes them as JSON lines.
type Trace struct {
	hash   uint64
	count  uint64
	keep   bool
	events []Event
	hashes []uint64
	keepH  bool
	w      io.Writer
	werr   error
}

// TraceOptions chooses what a Trace keeps besides the hash.
type TraceOptions struct {
	KeepEvents bool      // keep every event in memory
	KeepHashes bool      // keep the running hash after every event
	Writer     io.Writer // write every event as a JSON line
}

// NewTrace returns an empty trace.
func NewTrace(o TraceOptions) *Trace {
	return &Trace{hash: 14695981039346656037, keep: o.KeepEvents, keepH: o.KeepHashes, w: o.Writer}
}

// Add appends e.
func (t *Trace) Add(e Event) {
	h := t.hash
	h = fnvWord(h, uint64(e.At))
	h = fnvWord(h, uint64(e.Kind)|e.Node<<8|e.Peer<<36)
	h = fnvWord(h, e.A)
	h = fnvWord(h, e.B)
	for i := 0; i < len(e.Text); i++ {
		h = (h ^ uint64(e.Text[i])) * 1099511628211
	}
	t.hash = h
	t.count++
	if t.keep {
		t.events = append(t.events, e)
	}
	if t.keepH {
		t.hashes = append(t.hashes, h)
	}
	if t.w != nil && t.werr == nil {
		b, _ := json.Marshal(e)
		b = append(b, '\n')
		_, t.werr = t.w.Write(b)
	}
}

// fnvWord folds a word into the running hash (a multiply-xorshift step:
// cheaper than byte-wise FNV and as sensitive to every bit).
func fnvWord(h, w uint64) uint64 {
	h = (h ^ w) * 0x9e3779b97f4a7c15
	return h ^ h>>29
}

// Hash returns the running hash of every event so far.
func (t *Trace) Hash() uint64 { return t.hash }

// Count returns the number of events.
func (t *Trace) Count() uint64 { return t.count }

// Events returns the kept events (nil unless KeepEvents).
func (t *Trace) Events() []Event { return t.events }

// Hashes returns the kept running hashes (nil unless KeepHashes).
func (t *Trace) Hashes() []uint64 { return t.hashes }

// Err returns the first error writing the trace.
func (t *Trace) Err() error { return t.werr }
