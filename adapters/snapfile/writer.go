package snapfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/core"
)

// streamPrefix starts the name of a Writer's temporary file: Prefix, so
// that IsTemp recognises it, then a word no name of Write's temporary files
// holds there (theirs continue with the index's digits).
const streamPrefix = Prefix + "stream-"

// WriterBufferSize is how much data a Writer buffers before writing it to
// its file.
const WriterBufferSize = 1 << 20

// Writer streams the data of a snapshot into a temporary file and commits
// it as a snapshot file byte for byte the same as Write makes of the same
// snapshot, so that a snapshot never has to be held in memory. It is not
// safe for concurrent use, but may be handed from one goroutine to another
// (a node writes it, a log's committer commits it).
//
// Its temporary file is named <Prefix>stream-<random hex><Suffix><TempSuffix>:
// unique (created exclusively), and recognised by IsTemp, so that a crash
// before Commit leaves a file that recovery removes and never takes for a
// snapshot.
type Writer struct {
	dir  string
	path string // the file's current path: temporary, or final after the rename
	f    *os.File
	buf  []byte // data not yet written, at off (the header's space at first)
	off  int64
	size uint64 // data bytes accepted
	crc  uint32 // CRC-32C of those bytes
	err  error  // sticky: the writer cannot be committed any more

	sealed    bool // Commit was called: the data is complete, the trailer in buf
	synced    bool // the file is complete, fsynced and closed: the rename remains
	committed bool
	aborted   bool

	// Test hooks, nil in use: replacements for the file's WriteAt and Sync.
	writeAt func(f *os.File, b []byte, off int64) (int, error)
	sync    func(f *os.File) error
}

// Create creates a uniquely named temporary file in dir for a snapshot's
// data and returns a Writer to it. The file holds nothing durable until
// Commit returns; Abort removes it.
func Create(dir string) (*Writer, error) {
	var rnd [8]byte
	for range 100 {
		rand.Read(rnd[:])
		name := streamPrefix + hex.EncodeToString(rnd[:]) + Suffix + TempSuffix
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("snapfile: create temporary snapshot file: %w", err)
		}
		buf := make([]byte, HeaderSize, WriterBufferSize)
		return &Writer{dir: dir, path: path, f: f, buf: buf}, nil
	}
	return nil, fmt.Errorf("snapfile: create temporary snapshot file in %s: no free name after 100 tries", dir)
}

// Write appends p to the snapshot's data, buffered: data reaches the file
// in blocks of WriterBufferSize. An error is sticky: every later Write and
// Commit returns it, and only Abort remains. Write after Commit or Abort
// is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.usable("write"); err != nil {
		return 0, err
	}
	if w.sealed {
		return 0, errors.New("snapfile: write after Commit")
	}
	n := len(p)
	w.crc = crc32.Update(w.crc, castagnoli, p)
	w.size += uint64(n)
	for len(p) > 0 {
		if len(w.buf) == 0 && len(p) >= cap(w.buf) {
			// A whole buffer or more: straight to the file, no copy.
			if err := w.flushBytes(p); err != nil {
				return 0, w.fail(err)
			}
			break
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf, p = w.buf[:len(w.buf)+k], p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flushBytes(w.buf); err != nil {
				return 0, w.fail(err)
			}
			w.buf = w.buf[:0]
		}
	}
	return n, nil
}

// flushBytes writes b at the writer's offset and advances it.
func (w *Writer) flushBytes(b []byte) error {
	if _, err := w.pwrite(b, w.off); err != nil {
		return fmt.Errorf("snapfile: write %s at offset %d: %w", w.path, w.off, err)
	}
	w.off += int64(len(b))
	return nil
}

func (w *Writer) pwrite(b []byte, off int64) (int, error) {
	if w.writeAt != nil {
		return w.writeAt(w.f, b, off)
	}
	return w.f.WriteAt(b, off)
}

// fail makes err sticky and returns it.
func (w *Writer) fail(err error) error {
	w.err = err
	return err
}

// usable returns why the writer cannot do op, if it cannot.
func (w *Writer) usable(op string) error {
	switch {
	case w.err != nil:
		return fmt.Errorf("snapfile: %s: the snapshot file failed earlier: %w", op, w.err)
	case w.committed:
		return fmt.Errorf("snapfile: %s: the snapshot file is already committed", op)
	case w.aborted:
		return fmt.Errorf("snapfile: %s: the snapshot file was aborted", op)
	}
	return nil
}

