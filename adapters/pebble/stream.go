package pebblestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

var _ node.SnapshotStore = (*Storage)(nil)

// snapshotFile is a local snapshot's data being streamed into a temporary
// file of the store (CreateSnapshot), committed by the committer when an
// update carries it in node.Update.LocalSnapshotFile.
type snapshotFile struct {
	w *snapfile.Writer
	s *Storage // the store that created it
}

// Write appends p to the snapshot's data (buffered). An error is sticky:
// the file can then only be aborted.
func (f *snapshotFile) Write(p []byte) (int, error) { return f.w.Write(p) }

// Abort removes the file. It does nothing once the file is committed.
func (f *snapshotFile) Abort() { f.w.Abort() }

// CreateSnapshot returns a new temporary file in Options.Dir, where the
// store keeps its snapshot files, for the data of a local snapshot (see
// node.SnapshotStore). It may be called from any goroutine, while Saves
// are being written: it creates a file of its own, under a unique
// temporary name that no other write uses and Open removes. The data
// written to it is buffered (1 MiB) and a write error, ENOSPC included,
// is final: the caller aborts the file. Handed to Save in
// node.Update.LocalSnapshotFile, with the snapshot's metadata in
// LocalSnapshot (Data nil), it is committed and recorded as a local
// snapshot written whole is (see the package documentation); a Save that
// fails removes it.
func (s *Storage) CreateSnapshot() (node.SnapshotFile, error) {
	select {
	case <-s.queue.Closing():
		return nil, fmt.Errorf("pebble storage: create snapshot: %w", ErrClosed)
	default:
	}
	w, err := snapfile.Create(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("pebble storage: create snapshot: %w", err)
	}
	return &snapshotFile{w: w, s: s}, nil
}

// SnapshotData returns the data of the stored snapshot if its index and
// term are meta's, read from its file and verified; otherwise an error
// naming the snapshot stored. It reflects the Saves whose done has been
// called (and the snapshot Open found): a snapshot is served from the
// moment the batch that records it is committed, whether a local snapshot,
// streamed or not, or a leader's. It may be called from any goroutine,
// while Saves are being written, and does not wait for them. A file that
// does not match its reference, or is missing, is an error wrapping
// ErrCorrupt.
func (s *Storage) SnapshotData(meta core.SnapshotMeta) ([]byte, error) {
	s.snapMu.Lock()
	if s.snapClosed {
		s.snapMu.Unlock()
		return nil, fmt.Errorf("pebble storage: snapshot data: %w", ErrClosed)
	}
	ref := s.cur
	if ref == nil {
		s.snapMu.Unlock()
		return nil, fmt.Errorf("pebble storage: snapshot data: no snapshot is stored (want index %d term %d)", meta.Index, meta.Term)
	}
	if ref.Meta.Index != meta.Index || ref.Meta.Term != meta.Term {
		s.snapMu.Unlock()
		return nil, fmt.Errorf("pebble storage: snapshot data: the stored snapshot is at index %d term %d, not index %d term %d",
			ref.Meta.Index, ref.Meta.Term, meta.Index, meta.Term)
	}
	// Opened while current: the completer deletes a superseded file only
	// after the committer has replaced s.cur, under snapMu, so the file is
	// read whole even if it is deleted meanwhile.
	path := filepath.Join(s.opts.Dir, ref.File)
	f, err := os.Open(path)
	s.snapMu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		s.log.Error("pebble storage: stored snapshot file is missing", "file", path)
		return nil, fmt.Errorf("pebble storage: snapshot data: %w: the stored snapshot's file is missing: %w", ErrCorrupt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("pebble storage: snapshot data: %w", err)
	}
	defer f.Close()
	data, err := snapfile.ReadFile(f, ref)
	if err != nil {
		if errors.Is(err, snapfile.ErrCorrupt) {
			s.log.Error("pebble storage: stored snapshot file is damaged", "file", path, "err", err)
			return nil, fmt.Errorf("pebble storage: snapshot data: %w: %w", ErrCorrupt, err)
		}
		return nil, fmt.Errorf("pebble storage: snapshot data: %w", err)
	}
	return data, nil
}

// publishSnap makes r the snapshot SnapshotData serves, once the batch
// recording it is committed (committer goroutine, or Open).
func (s *Storage) publishSnap(r snapfile.Ref) {
	s.snapMu.Lock()
	s.cur = &r
	s.snapMu.Unlock()
}

// checkFile checks the streamed snapshot file of u, if any: it must come
// with a local snapshot's metadata and no data, be one of this store's,
// and not have failed, been committed or been aborted.
func (s *Storage) checkFile(u *node.Update) error {
	if u.LocalSnapshotFile == nil {
		return nil
	}
	switch {
	case u.LocalSnapshot == nil:
		return errors.New("pebble storage: a local snapshot file without a local snapshot's metadata")
	case u.LocalSnapshot.Data != nil:
		return errors.New("pebble storage: a local snapshot with both data and a file")
	}
	f, ok := u.LocalSnapshotFile.(*snapshotFile)
	if !ok || f.s != s {
		return fmt.Errorf("pebble storage: local snapshot file %T is not one this store created", u.LocalSnapshotFile)
	}
	if err := f.w.Err(); err != nil {
		return fmt.Errorf("pebble storage: local snapshot file cannot be stored: %w", err)
	}
	return nil
}

// abortFiles discards the streamed snapshot files of group that were not
// committed: those of updates that failed, and those a later snapshot of
// the same batch superseded. A committed file is the store's: Abort leaves
// it alone.
func abortFiles(group []request) {
	for _, r := range group {
		if r.u.LocalSnapshotFile != nil {
			r.u.LocalSnapshotFile.Abort()
		}
	}
}

// removeUnrecorded removes the snapshot file name, written for a batch
// that failed before it was handed to Pebble: no durable key refers to it.
// A file it cannot remove is left to Open, which keeps it with a warning
// (an unreferenced file of a higher index than the snapshot in use) until
// a later snapshot makes it redundant.
func (s *Storage) removeUnrecorded(name string) {
	if err := removeIfExists(filepath.Join(s.opts.Dir, name)); err != nil {
		s.log.Warn("pebble storage: cannot remove the snapshot file of a failed write", "file", name, "err", err)
	}
}
