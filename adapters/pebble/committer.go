package pebblestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// run is the committer goroutine: it writes queued Saves, group by group,
// until Close and an empty queue.
func (s *Storage) run() {
	defer close(s.stopped)
	for {
		group, ok := s.nextGroup()
		if !ok {
			return
		}
		s.commit(group)
	}
}

// nextGroup waits for queued Saves and takes the next group off the queue;
// it returns false once the Storage is closed and the queue is empty.
func (s *Storage) nextGroup() ([]request, bool) {
	for {
		s.mu.Lock()
		n, closed := len(s.queue), s.closed
		s.mu.Unlock()
		if n > 0 {
			break
		}
		if closed {
			return nil, false
		}
		select {
		case <-s.signal:
		case <-s.closing:
		}
	}
	if d := s.opts.BatchDelay; d > 0 {
		s.waitForGroup(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	size, k := 0, 0
	for k < len(s.queue) && (k == 0 || size < s.opts.BatchBytes) {
		size += s.queue[k].size
		k++
	}
	group := make([]request, k)
	copy(group, s.queue)
	clear(s.queue[:k])
	s.queue = s.queue[k:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	s.queuedBytes -= size
	return group, true
}

// waitForGroup waits up to d for the queue to reach BatchBytes, returning
// early on Close.
func (s *Storage) waitForGroup(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		s.mu.Lock()
		full := s.queuedBytes >= s.opts.BatchBytes || s.closed
		s.mu.Unlock()
		if full {
			return
		}
		select {
		case <-s.signal:
		case <-timer.C:
			return
		case <-s.closing:
			return
		}
	}
}

// commit writes a group of Saves as one batch and calls their done
// callbacks in order.
func (s *Storage) commit(group []request) {
	errs := make([]error, len(group))
	defer func() {
		for i, r := range group {
			r.done(errs[i])
		}
	}()
	if s.failed != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("pebble storage: an earlier write failed: %w", s.failed)
		}
		return
	}

	b := s.db.NewBatch()
	defer b.Close()
	st := s.state
	var (
		snap    *core.Snapshot
		hs      *core.HardState
		sync    bool
		applied uint64
	)
	// fail fails every update of the group not already failed by a check.
	fail := func(err error) {
		s.failed = err
		s.log.Error("pebble storage: write failed; failing this and every later write", "err", err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	for i, r := range group {
		if err := checkUpdate(r.u); err != nil {
			errs[i] = err
			continue
		}
		fits, err := s.stage(b, &st, r.u)
		if err != nil {
			fail(err)
			return
		}
		if fits != nil {
			errs[i] = fits
			continue
		}
		applied++
		if r.u.Snapshot != nil {
			snap = r.u.Snapshot
		}
		if r.u.LocalSnapshot != nil {
			snap = r.u.LocalSnapshot
		}
		if !r.u.HardState.IsEmpty() {
			hs = &r.u.HardState
		}
		sync = sync || r.u.Sync
	}

	var fileBytes uint64
	if snap != nil {
		ref, n, err := s.writeSnapshot(snap)
		if err != nil {
			fail(err)
			return
		}
		v, err := encodeSnapRef(&ref)
		if err == nil {
			err = b.Set([]byte(snapshotKey), v, nil)
		}
		if err != nil {
			fail(fmt.Errorf("pebble storage: stage snapshot reference: %w", err))
			return
		}
		st.ref, fileBytes = ref, n
		// The switch to a new file is synced, so the old one can go.
		sync = true
	}
	if hs != nil {
		v := make([]byte, 4, 4+3*10+2)
		v, _ = hs.AppendBinary(v)
		if err := b.Set([]byte(hardStateKey), sealValue(v), nil); err != nil {
			fail(fmt.Errorf("pebble storage: stage hard state: %w", err))
			return
		}
	}
	sync = sync && !s.opts.NoSync
	if !b.Empty() {
		wo := pebble.NoSync
		if sync {
			wo = pebble.Sync
		}
		if err := s.applyBatch(b, wo); err != nil {
			fail(fmt.Errorf("pebble storage: commit batch: %w", err))
			return
		}
		s.commits.Add(1)
		if sync {
			s.syncs.Add(1)
		}
		s.bytes.Add(uint64(b.Len()) + fileBytes)
	}
	old := s.state
	s.state = st
	s.updates.Add(applied)
	if snap != nil && old.hasSnap && old.ref.file != st.ref.file {
		s.obsolete = append(s.obsolete, old.ref.file)
	}
	if sync && len(s.obsolete) > 0 {
		s.deleteObsolete()
	}
}

// stage checks u (already checked by checkUpdate) against st and, if it
// fits, adds its log changes to b and applies them to st. The snapshot
// reference and hard state are written by commit, once per group. An update
// that does not fit writes nothing and is reported by fits; err reports a
// failure to stage, which leaves b unusable.
func (s *Storage) stage(b *pebble.Batch, st *logState, u *node.Update) (fits, err error) {
	ns := *st
	type span struct{ from, to uint64 } // entries from..to-1, to 0: all above from
	var dels []span
	if u.Snapshot != nil {
		if ns.hasEntries {
			dels = append(dels, span{ns.first, 0})
			ns.hasEntries = false
		}
		ns.hasSnap, ns.snapIndex = true, u.Snapshot.Meta.Index
	}
	if u.LocalSnapshot != nil {
		ns.hasSnap, ns.snapIndex = true, u.LocalSnapshot.Meta.Index
		if c := u.CompactTo; ns.hasEntries && ns.first <= c {
			if c >= ns.last {
				dels = append(dels, span{ns.first, 0})
				ns.hasEntries = false
			} else {
				dels = append(dels, span{ns.first, c + 1})
				ns.first = c + 1
			}
		}
	}
	if n := len(u.Entries); n > 0 {
		first := u.Entries[0].Index
		next := uint64(1)
		switch {
		case ns.hasEntries:
			next = ns.last + 1
		case ns.hasSnap:
			next = ns.snapIndex + 1
		}
		if first == 0 || first > next {
			return fmt.Errorf("pebble storage: entries from index %d leave a gap (next index is %d)", first, next), nil
		}
		if ns.hasEntries && first <= ns.last {
			dels = append(dels, span{max(first, ns.first), 0})
		}
		if !ns.hasEntries || first < ns.first {
			ns.first = first
		}
		ns.hasEntries, ns.last = true, u.Entries[n-1].Index
	}

	for _, d := range dels {
		end := []byte(entryUpper)
		if d.to != 0 {
			end = entryKey(d.to)
		}
		if err := b.DeleteRange(entryKey(d.from), end, nil); err != nil {
			return nil, fmt.Errorf("pebble storage: stage log deletion: %w", err)
		}
	}
	for i := range u.Entries {
		e := &u.Entries[i]
		v, err := e.AppendBinary(append(s.scratch[:0], 0, 0, 0, 0))
		if err != nil {
			return nil, fmt.Errorf("pebble storage: encode entry %d: %w", e.Index, err)
		}
		s.scratch = v
		if err := b.Set(entryKey(e.Index), sealValue(v), nil); err != nil {
			return nil, fmt.Errorf("pebble storage: stage entry %d: %w", e.Index, err)
		}
	}
	*st = ns
	return nil, nil
}

// checkUpdate rejects what could not be read back: entries that are not
// consecutive or of an unknown type, and snapshot metadata that does not
// decode.
func checkUpdate(u *node.Update) error {
	for i := range u.Entries {
		e := &u.Entries[i]
		if e.Index != u.Entries[0].Index+uint64(i) {
			return fmt.Errorf("pebble storage: entries not consecutive: index %d at position %d after index %d",
				e.Index, i, u.Entries[0].Index)
		}
		if e.Type != core.EntryNormal && e.Type != core.EntryConfChange {
			return fmt.Errorf("pebble storage: entry %d has unknown type %v", e.Index, e.Type)
		}
	}
	for _, snap := range []*core.Snapshot{u.Snapshot, u.LocalSnapshot} {
		if snap == nil {
			continue
		}
		b, err := snap.Meta.MarshalBinary()
		if err == nil {
			var m core.SnapshotMeta
			err = m.UnmarshalBinary(b)
		}
		if err != nil {
			return fmt.Errorf("pebble storage: invalid snapshot metadata: %w", err)
		}
	}
	return nil
}

// writeSnapshot makes snap's data durable in a file (unless the file in use
// already holds it) and returns its reference and the bytes written.
func (s *Storage) writeSnapshot(snap *core.Snapshot) (snapRef, uint64, error) {
	ref := snapRef{
		meta: snap.Meta,
		crc:  crc(snap.Data),
		size: uint64(len(snap.Data)),
	}
	cur := &s.state.ref
	for n := 0; ; n++ {
		ref.file = snapName(snap.Meta.Index, snap.Meta.Term, n)
		if s.state.hasSnap && ref.file == cur.file {
			if ref.sameFile(cur) {
				return ref, 0, nil // the file in use holds this data already
			}
			continue // never overwrite the file in use
		}
		if !slices.Contains(s.obsolete, ref.file) {
			break // nor a file to be deleted
		}
	}
	path := filepath.Join(s.opts.Dir, ref.file)
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return ref, 0, fmt.Errorf("pebble storage: create snapshot file: %w", err)
	}
	_, err = f.Write(snapFileHeader(ref.meta.Index, ref.meta.Term, ref.size))
	if err == nil {
		_, err = f.Write(snap.Data)
	}
	if err == nil {
		_, err = f.Write(snapFileTrailer(ref.crc))
	}
	if err == nil && !s.opts.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && !s.opts.NoSync {
		err = syncDir(s.opts.Dir)
	}
	if err != nil {
		return ref, 0, fmt.Errorf("pebble storage: write snapshot file %s: %w", path, errors.Join(err, removeIfExists(tmp)))
	}
	return ref, snapHeader + ref.size + snapTrailer, nil
}

// deleteObsolete deletes the snapshot files no longer referenced by a
// durable commit. Failures are logged: Open removes leftovers.
func (s *Storage) deleteObsolete() {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for _, name := range s.obsolete {
		if s.state.hasSnap && name == s.state.ref.file {
			continue
		}
		if err := removeIfExists(filepath.Join(s.opts.Dir, name)); err != nil {
			s.log.Warn("pebble storage: cannot delete old snapshot file", "file", name, "err", err)
		}
	}
	s.obsolete = nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// syncDir fsyncs a directory, making renames in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
