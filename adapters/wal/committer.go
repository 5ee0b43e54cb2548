package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/forge-consensus/consensus/adapters/snapfile"
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
		s.commit(group)
	}
}

// rec is one record to write.
type rec struct {
	t recType
	p []byte
}

// commit writes a group of Saves and calls their done callbacks in order.
func (s *Storage) commit(group []request) {
	errs := make([]error, len(group))
	defer func() {
		for i, r := range group {
			if errs[i] != nil && r.u.LocalSnapshotFile != nil {
				// Removed unless committed: a committed file is the
				// store's (kept, or discarded below).
				r.u.LocalSnapshotFile.Abort()
			}
		}
		for i, r := range group {
			if errs[i] == nil {
				s.updates.Add(1)
			}
			r.done(errs[i])
		}
		s.inflight.Add(-int64(len(group)))
	}()
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.opened = nil
	if s.failed != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("wal: an earlier write failed: %w", s.failed)
		}
		return
	}
	fail := func(err error) {
		if !errors.Is(err, ErrClosed) {
			s.failed = err
			s.log.Error("wal: write failed; failing this and every later write", "err", err)
		}
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	act := s.segs[len(s.segs)-1]
	if s.deferHardState(group, errs, act) {
		return
	}
	w := s.st.clone()
	s.buf = s.buf[:0]
	chain := s.appendPending(act, act.chain)
	// Snapshot files written by this group, of the updates whose records
	// are in s.buf or written; written[:attempted] are those of records
	// handed to a write, which may be on disk even if it failed. On
	// failure the others, and the current update's, are discarded: no
	// record refers to them.
	var written []string
	attempted := 0
	failWith := func(err error, files []string) {
		s.discard(append(written[attempted:len(written):len(written)], files...))
		fail(err)
	}
	oldSnap := s.st.snap
	for i, r := range group {
		if err := s.check(&w, r.u); err != nil {
			errs[i] = err
			continue
		}
		recs, files, err := s.encode(&w, r.u)
		if err != nil {
			failWith(err, files)
			return
		}
		need := writeEndSize
		for _, r := range recs {
			need += recordSize(len(r.p))
		}
		if act.used+int64(len(s.buf)+need+sealReserve) > act.size {
			attempted = len(written)
			if err := s.flush(act, chain, w); err != nil {
				failWith(err, files)
				return
			}
			if err := s.rotate(int64(need + sealReserve)); err != nil {
				failWith(err, files)
				return
			}
			act = s.segs[len(s.segs)-1]
			chain = act.chain
		}
		// Apply for real, now that the segment is known (cannot fail: check
		// passed on the same state).
		if err := s.applyUpdate(&w, r.u, act.seq, recs); err != nil {
			failWith(fmt.Errorf("wal: internal error: %w", err), files)
			return
		}
		written = append(written, files...)
		for _, rc := range recs {
			var start int
			s.buf, start = beginRecord(s.buf)
			s.buf = append(s.buf, rc.p...)
			s.buf, chain = endRecord(s.buf, start, rc.t, uint32(act.used), chain)
		}
	}
	attempted = len(written)
	if err := s.flush(act, chain, w); err != nil {
		fail(err)
		return
	}
	// The group is durable: superseded snapshot files and segments whose
	// entries are all gone can go.
	if s.st.snap != oldSnap || len(written) > 0 {
		for _, name := range append(written, refFile(oldSnap)) {
			if name != "" && name != refFile(s.st.snap) {
				if err := os.Remove(filepath.Join(s.opts.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
					s.log.Warn("wal: cannot remove old snapshot file", "file", name, "err", err)
				}
			}
		}
		s.release()
	}
	if !s.nextWanted && act.used > act.size/2 {
		s.want <- act.seq + 1
		s.nextWanted = true
	}
}

// deferHardState takes, without writing anything, a group of updates that
// each hold only a hard state and need no fsync (Update.Sync false: a
// commit index, which a node learns again after a crash). The latest of
// their hard states waits in s.pendingHS; its record goes out at the start
// of the next write, whose fdatasync makes it durable with that write, or
// by Load or Close. A crash loses it, as it may lose any write made
// without an fsync. This saves a leader an fdatasync for every commit
// index it learns while no new entry waits. Writing the record now without
// an fsync would not do: a crash could then leave it torn behind a later,
// intact write, which recovery must refuse as corruption. It reports
// whether it took the group (the caller calls the done callbacks, with
// errs).
func (s *Storage) deferHardState(group []request, errs []error, act *segment) bool {
	if len(group) == 0 {
		return false
	}
	for _, r := range group {
		if !hardStateAlone(r.u) {
			return false
		}
	}
	// The record must fit the active segment beside the seal; otherwise
	// the group is written now, which rotates the segment.
	if act.used+int64(recordSize(maxHSRecord)+writeEndSize+sealReserve) > act.size {
		return false
	}
	w := s.st.clone()
	taken := false
	for i, r := range group {
		if err := s.check(&w, r.u); err != nil {
			errs[i] = err
			continue
		}
		if err := s.applyUpdate(&w, r.u, act.seq, nil); err != nil {
			errs[i] = fmt.Errorf("wal: internal error: %w", err)
			continue
		}
		taken = true
	}
	if taken {
		hs := w.hs
		s.pendingHS = &hs
		s.st = w
	}
	return true
}

// hardStateAlone reports whether u holds a hard state and nothing else,
// without Sync.
func hardStateAlone(u *node.Update) bool {
	return !u.Sync && u.Snapshot == nil && u.LocalSnapshot == nil && u.LocalSnapshotFile == nil &&
		len(u.Entries) == 0 && !u.HardState.IsEmpty()
}

// maxHSRecord is the largest payload of a hard state record: three
// unsigned varints.
const maxHSRecord = 3 * binary.MaxVarintLen64

// appendPending appends the deferred hard state's record (if any) to s.buf,
// to be written at act's end, and returns the chain value after it.
func (s *Storage) appendPending(act *segment, chain uint32) uint32 {
	if s.pendingHS == nil {
		return chain
	}
	var start int
	s.buf, start = beginRecord(s.buf)
	s.buf = appendHS(s.buf, *s.pendingHS)
	s.buf, chain = endRecord(s.buf, start, recHardState, uint32(act.used), chain)
	s.pendingHS = nil
	return chain
}

// writePending writes and fsyncs the deferred hard state, if any (ioMu
// held). A failure fails the store, as any write failure does.
func (s *Storage) writePending() error {
	if s.failed != nil {
		return fmt.Errorf("wal: an earlier write failed: %w", s.failed)
	}
	if s.pendingHS == nil || len(s.segs) == 0 {
		return nil
	}
	act := s.segs[len(s.segs)-1]
	s.buf = s.buf[:0]
	chain := s.appendPending(act, act.chain)
	if err := s.flush(act, chain, s.st); err != nil {
		s.failed = err
		s.log.Error("wal: write failed; failing every later write", "err", err)
		return err
	}
	return nil
}

func refFile(r *snapfile.Ref) string {
	if r == nil {
		return ""
	}
	return r.File
}

// check checks u against w as recovery would, on a copy.
func (s *Storage) check(w *logState, u *node.Update) error {
	c := w.clone()
	if err := s.checkFile(u); err != nil {
		return err
	}
	if u.LocalSnapshot != nil && u.CompactTo > u.LocalSnapshot.Meta.Index {
		return fmt.Errorf("wal: compaction to %d beyond the local snapshot's index %d", u.CompactTo, u.LocalSnapshot.Meta.Index)
	}
	var recs []rec
	if u.Snapshot != nil {
		r := &snapfile.Ref{Meta: u.Snapshot.Meta, File: snapfile.Name(0, 0, 0)}
		b, err := appendSnapRec(nil, snapReplace, 0, r)
		if err == nil {
			_, _, _, err = decodeSnapRec(b)
		}
		if err != nil {
			return fmt.Errorf("wal: invalid snapshot: %w", err)
		}
		recs = append(recs, rec{recSnapshot, b})
	}
	if u.LocalSnapshot != nil {
		r := &snapfile.Ref{Meta: u.LocalSnapshot.Meta, File: snapfile.Name(0, 0, 0)}
		b, err := appendSnapRec(nil, snapLocal, u.CompactTo, r)
		if err == nil {
			_, _, _, err = decodeSnapRec(b)
		}
		if err != nil {
			return fmt.Errorf("wal: invalid local snapshot: %w", err)
		}
		recs = append(recs, rec{recSnapshot, b})
	}
	return s.applyUpdate(&c, u, 0, recs)
}

// applyUpdate applies u to w, taking the snapshot references from recs (the
// snapshot records, in order), and checks the result.
func (s *Storage) applyUpdate(w *logState, u *node.Update, seq uint64, recs []rec) error {
	k := 0
	nextSnap := func() *snapfile.Ref {
		for ; k < len(recs); k++ {
			if recs[k].t == recSnapshot {
				_, _, r, _ := decodeSnapRec(recs[k].p)
				k++
				return r
			}
		}
		return nil
	}
	if u.Snapshot != nil {
		w.applySnapshot(nextSnap())
	}
	if u.LocalSnapshot != nil {
		w.applyLocal(nextSnap(), u.CompactTo)
	}
	if len(u.Entries) > 0 {
		first, next := u.Entries[0].Index, w.next()
		if first == 0 || first > next {
			return fmt.Errorf("wal: entries from index %d leave a gap (next index is %d)", first, next)
		}
		if first < next {
			if err := w.truncate(first); err != nil {
				return fmt.Errorf("wal: %w", err)
			}
		}
		if err := w.appendEntries(seq, u.Entries); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
	}
	if !u.HardState.IsEmpty() {
		w.hs = u.HardState
	}
	if err := w.check(); err != nil {
		return fmt.Errorf("wal: update refused: %w", err)
	}
	return nil
}

// encode writes u's snapshot files and returns its records (w is the state
// before u, which encode does not change) and the files it wrote.
func (s *Storage) encode(w *logState, u *node.Update) ([]rec, []string, error) {
	var recs []rec
	var files []string
	for _, snap := range []struct {
		kind byte
		c    uint64
		ok   bool
	}{{snapReplace, 0, u.Snapshot != nil}, {snapLocal, u.CompactTo, u.LocalSnapshot != nil}} {
		if !snap.ok {
			continue
		}
		data := u.Snapshot
		if snap.kind == snapLocal {
			data = u.LocalSnapshot
		}
		var ref snapfile.Ref
		var err error
		if snap.kind == snapLocal && u.LocalSnapshotFile != nil {
			// Streamed: checkFile made sure it is this store's.
			ref, err = s.commitFile(u.LocalSnapshotFile.(*snapfile.StreamFile), data.Meta)
		} else {
			err = s.retrySpace(func() error {
				var err error
				var n int64
				ref, n, err = snapfile.Write(s.opts.Dir, data, s.snapTaken, s.opts.NoSync)
				s.bytes.Add(uint64(n))
				return err
			})
		}
		if err != nil {
			return nil, files, fmt.Errorf("wal: %w", err)
		}
		files = append(files, ref.File)
		b, err := appendSnapRec(nil, snap.kind, snap.c, &ref)
		if err != nil {
			return nil, files, fmt.Errorf("wal: %w", err)
		}
		recs = append(recs, rec{recSnapshot, b})
	}
	if len(u.Entries) > 0 {
		c := w.clone()
		for _, r := range recs {
			kind, compactTo, ref, _ := decodeSnapRec(r.p)
			if kind == snapReplace {
				c.applySnapshot(ref)
			} else {
				c.applyLocal(ref, compactTo)
			}
		}
		next := c.next()
		if first := u.Entries[0].Index; first < next {
			recs = append(recs, rec{recTruncate, binary.AppendUvarint(nil, first)})
		}
		// Entries records of at most about 1 MiB each, encoded into
		// s.enc: the records are copied into s.buf before the next
		// update is encoded. A record still refers to the old array if
		// appending moves enc, so nothing is overwritten early.
		enc := s.enc[:0]
		ents := u.Entries
		for len(ents) > 0 {
			n, size := 0, 0
			for n < len(ents) && (n == 0 || size < 1<<20) {
				size += 16 + len(ents[n].Data)
				n++
			}
			start := len(enc)
			enc = appendEntries(enc, ents[:n])
			recs = append(recs, rec{recEntries, enc[start:len(enc):len(enc)]})
			ents = ents[n:]
		}
		if cap(enc) <= maxKeptEncoding {
			s.enc = enc[:0]
		}
	}
	if !u.HardState.IsEmpty() {
		recs = append(recs, rec{recHardState, appendHS(nil, u.HardState)})
	}
	return recs, files, nil
}

// maxKeptEncoding is the largest entries encoding buffer the committer
// keeps for the next update.
const maxKeptEncoding = 8 << 20

// retrySpace runs op, and again every RetryInterval while it fails for
// lack of disk space (reported by SpaceErr), until it succeeds, fails
// otherwise, or the store is closing.
func (s *Storage) retrySpace(op func() error) error { return s.retrySpaceIf(op, nil) }

// retrySpaceIf is retrySpace for an op that may not be run again after
// some failures, even for lack of space: again, when set, reports whether
// it may.
func (s *Storage) retrySpaceIf(op func() error, again func() bool) error {
	set := false
	for {
		err := op()
		if !noSpace(err) || again != nil && !again() {
			if set {
				s.setSpaceErr(nil)
			}
			return err
		}
		set = true
		s.setSpaceErr(fmt.Errorf("wal: no space in %s: %w", s.opts.Dir, err))
		select {
		case <-time.After(s.opts.RetryInterval):
		case <-s.queue.Closing():
			return fmt.Errorf("wal: closed while waiting for disk space: %w: %w", ErrClosed, err)
		}
	}
}

// flush writes the buffered records at the end of the active segment,
// fsyncs them and makes w the stored state.
func (s *Storage) flush(act *segment, chain uint32, w logState) error {
	if len(s.buf) == 0 {
		s.setState(w)
		return nil
	}
	// The write ends with a write-end record: recovery applies a write's
	// records only when it finds its end, so a power cut that tears the
	// write at a record boundary (leaving zeros that look like the end of
	// the log) cannot leave a part of it, an update applied in part.
	var start int
	s.buf, start = beginRecord(s.buf)
	s.buf, chain = endRecord(s.buf, start, recWriteEnd, uint32(act.used), chain)
	if _, err := act.f.WriteAt(s.buf, act.used); err != nil {
		return fmt.Errorf("wal: write %s at offset %d: %w", act.name, act.used, err)
	}
	s.writes.Add(1)
	s.bytes.Add(uint64(len(s.buf)))
	if !s.opts.NoSync {
		if err := datasync(act.f); err != nil {
			return fmt.Errorf("wal: fdatasync %s: %w", act.name, err)
		}
		s.syncs.Add(1)
	}
	act.used += int64(len(s.buf))
	act.chain = chain
	s.buf = s.buf[:0]
	s.setState(w)
	return nil
}

// setState makes w, durable, the stored state, and its snapshot the one
// SnapshotData serves: before the committer removes the file of the one it
// supersedes.
func (s *Storage) setState(w logState) {
	if w.snap != s.st.snap {
		s.served.Publish(w.snap)
	}
	s.st = w
}

// takeNext returns the preallocated next segment file, waiting for it
// (and for disk space) if needed.
func (s *Storage) takeNext(seq uint64) (prealloc, error) {
	if !s.nextWanted {
		s.want <- seq
		s.nextWanted = true
	}
	tick := time.NewTicker(s.opts.RetryInterval)
	defer tick.Stop()
	for {
		select {
		case p := <-s.ready:
			s.nextWanted = false
			if p.err == nil && p.seq != seq {
				p.f.Close()
				return p, fmt.Errorf("wal: internal error: preallocated segment %d, want %d", p.seq, seq)
			}
			return p, p.err
		case <-tick.C:
			select {
			case <-s.queue.Closing():
				if err := s.SpaceErr(); err != nil {
					return prealloc{}, fmt.Errorf("wal: closed while waiting for disk space: %w: %w", ErrClosed, err)
				}
			default:
			}
		}
	}
}

// rotate seals the active segment and starts the next one, with room for
// need bytes of records after its header and state record.
func (s *Storage) rotate(need int64) error {
	act := s.segs[len(s.segs)-1]
	o := s.st.opening()
	sb, err := appendState(nil, &o)
	if err != nil {
		return fmt.Errorf("wal: encode state record: %w", err)
	}
	need += int64(headerSize + recordSize(len(sb)))
	p, err := s.takeNext(act.seq + 1)
	if err != nil {
		return err
	}
	if need > p.size {
		err := s.retrySpace(func() error { return allocate(p.f, need) })
		if err != nil {
			p.f.Close()
			return fmt.Errorf("wal: extend segment %d to %d bytes: %w", p.seq, need, err)
		}
		p.size = need
	}
	seg, err := s.startSegment(p, act.chain)
	if err != nil {
		return err
	}
	// Seal the old segment, naming the new one, now that it is durable.
	b, start := beginRecord(nil)
	b = appendSeal(b, seg.seq, seg.headerCRC)
	b, _ = endRecord(b, start, recSeal, uint32(act.used), act.chain)
	if _, err := act.f.WriteAt(b, act.used); err != nil {
		return fmt.Errorf("wal: seal %s: %w", act.name, err)
	}
	if !s.opts.NoSync {
		if err := datasync(act.f); err != nil {
			return fmt.Errorf("wal: fdatasync %s: %w", act.name, err)
		}
	}
	act.used += int64(len(b))
	if err := act.f.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", act.name, err)
	}
	act.f = nil
	s.segs = append(s.segs, seg)
	s.rotations.Add(1)
	return nil
}

