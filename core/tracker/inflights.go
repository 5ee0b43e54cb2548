package tracker

// inflight is one append message in flight: the index of the last entry it
// carried and the bytes of its entries.
type inflight struct {
	index uint64
	bytes uint64
}

// Inflights is a ring buffer of the append messages in flight to one
// follower: for each, the last entry index it carried and its entry bytes.
// It bounds optimistic replication by the number of messages and, if so
// configured, by their total bytes.
//
// The storage is allocated on the first Add and grown by doubling up to the
// configured size, so a follower that is never streamed to costs nothing.
// Once grown, Add and FreeLE do not allocate.
//
// Use NewInflights to make one.
type Inflights struct {
	buffer   []inflight // ring storage; len(buffer) <= size
	start    int        // position of the oldest message in buffer
	count    int        // messages in flight
	bytes    uint64     // total bytes in flight
	size     int        // maximum messages in flight
	maxBytes uint64     // maximum bytes in flight; 0 means unlimited
}

// initialInflights is the capacity of the buffer allocated by the first Add.
const initialInflights = 4

// NewInflights returns an empty buffer for at most size messages and, unless
// maxBytes is 0, at most maxBytes bytes. It panics if size is not positive.
func NewInflights(size int, maxBytes uint64) *Inflights {
	if size <= 0 {
		panic("tracker: NewInflights with non-positive size")
	}
	return &Inflights{size: size, maxBytes: maxBytes}
}

// Add records a message whose last entry has the given index and whose
// entries take bytes bytes. The index must be greater than that of every
// message in flight. Add panics if the buffer is Full or the index does not
// increase; both are programming errors.
//
// The byte limit is checked before the message is added, so one message may
// take the total past maxBytes; the buffer is Full afterwards.
func (in *Inflights) Add(index, bytes uint64) {
	if in.Full() {
		panic("tracker: Inflights.Add on a full buffer")
	}
	if in.count > 0 && index <= in.buffer[in.pos(in.count-1)].index {
		panic("tracker: Inflights.Add with a non-increasing index")
	}
	if in.count == len(in.buffer) {
		in.grow()
	}
	in.buffer[in.pos(in.count)] = inflight{index: index, bytes: bytes}
	in.count++
	in.bytes += bytes
}

// pos returns the buffer position of the i-th oldest message, for i in
// [0, len(in.buffer)).
func (in *Inflights) pos(i int) int {
	p := in.start + i
	if p >= len(in.buffer) {
		p -= len(in.buffer)
	}
	return p
}

// grow enlarges the full buffer, doubling it up to in.size, and unwraps the
// messages to the front of the new storage.
func (in *Inflights) grow() {
	n := 2 * len(in.buffer)
	if n == 0 {
		n = initialInflights
	}
	n = min(n, in.size)
	buf := make([]inflight, n)
	k := copy(buf, in.buffer[in.start:])
	copy(buf[k:], in.buffer[:in.start])
	in.buffer = buf
	in.start = 0
}

// FreeLE frees every message in flight whose last index is at most index,
// as happens when the follower acknowledges index.
func (in *Inflights) FreeLE(index uint64) {
	for in.count > 0 {
		m := &in.buffer[in.start]
		if m.index > index {
			return
		}
		in.bytes -= m.bytes
		in.count--
		in.start++
		if in.start == len(in.buffer) {
			in.start = 0
		}
	}
	in.start = 0
}

// FreeFirstOne frees the oldest message in flight, if any. A leader uses it
// when a follower answers a heartbeat while the buffer is full: the
// follower is alive, so something was lost, and one more append may go.
func (in *Inflights) FreeFirstOne() {
	if in.count == 0 {
		return
	}
	in.FreeLE(in.buffer[in.start].index)
}

// Full reports whether no more messages may be added: either size messages
// are in flight, or a byte limit is set and the bytes in flight reach it.
func (in *Inflights) Full() bool {
	return in.count == in.size || (in.maxBytes > 0 && in.bytes >= in.maxBytes)
}

// Count returns the number of messages in flight.
func (in *Inflights) Count() int {
	return in.count
}

// Bytes returns the total entry bytes of the messages in flight.
func (in *Inflights) Bytes() uint64 {
	return in.bytes
}

// Reset frees every message in flight. The storage is kept for reuse.
func (in *Inflights) Reset() {
	in.start = 0
	in.count = 0
	in.bytes = 0
}
