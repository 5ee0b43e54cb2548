package powerfs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node whose changing operations are journalled.
type node struct {
	fs.LoopbackNode
	pfs *FS
}

var (
	_ fs.NodeCreater         = (*node)(nil)
	_ fs.NodeOpener          = (*node)(nil)
	_ fs.NodeMkdirer         = (*node)(nil)
	_ fs.NodeMknoder         = (*node)(nil)
	_ fs.NodeSymlinker       = (*node)(nil)
	_ fs.NodeLinker          = (*node)(nil)
	_ fs.NodeUnlinker        = (*node)(nil)
	_ fs.NodeRmdirer         = (*node)(nil)
	_ fs.NodeRenamer         = (*node)(nil)
	_ fs.NodeSetattrer       = (*node)(nil)
	_ fs.NodeOpendirHandler  = (*node)(nil)
	_ fs.NodeCopyFileRanger  = (*node)(nil)
	_ fs.NodeTmpfiler        = (*node)(nil)
	_ fs.FileFsyncdirer      = (*dirHandle)(nil)
	_ fs.FileReaddirenter    = (*dirHandle)(nil)
	_ fs.FileWriter          = (*handle)(nil)
	_ fs.FileWritever        = (*handle)(nil)
	_ fs.FileFsyncer         = (*handle)(nil)
	_ fs.FileAllocater       = (*handle)(nil)
	_ fs.FileStatxer         = (*handle)(nil)
	_ fs.FilePassthroughFder = (*fs.LoopbackFile)(nil)
)

// backing returns the node's path in the backing directory.
func (n *node) backing() string {
	root := n.RootData.RootNode.EmbeddedInode()
	return filepath.Join(n.RootData.Path, n.Path(root))
}

func (n *node) key() (fileKey, syscall.Errno) {
	k, err := keyOf(n.backing())
	return k, fs.ToErrno(err)
}

// logCreate journals a new entry name in n.
func (n *node) logCreate(name string) {
	if k, errno := n.key(); errno == 0 {
		n.pfs.ns = append(n.pfs.ns, &nsOp{kind: nsCreate, dir: k, name: name})
	}
}

// openFlags makes a write-only open read-write (undo records read the
// bytes a write replaces) and takes O_TRUNC out, to be done as a
// recorded truncation.
func openFlags(flags uint32) (uint32, bool) {
	trunc := flags&syscall.O_TRUNC != 0
	flags &^= syscall.O_TRUNC
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		flags = flags&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return flags, trunc && flags&syscall.O_ACCMODE != syscall.O_RDONLY
}

// wrap wraps a loopback file handle, truncating it (recorded) if trunc.
func (n *node) wrap(fh fs.FileHandle, trunc bool) (fs.FileHandle, syscall.Errno) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh, 0
	}
	fd, ok := lf.PassthroughFd()
	if !ok {
		return nil, syscall.EBADF
	}
	h := &handle{lf: lf, fd: fd, pfs: n.pfs}
	if trunc {
		if errno := h.truncate(0); errno != 0 {
			lf.Release(context.Background())
			return nil, errno
		}
	}
	return h, 0
}

// Create creates a file: a journalled new entry unless it existed.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	_, err := os.Lstat(filepath.Join(n.backing(), name))
	existed := err == nil
	flags, trunc := openFlags(flags)
	ch, fh, fflags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if !existed {
		n.logCreate(name)
	}
	fh, errno = n.wrap(fh, trunc && existed)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, fflags, 0
}

// Open opens a file, with a recorded truncation for O_TRUNC.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	flags, trunc := openFlags(flags)
	fh, fflags, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	if trunc {
		n.pfs.mu.Lock()
		defer n.pfs.mu.Unlock()
	}
	fh, errno = n.wrap(fh, trunc)
	return fh, fflags, errno
}

// Mkdir makes a directory: a journalled new entry.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno == 0 {
		n.logCreate(name)
	}
	return ch, errno
}

