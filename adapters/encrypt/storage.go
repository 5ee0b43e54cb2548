package encrypt

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Options configure an encrypted storage.
type Options struct {
	// Dir is the backend's data directory, where the marker file is kept.
	// Empty for a backend that keeps nothing on disk (memory): the data
	// keys then use a salt drawn at Open.
	Dir string
	// Key is the active key: every record written is sealed with it.
	Key Key
	// OldKeys are keys records may still be sealed with (from before a
	// rotation): read, never written with.
	OldKeys []Key
	// NoSync does not fsync the marker file (UNSAFE, as the backend's own
	// option).
	NoSync bool
	// Logger receives warnings (nil discards them).
	Logger *slog.Logger
}

// Store is an encrypted node.Storage; it is also a node.SnapshotStore when
// the backend is one.
type Store interface {
	node.Storage
	// Close closes the backend.
	Close() error
	// Usage says which keys the stored records use.
	Usage() Usage
	// SpaceErr is the backend's SpaceErr, if it has one (nil otherwise).
	SpaceErr() error
}

// Open checks dir against the keys (Options), then opens the backend with
// openBackend and returns it wrapped. A data directory that holds data
// but no marker (written without encryption), whose marker lists none of
// the keys (a wrong key), or lists a key that is not configured (a missing
// key, ErrMissingKey), is refused with an ErrKey error before the backend
// is opened: nothing is read or written.
func Open(opts Options, openBackend func() (node.Storage, error)) (Store, error) {
	for _, k := range opts.OldKeys {
		if k.id == opts.Key.id {
			return nil, fmt.Errorf("%w: key %s is both the active key and an old key", ErrKey, k.id)
		}
	}
	var m *marker
	salt := make([]byte, 32)
	if opts.Dir != "" {
		var err error
		if m, err = prepare(opts.Dir, opts.Key, opts.OldKeys, opts.NoSync); err != nil {
			return nil, err
		}
		salt = m.Salt
	} else {
		rand.Read(salt)
	}
	kr, err := newKeyring(opts.Key, opts.OldKeys, salt)
	if err != nil {
		return nil, err
	}
	inner, err := openBackend()
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Storage{inner: inner, kr: kr, opts: opts, marker: m}
	kr.epoch = epochSource(s.startEpoch)
	if ss, ok := inner.(node.SnapshotStore); ok {
		return &SnapshotStorage{Storage: s, snaps: ss}, nil
	}
	return s, nil
}

// Storage is an encrypted node.Storage over any backend (see the package
// documentation).
type Storage struct {
	inner  node.Storage
	kr     *keyring
	opts   Options
	marker *marker // nil without Dir

	// markerMu serializes the marker's rewrites (and guards marker).
	markerMu sync.Mutex

	mu       sync.Mutex
	loaded   bool   // Load succeeded: snap and runs describe every stored record
	maxEpoch uint32 // the highest epoch of a record Load read
	snap     *SnapshotUsage
	runs     []EntryRange
}

// SnapshotStorage is a Storage whose backend is a node.SnapshotStore: the
// snapshot files it creates hold ciphertext.
type SnapshotStorage struct {
	*Storage
	snaps node.SnapshotStore
}

var (
	_ node.SnapshotStore = (*SnapshotStorage)(nil)
	_ Store              = (*SnapshotStorage)(nil)
	_ Store              = (*Storage)(nil)
)

// startEpoch records, durably, the epoch of this process's nonces before
// their first use: one more than the marker's epoch and than any epoch a
// loaded record used. It also adds the active key to the marker's keys
// (and, after a Load, drops the keys no stored record uses).
func (s *Storage) startEpoch() (uint32, error) {
	if s.marker == nil {
		return 1, nil // a salt of this process's own: no nonce was ever used with these data keys
	}
	s.markerMu.Lock()
	defer s.markerMu.Unlock()
	s.mu.Lock()
	ep := max(s.marker.Epoch, s.maxEpoch)
	keys := s.keysInUse(s.marker.Keys)
	s.mu.Unlock()
	if ep == math.MaxUint32 {
		return 0, errors.New("encrypt: nonce epochs exhausted in this data directory; rotate the key into a fresh directory")
	}
	m := *s.marker
	m.Epoch = ep + 1
	m.Keys = keys
	if id := s.opts.Key.id.String(); !slices.Contains(m.Keys, id) {
		m.Keys = append(m.Keys, id)
	}
	if err := writeMarker(s.opts.Dir, &m, s.opts.NoSync); err != nil {
		return 0, err
	}
	s.setMarker(&m)
	return m.Epoch, nil
}

