package kv

import (
	"bytes"
	"fmt"
)

// DefaultMaxSessions is the session bound used when Config.MaxSessions is 0.
const DefaultMaxSessions = 4096

// Config configures a Store. Every replica must use the same Config: the
// session bound is part of the deterministic behaviour.
type Config struct {
	// MaxSessions is the number of client sessions kept; 0 (or a negative
	// value) means DefaultMaxSessions. When a command of a new client
	// arrives with the bound reached, the session with the oldest last
	// applied index is evicted (ties: lower ClientID). A client evicted
	// this way loses exactly-once for a retry in flight: the retry is
	// applied again as a new command.
	MaxSessions int
	// ShareSnapshots lets the Store keep its state in its latest snapshot
	// instead of beside it: after Snapshot or AppendSnapshot the Store
	// refers to the returned bytes, and after Restore to the bytes it was
	// given, and keeps in maps only what changed since (looking keys of
	// the snapshot up by binary search). After WriteSnapshot it keeps its
	// own copy of the records written, in chunks, and refers to nothing
	// of what it wrote. The state is then held once, in the snapshot a
	// host keeps anyway or in the Store's chunks, at about 4 bytes per key
	// beyond it. The caller must never modify bytes the Store refers to.
	// A host that writes snapshot bytes to disk and sends them to peers
	// as they are (the node package does), or that streams its snapshots
	// with WriteSnapshot, can set it; one that reuses the buffers given to
	// Restore or returned by Snapshot must not. Answers, hashes and
	// snapshot bytes are the same either way.
	ShareSnapshots bool
}

// Store is the key-value state machine. It is not safe for concurrent use
// (the host loop is single-threaded).
//
// Without sharing every key is in data. With Config.ShareSnapshots the keys
// as of the last snapshot (taken or restored) stay in that snapshot's
// encoded records, the base: a list of chunks of about chunkSize bytes each,
// found by binary search over the chunks' first keys and then over the
// chunk's record offsets; data holds only what changed since (the keys set
// since, which hide the base's), and deleted the keys of the base deleted
// since. A snapshot merges the three into a new base. AppendSnapshot writes
// it into the returned bytes, and the chunks are pieces of them;
// WriteSnapshot copies it into new chunks one at a time while the old ones
// it has passed are let go, so that the state is never held twice. A key
// then costs its record plus 4 bytes of offset, instead of a map entry and
// two allocations beside it.
type Store struct {
	maxSessions int
	share       bool // Config.ShareSnapshots
	chunkSize   int  // share: the size chunks of the base are cut at (defaultChunkSize; tests lower it)
	data        map[string]entry
	chunks      []chunk             // share: the base, in key order (nil: none)
	next        []chunk             // share: during WriteSnapshot, the chunks of the new base written so far
	baseBytes   int                 // share: bytes of the base's records
	deleted     map[string]struct{} // share: keys of the base deleted since (nil: none)
	count       int                 // keys present
	sessions    map[uint64]*session
	lru         sessionHeap // the sessions, by (index, id): lru[0] is evicted first
	applied     uint64
	hash        uint64 // sum of the item hashes of data and sessions
	dedup       uint64
}

// entry is a stored value with its item hash. Stored values are never
// modified in place, so results may share them.
type entry struct {
	value []byte
	hash  uint64
}

// session is the exactly-once state of one client.
type session struct {
	id      uint64
	lastSeq uint64
	index   uint64 // log index of the last applied command
	result  Result // result of lastSeq, Deduplicated false
	hash    uint64 // sessionHash
	pos     int    // position in Store.lru
}

// New returns an empty Store.
func New(cfg Config) *Store {
	maxSessions := cfg.MaxSessions
	if maxSessions <= 0 {
		maxSessions = DefaultMaxSessions
	}
	return &Store{
		maxSessions: maxSessions,
		share:       cfg.ShareSnapshots,
		chunkSize:   defaultChunkSize,
		data:        make(map[string]entry),
		sessions:    make(map[uint64]*session),
	}
}