// Mknod makes a node: a journalled new entry.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if errno == 0 {
		n.logCreate(name)
	}
	return ch, errno
}

// Symlink makes a symbolic link: a journalled new entry.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	ch, errno := n.LoopbackNode.Symlink(ctx, target, name, out)
	if errno == 0 {
		n.logCreate(name)
	}
	return ch, errno
}

// Link makes a hard link: a journalled new entry.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	if t, ok := target.(*node); ok {
		target = &t.LoopbackNode
	}
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	if errno == 0 {
		n.logCreate(name)
	}
	return ch, errno
}

// remove moves name to the trash (journalled) instead of removing it.
func (n *node) remove(name string, dir bool) syscall.Errno {
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	k, errno := n.key()
	if errno != 0 {
		return errno
	}
	p := filepath.Join(n.backing(), name)
	st, err := os.Lstat(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	switch {
	case dir && !st.IsDir():
		return syscall.ENOTDIR
	case !dir && st.IsDir():
		return syscall.EISDIR
	case dir:
		if errno := emptyDir(p); errno != 0 {
			return errno
		}
	}
	t, err := n.pfs.toTrash(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	n.pfs.ns = append(n.pfs.ns, &nsOp{kind: nsRemove, dir: k, name: name, trashed: t})
	return 0
}

func emptyDir(p string) syscall.Errno {
	f, err := os.Open(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return syscall.ENOTEMPTY
	}
	return 0
}

// Unlink removes a file: journalled, into the trash.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno { return n.remove(name, false) }

// Rmdir removes an empty directory: journalled, into the trash.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno { return n.remove(name, true) }

// Rename renames: journalled, a replaced target into the trash.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	const renameNoReplace = 1 // RENAME_NOREPLACE
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT: not modelled
	}
	n.pfs.mu.Lock()
	defer n.pfs.mu.Unlock()
	k1, errno := n.key()
	if errno != 0 {
		return errno
	}
	k2, errno := np.key()
	if errno != 0 {
		return errno
	}
	p1, p2 := filepath.Join(n.backing(), name), filepath.Join(np.backing(), newName)
	st1, err := os.Lstat(p1)
	if err != nil {
		return fs.ToErrno(err)
	}
	op := &nsOp{kind: nsRename, dir: k1, name: name, dir2: k2, name2: newName}
	if st2, err := os.Lstat(p2); err == nil {
		if flags&renameNoReplace != 0 {
			return syscall.EEXIST
		}
		if os.SameFile(st1, st2) {
			return 0
		}
		switch {
		case st1.IsDir() && !st2.IsDir():
			return syscall.ENOTDIR
		case !st1.IsDir() && st2.IsDir():
			return syscall.EISDIR
		case st2.IsDir():
			if errno := emptyDir(p2); errno != 0 {
				return errno
			}
		}
		if op.trashed, err = n.pfs.toTrash(p2); err != nil {
			return fs.ToErrno(err)
		}
	}
	if err := os.Rename(p1, p2); err != nil {
		if op.trashed != "" {
			_ = os.Rename(filepath.Join(n.pfs.trash, op.trashed), p2)
		}
		return fs.ToErrno(err)
	}
	n.pfs.ns = append(n.pfs.ns, op)
	return 0
}

// Setattr records a size change, then passes the rest through.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	var inner fs.FileHandle
	h, _ := f.(*handle)
	if h != nil {
		inner = h.lf
	} else if f != nil {
		inner = f
	}
	if sz, ok := in.GetSize(); ok {
		n.pfs.mu.Lock()
		if h == nil {
			fd, err := syscall.Open(n.backing(), syscall.O_RDWR|syscall.O_CLOEXEC, 0)
			if err != nil {
				n.pfs.mu.Unlock()
				return fs.ToErrno(err)
			}
			defer syscall.Close(fd)
			h = &handle{fd: fd, pfs: n.pfs}
		}
		errno := h.truncate(int64(sz))
		n.pfs.mu.Unlock()
		if errno != 0 {
			return errno
		}
		cp := *in
		cp.Valid &^= fuse.FATTR_SIZE
		in = &cp
	}
	return n.LoopbackNode.Setattr(ctx, inner, in, out)
}

