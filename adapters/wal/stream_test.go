package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// streamData is the data of the streamed snapshot at index and term: over
// a megabyte, so that it crosses the writer's buffer.
func streamData(index, term uint64) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "streamed %d/%d;", index, term), (3<<20)/(2*16))
}

// streamed writes the data of a local snapshot into a file from s in 64
// KiB pieces and returns the update saving it, with its equivalent holding
// the data (for node.MemoryStorage).
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
	meta := &core.Snapshot{Meta: snap.Meta}
	return &node.Update{LocalSnapshot: meta, LocalSnapshotFile: f, CompactTo: compactTo, Sync: true},
		&node.Update{LocalSnapshot: snap, CompactTo: compactTo, Sync: true}
}

func snapAt(index, term uint64) *core.Snapshot {
	return &core.Snapshot{
		Meta: core.SnapshotMeta{Index: index, Term: term, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
		Data: streamData(index, term),
	}
}

// wantFiles fails the test unless dir's snapshot and temporary files are
// exactly want.
func wantFiles(t testing.TB, dir string, want ...string) {
	t.Helper()
	got := storagetest.DirNames(t, dir, func(name string) bool {
		return snapfile.ValidName(name) || snapfile.IsTemp(name)
	})
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("snapshot and temporary files %v, want %v", got, want)
	}
}

// wantData fails the test unless s serves snap's data for its metadata.
func wantData(t testing.TB, s *Storage, snap *core.Snapshot) {
	t.Helper()
	data, err := s.SnapshotData(snap.Meta)
	if err != nil || !bytes.Equal(data, snap.Data) {
		t.Fatalf("SnapshotData(%d/%d): %d bytes, %v", snap.Meta.Index, snap.Meta.Term, len(data), err)
	}
}

// TestStreamedSnapshot: a local snapshot streamed through CreateSnapshot
// and saved in LocalSnapshotFile is stored as if its data had been in the
// update: same Load (snapshot data, compacted log, before and after a
// reopen), segments released, the superseded snapshot file removed, and
// SnapshotData serving exactly the stored snapshot.
func TestStreamedSnapshot(t *testing.T) {
	dir := t.TempDir()
	o := rotOpts(dir)
	s := openT(t, o)
	defer func() { s.Close() }()
	m := node.NewMemoryStorage()
	save := func(u, equiv *node.Update) {
		t.Helper()
		storagetest.MustSave(t, s, u)
		m.Save(equiv, func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		})
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
			t.Fatal(d)
		}
	}
	if _, err := s.SnapshotData(core.SnapshotMeta{Index: 1, Term: 1}); err == nil || !contains(err, "no snapshot") {
		t.Fatalf("SnapshotData of an empty store: %v", err)
	}
	for i := uint64(0); i < 100; i++ {
		u := &node.Update{Entries: storagetest.NamedEntries(i*5+1, i*5+5, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 5}}
		save(u, u)
	}
	segs := len(listDir(t, dir, segSuffix))
	first := snapAt(450, 1)
	save(streamed(t, s, first, 440))
	if got := len(listDir(t, dir, segSuffix)); got >= segs || s.Stats().Released == 0 {
		t.Fatalf("%d segments before the snapshot, %d after", segs, got)
	}
	wantFiles(t, dir, "snap-450-1.snap")
	wantData(t, s, first)
	for _, meta := range []core.SnapshotMeta{{Index: 450, Term: 2}, {Index: 449, Term: 1}} {
		if _, err := s.SnapshotData(meta); err == nil || !contains(err, "index 450 term 1") {
			t.Fatalf("SnapshotData(%+v): %v", meta, err)
		}
	}
	// Bytes as snapfile.Write writes them.
	other := t.TempDir()
	ref, _, err := snapfile.Write(other, first, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "snap-450-1.snap"))
	b, _ := os.ReadFile(filepath.Join(other, ref.File))
	if !bytes.Equal(a, b) {
		t.Fatal("streamed snapshot file differs from snapfile.Write's")
	}

	storagetest.MustClose(t, s)
	s = openT(t, o)
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
	wantData(t, s, first) // the snapshot Open found

	// A second one, with entries and a hard state in the same update,
	// supersedes the first.
	second := snapAt(500, 1)
	u, equiv := streamed(t, s, second, 500)
	u.Entries, equiv.Entries = storagetest.NamedEntries(501, 510, 2), storagetest.NamedEntries(501, 510, 2)
	u.HardState = core.HardState{Term: 2, Vote: 1, Commit: 505}
	equiv.HardState = u.HardState
	save(u, equiv)
	wantFiles(t, dir, "snap-500-1.snap")
	wantData(t, s, second)
	if _, err := s.SnapshotData(first.Meta); err == nil || !contains(err, "index 500 term 1") {
		t.Fatalf("SnapshotData of the superseded snapshot: %v", err)
	}
	// A leader snapshot is served too.
	leader := storagetest.SnapshotWith(600, 3, "leader's")
	lu := &node.Update{Snapshot: leader, HardState: core.HardState{Term: 3, Commit: 600}}
	save(lu, lu)
	wantData(t, s, leader)
	storagetest.MustClose(t, s)
	s = openT(t, o)
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), m.Persisted()); d != "" {
		t.Fatalf("after reopen: %s", d)
	}
	wantData(t, s, leader)
	storagetest.MustClose(t, s)
	if _, err := s.SnapshotData(leader.Meta); !errors.Is(err, ErrClosed) {
		t.Fatalf("SnapshotData after Close: %v", err)
	}
	if _, err := s.CreateSnapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateSnapshot after Close: %v", err)
	}
}