// startSegment writes the header and state record of a new segment into
// its preallocated file, makes them durable, and gives the file its name.
func (s *Storage) startSegment(p prealloc, prevChain uint32) (*segment, error) {
	h := segHeader{cluster: s.opts.ClusterID, node: s.opts.NodeID, seq: p.seq, first: s.st.next(), prevChain: prevChain}
	b, hc := h.encode()
	o := s.st.opening()
	b, start := beginRecord(b)
	b, err := appendState(b, &o)
	if err != nil {
		p.f.Close()
		return nil, fmt.Errorf("wal: encode state record: %w", err)
	}
	b, chain := endRecord(b, start, recState, 0, hc)
	name := segName(p.seq)
	tmp := filepath.Join(s.opts.Dir, name+tmpSuffix)
	_, err = p.f.WriteAt(b, 0)
	if err == nil && !s.opts.NoSync {
		err = datasync(p.f)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.opts.Dir, name))
	}
	if err == nil && !s.opts.NoSync {
		err = snapfile.SyncDir(s.opts.Dir)
	}
	if err != nil {
		p.f.Close()
		return nil, fmt.Errorf("wal: start segment %s: %w", name, err)
	}
	s.bytes.Add(uint64(len(b)))
	return &segment{seq: p.seq, name: name, f: p.f, size: p.size, used: int64(len(b)), chain: chain, headerCRC: hc}, nil
}

// release removes the oldest segments while none of their entries is
// still in the log (the state records of later segments hold the rest).
// The active segment is never removed.
func (s *Storage) release() {
	keep := s.segs[len(s.segs)-1].seq
	if len(s.st.runs) > 0 {
		keep = min(keep, s.st.runs[0].seq)
	}
	n := 0
	for n < len(s.segs)-1 && s.segs[n].seq < keep {
		path := filepath.Join(s.opts.Dir, s.segs[n].name)
		if err := os.Remove(path); err != nil {
			s.log.Warn("wal: cannot remove released segment", "file", path, "err", err)
			break
		}
		n++
	}
	if n == 0 {
		return
	}
	s.segs = append(s.segs[:0:0], s.segs[n:]...)
	s.released.Add(uint64(n))
	if !s.opts.NoSync {
		if err := snapfile.SyncDir(s.opts.Dir); err != nil {
			s.log.Warn("wal: cannot sync data directory after removing segments", "err", err)
		}
	}
}
