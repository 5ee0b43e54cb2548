package kvlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// run is the committer goroutine: it writes queued Saves, group by group,
// until Close and an empty queue.
func (s *Storage) run() {
	defer close(s.stopped)
	for {
		group, ok := s.queue.Next()
		if !ok {
			return
		}
		errs := s.commit(group)
		for i, r := range group {
			r.done(errs[i])
		}
	}
}

// commit writes a group of Saves as one transaction, records it in the
// guard file and returns the error of each Save. The streamed snapshot
// files of the group it does not commit are removed.
func (s *Storage) commit(group []request) (errs []error) {
	errs = make([]error, len(group))
	defer abortFiles(group)
	if err := s.failure(); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("%s: an earlier write failed: %w", s.cfg.Name, err)
		}
		return errs
	}
	w := &Write{}
	st := s.state
	var (
		snap    *core.Snapshot
		file    *snapfile.StreamFile
		applied uint64
		changed bool
	)
	fail := func(err error) []error {
		s.setFailed(err)
		s.log.Error(s.cfg.Name+": write failed; failing this and every later write", "err", err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	for i, r := range group {
		if err := s.checkFile(r.u); err != nil {
			errs[i] = err
			continue
		}
		if err := checkUpdate(s.cfg.Name, r.u); err != nil {
			errs[i] = err
			continue
		}
		if err := s.stage(w, &st, r.u); err != nil {
			errs[i] = err
			continue
		}
		applied++
		changed = true
		if r.u.Snapshot != nil {
			snap, file = r.u.Snapshot, nil
		}
		if r.u.LocalSnapshot != nil {
			snap, file = r.u.LocalSnapshot, nil
			if r.u.LocalSnapshotFile != nil {
				file = r.u.LocalSnapshotFile.(*snapfile.StreamFile)
			}
		}
		if !r.u.HardState.IsEmpty() {
			st.hs = r.u.HardState
		}
	}
	if !changed {
		return errs
	}
	var (
		fileBytes  uint64
		unrecorded string // a snapshot file written for this transaction, not yet committed
	)
	if snap != nil {
		ref, n, err := s.writeSnapshot(snap, file)
		if err != nil {
			return fail(err)
		}
		if n > 0 {
			unrecorded = ref.File
		}
		st.hasSnap, st.ref, fileBytes = true, ref, uint64(n)
	}
	st.seq++
	s.collectGarbage(w, &st)
	mv, err := encodeMeta(&st)
	if err != nil {
		if unrecorded != "" {
			s.removeFile(unrecorded)
		}
		return fail(fmt.Errorf("%s: encode meta record: %w", s.cfg.Name, err))
	}
	w.Sets = append(w.Sets, KV{K: []byte(metaKey), V: mv})
	if err := s.eng.Commit(w); err != nil {
		// The transaction may or may not be durable: the file stays, and
		// Open decides.
		return fail(fmt.Errorf("%s: commit %d: %w", s.cfg.Name, st.seq, err))
	}
	if err := s.guard.Write(st.summary()); err != nil {
		return fail(fmt.Errorf("%s: commit %d not recorded in the guard file: %w", s.cfg.Name, st.seq, err))
	}
	s.commits.Add(1)
	s.updates.Add(applied)
	s.bytes.Add(uint64(w.Bytes()) + fileBytes)
	old := s.state
	s.state = st
	if snap != nil {
		ref := st.ref
		s.served.Publish(&ref)
		if old.hasSnap && old.ref.File != st.ref.File {
			// The new file is durable and recorded: the old one can go,
			// once the new one reads back whole.
			s.readMu.Lock()
			if err := snapfile.Verify(s.cfg.Dir, &st.ref); err != nil {
				s.readMu.Unlock()
				return fail(fmt.Errorf("%s: snapshot file %s fails verification after writing; keeping %s: %w",
					s.cfg.Name, st.ref.File, old.ref.File, err))
			}
			s.removeFile(old.ref.File)
			s.readMu.Unlock()
		}
	}
	return errs
}

// collectGarbage trims the garbage spans by st's log and adds deletions of
// up to garbagePerCommit garbage keys to w.
func (s *Storage) collectGarbage(w *Write, st *state) {
	var keep []span
	budget := garbagePerCommit
	for _, g := range s.garbage {
		parts := []span{g}
		if st.hasEntries {
			parts = parts[:0]
			if g.from < st.first {
				parts = append(parts, span{g.from, min(g.to, st.first-1)})
			}
			if g.to > st.last {
				parts = append(parts, span{max(g.from, st.last+1), g.to})
			}
		}
		for _, p := range parts {
			for budget > 0 && p.from <= p.to {
				w.Deletes = append(w.Deletes, entryKey(p.from))
				budget--
				if p.from == p.to {
					p.from, p.to = 1, 0 // empty
					break
				}
				p.from++
			}
			if p.from <= p.to {
				keep = append(keep, p)
			}
		}
	}
	s.garbage = keep
}

// addGarbage records the entry indexes from..to as garbage.
func (s *Storage) addGarbage(from, to uint64) {
	if from <= to {
		s.garbage = append(s.garbage, span{from, to})
	}
}

// stage checks u against st and, if it fits, adds its entries to w and
// applies its log changes to st (the snapshot and the hard state are
// applied by commit). An update that does not fit changes nothing.
func (s *Storage) stage(w *Write, st *state, u *node.Update) error {
	ns := *st
	var garbage []span
	if u.Snapshot != nil {
		if ns.hasEntries {
			garbage = append(garbage, span{ns.first, ns.last})
			ns.hasEntries, ns.first, ns.last, ns.lastTerm = false, 0, 0, 0
		}
		// The file reference is set by commit, once the file is written.
		ns.hasSnap, ns.ref.Meta = true, u.Snapshot.Meta
	}
	if u.LocalSnapshot != nil {
		ns.hasSnap, ns.ref.Meta = true, u.LocalSnapshot.Meta
		if c := u.CompactTo; ns.hasEntries && ns.first <= c {
			if c >= ns.last {
				garbage = append(garbage, span{ns.first, ns.last})
				ns.hasEntries, ns.first, ns.last, ns.lastTerm = false, 0, 0, 0
			} else {
				garbage = append(garbage, span{ns.first, c})
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
			next = ns.ref.Meta.Index + 1
		}
		if first == 0 || first > next {
			return fmt.Errorf("%s: entries from index %d leave a gap (next index is %d)", s.cfg.Name, first, next)
		}
		last := u.Entries[n-1].Index
		if ns.hasEntries && last < ns.last {
			garbage = append(garbage, span{last + 1, ns.last})
		}
		if !ns.hasEntries || first < ns.first {
			ns.first = first
		}
		ns.hasEntries, ns.last, ns.lastTerm = true, last, u.Entries[n-1].Term
	}
	for i := range u.Entries {
		e := &u.Entries[i]
		v, err := e.AppendBinary(make([]byte, 4, 4+32+len(e.Data)))
		if err != nil {
			return fmt.Errorf("%s: encode entry %d: %w", s.cfg.Name, e.Index, err)
		}
		w.Sets = append(w.Sets, KV{K: entryKey(e.Index), V: seal(v)})
	}
	for _, g := range garbage {
		s.addGarbage(g.from, g.to)
	}
	*st = ns
	return nil
}

// checkUpdate rejects what could not be read back: entries that are not
// consecutive or of an unknown type, and snapshot metadata that does not
// decode.
func checkUpdate(name string, u *node.Update) error {
	for i := range u.Entries {
		e := &u.Entries[i]
		if e.Index != u.Entries[0].Index+uint64(i) {
			return fmt.Errorf("%s: entries not consecutive: index %d at position %d after index %d",
				name, e.Index, i, u.Entries[0].Index)
		}
		if e.Type != core.EntryNormal && e.Type != core.EntryConfChange {
			return fmt.Errorf("%s: entry %d has unknown type %v", name, e.Index, e.Type)
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
			return fmt.Errorf("%s: invalid snapshot metadata: %w", name, err)
		}
	}
	return nil
}

// writeSnapshot makes snap's data durable in a file (unless the file in
// use already holds it) and returns its reference and the bytes written.
// With file set, the data is in that streamed file, which it commits.
func (s *Storage) writeSnapshot(snap *core.Snapshot, file *snapfile.StreamFile) (snapfile.Ref, int64, error) {
	cur := &s.state.ref
	taken := func(name string) bool { return s.state.hasSnap && name == cur.File }
	if file != nil {
		ref, n, err := file.W.Commit(snap.Meta, taken, s.cfg.NoSync)
		if err != nil {
			return ref, 0, fmt.Errorf("%s: commit streamed snapshot %d/%d: %w", s.cfg.Name, snap.Meta.Index, snap.Meta.Term, err)
		}
		return ref, n, nil
	}
	if s.state.hasSnap {
		ref := snapfile.Ref{Meta: snap.Meta, File: cur.File, CRC: snapfile.CRC(snap.Data), Size: uint64(len(snap.Data))}
		if ref.Same(cur) {
			return ref, 0, nil
		}
	}
	ref, n, err := snapfile.Write(s.cfg.Dir, snap, taken, s.cfg.NoSync)
	if err != nil {
		return ref, 0, fmt.Errorf("%s: %w", s.cfg.Name, err)
	}
	return ref, n, nil
}

// removeFile removes the snapshot file name, logging a failure (the next
// Open removes leftovers).
func (s *Storage) removeFile(name string) {
	if err := os.Remove(filepath.Join(s.cfg.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn(s.cfg.Name+": cannot delete a snapshot file", "file", name, "err", err)
	}
}

// abortFiles discards the streamed snapshot files of group that were not
// committed (Abort does nothing to a committed file).
func abortFiles(group []request) {
	for _, r := range group {
		if r.u.LocalSnapshotFile != nil {
			r.u.LocalSnapshotFile.Abort()
		}
	}
}

// checkFile checks the streamed snapshot file of u, if any.
func (s *Storage) checkFile(u *node.Update) error {
	if u.LocalSnapshotFile == nil {
		return nil
	}
	switch {
	case u.LocalSnapshot == nil:
		return fmt.Errorf("%s: a local snapshot file without a local snapshot's metadata", s.cfg.Name)
	case u.LocalSnapshot.Data != nil:
		return fmt.Errorf("%s: a local snapshot with both data and a file", s.cfg.Name)
	}
	if _, err := snapfile.Owned(u.LocalSnapshotFile, s); err != nil {
		return fmt.Errorf("%s: %w", s.cfg.Name, err)
	}
	return nil
}

// CreateSnapshot returns a new temporary file in the data directory for
// the data of a local snapshot (see node.SnapshotStore). Handed to Save in
// node.Update.LocalSnapshotFile, with the snapshot's metadata in
// LocalSnapshot, it is committed as a snapshot written whole is.
func (s *Storage) CreateSnapshot() (node.SnapshotFile, error) {
	select {
	case <-s.queue.Closing():
		return nil, fmt.Errorf("%s: create snapshot: %w", s.cfg.Name, ErrClosed)
	default:
	}
	w, err := snapfile.Create(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: create snapshot: %w", s.cfg.Name, err)
	}
	return &snapfile.StreamFile{W: w, Owner: s}, nil
}

// SnapshotData returns the data of the stored snapshot if its index and
// term are meta's, read from its file and verified.
func (s *Storage) SnapshotData(meta core.SnapshotMeta) ([]byte, error) {
	data, err := s.served.Data(s.cfg.Dir, meta)
	switch {
	case errors.Is(err, snapfile.ErrClosed):
		return nil, fmt.Errorf("%s: snapshot data: %w", s.cfg.Name, ErrClosed)
	case errors.Is(err, snapfile.ErrCorrupt):
		s.log.Error(s.cfg.Name+": stored snapshot file is missing or damaged", "err", err)
		return nil, fmt.Errorf("%s: snapshot data: %w: %w", s.cfg.Name, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("%s: snapshot data: %w", s.cfg.Name, err)
	}
	return data, nil
}