// Err returns why Commit cannot be called (again): the error that made w
// unusable (a failed Write, or a Commit that failed at or after its
// fsync, which it wraps), or a Commit that succeeded, or Abort. It is nil
// while Commit may be called.
func (w *Writer) Err() error { return w.usable("commit") }

// Commit makes the data written so far the snapshot meta describes: it
// writes the rest of the data, the trailer and the header (index, term,
// size) at the start, fsyncs the file, renames it to the name for meta's
// index and term that taken does not refuse (as Write names it), fsyncs the
// directory, then reads it back and verifies it (Verify). It returns the
// file's reference and size, as Write does. With noSync (UNSAFE) nothing is
// fsynced.
//
// A Commit that fails in writing (the rest of the data, the trailer, the
// header) or in renaming may be called again: it still holds those bytes
// and writes them at their offsets again, so a full disk (ENOSPC) can be
// waited out. One that fails at or after the fsync cannot (Err reports it):
// after a failed fsync the kernel may have dropped the dirty pages it could
// not write and report a later fsync as a success, so the file can no
// longer be trusted, and its data, streamed, is not in memory to be written
// again. The snapshot must then be taken anew; Abort removes the file.
func (w *Writer) Commit(meta core.SnapshotMeta, taken func(name string) bool, noSync bool) (Ref, int64, error) {
	if err := w.usable("commit"); err != nil {
		return Ref{}, 0, err
	}
	if !w.sealed {
		w.buf = append(w.buf, trailer(w.crc)...)
		w.sealed = true
	}
	ref := Ref{Meta: meta, CRC: w.crc, Size: w.size}
	if !w.synced {
		if len(w.buf) > 0 {
			// Rewritten whole at its offset if an earlier Commit failed:
			// the bytes are the same.
			if _, err := w.pwrite(w.buf, w.off); err != nil {
				return ref, 0, fmt.Errorf("snapfile: write the end of %s at offset %d: %w", w.path, w.off, err)
			}
			w.off += int64(len(w.buf))
			w.buf = w.buf[:0]
		}
		if _, err := w.pwrite(header(meta.Index, meta.Term, w.size), 0); err != nil {
			return ref, 0, fmt.Errorf("snapfile: write the header of %s: %w", w.path, err)
		}
		if !noSync {
			sync := (*os.File).Sync
			if w.sync != nil {
				sync = w.sync
			}
			if err := sync(w.f); err != nil {
				return ref, 0, w.fail(fmt.Errorf("snapfile: fsync %s: %w", w.path, err))
			}
		}
		err := w.f.Close()
		w.f = nil
		if err != nil {
			return ref, 0, w.fail(fmt.Errorf("snapfile: close %s: %w", w.path, err))
		}
		w.synced = true
	}
	for n := 0; ; n++ {
		ref.File = Name(meta.Index, meta.Term, n)
		if taken == nil || !taken(ref.File) {
			break
		}
	}
	path := filepath.Join(w.dir, ref.File)
	if err := os.Rename(w.path, path); err != nil {
		return ref, 0, fmt.Errorf("snapfile: rename %s to %s: %w", w.path, ref.File, err)
	}
	w.path = path
	if !noSync {
		if err := durable.SyncDir(w.dir); err != nil {
			return ref, 0, w.fail(fmt.Errorf("snapfile: sync directory %s after renaming %s: %w", w.dir, ref.File, err))
		}
	}
	if err := Verify(w.dir, &ref); err != nil {
		return ref, 0, w.fail(fmt.Errorf("snapfile: verify after writing: %w", err))
	}
	w.committed = true
	w.buf = nil
	return ref, HeaderSize + int64(ref.Size) + TrailerSize, nil
}

// Abort discards the snapshot file: it closes and removes it, under its
// temporary name or, after a Commit that failed once it had renamed it,
// under its final one. It does nothing after a successful Commit (the file
// is then the log's) or a first Abort. A file it cannot remove is left for
// recovery, which removes temporary files and snapshot files no log record
// refers to.
func (w *Writer) Abort() {
	if w.committed || w.aborted {
		return
	}
	w.aborted = true
	w.buf = nil
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	os.Remove(w.path)
}

// Path returns the file's current path: its temporary name until Commit
// renames it.
func (w *Writer) Path() string { return w.path }