// Apply applies the committed command cmd at log index and returns its
// Result (as any; the concrete type is Result). Indexes must increase from
// one call to the next; gaps (entries that are not commands) are fine.
//
// cmd may share memory with the Raft log: nothing of it is retained. An
// undecodable or invalid cmd gives Result{Status: StatusBadCommand} and
// leaves the state unchanged; index is still recorded as applied.
//
// With c.Seq > 0 the command belongs to the session of c.ClientID: if c.Seq
// equals the session's last Seq, the cached Result is returned with
// Deduplicated set and nothing changes; if it is lower, the result is
// StatusStaleSeq and nothing changes; otherwise the command is applied and
// the session records (Seq, Result, index). OpGet through the log returns
// the value and is session-tracked too when Seq > 0.
//
// The Value of the returned Result may share memory with the Store and must
// not be modified.
func (s *Store) Apply(index uint64, cmd []byte) any {
	return s.apply(index, cmd)
}

func (s *Store) apply(index uint64, cmd []byte) Result {
	s.applied = index
	var r reader
	c := decodeCommandView(cmd, &r)
	if r.failed() {
		return Result{Status: StatusBadCommand}
	}
	var sess *session
	if c.seq > 0 {
		sess = s.sessions[c.clientID]
		if sess != nil {
			switch {
			case c.seq == sess.lastSeq:
				s.dedup++
				res := sess.result
				res.Deduplicated = true
				return res
			case c.seq < sess.lastSeq:
				return Result{Status: StatusStaleSeq}
			}
		}
	}
	res := s.exec(&c)
	if c.seq > 0 {
		s.record(sess, c.clientID, c.seq, index, res)
	}
	return res
}

// exec applies a decoded command to the data.
func (s *Store) exec(c *commandView) Result {
	old, found := s.lookup(c.key)
	switch c.op {
	case OpGet:
		return Result{Value: old.value, Found: found, OK: true}
	case OpSet:
		s.put(c.key, c.value, old, found)
		return Result{Value: old.value, Found: found, OK: true}
	case OpDelete:
		if found {
			s.remove(c.key, old)
		}
		return Result{Value: old.value, Found: found, OK: true}
	case OpCreate:
		if found {
			return Result{Value: old.value, Found: true}
		}
		s.put(c.key, c.value, old, false)
		return Result{OK: true}
	case OpCAS:
		if !found {
			return Result{}
		}
		if !bytes.Equal(old.value, c.expected) {
			return Result{Value: old.value, Found: true}
		}
		s.put(c.key, c.value, old, true)
		return Result{Value: old.value, Found: true, OK: true}
	}
	// Unreachable: decodeCommandView validates the op.
	return Result{Status: StatusBadCommand}
}

// lookup returns the entry of key and whether it is present.
func (s *Store) lookup(key []byte) (entry, bool) {
	if e, ok := s.data[string(key)]; ok {
		return e, true
	}
	if len(s.chunks) == 0 {
		return entry{}, false
	}
	if len(s.deleted) > 0 {
		if _, ok := s.deleted[string(key)]; ok {
			return entry{}, false
		}
	}
	v, ok := s.baseFind(key)
	if !ok {
		return entry{}, false
	}
	return entry{value: v, hash: dataHash(key, v)}, true
}

// put stores a copy of value under key, replacing old if found.
func (s *Store) put(key, value []byte, old entry, found bool) {
	if found {
		s.hash -= old.hash
	} else {
		s.count++
	}
	e := entry{value: cloneBytes(value), hash: dataHash(key, value)}
	s.data[string(key)] = e
	s.hash += e.hash
}

// remove deletes key, present with entry old.
func (s *Store) remove(key []byte, old entry) {
	delete(s.data, string(key))
	if len(s.chunks) > 0 {
		if _, ok := s.baseFind(key); ok {
			if s.deleted == nil {
				s.deleted = make(map[string]struct{})
			}
			s.deleted[string(key)] = struct{}{}
		}
	}
	s.hash -= old.hash
	s.count--
}

