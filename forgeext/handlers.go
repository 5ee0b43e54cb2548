package forgeext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Handler is application state replicated by the cluster: the commands of
// the types it is registered for reach it, committed, in log order, on
// every node. Apply must be deterministic (no clock, randomness, map order
// or I/O): every node must reach the same state from the same commands.
//
// Apply, Snapshot and Restore run on the node's goroutine. To read the
// state from elsewhere, guard it with a mutex; call Service.ReadBarrier
// first for a linearizable read.
type Handler interface {
	// Apply applies a committed command at log index. Its result, or its
	// error, is what Service.Apply returns on the node that proposed it.
	Apply(index uint64, cmd Command) (any, error)
	// Snapshot returns the whole state as bytes.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state with a snapshot's bytes (nil or
	// empty: the empty state).
	Restore(data []byte) error
}

// ErrCommandFailed wraps the error a Handler returned for a command. The
// command was committed: it is in the log, and every node applied it with
// the same outcome.
var ErrCommandFailed = errors.New("consensus: command failed")

// handlers routes application commands to the registered Handlers. It is
// the server's AppMachine.
type handlers struct {
	mu     sync.Mutex
	byName map[string]Handler
	byType map[string]string // command type → handler name
	frozen bool              // the service started: no more registrations
}

// handlerResult is what Apply returns for an application command.
type handlerResult struct {
	v   any
	err error
}

// RegisterHandler registers h, under a name unique to the service, for
// the given command types (not the built-in set, delete and cas). Register
// before the service starts; every node must register the same handlers.
func (s *Service) RegisterHandler(name string, h Handler, types ...string) error {
	if name == "" || h == nil || len(types) == 0 {
		return fmt.Errorf("%w: RegisterHandler needs a name, a handler and command types", ErrInvalidCommand)
	}
	r := &s.handlers
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frozen {
		return fmt.Errorf("consensus: register handler %q: the service has started", name)
	}
	if r.byName == nil {
		r.byName, r.byType = map[string]Handler{}, map[string]string{}
	}
	if _, dup := r.byName[name]; dup {
		return fmt.Errorf("consensus: register handler %q: the name is taken", name)
	}
	for _, t := range types {
		if t == CommandSet || t == CommandDelete || t == CommandCAS || t == "" {
			return fmt.Errorf("%w: register handler %q: %q is a built-in or empty type", ErrInvalidCommand, name, t)
		}
		if other, dup := r.byType[t]; dup {
			return fmt.Errorf("consensus: register handler %q: type %q belongs to %q", name, t, other)
		}
	}
	r.byName[name] = h
	for _, t := range types {
		r.byType[t] = name
	}
	return nil
}

// freeze ends registration and reports whether any handler is registered.
func (r *handlers) freeze() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frozen = true
	return len(r.byName) > 0
}

// has reports whether a command type has a handler.
func (r *handlers) has(typ string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.byType[typ]
	return ok
}

// encodeAppCommand is an application command's payload for the server:
// the type's length, the type, the payload.
func encodeAppCommand(typ string, payload []byte) []byte {
	b := binary.AppendUvarint(make([]byte, 0, 2+len(typ)+len(payload)), uint64(len(typ)))
	b = append(b, typ...)
	return append(b, payload...)
}

// Apply implements server.AppMachine.
func (r *handlers) Apply(index uint64, b []byte) any {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return handlerResult{err: fmt.Errorf("%w: malformed application command", ErrInvalidCommand)}
	}
	typ := string(b[k : k+int(n)])
	payload := b[k+int(n):]
	r.mu.Lock()
	h := r.byName[r.byType[typ]]
	r.mu.Unlock()
	if h == nil {
		return handlerResult{err: fmt.Errorf("%w: no handler for type %q on this node", ErrInvalidCommand, typ)}
	}
	v, err := h.Apply(index, Command{Type: typ, Payload: slices.Clone(payload)})
	return handlerResult{v: v, err: err}
}

// names returns the registered names, sorted.
func (r *handlers) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Snapshot implements server.AppMachine: per handler, in name order, its
// name and its snapshot, both length-prefixed.
func (r *handlers) Snapshot() ([]byte, error) {
	var b []byte
	names := r.names()
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		r.mu.Lock()
		h := r.byName[name]
		r.mu.Unlock()
		data, err := h.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("handler %q: %w", name, err)
		}
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(len(data)))
		b = append(b, data...)
	}
	return b, nil
}

// Restore implements server.AppMachine. A handler missing from the
// snapshot restores the empty state; a snapshot naming a handler that is
// not registered is refused before any handler changes.
func (r *handlers) Restore(data []byte) error {
	parts := map[string][]byte{}
	if len(data) > 0 {
		rest := data
		next := func() ([]byte, error) {
			n, k := binary.Uvarint(rest)
			if k <= 0 || n > uint64(len(rest)-k) {
				return nil, errors.New("consensus: malformed application snapshot")
			}
			v := rest[k : k+int(n)]
			rest = rest[k+int(n):]
			return v, nil
		}
		count, k := binary.Uvarint(rest)
		if k <= 0 || count > uint64(len(rest)) {
			return errors.New("consensus: malformed application snapshot")
		}
		rest = rest[k:]
		for range count {
			name, err := next()
			if err != nil {
				return err
			}
			v, err := next()
			if err != nil {
				return err
			}
			parts[string(name)] = v
		}
		if len(rest) != 0 {
			return errors.New("consensus: malformed application snapshot: trailing bytes")
		}
	}
	names := r.names()
	for name := range parts {
		if !slices.Contains(names, name) {
			return fmt.Errorf("consensus: the snapshot holds state of handler %q, which is not registered here", name)
		}
	}
	for _, name := range names {
		r.mu.Lock()
		h := r.byName[name]
		r.mu.Unlock()
		if err := h.Restore(parts[name]); err != nil {
			return fmt.Errorf("handler %q: %w", name, err)
		}
	}
	return nil
}