// keysInUse returns the keys of listed that a stored record may use: all
// of them before a Load, else those some record uses and the active key.
// s.mu is held.
func (s *Storage) keysInUse(listed []string) []string {
	if !s.loaded {
		return slices.Clone(listed)
	}
	active := s.kr.active.String()
	var out []string
	for _, k := range listed {
		used := k == active || (s.snap != nil && s.snap.Key == k) ||
			slices.ContainsFunc(s.runs, func(r EntryRange) bool { return r.Key == k })
		if used {
			out = append(out, k)
		}
	}
	return out
}

// retireKeys rewrites the marker without the keys no stored record uses
// any more, once the Save that dropped their last record is durable. A
// failure leaves them listed, which is safe: the next open asks for them,
// and the first write after it lists only the keys in use.
func (s *Storage) retireKeys() {
	s.markerMu.Lock()
	defer s.markerMu.Unlock()
	s.mu.Lock()
	keys := s.keysInUse(s.marker.Keys)
	s.mu.Unlock()
	if len(keys) == len(s.marker.Keys) {
		return
	}
	m := *s.marker
	m.Keys = keys
	if err := writeMarker(s.opts.Dir, &m, s.opts.NoSync); err != nil {
		s.opts.Logger.Warn("encrypt: cannot drop keys no longer in use from the marker file; the next start asks for them",
			"dir", s.opts.Dir, "err", err)
		return
	}
	s.setMarker(&m)
	s.opts.Logger.Info("encrypt: keys no longer in use", "dir", s.opts.Dir, "keys_in_use", strings.Join(keys, ", "))
}

