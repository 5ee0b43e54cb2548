package pebblestore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// streamData is the data of the streamed snapshot at index and term, of
// about size bytes.
func streamData(index, term uint64, size int) []byte {
	piece := fmt.Appendf(nil, "streamed %d/%d;", index, term)
	return bytes.Repeat(piece, max(1, size/len(piece)))
}

// snapAt is a snapshot at index and term with about size bytes of data.
func snapAt(index, term uint64, size int) *core.Snapshot {
	return &core.Snapshot{
		Meta: core.SnapshotMeta{Index: index, Term: term, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
		Data: streamData(index, term, size),
	}
}

// big is the size of snapshots that cross the stream writer's buffer.
const big = 3 * snapfile.WriterBufferSize / 2

// streamed writes snap's data into a file from s in 64 KiB pieces and
// returns the update saving it, with its equivalent holding the data (for
// node.MemoryStorage).
func streamed(t testing.TB, s *Storage, snap *core.Snapshot, compactTo uint64) (u, equiv *node.Update) {
	t.Helper()
	f, err := s.CreateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for d := snap.Data; len(d) > 0; {
		n := min(len(d), 64<<10)
		if _, err := f.Write(d[:n]); err != nil {
			t.Fatal(err)
		}
		d = d[n:]
	}
	return &node.Update{LocalSnapshot: &core.Snapshot{Meta: snap.Meta}, LocalSnapshotFile: f, CompactTo: compactTo, Sync: true},
		&node.Update{LocalSnapshot: snap, CompactTo: compactTo, Sync: true}
}

// wantFiles fails the test unless dir's snapshot files, temporary ones
// included, are exactly want.
func wantFiles(t testing.TB, dir string, want ...string) {
	t.Helper()
	if got := snapFiles(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("snapshot files %v, want %v", got, want)
	}
}

// settle returns once the completer has deleted the snapshot files that
// the Saves already done superseded: it deletes them after calling those
// Saves' done, and calls the done of a later Save (here an empty one) only
// after that.
func settle(t testing.TB, s *Storage) {
	t.Helper()
	storagetest.SaveWait(t, s, &node.Update{}) // fails on a failed or closed store, after the same wait
}

// wantStoreFiles is wantFiles for s's directory, once s has settled.
func wantStoreFiles(t testing.TB, s *Storage, want ...string) {
	t.Helper()
	settle(t, s)
	wantFiles(t, s.opts.Dir, want...)
}

// wantData fails the test unless s serves snap's data for its metadata.
func wantData(t testing.TB, s *Storage, snap *core.Snapshot) {
	t.Helper()
	data, err := s.SnapshotData(snap.Meta)
	if err != nil || !bytes.Equal(data, snap.Data) {
		t.Fatalf("SnapshotData(%d/%d): %d bytes, %v", snap.Meta.Index, snap.Meta.Term, len(data), err)
	}
}

// wantErr fails the test unless err is an error whose message holds want.
func wantErr(t testing.TB, what string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: error %v, want one saying %q", what, err, want)
	}
}

// modelStore is a Storage checked against node.MemoryStorage.
type modelStore struct {
	s *Storage
	m *node.MemoryStorage
}

// save saves u to the store, and equiv (u with its snapshot's data) to the
// model, and compares what they hold.
func (ms *modelStore) save(t testing.TB, u, equiv *node.Update) {
	t.Helper()
	storagetest.MustSave(t, ms.s, u)
	ms.m.Save(equiv, func(err error) {
		if err != nil {
			t.Fatalf("model: %v", err)
		}
	})
	ms.check(t, "after a save")
}

func (ms *modelStore) check(t testing.TB, when string) {
	t.Helper()
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, ms.s), ms.m.Persisted()); d != "" {
		t.Fatalf("%s: %s", when, d)
	}
}