// foreignFile is a node.SnapshotFile the store did not create.
type foreignFile struct{ aborted bool }

func (f *foreignFile) Write(p []byte) (int, error) { return len(p), nil }
func (f *foreignFile) Abort()                      { f.aborted = true }

// TestStreamedSnapshotRefused: an update whose streamed snapshot cannot be
// stored fails, its file is removed, and the stored snapshot is intact
// and served; the store goes on.
func TestStreamedSnapshotRefused(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(dir)
	s := openT(t, o)
	defer func() { storagetest.MustClose(t, s) }()
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 20, 1), HardState: core.HardState{Term: 1, Commit: 20}})
	old := snapAt(10, 1)
	u, _ := streamed(t, s, old, 5)
	storagetest.MustSave(t, s, u)
	want := storagetest.MustLoad(t, s)

	other := openT(t, testOpts(t.TempDir()))
	defer storagetest.MustClose(t, other)
	for _, tc := range []struct {
		name string
		edit func(u *node.Update)
		want string
	}{
		{"compaction beyond the snapshot", func(u *node.Update) { u.CompactTo = 16 }, "compaction to 16"},
		{"data and a file", func(u *node.Update) { u.LocalSnapshot.Data = []byte("x") }, "both data and a file"},
		{"no metadata", func(u *node.Update) { u.LocalSnapshot = nil }, "without a local snapshot"},
		{"commit beyond the log", func(u *node.Update) { u.HardState = core.HardState{Term: 1, Commit: 99} }, "commit index 99"},
	} {
		u, _ := streamed(t, s, snapAt(15, 1), 15)
		tc.edit(u)
		if err := storagetest.SaveWait(t, s, u); !contains(err, tc.want) {
			t.Fatalf("%s: Save: %v", tc.name, err)
		}
		wantFiles(t, dir, "snap-10-1.snap")
		wantData(t, s, old)
	}
	// A file from another store, and one the store never made.
	u, _ = streamed(t, other, snapAt(15, 1), 15)
	if err := storagetest.SaveWait(t, s, u); !contains(err, "not one this store created") {
		t.Fatalf("file of another store: %v", err)
	}
	wantFiles(t, other.opts.Dir)
	ff := &foreignFile{}
	err := storagetest.SaveWait(t, s, &node.Update{LocalSnapshot: &core.Snapshot{Meta: snapAt(15, 1).Meta}, LocalSnapshotFile: ff, CompactTo: 15})
	if !contains(err, "not one this store created") || !ff.aborted {
		t.Fatalf("foreign file: %v, aborted %v", err, ff.aborted)
	}
	// A file that was aborted, then saved by mistake.
	u, _ = streamed(t, s, snapAt(15, 1), 15)
	u.LocalSnapshotFile.Abort()
	if err := storagetest.SaveWait(t, s, u); !contains(err, "aborted") {
		t.Fatalf("aborted file: %v", err)
	}
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
		t.Fatal(d)
	}
	// The store goes on.
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(21, 21, 1)})
	wantFiles(t, dir, "snap-10-1.snap")
}

// TestStreamedSnapshotWriteFails: a failure after the file was committed
// but before any record referring to it was written (here the next segment
// cannot be allocated: EIO) fails the update and the store, removes the
// file, and leaves the stored snapshot intact across a reopen. Saves on a
// failed or closed store remove their files too.
func TestStreamedSnapshotWriteFails(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(dir)
	var broken atomic.Bool
	o.allocHook = func(int64) error {
		if broken.Load() {
			return syscall.EIO
		}
		return nil
	}
	s := openT(t, o)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 5, 1), HardState: core.HardState{Term: 1, Commit: 5}})
	old := snapAt(3, 1)
	u, _ := streamed(t, s, old, 3)
	storagetest.MustSave(t, s, u)
	want := storagetest.MustLoad(t, s)
	broken.Store(true)
	// Entries larger than the segment: the update needs the next one.
	u, _ = streamed(t, s, snapAt(5, 1), 5)
	big := storagetest.NamedEntries(6, 7, 1)
	for i := range big {
		big[i].Data = bytes.Repeat([]byte{'e'}, int(o.SegmentSize/2))
	}
	u.Entries = big
	if err := storagetest.SaveWait(t, s, u); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Save: %v", err)
	}
	wantFiles(t, dir, "snap-3-1.snap")
	wantData(t, s, old)
	// The store has failed: a later Save fails and removes its file.
	u, _ = streamed(t, s, snapAt(5, 1), 5)
	if err := storagetest.SaveWait(t, s, u); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Save on a failed store: %v", err)
	}
	wantFiles(t, dir, "snap-3-1.snap")
	// Closed: Save fails with ErrClosed and removes the file.
	u, _ = streamed(t, s, snapAt(5, 1), 5)
	s.Close()
	if err := storagetest.SaveWait(t, s, u); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	wantFiles(t, dir, "snap-3-1.snap")
	o.allocHook = nil
	s = openT(t, o)
	defer storagetest.MustClose(t, s)
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
		t.Fatal(d)
	}
	wantData(t, s, old)
}