// Close closes the backend if it is an io.Closer.
func (s *Storage) Close() error {
	if c, ok := s.inner.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// SpaceErr returns the backend's SpaceErr, or nil if it has none.
func (s *Storage) SpaceErr() error {
	if r, ok := s.inner.(interface{ SpaceErr() error }); ok {
		return r.SpaceErr()
	}
	return nil
}

// Load loads the backend's state and decrypts it. A record sealed with a
// key that is not configured is an ErrKey error, one that does not
// authenticate (damaged, moved, forged) an ErrCorrupt one.
func (s *Storage) Load() (core.Persisted, error) {
	p, err := s.inner.Load()
	if err != nil {
		return p, err
	}
	out := core.Persisted{HardState: p.HardState}
	var maxEp uint32
	var snap *SnapshotUsage
	if sn := p.Snapshot; sn != nil {
		out.Snapshot = &core.Snapshot{Meta: sn.Meta, Data: sn.Data}
		if !sn.IsEmpty() && sn.Data != nil {
			pt, id, err := s.kr.openSnapshot(sn.Data, sn.Meta.Index, sn.Meta.Term)
			if err != nil {
				return core.Persisted{}, fmt.Errorf("encrypt: load%s: %w", s.where(), err)
			}
			if pt == nil {
				pt = []byte{}
			}
			out.Snapshot.Data = pt
			snap = &SnapshotUsage{Index: sn.Meta.Index, Term: sn.Meta.Term, Key: id.String()}
			if len(sn.Data) >= snapHeader+frameHeader {
				maxEp = binary.BigEndian.Uint32(sn.Data[snapHeader+5:])
			}
		}
	}
	if len(p.Entries) > 0 {
		out.Entries = make([]core.Entry, len(p.Entries))
	}
	var runs []EntryRange
	for i, e := range p.Entries {
		pt, id, err := s.kr.openEntry(&e)
		if err != nil {
			return core.Persisted{}, fmt.Errorf("encrypt: load%s: %w", s.where(), err)
		}
		maxEp = max(maxEp, binary.BigEndian.Uint32(e.Data[5:9]))
		e.Data = pt
		out.Entries[i] = e
		runs = addRun(runs, e.Index, e.Index, id.String())
	}
	s.mu.Lock()
	s.maxEpoch, s.snap, s.runs, s.loaded = max(s.maxEpoch, maxEp), snap, runs, true
	s.mu.Unlock()
	return out, nil
}

// where names the data directory in errors, if there is one.
func (s *Storage) where() string {
	if s.opts.Dir == "" {
		return ""
	}
	return " from " + s.opts.Dir
}

// addRun appends the entries first..last, sealed with key, to runs.
func addRun(runs []EntryRange, first, last uint64, key string) []EntryRange {
	if n := len(runs); n > 0 && runs[n-1].Key == key && runs[n-1].Last+1 == first {
		runs[n-1].Last = last
		return runs
	}
	return append(runs, EntryRange{Key: key, First: first, Last: last})
}

// Save seals u's entries and snapshot data with the active key and saves
// the result in the backend. The hard state is saved as it is (see the
// package documentation).
func (s *Storage) Save(u *node.Update, done func(error)) {
	eu, err := s.seal(u)
	if err != nil {
		if u.LocalSnapshotFile != nil {
			u.LocalSnapshotFile.Abort()
		}
		done(fmt.Errorf("encrypt: save: %w", err))
		return
	}
	s.inner.Save(eu, func(err error) {
		if err == nil && s.track(u) {
			s.retireKeys()
		}
		done(err)
	})
}

func (s *Storage) seal(u *node.Update) (*node.Update, error) {
	eu := *u
	if u.Snapshot != nil {
		d, err := s.kr.sealSnapshot(u.Snapshot.Data, u.Snapshot.Meta.Index, u.Snapshot.Meta.Term)
		if err != nil {
			return nil, err
		}
		eu.Snapshot = &core.Snapshot{Meta: u.Snapshot.Meta, Data: d}
	}
	if ls := u.LocalSnapshot; ls != nil {
		if u.LocalSnapshotFile != nil {
			f, ok := u.LocalSnapshotFile.(*snapFile)
			if !ok || f.owner != s {
				return nil, errors.New("a local snapshot file not created by this storage's CreateSnapshot")
			}
			if err := f.finish(ls.Meta.Index, ls.Meta.Term); err != nil {
				return nil, fmt.Errorf("snapshot file: %w", err)
			}
			eu.LocalSnapshotFile = f.inner
		} else {
			d, err := s.kr.sealSnapshot(ls.Data, ls.Meta.Index, ls.Meta.Term)
			if err != nil {
				return nil, err
			}
			eu.LocalSnapshot = &core.Snapshot{Meta: ls.Meta, Data: d}
		}
	}
	if len(u.Entries) > 0 {
		eu.Entries = make([]core.Entry, len(u.Entries))
		n := 0
		for _, e := range u.Entries {
			n += entryHeader + len(e.Data) + tagSize
		}
		buf := make([]byte, n) // one allocation for the batch
		for i, e := range u.Entries {
			k := entryHeader + len(e.Data) + tagSize
			d, err := s.kr.sealEntryInto(buf[:0:k], &e)
			if err != nil {
				return nil, err
			}
			buf = buf[k:]
			e.Data = d
			eu.Entries[i] = e
		}
	}
	return &eu, nil
}

// track follows a completed update in the key usage, as
// node.MemoryStorage applies it, and reports whether the marker lists a
// key no stored record uses any more.
func (s *Storage) track(u *node.Update) (retire bool) {
	key := s.kr.active.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if s.marker != nil && (u.Snapshot != nil || u.LocalSnapshot != nil || len(u.Entries) > 0) {
			retire = len(s.keysInUse(s.markerKeys())) < len(s.markerKeys())
		}
	}()
	if sn := u.Snapshot; sn != nil {
		s.snap = &SnapshotUsage{Index: sn.Meta.Index, Term: sn.Meta.Term, Key: key}
		s.runs = nil
	}
	if ls := u.LocalSnapshot; ls != nil {
		s.snap = &SnapshotUsage{Index: ls.Meta.Index, Term: ls.Meta.Term, Key: key}
		runs := s.runs[:0]
		for _, r := range s.runs {
			if r.Last <= u.CompactTo {
				continue
			}
			r.First = max(r.First, u.CompactTo+1)
			runs = append(runs, r)
		}
		s.runs = runs
	}
	if len(u.Entries) > 0 {
		first, last := u.Entries[0].Index, u.Entries[len(u.Entries)-1].Index
		runs := s.runs[:0]
		for _, r := range s.runs {
			if r.First >= first {
				continue
			}
			r.Last = min(r.Last, first-1)
			runs = append(runs, r)
		}
		s.runs = addRun(runs, first, last, key)
	}
	return false // set by the deferred check
}

