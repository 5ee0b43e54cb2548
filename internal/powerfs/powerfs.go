// Package powerfs is a test file system that loses what a power cut
// loses: a FUSE loopback over a backing directory that passes every
// operation through, but remembers what is not yet covered by an fsync so
// that Cut can drop it (the idea of Jepsen's lazyfs).
//
// The backing directory always holds the current content; what a power
// cut would lose is kept as undo records:
//
//   - File data: each write, truncate or fallocate of a file records the
//     bytes and size it replaced, per file (by backing inode), until the
//     file is fsynced or fdatasynced (both flush everything of the file).
//   - Directory entries: each create, mkdir, mknod, symlink, link, unlink,
//     rmdir and rename is journalled until every directory it changes is
//     fsynced (a rename between two directories needs both). Removed and
//     replaced entries are moved to a trash directory beside the backing
//     one, so that a cut can put them back.
//
// Cut (with the processes using the mount killed first, as a power cut
// kills them) unmounts, undoes every unsynced record, newest first, and
// mounts again: a file not fsynced since a write reverts to its synced
// content and size, a file whose directory was not fsynced since its
// creation vanishes (even if the file itself was fsynced), an unsynced
// rename reverts and an unsynced unlink comes back. With tearing, each
// file with unsynced writes keeps instead a random prefix of them, the
// last one kept torn (only a prefix of its bytes lands), as a disk that
// wrote part of its cache would leave it.
//
// Writes through a shared writable mapping are modelled as the kernel
// delivers them: dirty pages come as page-sized writes when written back
// (at msync, at close, at the latest at a cut's unmount), and msync is an
// fsync (TestMmapWrite). Never touch a mapped file of the mount from the
// process serving it: a page fault blocks a thread the Go runtime must
// stop for a garbage collection while the goroutines that would answer
// the fault are stopped, a deadlock; map files from another process.
//
// What is not modelled: O_DIRECT (refused by the FUSE mount's open in practice, and
// used by neither), copy_file_range and O_TMPFILE (refused with ENOTSUP),
// metadata other than size (modes, times, xattrs pass through and are
// kept), and reordering within what was synced (a synced write is
// durable; nothing synced is ever lost). Real fsyncs are not passed to the
// backing file system: the backing directory is the "disk", and a test
// cuts the power of the model, not of the machine.
package powerfs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted power-loss file system.
type FS struct {
	opts  MountOptions
	mnt   string // the mount point
	data  string // the backing directory: the "disk"
	trash string // removed entries an unsynced journal may put back

	mu       sync.Mutex
	server   *fuse.Server
	files    map[fileKey]*fileLog
	ns       []*nsOp
	trashSeq int
	stats    Stats
}

// Stats counts what the file system saw and dropped.
type Stats struct {
	Writes, Fsyncs, DirFsyncs int // operations seen
	Cuts                      int // power cuts
	DroppedWrites             int // unsynced data changes (writes, truncations, allocations) undone by cuts
	DroppedBytes              int64
	TornWrites                int // writes of which a cut kept a prefix
	RevertedEntries           int // unsynced directory operations undone by cuts
}

// CutReport says what one Cut dropped.
type CutReport struct {
	Files           int   // files whose content or size reverted
	DroppedWrites   int   // data changes (writes, truncations, allocations) undone
	DroppedBytes    int64 // bytes of undone writes
	TornWrites      int   // writes kept in part
	RevertedEntries int   // directory operations undone
}

func (r CutReport) String() string {
	return fmt.Sprintf("%d files reverted (%d changes undone, %d written bytes dropped, %d writes torn), %d directory operations undone",
		r.Files, r.DroppedWrites, r.DroppedBytes, r.TornWrites, r.RevertedEntries)
}

// fileKey names a backing file by device and inode, which stay the same
// through renames and moves to the trash.
type fileKey struct{ dev, ino uint64 }

// fileLog is the unsynced history of one file.
type fileLog struct {
	fd   int // a descriptor of the backing file, for undoing
	undo []undoRec
}

// undoRec undoes one change of a file's data or size.
type undoRec struct {
	off   int64
	old   []byte // the bytes at off before the change (those below the old size)
	size  int64  // the file's size before the change
	n     int64  // bytes written at off, for a write (tearable); 0 for truncate or allocate
	write bool
}

