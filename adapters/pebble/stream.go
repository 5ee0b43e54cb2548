package pebblestore

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

var _ node.SnapshotStore = (*Storage)(nil)

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
	return &snapfile.StreamFile{W: w, Owner: s}, nil
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
	data, err := s.served.Data(s.opts.Dir, meta)
	switch {
	case errors.Is(err, snapfile.ErrClosed):
		return nil, fmt.Errorf("pebble storage: snapshot data: %w", ErrClosed)
	case errors.Is(err, snapfile.ErrCorrupt):
		s.log.Error("pebble storage: stored snapshot file is missing or damaged", "err", err)
		return nil, fmt.Errorf("pebble storage: snapshot data: %w: %w", ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("pebble storage: snapshot data: %w", err)
	}
	return data, nil
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
	if _, err := snapfile.Owned(u.LocalSnapshotFile, s); err != nil {
		return fmt.Errorf("pebble storage: %w", err)
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
