package snapfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/forge-consensus/consensus/core"
)

// ErrClosed is returned by Served.Data once the store closed it.
var ErrClosed = errors.New("snapfile: store closed")

// Served is the snapshot a store serves to its node
// (node.SnapshotStore.SnapshotData): the one stored, from the moment the
// write that stores it is durable. The store publishes each snapshot
// before it removes the file of the one before, so a file Data opened is
// read whole even if it is removed meanwhile. It is safe for concurrent
// use.
type Served struct {
	mu     sync.Mutex
	cur    *Ref // nil: none
	closed bool
}

// Publish makes r the snapshot Data serves (nil: none).
func (s *Served) Publish(r *Ref) {
	s.mu.Lock()
	s.cur = r
	s.mu.Unlock()
}

// Close makes Data fail with ErrClosed from now on.
func (s *Served) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Data returns the data of the served snapshot, read from its file in dir
// and checked, if its index and term are meta's. Otherwise it returns
// ErrClosed, an error wrapping ErrCorrupt (the file is missing or does not
// match its reference), or an error naming the snapshot served.
func (s *Served) Data(dir string, meta core.SnapshotMeta) ([]byte, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	ref := s.cur
	if ref == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("no snapshot is stored (want index %d term %d)", meta.Index, meta.Term)
	}
	if ref.Meta.Index != meta.Index || ref.Meta.Term != meta.Term {
		s.mu.Unlock()
		return nil, fmt.Errorf("the stored snapshot is at index %d term %d, not index %d term %d",
			ref.Meta.Index, ref.Meta.Term, meta.Index, meta.Term)
	}
	path := filepath.Join(dir, ref.File)
	f, err := os.Open(path) // while current, under mu: see Served
	s.mu.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: the stored snapshot's file %s is missing: %w", ErrCorrupt, path, err)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadFile(f, ref)
}

// StreamFile is a store's node.SnapshotFile: a Writer, and the store that
// created it (so that a store refuses another's file).
type StreamFile struct {
	W     *Writer
	Owner any
}

// Write appends p to the snapshot's data (buffered). An error is sticky:
// the file can then only be aborted.
func (f *StreamFile) Write(p []byte) (int, error) { return f.W.Write(p) }

// Abort removes the file. It does nothing once the file is committed.
func (f *StreamFile) Abort() { f.W.Abort() }

// Owned returns file's Writer if file is a *StreamFile that owner created
// and that has not failed, been committed or been aborted.
func Owned(file any, owner any) (*Writer, error) {
	f, ok := file.(*StreamFile)
	if !ok || f.Owner != owner {
		return nil, fmt.Errorf("local snapshot file %T is not one this store created", file)
	}
	if err := f.W.Err(); err != nil {
		return nil, fmt.Errorf("local snapshot file failed: %w", err)
	}
	return f.W, nil
}
