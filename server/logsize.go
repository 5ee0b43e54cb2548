package server

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// sizedStorage is the node's storage, of any type, counting the size of
// the log it holds for the forge_consensus_log_size metric: the entries not
// yet compacted away, each counted at its encoded size (entrySize). It
// follows the updates that complete without error, in the order
// node.MemoryStorage applies them, with work in proportion to the entries
// each adds or removes (never a scan of the log), and 4 bytes of memory
// per stored entry.
type sizedStorage struct {
	node.Storage

	bytes atomic.Uint64 // the sum of sizes, read by scrapes

	mu    sync.Mutex
	first uint64   // index of the entry sizes[0] is of
	sizes []uint32 // encoded size of each stored entry, in index order
}

func newSizedStorage(s node.Storage) *sizedStorage { return &sizedStorage{Storage: s} }

// nodeStorage returns s as the node's storage: a node.SnapshotStore too
// when the storage it counts for is one, so that the node streams its
// snapshots to it.
func (s *sizedStorage) nodeStorage() node.Storage {
	if ss, ok := s.Storage.(node.SnapshotStore); ok {
		return sizedSnapshotStore{s, ss}
	}
	return s
}

// sizedSnapshotStore is a sizedStorage whose storage is a
// node.SnapshotStore.
type sizedSnapshotStore struct {
	*sizedStorage
	snaps node.SnapshotStore
}

// CreateSnapshot creates a snapshot file in the storage.
func (s sizedSnapshotStore) CreateSnapshot() (node.SnapshotFile, error) {
	return s.snaps.CreateSnapshot()
}

// SnapshotData reads a stored snapshot's data back from the storage.
func (s sizedSnapshotStore) SnapshotData(meta core.SnapshotMeta) ([]byte, error) {
	return s.snaps.SnapshotData(meta)
}

// LogBytes returns the encoded size of the stored log entries, as of the
// last Load or completed Save.
func (s *sizedStorage) LogBytes() uint64 { return s.bytes.Load() }

// Load loads the storage and counts the entries it returns.
func (s *sizedStorage) Load() (core.Persisted, error) {
	p, err := s.Storage.Load()
	if err != nil {
		return p, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes, s.first = nil, 0
	var total uint64
	if len(p.Entries) > 0 {
		s.first = p.Entries[0].Index
		s.sizes = make([]uint32, len(p.Entries))
		for i := range p.Entries {
			s.sizes[i] = entrySize(&p.Entries[i])
			total += uint64(s.sizes[i])
		}
	}
	s.bytes.Store(total)
	return p, nil
}

// Save saves u and, once it is written without error, counts the change
// it made to the log before calling done (u is unchanged until then).
func (s *sizedStorage) Save(u *node.Update, done func(error)) {
	s.Storage.Save(u, func(err error) {
		if err == nil {
			s.apply(u)
		}
		done(err)
	})
}

// apply counts the change u made to the stored entries.
func (s *sizedStorage) apply(u *node.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := s.bytes.Load()
	if u.Snapshot != nil {
		s.sizes, total = s.sizes[:0], 0
	}
	if u.LocalSnapshot != nil && u.CompactTo >= s.first && len(s.sizes) > 0 {
		k := min(u.CompactTo-s.first+1, uint64(len(s.sizes)))
		total -= sum(s.sizes[:k])
		s.sizes = s.sizes[k:]
		s.first += k
	}
	if len(u.Entries) > 0 {
		i := u.Entries[0].Index
		switch {
		case len(s.sizes) == 0 || i < s.first:
			s.sizes, total, s.first = s.sizes[:0], 0, i
		case i-s.first < uint64(len(s.sizes)):
			k := i - s.first
			total -= sum(s.sizes[k:])
			s.sizes = s.sizes[:k]
		}
		for k := range u.Entries {
			n := entrySize(&u.Entries[k])
			s.sizes = append(s.sizes, n)
			total += uint64(n)
		}
	}
	if len(s.sizes) == 0 {
		s.sizes = nil // let go of an array emptied by compaction
	}
	s.bytes.Store(total)
}

func sum(sizes []uint32) uint64 {
	var t uint64
	for _, n := range sizes {
		t += uint64(n)
	}
	return t
}

// entrySize is the encoded size of e that the log size counts: its data,
// and its term, index, data length (varints) and type (a byte), as the
// wire protocol encodes an entry.
func entrySize(e *core.Entry) uint32 {
	n := uvarintLen(e.Term) + uvarintLen(e.Index) + 1 + uvarintLen(uint64(len(e.Data))) + uint64(len(e.Data))
	return uint32(min(n, math.MaxUint32))
}

func uvarintLen(v uint64) uint64 { return uint64(bits.Len64(v|1)+6) / 7 }
