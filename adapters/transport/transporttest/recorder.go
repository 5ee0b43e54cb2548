package transporttest

import (
	"sync"

	"github.com/forge-consensus/consensus/core"
)

// Recorder collects delivered messages; its Deliver method is a
// transport.Config.Deliver. It is safe for concurrent use.
type Recorder struct {
	mu   sync.Mutex
	msgs []core.Message
}

// Deliver records m.
func (r *Recorder) Deliver(m core.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

// Count returns how many messages were delivered.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// All returns a copy of the delivered messages, in order.
func (r *Recorder) All() []core.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]core.Message(nil), r.msgs...)
}