// TestStreamedSnapshot: a local snapshot streamed through CreateSnapshot
// and saved in LocalSnapshotFile is stored as if its data had been in the
// update: same Load (snapshot data and compacted log, before and after a
// reopen), the same file as snapfile.Write's, the superseded file deleted,
// the guard file recording the batch (Open checks it), and SnapshotData
// serving exactly the stored snapshot, the one Open found included.
func TestStreamedSnapshot(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	ms := &modelStore{s: openT(t, o), m: node.NewMemoryStorage()}
	defer func() { ms.s.Close() }()
	_, err := ms.s.SnapshotData(core.SnapshotMeta{Index: 1, Term: 1})
	wantErr(t, "SnapshotData of an empty store", err, "no snapshot")
	for i := uint64(0); i < 10; i++ {
		u := &node.Update{Entries: storagetest.NamedEntries(i*10+1, i*10+10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 10}, Sync: true}
		ms.save(t, u, u)
	}
	// A snapshot written whole, then a streamed one that replaces it.
	whole := snapAt(40, 1, 1000)
	wu := &node.Update{LocalSnapshot: whole, CompactTo: 30, Sync: true}
	ms.save(t, wu, wu)
	wantData(t, ms.s, whole)
	first := snapAt(90, 1, big)
	u, equiv := streamed(t, ms.s, first, 80)
	ms.save(t, u, equiv)
	wantStoreFiles(t, ms.s, "snap-90-1.snap")
	wantData(t, ms.s, first)
	for _, meta := range []core.SnapshotMeta{{Index: 90, Term: 2}, {Index: 89, Term: 1}, whole.Meta} {
		_, err := ms.s.SnapshotData(meta)
		wantErr(t, fmt.Sprintf("SnapshotData(%d/%d)", meta.Index, meta.Term), err, "index 90 term 1")
	}
	// The bytes snapfile.Write writes.
	other := t.TempDir()
	ref, _, err := snapfile.Write(other, first, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	a, errA := os.ReadFile(filepath.Join(dir, "snap-90-1.snap"))
	b, errB := os.ReadFile(filepath.Join(other, ref.File))
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Fatalf("streamed snapshot file differs from snapfile.Write's (%v, %v)", errA, errB)
	}

	storagetest.MustClose(t, ms.s)
	ms.s = openT(t, o)
	ms.check(t, "after reopen")
	wantData(t, ms.s, first) // the snapshot Open found

	// The same index and term again, other data: a new name, the old file
	// deleted.
	again := snapAt(90, 1, 5000)
	u, equiv = streamed(t, ms.s, again, 90)
	ms.save(t, u, equiv)
	wantStoreFiles(t, ms.s, "snap-90-1-1.snap")
	wantData(t, ms.s, again)

	// With entries and a hard state in the same update.
	second := snapAt(100, 1, big)
	u, equiv = streamed(t, ms.s, second, 100)
	u.Entries, equiv.Entries = storagetest.NamedEntries(101, 110, 2), storagetest.NamedEntries(101, 110, 2)
	u.HardState = core.HardState{Term: 2, Vote: 1, Commit: 105}
	equiv.HardState = u.HardState
	ms.save(t, u, equiv)
	wantStoreFiles(t, ms.s, "snap-100-1.snap")
	wantData(t, ms.s, second)
	_, err = ms.s.SnapshotData(first.Meta)
	wantErr(t, "SnapshotData of the superseded snapshot", err, "index 100 term 1")

	// A leader snapshot is served too.
	leader := storagetest.SnapshotWith(200, 3, "leader's")
	lu := &node.Update{Snapshot: leader, HardState: core.HardState{Term: 3, Commit: 200}, Sync: true}
	ms.save(t, lu, lu)
	wantData(t, ms.s, leader)
	wantStoreFiles(t, ms.s, "snap-200-3.snap")
	storagetest.MustClose(t, ms.s)
	ms.s = openT(t, o)
	ms.check(t, "after reopen")
	wantData(t, ms.s, leader)

	storagetest.MustClose(t, ms.s)
	if _, err := ms.s.SnapshotData(leader.Meta); !errors.Is(err, ErrClosed) {
		t.Fatalf("SnapshotData after Close: %v", err)
	}
	if _, err := ms.s.CreateSnapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateSnapshot after Close: %v", err)
	}
}

// foreignFile is a node.SnapshotFile the store did not create.
type foreignFile struct{ aborted bool }

func (f *foreignFile) Write(p []byte) (int, error) { return len(p), nil }
func (f *foreignFile) Abort()                      { f.aborted = true }