// TestStreamedSnapshotNoSpace: a commit of a streamed file that fails for
// lack of space waits (SpaceErr reports it) and is retried until it
// succeeds.
func TestStreamedSnapshotNoSpace(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(dir)
	var calls atomic.Int32
	var s *Storage
	var seen error
	o.commitHook = func() error {
		switch calls.Add(1) {
		case 1:
			return syscall.ENOSPC
		case 2:
			seen = s.SpaceErr()
			return syscall.ENOSPC
		}
		return nil
	}
	s = openT(t, o)
	defer func() { storagetest.MustClose(t, s) }()
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 5, 1), HardState: core.HardState{Term: 1, Commit: 5}})
	snap := snapAt(4, 1)
	u, _ := streamed(t, s, snap, 4)
	storagetest.MustSave(t, s, u)
	if calls.Load() != 3 || !errors.Is(seen, syscall.ENOSPC) || s.SpaceErr() != nil {
		t.Fatalf("%d commits; SpaceErr %v while waiting, %v after", calls.Load(), seen, s.SpaceErr())
	}
	wantFiles(t, dir, "snap-4-1.snap")
	wantData(t, s, snap)
}

// TestStreamLeftovers: what a crash leaves of streamed snapshots is
// removed at Open and never taken for a snapshot: a file being written
// (CreateSnapshot, never saved), one complete but not renamed, and one
// renamed whose record was never written.
func TestStreamLeftovers(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(dir)
	s := openT(t, o)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 10, 1), HardState: core.HardState{Term: 1, Commit: 10}})
	snap := snapAt(8, 1)
	u, _ := streamed(t, s, snap, 8)
	storagetest.MustSave(t, s, u)
	want := storagetest.MustLoad(t, s)
	f, err := s.CreateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(streamData(10, 1)); err != nil {
		t.Fatal(err)
	}
	storagetest.MustClose(t, s) // the writer is left as a crash leaves it
	// A complete file under a temporary name of Create's kind, and a
	// renamed one no record refers to.
	whole, err := os.ReadFile(filepath.Join(dir, "snap-8-1.snap"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"snap-stream-0123456789abcdef.snap.tmp", "snap-10-1.snap"} {
		if err := os.WriteFile(filepath.Join(dir, name), whole, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if got := storagetest.DirNames(t, dir, func(n string) bool { return snapfile.IsTemp(n) }); len(got) != 2 {
		t.Fatalf("temporary files %v, want two", got)
	}
	var logs logBuffer
	o.Logger = logs.logger()
	s = openT(t, o)
	defer storagetest.MustClose(t, s)
	wantFiles(t, dir, "snap-8-1.snap")
	if !strings.Contains(logs.String(), "snap-stream-0123456789abcdef.snap.tmp") || !strings.Contains(logs.String(), "snap-10-1.snap") {
		t.Fatalf("log does not name the removed files:\n%s", logs.String())
	}
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
		t.Fatal(d)
	}
	wantData(t, s, snap)
}

// TestStreamConcurrent: CreateSnapshot and SnapshotData called while Saves
// are written (run with -race): SnapshotData serves either the data of the
// snapshot asked for or an error naming the one stored, never damaged or
// mixed data, and a snapshot is served once its Save is done.
func TestStreamConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, testOpts(dir))
	defer storagetest.MustClose(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 1, 1), HardState: core.HardState{Term: 1, Commit: 1}})
	const rounds = 6
	var latest atomic.Uint64 // index of the last snapshot whose Save is done
	u, _ := streamed(t, s, snapAt(1, 1), 1)
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
			snap := snapAt(i, 1)
			data, err := s.SnapshotData(snap.Meta)
			if err == nil && !bytes.Equal(data, snap.Data) || err != nil && !contains(err, "the stored snapshot is at") {
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
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(i, i, 1), HardState: core.HardState{Term: 1, Commit: i}})
		u, _ := streamed(t, s, snapAt(i, 1), i)
		storagetest.MustSave(t, s, u)
		wantData(t, s, snapAt(i, 1))
		latest.Store(i)
	}
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	wantFiles(t, dir, fmt.Sprintf("snap-%d-1.snap", 1+rounds))
}
