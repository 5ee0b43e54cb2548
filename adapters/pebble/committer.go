package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cockroachdb/pebble"

	"github.com/forge-consensus/consensus/adapters/internal/guard"
	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// run starts the completer and is the committer goroutine: it writes
// queued Saves, group by group, until Close and an empty queue.
func (s *Storage) run() {
	completerDone := make(chan struct{})
	go func() {
		defer close(completerDone)
		s.complete()
	}()
	defer func() {
		close(s.completions)
		<-completerDone
		close(s.stopped)
	}()
	for {
		group, ok := s.queue.Next()
		if !ok {
			return
		}
		s.completions <- s.commit(group)
	}
}

// completion is a group the committer has written (or failed), handed to
// the completer.
type completion struct {
	group []request
	errs  []error // per request
	// seq is the commit sequence number of the group's batch (0 if it
	// committed nothing); synced, whether Pebble fsynced it.
	seq    uint64
	synced bool
	state  guard.State // the state after the batch, when seq > 0
}

// complete is the completer goroutine. For the completions the committer
// has handed over, it records the latest synced commit in the guard file
// (one write and fdatasync covers all of them), then calls their done
// callbacks in order, then deletes the snapshot files that durable commits
// replaced. The committer meanwhile writes the next group: Pebble's fsync
// of a batch overlaps the guard's fdatasync of the one before.
func (s *Storage) complete() {
	var batch []completion
	for c := range s.completions {
		batch = append(batch[:0], c)
	drain:
		for {
			select {
			case c, ok := <-s.completions:
				if !ok {
					break drain
				}
				batch = append(batch, c)
			default:
				break drain
			}
		}
		var (
			toGuard guard.State
			guardIt bool
		)
		for i := range batch {
			if batch[i].seq > 0 {
				s.committed = batch[i].state
				if batch[i].synced {
					toGuard, guardIt = batch[i].state, true
				}
			}
		}
		var guardErr error
		if guardIt && s.guard != nil {
			if err := s.failure(); err != nil {
				guardErr = err
			} else if err := s.writeGuard(toGuard); err != nil {
				guardErr = err
				s.setFailed(err)
				s.log.Error("pebble storage: guard write failed; failing this and every later write", "err", err)
			} else {
				s.guarded = toGuard.Seq
				s.guardWrites.Add(1)
			}
		}
		for _, c := range batch {
			for i, r := range c.group {
				err := c.errs[i]
				if err == nil && guardErr != nil {
					err = fmt.Errorf("pebble storage: commit %d not recorded in the guard file: %w", c.seq, guardErr)
				}
				r.done(err)
			}
		}
		if guardErr == nil && guardIt {
			s.deleteObsolete(s.guarded)
		}
		clear(batch)
	}
}

// commit writes a group of Saves as one batch and returns its completion,
// with the error of each Save that failed. The streamed snapshot files of
// the group that it does not commit (those of failed updates, and those a
// later snapshot of the batch supersedes) are removed before it returns.
func (s *Storage) commit(group []request) (c completion) {
	c = completion{group: group, errs: make([]error, len(group))}
	defer abortFiles(group)
	if err := s.failure(); err != nil {
		for i := range c.errs {
			c.errs[i] = fmt.Errorf("pebble storage: an earlier write failed: %w", err)
		}
		return c
	}

	b := s.db.NewBatch()
	defer b.Close()
	st := s.state
	var (
		snap    *core.Snapshot
		file    *snapfile.StreamFile // the streamed file holding snap's data, if any
		hs      *core.HardState
		sync    bool
		applied uint64
		// unrecorded is the snapshot file written for this batch until
		// the batch is handed to Pebble: a failure before that removes it.
		unrecorded string
	)
	// fail fails every update of the group not already failed by a check.
	fail := func(err error) {
		if unrecorded != "" {
			s.removeUnrecorded(unrecorded)
		}
		s.setFailed(err)
		s.log.Error("pebble storage: write failed; failing this and every later write", "err", err)
		for i := range c.errs {
			if c.errs[i] == nil {
				c.errs[i] = err
			}
		}
	}
	for i, r := range group {
		if err := s.checkFile(r.u); err != nil {
			c.errs[i] = err
			continue
		}
		if err := checkUpdate(r.u); err != nil {
			c.errs[i] = err
			continue
		}
		fits, err := s.stage(b, &st, r.u)
		if err != nil {
			fail(err)
			return c
		}
		if fits != nil {
			c.errs[i] = fits
			continue
		}
		applied++
		if r.u.Snapshot != nil {
			snap, file = r.u.Snapshot, nil
		}
		if r.u.LocalSnapshot != nil {
			// checkFile made sure a file is this store's.
			snap, file = r.u.LocalSnapshot, nil
			if r.u.LocalSnapshotFile != nil {
				file = r.u.LocalSnapshotFile.(*snapfile.StreamFile)
			}
		}
		if !r.u.HardState.IsEmpty() {
			hs = &r.u.HardState
		}
		sync = sync || r.u.Sync
	}

	var fileBytes uint64
	if snap != nil {
		ref, n, err := s.writeSnapshot(snap, file)
		if err != nil {
			fail(err)
			return c
		}
		if n > 0 {
			unrecorded = ref.File
		}
		v, err := encodeSnapRef(&ref)
		if err == nil {
			err = b.Set([]byte(snapshotKey), v, nil)
		}
		if err != nil {
			fail(fmt.Errorf("pebble storage: stage snapshot reference: %w", err))
			return c
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
			return c
		}
		st.hs = *hs
	}
	sync = sync && !s.opts.NoSync
	if !b.Empty() {
		st.seq++
		v := binary.BigEndian.AppendUint64(make([]byte, 4, 12), st.seq)
		if err := b.Set([]byte(seqKey), sealValue(v), nil); err != nil {
			fail(fmt.Errorf("pebble storage: stage commit sequence number: %w", err))
			return c
		}
		wo := pebble.NoSync
		if sync {
			wo = pebble.Sync
		}
		if h := s.opts.applyHook; h != nil {
			if err := h(); err != nil {
				fail(fmt.Errorf("pebble storage: commit batch %d: %w", st.seq, err))
				return c
			}
		}
		// From here on the batch may be durable, and refer to the new
		// snapshot file: a failure keeps the file, and Open decides.
		unrecorded = ""
		if err := s.apply(b, wo); err != nil {
			fail(fmt.Errorf("pebble storage: commit batch %d: %w", st.seq, err))
			return c
		}
		s.commits.Add(1)
		if sync {
			s.syncs.Add(1)
		}
		s.bytes.Add(uint64(b.Len()) + fileBytes)
		c.seq, c.synced, c.state = st.seq, sync, st.summary()
	}
	old := s.state
	s.state = st
	s.updates.Add(applied)
	if snap != nil {
		// Served from now on; the old file is deleted only once the
		// completer has recorded this batch in the guard file.
		ref := st.ref
		s.served.Publish(&ref)
	}
	if snap != nil && old.hasSnap && old.ref.File != st.ref.File {
		s.obsMu.Lock()
		s.obsolete = append(s.obsolete, obsoleteFile{name: old.ref.File, seq: st.seq, replacement: st.ref})
		s.obsMu.Unlock()
	}
	return c
}