// markerKeys returns the marker's keys. s.mu is held (marker is replaced
// under both markerMu and mu, never changed in place).
func (s *Storage) markerKeys() []string {
	return s.marker.Keys
}

// setMarker replaces the marker; markerMu is held.
func (s *Storage) setMarker(m *marker) {
	s.mu.Lock()
	s.marker = m
	s.mu.Unlock()
}

// Usage says which keys the stored records use.
type Usage struct {
	// Active is the ID of the key new records are sealed with.
	Active string `json:"active"`
	// Configured lists the IDs of every configured key, the active one
	// first.
	Configured []string `json:"configured"`
	// InUse lists, sorted, the IDs of the keys some stored record is
	// sealed with. A configured key not listed here is no longer needed.
	InUse []string `json:"in_use"`
	// Snapshot is the stored snapshot's key, nil without a snapshot.
	Snapshot *SnapshotUsage `json:"snapshot,omitempty"`
	// Entries are the stored entries, in runs of one key.
	Entries []EntryRange `json:"entries"`
}

// SnapshotUsage is the key of a stored snapshot.
type SnapshotUsage struct {
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	Key   string `json:"key"`
}

// EntryRange is a run of stored entries sealed with one key.
type EntryRange struct {
	Key   string `json:"key"`
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// Usage returns the key usage as of the last Load and the Saves completed
// since.
func (s *Storage) Usage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := Usage{Active: s.kr.active.String(), Entries: slices.Clone(s.runs)}
	if u.Entries == nil {
		u.Entries = []EntryRange{}
	}
	u.Configured = []string{u.Active}
	for _, k := range s.opts.OldKeys {
		u.Configured = append(u.Configured, k.id.String())
	}
	in := map[string]bool{}
	if s.snap != nil {
		sn := *s.snap
		u.Snapshot = &sn
		in[sn.Key] = true
	}
	for _, r := range s.runs {
		in[r.Key] = true
	}
	u.InUse = []string{}
	for k := range in {
		u.InUse = append(u.InUse, k)
	}
	sort.Strings(u.InUse)
	return u
}

// CreateSnapshot returns a new snapshot file of the backend that receives
// the data encrypted, chunk by chunk.
func (s *SnapshotStorage) CreateSnapshot() (node.SnapshotFile, error) {
	f, err := s.snaps.CreateSnapshot()
	if err != nil {
		return nil, err
	}
	sealer, hdr := newSnapSealer(s.kr)
	sf := &snapFile{owner: s.Storage, inner: f, s: sealer}
	if _, err := f.Write(hdr); err != nil {
		f.Abort()
		return nil, fmt.Errorf("encrypt: snapshot file: %w", err)
	}
	return sf, nil
}

// SnapshotData returns the decrypted data of the stored snapshot.
func (s *SnapshotStorage) SnapshotData(meta core.SnapshotMeta) ([]byte, error) {
	data, err := s.snaps.SnapshotData(meta)
	if err != nil {
		return nil, err
	}
	pt, _, err := s.kr.openSnapshot(data, meta.Index, meta.Term)
	if err != nil {
		return nil, fmt.Errorf("encrypt: snapshot data%s: %w", s.where(), err)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// snapFile is a snapshot file that seals what is written to it in chunks
// into the backend's file.
type snapFile struct {
	owner *Storage
	inner node.SnapshotFile
	s     *snapSealer
	out   []byte
	err   error
}

// Write seals p as it fills chunks and writes them to the backend's file.
func (f *snapFile) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	out, err := f.s.write(f.out[:0], p)
	f.out = out
	if err == nil && len(out) > 0 {
		_, err = f.inner.Write(out)
	}
	if err != nil {
		f.err = err
		return 0, err
	}
	return len(p), nil
}

// finish seals the rest and the end frame for index and term.
func (f *snapFile) finish(index, term uint64) error {
	if f.err != nil {
		return f.err
	}
	out, err := f.s.finish(f.out[:0], index, term)
	if err == nil {
		_, err = f.inner.Write(out)
	}
	if err != nil {
		f.err = err
	}
	return err
}

// Abort aborts the backend's file.
func (f *snapFile) Abort() { f.inner.Abort() }