// nsKind is the kind of a directory operation.
type nsKind int

const (
	nsCreate nsKind = iota // a new entry name in dir (file, directory, node, symlink, link)
	nsRemove               // name in dir removed; its inode is in the trash as trashed
	nsRename               // name in dir moved to name2 in dir2, replacing trashed if set
)

// nsOp is one journalled directory operation.
type nsOp struct {
	kind            nsKind
	dir, dir2       fileKey // the directories changed
	name, name2     string
	trashed         string // a trash entry holding what was removed or replaced
	synced, synced2 bool   // dir (dir2) fsynced since
}

// Mount creates state (if needed) with the backing directory state/data
// and the trash state/trash, and mounts the file system at mnt (which must
// exist). The content of state/data, if any, counts as synced. Only the
// user who mounts it (root) can use it: see MountWith.
func Mount(mnt, state string) (*FS, error) { return MountWith(mnt, state, MountOptions{}) }

// MountOptions adjusts MountWith.
type MountOptions struct {
	// AllowOther lets every user use the mount (FUSE's allow_other; as
	// root, /etc/fuse.conf need not say user_allow_other), for a process
	// of another user, such as a database server, keeping its files there.
	// The kernel then checks file modes and owners (default_permissions),
	// as on a disk: the file system itself runs as root and would
	// otherwise let any user do anything. New files and directories
	// belong to the user and group of the process that makes them.
	AllowOther bool
}

// MountWith is Mount with options; they hold for the remounts of Cut too.
func MountWith(mnt, state string, o MountOptions) (*FS, error) {
	f := &FS{opts: o, mnt: mnt, data: filepath.Join(state, "data"), trash: filepath.Join(state, "trash"), files: map[fileKey]*fileLog{}}
	for _, d := range []string{f.data, f.trash} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("powerfs: %w", err)
		}
	}
	if err := f.mount(); err != nil {
		return nil, err
	}
	return f, nil
}

// Dir returns the mount point.
func (f *FS) Dir() string { return f.mnt }

// Backing returns the backing directory, the "disk". Reading it while
// mounted shows the current content, synced or not.
func (f *FS) Backing() string { return f.data }

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *FS) mount() error {
	var st syscall.Stat_t
	if err := syscall.Stat(f.data, &st); err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	root := &fs.LoopbackRoot{Path: f.data, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, pfs: f}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	zero := time.Duration(0)
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName: "powerfs", Name: "powerfs", DirectMount: true,
			DisableXAttrs: true,
		},
		// A cut remounts, so the kernel's caches never outlive it; no
		// caching keeps what the kernel believes equal to the backing
		// directory in between too.
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
	}
	if f.opts.AllowOther {
		opts.AllowOther = true
		opts.Options = append(opts.Options, "default_permissions")
	}
	srv, err := fs.Mount(f.mnt, root.RootNode, opts)
	if err != nil {
		return fmt.Errorf("powerfs: mount %s: %w", f.mnt, err)
	}
	f.mu.Lock()
	f.server = srv
	f.mu.Unlock()
	return nil
}