// TestStreamedSnapshotRefused: an update whose streamed snapshot cannot be
// stored fails alone: its file is removed, the stored snapshot stays and
// is served, and the store goes on.
func TestStreamedSnapshotRefused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	defer func() { storagetest.MustClose(t, s) }()
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 20, 1), HardState: core.HardState{Term: 1, Commit: 20}, Sync: true})
	old := snapAt(10, 1, 100)
	u, _ := streamed(t, s, old, 5)
	storagetest.MustSave(t, s, u)
	want := storagetest.MustLoad(t, s)

	other := openT(t, Options{Dir: t.TempDir()})
	defer storagetest.MustClose(t, other)
	for _, tc := range []struct {
		name string
		edit func(u *node.Update)
		want string
	}{
		{"data and a file", func(u *node.Update) { u.LocalSnapshot.Data = []byte("x") }, "both data and a file"},
		{"no metadata", func(u *node.Update) { u.LocalSnapshot = nil }, "without a local snapshot"},
		{"entries leaving a gap", func(u *node.Update) { u.Entries = storagetest.NamedEntries(30, 31, 1) }, "leave a gap"},
		{"entries not consecutive", func(u *node.Update) {
			u.Entries = append(storagetest.NamedEntries(16, 16, 1), storagetest.NamedEntries(18, 18, 1)...)
		}, "not consecutive"},
		{"a file already committed", func(u *node.Update) {
			f := u.LocalSnapshotFile.(*snapfile.StreamFile)
			f.W.Commit(u.LocalSnapshot.Meta, func(string) bool { return false }, true) // committed: cannot be again
			os.Remove(f.W.Path())
		}, "already committed"},
	} {
		u, _ := streamed(t, s, snapAt(15, 1, 100), 15)
		tc.edit(u)
		wantErr(t, tc.name, storagetest.SaveWait(t, s, u), tc.want)
		wantStoreFiles(t, s, "snap-10-1.snap")
		wantData(t, s, old)
	}
	// A file from another store, and one no store made.
	u, _ = streamed(t, other, snapAt(15, 1, 100), 15)
	wantErr(t, "file of another store", storagetest.SaveWait(t, s, u), "not one this store created")
	wantStoreFiles(t, other)
	ff := &foreignFile{}
	err := storagetest.SaveWait(t, s, &node.Update{LocalSnapshot: &core.Snapshot{Meta: old.Meta}, LocalSnapshotFile: ff, CompactTo: 15})
	wantErr(t, "foreign file", err, "not one this store created")
	if !ff.aborted {
		t.Fatal("the foreign file was not aborted")
	}
	// A file that was aborted, then saved by mistake.
	u, _ = streamed(t, s, snapAt(15, 1, 100), 15)
	u.LocalSnapshotFile.Abort()
	wantErr(t, "aborted file", storagetest.SaveWait(t, s, u), "aborted")
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
		t.Fatal(d)
	}
	// The store goes on.
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(21, 21, 1), Sync: true})
	u, _ = streamed(t, s, snapAt(21, 1, 100), 21)
	storagetest.MustSave(t, s, u)
	wantStoreFiles(t, s, "snap-21-1.snap")
	wantData(t, s, snapAt(21, 1, 100))
}

// TestStreamedSnapshotWriteFails: a write failure after the file was
// committed but before the batch recording it reached Pebble fails the
// update and the store and removes the file: nothing can refer to it, and
// Open finds only what was acknowledged. Saves on a failed or closed store
// remove their files too.
func TestStreamedSnapshotWriteFails(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	var broken atomic.Bool
	o.applyHook = func() error {
		if broken.Load() {
			return syscall.EIO
		}
		return nil
	}
	s := openT(t, o)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 5, 1), HardState: core.HardState{Term: 1, Commit: 5}, Sync: true})
	old := snapAt(3, 1, 100)
	u, _ := streamed(t, s, old, 3)
	storagetest.MustSave(t, s, u)
	want := storagetest.MustLoad(t, s)
	broken.Store(true)
	u, _ = streamed(t, s, snapAt(5, 1, big), 5)
	if err := storagetest.SaveWait(t, s, u); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Save: %v", err)
	}
	if err := u.LocalSnapshotFile.(*snapfile.StreamFile).W.Err(); err == nil || !strings.Contains(err.Error(), "already committed") {
		t.Fatal("the file of the failed update was not committed (the test no longer fails after the commit)")
	}
	wantStoreFiles(t, s, "snap-3-1.snap")
	wantData(t, s, old)
	// The store has failed: a later Save fails and removes its file.
	u, _ = streamed(t, s, snapAt(5, 1, 100), 5)
	wantErr(t, "Save on a failed store", storagetest.SaveWait(t, s, u), "earlier write failed")
	wantStoreFiles(t, s, "snap-3-1.snap")
	// Closed: Save fails with ErrClosed and removes the file.
	u, _ = streamed(t, s, snapAt(5, 1, 100), 5)
	s.Close()
	if err := storagetest.SaveWait(t, s, u); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	wantStoreFiles(t, s, "snap-3-1.snap")
	o.applyHook = nil
	s = openT(t, o)
	defer storagetest.MustClose(t, s)
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
		t.Fatal(d)
	}
	wantData(t, s, old)
}

