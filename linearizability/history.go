package linearizability

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Kind is the kind of a key-value operation.
type Kind uint8

// The operations of the key-value store.
const (
	// Get reads a key: Output.Found says whether it was present and
	// Output.Value is its value when it was.
	Get Kind = 1
	// Put sets a key to Input.Value. Its output is not checked.
	Put Kind = 2
	// Delete removes a key: Output.Found says whether it was present.
	Delete Kind = 3
	// CAS sets a key to Input.Value if and only if it is present with the
	// value Input.Expected: Output.OK says whether it did.
	CAS Kind = 4
)

// Valid reports whether k is one of Get, Put, Delete and CAS.
func (k Kind) Valid() bool {
	return k >= Get && k <= CAS
}

// String returns "get", "put", "delete" or "cas", or "Kind(n)" for an
// invalid kind.
func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case Delete:
		return "delete"
	case CAS:
		return "cas"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText encodes k as its name, so that histories read well as JSON.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("linearizability: marshal kind: invalid kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText decodes a kind's name.
func (k *Kind) UnmarshalText(text []byte) error {
	for i := Get; i <= CAS; i++ {
		if string(text) == i.String() {
			*k = i
			return nil
		}
	}
	return fmt.Errorf("linearizability: unmarshal kind: unknown kind %q", text)
}

// Input is what a client asked for.
type Input struct {
	Kind Kind   `json:"kind"`
	Key  string `json:"key"`
	// Value is the value written by Put, and the new value of CAS.
	Value string `json:"value,omitempty"`
	// Expected is the value CAS compares the current value with.
	Expected string `json:"expected,omitempty"`
}

// Output is what the store answered. Which fields are checked depends on the
// kind of the operation:
//
//   - Get: Found, and Value when Found.
//   - Put: nothing.
//   - Delete: Found, whether the key existed.
//   - CAS: OK, whether it swapped. When !OK, Found and Value may describe
//     the current value if the store reported it, but they are not checked.
type Output struct {
	Value string `json:"value,omitempty"`
	Found bool   `json:"found,omitempty"`
	OK    bool   `json:"ok,omitempty"`
}

// Op is one recorded operation.
type Op struct {
	// ID identifies the operation in its history; Recorder.Invoke returns
	// it.
	ID int `json:"id"`
	// Client is the client that issued the operation. Each client is a row
	// of the HTML timeline; numbering clients from 0 keeps it compact.
	Client int    `json:"client"`
	Input  Input  `json:"input"`
	Output Output `json:"output"`
	// Call is when the operation was invoked.
	Call int64 `json:"call"`
	// Return is when its output was received; Return ≥ Call. It is 0 and
	// ignored for an open operation.
	Return int64 `json:"return"`
	// Open says the outcome is unknown: Output is meaningless and the
	// operation may or may not have taken effect, at any time after Call.
	Open bool `json:"open,omitempty"`
}

// Annotation is an event shown on the HTML timeline, such as a leader change,
// a network partition or a crash. Annotations with the same Tag share a row.
// Annotations are not checked.
type Annotation struct {
	// Start and End bound the event; End before Start (or 0) makes it an
	// instant at Start.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	// Tag names the timeline row, e.g. "leader", "partition" or "crash";
	// an empty Tag is shown as "note". The tags "leader", "partition" and
	// "crash" (and others containing these words) get their own colours.
	Tag string `json:"tag"`
	// Text is shown on the timeline, Details in its tool-tip.
	Text    string `json:"text"`
	Details string `json:"details,omitempty"`
}

// History is a recorded history: the operations in invocation order and the
// annotations. It encodes to JSON with encoding/json (for history.json in
// failure bundles) and decodes back with LoadHistory.
type History struct {
	Ops         []Op         `json:"ops"`
	Annotations []Annotation `json:"annotations"`
}

// LoadHistory decodes a JSON history, as written by encoding/json from a
// History, and validates it.
func LoadHistory(r io.Reader) (History, error) {
	var h History
	dec := json.NewDecoder(r)
	if err := dec.Decode(&h); err != nil {
		return History{}, fmt.Errorf("linearizability: load history: %w", err)
	}
	if err := h.Validate(); err != nil {
		return History{}, fmt.Errorf("linearizability: load history: %w", err)
	}
	return h, nil
}

// ErrInvalidHistory is matched (errors.Is) by every error from
// History.Validate.
var ErrInvalidHistory = errors.New("invalid history")

// Validate checks that every operation has a valid kind, that operation IDs
// are unique and that every operation with a known outcome returned no
// earlier than it was invoked.
func (h History) Validate() error {
	ids := make(map[int]struct{}, len(h.Ops))
	for i := range h.Ops {
		op := &h.Ops[i]
		if err := op.validate(); err != nil {
			return fmt.Errorf("op %d (index %d): %w", op.ID, i, err)
		}
		if _, dup := ids[op.ID]; dup {
			return fmt.Errorf("op %d (index %d): %w: duplicate id", op.ID, i, ErrInvalidHistory)
		}
		ids[op.ID] = struct{}{}
	}
	return nil
}

// validate checks what Check relies on.
func (op *Op) validate() error {
	if !op.Input.Kind.Valid() {
		return fmt.Errorf("%w: %v", ErrInvalidHistory, op.Input.Kind)
	}
	if !op.Open && op.Return < op.Call {
		return fmt.Errorf("%w: returns at %d before its call at %d", ErrInvalidHistory, op.Return, op.Call)
	}
	return nil
}