// unmount unmounts, retrying while the mount is busy (a killed process's
// descriptors are released asynchronously) for up to ten seconds.
func (f *FS) unmount() error {
	f.mu.Lock()
	srv := f.server
	f.server = nil
	f.mu.Unlock()
	if srv == nil {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := srv.Unmount()
		if err == nil {
			srv.Wait()
			return nil
		}
		if time.Now().After(deadline) {
			f.mu.Lock()
			f.server = srv
			f.mu.Unlock()
			return fmt.Errorf("powerfs: unmount %s: %w", f.mnt, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Cut cuts the power: it unmounts the file system (every process using it
// must be dead: kill them first, as the cut would), drops what no fsync
// covered and mounts it again. With tear, each file with unsynced writes
// keeps a random prefix of them instead, the last kept write torn (rng
// chooses; nil means a random seed).
func (f *FS) Cut(tear bool, rng *rand.Rand) (CutReport, error) {
	if err := f.unmount(); err != nil {
		return CutReport{}, err
	}
	rep, err := f.drop(tear, rng)
	if err != nil {
		return rep, err
	}
	return rep, f.mount()
}

// drop undoes the unsynced records (the file system unmounted).
func (f *FS) drop(tear bool, rng *rand.Rand) (CutReport, error) {
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var rep CutReport
	var errs []error
	for k, l := range f.files {
		if len(l.undo) > 0 {
			rep.Files++
		}
		keep := 0 // records kept in full
		tornAt := -1
		if tear && len(l.undo) > 0 {
			keep = rng.IntN(len(l.undo))
			if r := l.undo[keep]; r.write && tearPoint(r.off, r.n, rng) > 0 {
				tornAt = keep
			}
		}
		for i := len(l.undo) - 1; i >= keep; i-- {
			r := l.undo[i]
			if i == tornAt {
				p := tearPoint(r.off, r.n, rng) // bytes of the write that land
				if int64(len(r.old)) > p {
					if _, err := syscall.Pwrite(l.fd, r.old[p:], r.off+p); err != nil {
						errs = append(errs, fmt.Errorf("powerfs: tear inode %d: %w", k.ino, err))
					}
				}
				if err := syscall.Ftruncate(l.fd, max(r.size, r.off+p)); err != nil {
					errs = append(errs, fmt.Errorf("powerfs: tear inode %d: %w", k.ino, err))
				}
				rep.TornWrites++
				rep.DroppedBytes += r.n - p
				continue
			}
			if len(r.old) > 0 {
				if _, err := syscall.Pwrite(l.fd, r.old, r.off); err != nil {
					errs = append(errs, fmt.Errorf("powerfs: undo inode %d: %w", k.ino, err))
				}
			}
			if err := syscall.Ftruncate(l.fd, r.size); err != nil {
				errs = append(errs, fmt.Errorf("powerfs: undo inode %d: %w", k.ino, err))
			}
			rep.DroppedWrites++
			rep.DroppedBytes += r.n
		}
		syscall.Close(l.fd)
		delete(f.files, k)
	}
	for i := len(f.ns) - 1; i >= 0; i-- {
		if err := f.undoNS(f.ns[i]); err != nil {
			errs = append(errs, err)
		}
		rep.RevertedEntries++
	}
	f.ns = nil
	f.stats.Cuts++
	f.stats.DroppedWrites += rep.DroppedWrites
	f.stats.DroppedBytes += rep.DroppedBytes
	f.stats.TornWrites += rep.TornWrites
	f.stats.RevertedEntries += rep.RevertedEntries
	return rep, errors.Join(errs...)
}

// SectorSize is the unit of a torn write: a write spanning several
// sectors may land in part, a whole number of its sectors; a sector is
// written whole or not at all, as disks guarantee (and as adapters/wal's
// torn-write rule assumes).
const SectorSize = 512

// tearPoint returns how many bytes of a write of n bytes at off land
// when it is torn: up to a sector boundary strictly inside the write
// (chosen with rng), or 0 if it lies within one sector.
func tearPoint(off, n int64, rng *rand.Rand) int64 {
	first := (off/SectorSize + 1) * SectorSize // the first boundary after off
	last := (off + n - 1) / SectorSize * SectorSize
	if first > last {
		return 0
	}
	return first + rng.Int64N((last-first)/SectorSize+1)*SectorSize - off
}

// Close unmounts the file system, keeping the current content (synced or
// not) in the backing directory.
func (f *FS) Close() error {
	err := f.unmount()
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, l := range f.files {
		syscall.Close(l.fd)
		delete(f.files, k)
	}
	f.ns = nil
	return err
}

// dirPath finds the backing path of the directory with key k, in the
// backing directory or the trash ("" if it is in neither).
func (f *FS) dirPath(k fileKey) string {
	found := ""
	for _, top := range []string{f.data, f.trash} {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err != nil || found != "" {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				return nil
			}
			if key, err := keyOf(p); err == nil && key == k {
				found = p
				return filepath.SkipAll
			}
			return nil
		})
		if found != "" {
			return found
		}
	}
	return ""
}

// toTrash moves p into the trash and returns its name there.
func (f *FS) toTrash(p string) (string, error) {
	f.trashSeq++
	name := fmt.Sprintf("%d", f.trashSeq)
	if err := os.Rename(p, filepath.Join(f.trash, name)); err != nil {
		return "", err
	}
	return name, nil
}

// undoNS undoes one directory operation.
func (f *FS) undoNS(op *nsOp) error {
	dir := f.dirPath(op.dir)
	if dir == "" {
		return nil // the directory itself is gone: so is the entry
	}
	p := filepath.Join(dir, op.name)
	switch op.kind {
	case nsCreate:
		if _, err := os.Lstat(p); err != nil {
			return nil
		}
		if _, err := f.toTrash(p); err != nil {
			return fmt.Errorf("powerfs: undo create of %s: %w", p, err)
		}
	case nsRemove:
		if _, err := os.Lstat(p); err == nil {
			if _, err := f.toTrash(p); err != nil {
				return fmt.Errorf("powerfs: undo removal of %s: %w", p, err)
			}
		}
		if err := os.Rename(filepath.Join(f.trash, op.trashed), p); err != nil {
			return fmt.Errorf("powerfs: undo removal of %s: %w", p, err)
		}
	case nsRename:
		dir2 := f.dirPath(op.dir2)
		if dir2 == "" {
			return nil
		}
		p2 := filepath.Join(dir2, op.name2)
		if _, err := os.Lstat(p); err == nil {
			if _, err := f.toTrash(p); err != nil {
				return fmt.Errorf("powerfs: undo rename of %s: %w", p, err)
			}
		}
		if err := os.Rename(p2, p); err != nil {
			return fmt.Errorf("powerfs: undo rename of %s to %s: %w", p, p2, err)
		}
		if op.trashed != "" {
			if err := os.Rename(filepath.Join(f.trash, op.trashed), p2); err != nil {
				return fmt.Errorf("powerfs: undo replacement of %s: %w", p2, err)
			}
		}
	}
	return nil
}

// keyOf returns the key of the file at p (not following a final symlink).
func keyOf(p string) (fileKey, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return fileKey{}, err
	}
	return fileKey{uint64(st.Dev), st.Ino}, nil
}

func keyOfFd(fd int) (fileKey, int64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fileKey{}, 0, err
	}
	return fileKey{uint64(st.Dev), st.Ino}, st.Size, nil
}

// record adds an undo record for the file open as fd, called before the
// change with f.mu held: it saves the bytes in [off, off+n) below the
// current size.
func (f *FS) record(fd int, off, n int64, write bool) error {
	k, size, err := keyOfFd(fd)
	if err != nil {
		return err
	}
	r := undoRec{off: off, size: size, write: write}
	if write {
		r.n = n
	}
	if end := min(off+n, size); end > off {
		r.old = make([]byte, end-off)
		if _, err := syscall.Pread(fd, r.old, off); err != nil {
			return err
		}
	}
	l := f.files[k]
	if l == nil {
		dup, err := syscall.Dup(fd)
		if err != nil {
			return err
		}
		syscall.CloseOnExec(dup)
		l = &fileLog{fd: dup}
		f.files[k] = l
	}
	l.undo = append(l.undo, r)
	return nil
}

// synced drops the undo records of the file open as fd.
func (f *FS) synced(fd int) {
	k, _, err := keyOfFd(fd)
	if err != nil {
		return
	}
	f.stats.Fsyncs++
	if l := f.files[k]; l != nil {
		syscall.Close(l.fd)
		delete(f.files, k)
	}
}

// dirSynced marks the directory operations on the directory at p synced,
// and forgets those now covered on every side.
func (f *FS) dirSynced(p string) error {
	k, err := keyOf(p)
	if err != nil {
		return err
	}
	f.stats.DirFsyncs++
	kept := f.ns[:0]
	for _, op := range f.ns {
		if op.dir == k {
			op.synced = true
		}
		if op.kind == nsRename && op.dir2 == k {
			op.synced2 = true
		}
		if !op.synced || op.kind == nsRename && !op.synced2 {
			kept = append(kept, op)
		} else if op.trashed != "" {
			// Durably removed: open descriptors keep the inode alive.
			_ = os.RemoveAll(filepath.Join(f.trash, op.trashed))
		}
	}
	clear(f.ns[len(kept):])
	f.ns = kept
	return nil
}

// Check reports why this machine cannot mount the file system (it needs
// root and /dev/fuse), or nil.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("powerfs: needs root to mount FUSE directly")
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	return f.Close()
}