// copyDir copies the files under src to dst, as a crash would leave them
// (the page cache survives a process crash).
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// TestStreamedCrashBeforeBatch: a crash after the streamed file is
// committed (renamed to its final name) but before the batch recording it
// is committed leaves a snapshot file no key refers to. Open refuses
// nothing (the guard holds no commit the database lacks), keeps the file
// with a warning naming it, and serves the old snapshot, from Load and
// SnapshotData; a later snapshot makes the file redundant and the next
// Open removes it. A file still being written at the crash is removed.
func TestStreamedCrashBeforeBatch(t *testing.T) {
	dir, crashed := t.TempDir(), filepath.Join(t.TempDir(), "crashed")
	o := Options{Dir: dir}
	var arm atomic.Bool
	var copyErr error
	o.applyHook = func() error {
		if arm.Swap(false) {
			copyErr = copyDir(dir, crashed) // the disk as the crash leaves it
		}
		return nil
	}
	s := openT(t, o)
	defer func() { storagetest.MustClose(t, s) }()
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 30, 1), HardState: core.HardState{Term: 1, Commit: 30}, Sync: true})
	old := snapAt(10, 1, 100)
	u, _ := streamed(t, s, old, 10)
	storagetest.MustSave(t, s, u)
	want := storagetest.MustLoad(t, s)
	// A file being written at the crash, and one committed whose batch is
	// not.
	pending, err := s.CreateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pending.Write(streamData(30, 1, big)); err != nil {
		t.Fatal(err)
	}
	defer pending.Abort()
	arm.Store(true)
	u, _ = streamed(t, s, snapAt(20, 1, big), 20)
	storagetest.MustSave(t, s, u)
	if copyErr != nil {
		t.Fatal(copyErr)
	}
	if got := snapFiles(t, crashed); len(got) != 3 || got[0] != "snap-10-1.snap" || got[1] != "snap-20-1.snap" || !snapfile.IsTemp(got[2]) {
		t.Fatalf("snapshot files at the crash: %v, want the old, the new and a temporary one", got)
	}

	var logs lockedBuffer
	co := Options{Dir: crashed, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	c := openT(t, co)
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, c), want); d != "" {
		t.Fatalf("after the crash: %s", d)
	}
	wantData(t, c, old)
	_, err = c.SnapshotData(snapAt(20, 1, 0).Meta)
	wantErr(t, "SnapshotData of the unrecorded snapshot", err, "index 10 term 1")
	wantFiles(t, crashed, "snap-10-1.snap", "snap-20-1.snap")
	if l := logs.String(); !strings.Contains(l, "keeping a snapshot file") || !strings.Contains(l, "snap-20-1.snap") {
		t.Fatalf("Open did not warn about the unreferenced file:\n%s", l)
	}
	// The node takes its snapshot at 20 again, then a later one.
	u, _ = streamed(t, c, snapAt(20, 1, 500), 20)
	storagetest.MustSave(t, c, u)
	wantData(t, c, snapAt(20, 1, 500))
	wantStoreFiles(t, c, "snap-20-1.snap")
	storagetest.MustClose(t, c)
	c = openT(t, co)
	defer storagetest.MustClose(t, c)
	wantData(t, c, snapAt(20, 1, 500))
	wantStoreFiles(t, c, "snap-20-1.snap")
}

