package wal

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

// CreateSnapshot returns a new temporary file in the data directory for
// the data of a local snapshot (see node.SnapshotStore). It may be called
// from any goroutine, while Saves are being written: it creates a file of
// its own, under a unique temporary name that no other write uses and
// recovery removes. The data written to it is buffered (1 MiB) and a write
// error, ENOSPC included, is final: the caller aborts the file. Handed to
// Save in node.Update.LocalSnapshotFile, with the snapshot's metadata in
// LocalSnapshot (Data nil), it is committed (see the package
// documentation); a Save that fails removes it.
func (s *Storage) CreateSnapshot() (node.SnapshotFile, error) {
	select {
	case <-s.queue.Closing():
		return nil, fmt.Errorf("wal: create snapshot: %w", ErrClosed)
	default:
	}
	w, err := snapfile.Create(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("wal: create snapshot: %w", err)
	}
	return &snapfile.StreamFile{W: w, Owner: s}, nil
}

// SnapshotData returns the data of the stored snapshot if its index and
// term are meta's, read from its file and verified; otherwise an error
// naming the snapshot stored. It reflects the Saves whose done has been
// called (and the snapshot Open found): a snapshot is served from the
// moment its write is durable, whether a local snapshot, streamed or not, or
// a leader's. It may be called from any goroutine, while Saves are being
// written, and does not wait for them. A file that does not match its
// reference is an error wrapping ErrCorrupt.
func (s *Storage) SnapshotData(meta core.SnapshotMeta) ([]byte, error) {
	data, err := s.served.Data(s.opts.Dir, meta)
	switch {
	case errors.Is(err, snapfile.ErrClosed):
		return nil, fmt.Errorf("wal: snapshot data: %w", ErrClosed)
	case errors.Is(err, snapfile.ErrCorrupt):
		s.log.Error("wal: stored snapshot file is missing or damaged", "err", err)
		return nil, fmt.Errorf("wal: snapshot data: %w: %w", ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("wal: snapshot data: %w", err)
	}
	return data, nil
}

// checkFile checks the streamed snapshot file of u, if any: it must come
// with a local snapshot's metadata and no data, be one of this store's, and
// not have failed.
func (s *Storage) checkFile(u *node.Update) error {
	if u.LocalSnapshotFile == nil {
		return nil
	}
	switch {
	case u.LocalSnapshot == nil:
		return errors.New("wal: a local snapshot file without a local snapshot's metadata")
	case u.LocalSnapshot.Data != nil:
		return errors.New("wal: a local snapshot with both data and a file")
	}
	if _, err := snapfile.Owned(u.LocalSnapshotFile, s); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// commitFile commits the streamed snapshot file f for meta, waiting out a
// full disk while the file can be committed again, and returns its
// reference.
func (s *Storage) commitFile(f *snapfile.StreamFile, meta core.SnapshotMeta) (snapfile.Ref, error) {
	var ref snapfile.Ref
	err := s.retrySpaceIf(func() error {
		if h := s.opts.commitHook; h != nil {
			if err := h(); err != nil {
				return err
			}
		}
		var n int64
		var err error
		ref, n, err = f.W.Commit(meta, s.snapTaken, s.opts.NoSync)
		s.bytes.Add(uint64(n))
		return err
	}, func() bool { return f.W.Err() == nil })
	return ref, err
}

// snapTaken reports whether a file of that name is in the data directory.
func (s *Storage) snapTaken(name string) bool {
	_, err := os.Stat(filepath.Join(s.opts.Dir, name))
	return err == nil
}

// discard removes snapshot files written for updates that failed before
// any write held a record referring to them: nothing can refer to them.
func (s *Storage) discard(names []string) {
	for _, name := range names {
		if err := os.Remove(filepath.Join(s.opts.Dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("wal: cannot remove the snapshot file of a failed write", "file", name, "err", err)
		}
	}
}