// CopyFileRange is refused: copies are not modelled.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut, length uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

// Tmpfile is refused: O_TMPFILE is not modelled.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

// OpendirHandle opens a directory with a handle whose fsync is recorded.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	ds, fflags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{inner: ds, n: n}, fflags, 0
}

// dirHandle is an open directory.
type dirHandle struct {
	inner fs.FileHandle
	n     *node
}

// Readdirent passes through.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.inner.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

// Seekdir passes through.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.inner.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

// Releasedir passes through.
func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.inner.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

// Fsyncdir makes the directory's journalled operations durable.
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	d.n.pfs.mu.Lock()
	defer d.n.pfs.mu.Unlock()
	return fs.ToErrno(d.n.pfs.dirSynced(d.n.backing()))
}

// handle is an open file whose writes are recorded.
type handle struct {
	lf  *fs.LoopbackFile // nil for a handle made only to truncate
	fd  int
	pfs *FS
}

// truncate truncates to size, recorded; f.mu held.
func (h *handle) truncate(size int64) syscall.Errno {
	_, cur, err := keyOfFd(h.fd)
	if err != nil {
		return fs.ToErrno(err)
	}
	if err := h.pfs.record(h.fd, size, max(cur-size, 0), false); err != nil {
		return fs.ToErrno(err)
	}
	return fs.ToErrno(syscall.Ftruncate(h.fd, size))
}

// Read passes through.
func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.lf.Read(ctx, buf, off)
}

// Write writes, recording what it replaces.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.pfs.mu.Lock()
	defer h.pfs.mu.Unlock()
	if err := h.pfs.record(h.fd, off, int64(len(data)), true); err != nil {
		return 0, fs.ToErrno(err)
	}
	h.pfs.stats.Writes++
	n, err := syscall.Pwrite(h.fd, data, off)
	return uint32(max(n, 0)), fs.ToErrno(err)
}

// Writev writes the buffers as one write.
func (h *handle) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	var b []byte
	for _, d := range data {
		b = append(b, d...)
	}
	return h.Write(ctx, b, off)
}

// Fsync makes the file's data and size durable (fsync and fdatasync
// alike).
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.pfs.mu.Lock()
	defer h.pfs.mu.Unlock()
	h.pfs.synced(h.fd)
	return 0
}

// Allocate allocates, recording the size (and, for modes that change
// content, the bytes) it replaces.
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	h.pfs.mu.Lock()
	defer h.pfs.mu.Unlock()
	const keepSize = 1 // FALLOC_FL_KEEP_SIZE
	n := int64(size)
	if mode&^keepSize == 0 {
		n = 0 // plain allocation: content below the size is unchanged
	}
	if err := h.pfs.record(h.fd, int64(off), n, false); err != nil {
		return fs.ToErrno(err)
	}
	return h.lf.Allocate(ctx, off, size, mode)
}

// Flush passes through.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return h.lf.Flush(ctx) }

// Release passes through.
func (h *handle) Release(ctx context.Context) syscall.Errno { return h.lf.Release(ctx) }

// Getattr passes through.
func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.lf.Getattr(ctx, out)
}

// Statx passes through.
func (h *handle) Statx(ctx context.Context, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return h.lf.Statx(ctx, flags, mask, out)
}

// Lseek passes through.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}

// Getlk passes through.
func (h *handle) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return h.lf.Getlk(ctx, owner, lk, flags, out)
}

// Setlk passes through.
func (h *handle) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlk(ctx, owner, lk, flags)
}

// Setlkw passes through.
func (h *handle) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlkw(ctx, owner, lk, flags)
}