// TestStreamedSnapshotsInOneBatch: two streamed snapshots merged into one
// batch: both updates succeed, the last snapshot is stored, and the file
// of the first, superseded, is removed.
func TestStreamedSnapshotsInOneBatch(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var hold atomic.Bool
	o.applyHook = func() error {
		if hold.Swap(false) {
			once.Do(func() { close(entered) })
			<-release
		}
		return nil
	}
	ms := &modelStore{s: openT(t, o), m: node.NewMemoryStorage()}
	defer func() { storagetest.MustClose(t, ms.s) }()
	first := &node.Update{Entries: storagetest.NamedEntries(1, 10, 1), HardState: core.HardState{Term: 1, Commit: 10}, Sync: true}
	ms.m.Save(first, func(error) {})
	hold.Store(true)
	errs := make(chan error, 3)
	ms.s.Save(first, func(err error) { errs <- err })
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("the committer did not reach the first batch")
	}
	commits := ms.s.Stats().Commits
	a, aEquiv := streamed(t, ms.s, snapAt(5, 1, 1000), 5)
	b, bEquiv := streamed(t, ms.s, snapAt(8, 1, 1000), 7)
	ms.s.Save(a, func(err error) { errs <- err })
	ms.s.Save(b, func(err error) { errs <- err })
	close(release)
	for range 3 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("done not called")
		}
	}
	if n := ms.s.Stats().Commits - commits; n != 2 {
		t.Fatalf("%d commits after the first batch, want 2 (the first, and both snapshots in one)", n)
	}
	for _, u := range []*node.Update{aEquiv, bEquiv} {
		ms.m.Save(u, func(error) {})
	}
	ms.check(t, "after the merged batch")
	wantStoreFiles(t, ms.s, "snap-8-1.snap")
	wantData(t, ms.s, snapAt(8, 1, 1000))
}

// TestStreamedNoSync: with NoSync a streamed snapshot is committed without
// fsyncs and kept by a clean Close.
func TestStreamedNoSync(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, NoSync: true})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 5, 1), Sync: true})
	for _, i := range []uint64{3, 4} {
		u, _ := streamed(t, s, snapAt(i, 1, 100), i)
		storagetest.MustSave(t, s, u)
	}
	if st := s.Stats(); st.Syncs != 0 {
		t.Fatalf("stats %+v, want no sync", st)
	}
	storagetest.MustClose(t, s)
	wantFiles(t, dir, "snap-4-1.snap")
	s = openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	want := core.Persisted{Snapshot: snapAt(4, 1, 100), Entries: storagetest.NamedEntries(5, 5, 1)}
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
		t.Fatal(d)
	}
}

// TestStreamedSnapshotDamaged: SnapshotData refuses a stored file that
// does not match its reference, or is missing, with ErrCorrupt.
func TestStreamedSnapshotDamaged(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 5, 1), Sync: true})
	snap := snapAt(5, 1, 1000)
	u, _ := streamed(t, s, snap, 5)
	storagetest.MustSave(t, s, u)
	path := filepath.Join(dir, "snap-5-1.snap")
	flipAt(t, path, snapfile.HeaderSize+10, 0x01)
	_, err := s.SnapshotData(snap.Meta)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("SnapshotData of a damaged file: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SnapshotData(snap.Meta); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("SnapshotData of a missing file: %v", err)
	}
}

// TestStreamConcurrent: CreateSnapshot and SnapshotData called while Saves
// are written (run with -race): SnapshotData serves either the data of the
// snapshot asked for or an error naming the one stored, never damaged or
// mixed data, and a snapshot is served once its Save is done.
func TestStreamConcurrent(t *testing.T) {
	const size = 64 << 10
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 1, 1), HardState: core.HardState{Term: 1, Commit: 1}, Sync: true})
	const rounds = 6
	var latest atomic.Uint64 // index of the last snapshot whose Save is done
	u, _ := streamed(t, s, snapAt(1, 1, size), 1)
	storagetest.MustSave(t, s, u)
	latest.Store(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := latest.Load()
			snap := snapAt(i, 1, size)
			data, err := s.SnapshotData(snap.Meta)
			if err == nil && !bytes.Equal(data, snap.Data) || err != nil && !strings.Contains(err.Error(), "the stored snapshot is at") {
				bad.Store(fmt.Sprintf("SnapshotData(%d): %d bytes, %v", i, len(data), err))
				return
			}
			// A file created meanwhile is this reader's alone.
			f, err := s.CreateSnapshot()
			if err != nil {
				bad.Store(err.Error())
				return
			}
			f.Write([]byte("x"))
			f.Abort()
		}
	}()
	for i := uint64(2); i < 2+rounds; i++ {
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(i, i, 1), HardState: core.HardState{Term: 1, Commit: i}, Sync: true})
		u, _ := streamed(t, s, snapAt(i, 1, size), i)
		storagetest.MustSave(t, s, u)
		wantData(t, s, snapAt(i, 1, size))
		latest.Store(i)
	}
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	wantStoreFiles(t, s, fmt.Sprintf("snap-%d-1.snap", 1+rounds))
}