// apply commits b, turning a panic of Pebble's (its Fatalf on a failed
// commit) into an error.
func (s *Storage) apply(b *pebble.Batch, wo *pebble.WriteOptions) (err error) {
	defer recoverPebble("commit", &err)
	return s.db.Apply(b, wo)
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
		ns.hasSnap, ns.snapIndex, ns.snapTerm = true, u.Snapshot.Meta.Index, u.Snapshot.Meta.Term
	}
	if u.LocalSnapshot != nil {
		ns.hasSnap, ns.snapIndex, ns.snapTerm = true, u.LocalSnapshot.Meta.Index, u.LocalSnapshot.Meta.Term
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
		ns.hasEntries, ns.last, ns.lastTerm = true, u.Entries[n-1].Index, u.Entries[n-1].Term
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
// already holds it) and returns its reference and the bytes written (0 if
// it wrote nothing). With file set, the data is in that streamed file
// (snap.Data is nil), which it commits: written out, fsynced, renamed,
// the directory fsynced, read back and verified. It never overwrites the
// file in use, nor a file waiting to be deleted.
func (s *Storage) writeSnapshot(snap *core.Snapshot, file *snapfile.StreamFile) (snapfile.Ref, uint64, error) {
	cur := &s.state.ref
	taken := func(name string) bool {
		return s.state.hasSnap && name == cur.File || s.isObsolete(name)
	}
	if file != nil {
		ref, n, err := file.W.Commit(snap.Meta, taken, s.opts.NoSync)
		if err != nil {
			return ref, 0, fmt.Errorf("pebble storage: commit streamed snapshot %d/%d: %w", snap.Meta.Index, snap.Meta.Term, err)
		}
		return ref, uint64(n), nil
	}
	// The file in use may hold this data already: if so, it comes before
	// the first name snapfile.Write would take.
	for n := 0; s.state.hasSnap; n++ {
		name := snapfile.Name(snap.Meta.Index, snap.Meta.Term, n)
		if !taken(name) {
			break
		}
		if name == cur.File {
			ref := snapfile.Ref{Meta: snap.Meta, File: name, CRC: snapfile.CRC(snap.Data), Size: uint64(len(snap.Data))}
			if ref.Same(cur) {
				return ref, 0, nil
			}
		}
	}
	ref, n, err := snapfile.Write(s.opts.Dir, snap, taken, s.opts.NoSync)
	if err != nil {
		return ref, 0, fmt.Errorf("pebble storage: %w", err)
	}
	return ref, uint64(n), nil
}

// isObsolete reports whether name is a snapshot file waiting to be
// deleted.
func (s *Storage) isObsolete(name string) bool {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	return slices.ContainsFunc(s.obsolete, func(o obsoleteFile) bool { return o.name == name })
}

// deleteObsolete deletes the snapshot files replaced by commits up to
// sequence number upTo, which are durable, once the file that replaced each
// is read back and verified. A replacement that fails verification keeps
// the old file and fails every later write. Failures to delete are logged:
// the next Open removes the leftovers.
func (s *Storage) deleteObsolete(upTo uint64) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	keep := s.obsolete[:0]
	for _, o := range s.obsolete {
		if o.seq > upTo {
			keep = append(keep, o)
			continue
		}
		if err := snapfile.Verify(s.opts.Dir, &o.replacement); err != nil {
			err = fmt.Errorf("pebble storage: snapshot file %s fails verification after writing; keeping %s: %w",
				filepath.Join(s.opts.Dir, o.replacement.File), o.name, err)
			s.setFailed(err)
			s.log.Error("pebble storage: write failed; failing every later write", "err", err)
			keep = append(keep, o)
			continue
		}
		if err := removeIfExists(filepath.Join(s.opts.Dir, o.name)); err != nil {
			s.log.Warn("pebble storage: cannot delete old snapshot file", "file", o.name, "err", err)
		}
	}
	clear(s.obsolete[len(keep):])
	s.obsolete = keep
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