// record stores the outcome of an applied command in the client's session
// (sess, or a new session if nil).
func (s *Store) record(sess *session, clientID, seq, index uint64, res Result) {
	if sess == nil {
		s.evictFor(1)
		sess = &session{id: clientID}
		s.sessions[clientID] = sess
		s.lru.push(sess)
	} else {
		s.hash -= sess.hash
	}
	sess.lastSeq, sess.index, sess.result = seq, index, res
	sess.hash = sessionHash(sess)
	s.hash += sess.hash
	s.lru.fix(sess.pos)
}

// evictFor evicts sessions, oldest first, until n more fit.
func (s *Store) evictFor(n int) {
	for len(s.lru) > 0 && len(s.lru)+n > s.maxSessions {
		old := s.lru.popMin()
		delete(s.sessions, old.id)
		s.hash -= old.hash
	}
}

// Query answers a read-only command, which must be an OpGet encoded with
// EncodeCommand, against the current state. It returns a Result (as any;
// the concrete type is Result) whose Value the caller owns, or an error
// wrapping ErrInvalidCommand or ErrNotReadOnly. ClientID and Seq are
// ignored: queries are not session-tracked.
func (s *Store) Query(q []byte) (any, error) {
	var r reader
	c := decodeCommandView(q, &r)
	if err := r.err("query", ErrInvalidCommand); err != nil {
		return nil, err
	}
	if c.op != OpGet {
		return nil, fmt.Errorf("kv: query: %w: op %s", ErrNotReadOnly, c.op)
	}
	e, found := s.lookup(c.key)
	return Result{Value: cloneBytes(e.value), Found: found, OK: true}, nil
}

// Hash returns a 64-bit hash of the state (data and sessions, not the
// applied index), maintained incrementally, so that replicas at the same
// applied index can be compared cheaply. Equal states have equal hashes;
// Restore(Snapshot()) preserves it. The hash is not cryptographic.
func (s *Store) Hash() uint64 { return s.hash }

// Applied returns the last index given to Apply, or the applied index of a
// snapshot restored since.
func (s *Store) Applied() uint64 { return s.applied }

// Get returns a copy of the value of key and whether it is present: a local
// read, with no consistency guarantee.
func (s *Store) Get(key string) ([]byte, bool) {
	e, ok := s.lookup([]byte(key))
	return cloneBytes(e.value), ok
}

// Len returns the number of keys.
func (s *Store) Len() int { return s.count }

// Sessions returns the number of client sessions kept.
func (s *Store) Sessions() int { return len(s.sessions) }

// Session returns the last applied Seq of a client and the log index it was
// applied at, and whether the client has a session.
func (s *Store) Session(clientID uint64) (lastSeq, index uint64, ok bool) {
	sess := s.sessions[clientID]
	if sess == nil {
		return 0, 0, false
	}
	return sess.lastSeq, sess.index, true
}

// Deduplicated returns how many Apply calls were answered from a session
// cache. It is a local counter, not part of the replicated state: Snapshot
// does not include it and Restore does not change it.
func (s *Store) Deduplicated() uint64 { return s.dedup }

// ---- session heap ----

// sessionHeap is a binary min-heap of sessions by (index, id).
type sessionHeap []*session

func sessionLess(a, b *session) bool {
	if a.index != b.index {
		return a.index < b.index
	}
	return a.id < b.id
}

func (h *sessionHeap) push(s *session) {
	s.pos = len(*h)
	*h = append(*h, s)
	h.up(s.pos)
}

func (h *sessionHeap) popMin() *session {
	old := *h
	n := len(old) - 1
	first := old[0]
	h.swap(0, n)
	old[n] = nil
	*h = old[:n]
	if n > 0 {
		h.down(0)
	}
	first.pos = -1
	return first
}

// fix restores the heap order after the session at i changed.
func (h sessionHeap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h sessionHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos = i
	h[j].pos = j
}

func (h sessionHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !sessionLess(h[i], h[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down sifts the session at i down and reports whether it moved.
func (h sessionHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && sessionLess(h[r], h[l]) {
			m = r
		}
		if !sessionLess(h[m], h[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}
