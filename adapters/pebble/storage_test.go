package pebblestore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// waitTimeout bounds every wait for a done callback: a deadlock guard, not
// a timing assertion.
const waitTimeout = 30 * time.Second

func openT(t testing.TB, o Options) *Storage {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func snapFiles(t testing.TB, dir string) []string {
	t.Helper()
	return storagetest.DirNames(t, dir, func(name string) bool { return strings.HasPrefix(name, snapfile.Prefix) })
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{},
		{Dir: t.TempDir(), BatchDelay: -1},
		{Dir: t.TempDir(), BatchBytes: -1},
	} {
		if s, err := Open(o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
	// Dir is created if missing.
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := openT(t, Options{Dir: dir})
	storagetest.MustClose(t, s)
	if _, err := os.Stat(filepath.Join(dir, dbSubdir)); err != nil {
		t.Fatal(err)
	}
}

// TestEachUpdateKind checks every kind of update, against the semantics of
// node.MemoryStorage, after the Save and after a reopen.
func TestEachUpdateKind(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	m := node.NewMemoryStorage()
	step := func(name string, u *node.Update) {
		t.Helper()
		var merr error
		m.Save(u, func(err error) { merr = err })
		err := storagetest.SaveWait(t, s, u)
		if (err == nil) != (merr == nil) {
			t.Fatalf("%s: Save error %v, model %v", name, err, merr)
		}
		want := m.Persisted()
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
			t.Fatalf("%s: %s", name, d)
		}
		storagetest.MustClose(t, s)
		s = openT(t, Options{Dir: dir})
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
			t.Fatalf("%s, after reopen: %s", name, d)
		}
	}
	if p := storagetest.MustLoad(t, s); !p.IsEmpty() || p.Snapshot != nil || p.Entries != nil {
		t.Fatalf("new store loads %+v", p)
	}
	step("append", &node.Update{Entries: storagetest.NamedEntries(1, 10, 1), HardState: core.HardState{Term: 1, Vote: 2, Commit: 3}, Sync: true})
	step("hard state only", &node.Update{HardState: core.HardState{Term: 2, Vote: 1, Commit: 5}})
	step("empty", &node.Update{Sync: true})
	step("overwrite suffix", &node.Update{Entries: storagetest.NamedEntries(7, 8, 2), Sync: true})
	step("gap", &node.Update{Entries: storagetest.NamedEntries(10, 11, 2), HardState: core.HardState{Term: 9}, Sync: true})
	step("index zero", &node.Update{Entries: storagetest.NamedEntries(0, 1, 2), Sync: true})
	step("local snapshot", &node.Update{LocalSnapshot: storagetest.SnapshotWith(6, 1, "state@6"), CompactTo: 4, Sync: true})
	if got := snapFiles(t, dir); !slices.Equal(got, []string{"snap-6-1.snap"}) {
		t.Fatalf("snapshot files %v", got)
	}
	step("local snapshot, compact beyond the log", &node.Update{LocalSnapshot: storagetest.SnapshotWith(8, 2, "state@8"), CompactTo: 20, Sync: true})
	step("append after compaction", &node.Update{Entries: storagetest.NamedEntries(9, 12, 2), Sync: true})
	step("append leaving gap after snapshot", &node.Update{Entries: storagetest.NamedEntries(14, 15, 2), Sync: true})
	step("overwrite below the first entry", &node.Update{Entries: storagetest.NamedEntries(5, 6, 3), Sync: true})
	step("same snapshot, other data", &node.Update{LocalSnapshot: storagetest.SnapshotWith(8, 2, "other state@8"), CompactTo: 5, Sync: true})
	if got := snapFiles(t, dir); !slices.Equal(got, []string{"snap-8-2-1.snap"}) {
		t.Fatalf("snapshot files %v", got)
	}
	step("same snapshot, same data", &node.Update{LocalSnapshot: storagetest.SnapshotWith(8, 2, "other state@8"), Sync: true})
	step("leader snapshot", &node.Update{Snapshot: storagetest.SnapshotWith(20, 4, "state@20"), HardState: core.HardState{Term: 4, Commit: 20}, Sync: true})
	if got := snapFiles(t, dir); !slices.Equal(got, []string{"snap-20-4.snap"}) {
		t.Fatalf("snapshot files %v", got)
	}
	step("append after leader snapshot", &node.Update{Entries: storagetest.NamedEntries(21, 25, 4), Sync: true})
	step("leader snapshot with entries", &node.Update{
		Snapshot: storagetest.SnapshotWith(30, 5, ""), Entries: storagetest.NamedEntries(31, 33, 5),
		HardState: core.HardState{Term: 5, Commit: 31}, Sync: true,
	})
	step("both snapshots", &node.Update{
		Snapshot: storagetest.SnapshotWith(40, 6, "leader"), LocalSnapshot: storagetest.SnapshotWith(41, 6, "local"), CompactTo: 41,
		Entries: storagetest.NamedEntries(41, 42, 6), Sync: true,
	})
	step("empty snapshot", &node.Update{Snapshot: &core.Snapshot{}, Sync: true})
	step("append from 1", &node.Update{Entries: storagetest.NamedEntries(1, 3, 7), Sync: true})
	storagetest.MustClose(t, s)
}

// TestInvalidUpdates: updates that could not be read back are refused and
// write nothing.
func TestInvalidUpdates(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	defer storagetest.MustClose(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 3, 1), Sync: true})
	bad := []*node.Update{
		{Entries: []core.Entry{{Index: 4, Term: 1}, {Index: 6, Term: 1}}, HardState: core.HardState{Term: 9}},
		{Entries: []core.Entry{{Index: 4, Term: 1, Type: 7}}},
		{LocalSnapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 2}}}, // term 0
		{Snapshot: &core.Snapshot{Meta: core.SnapshotMeta{Index: 2, Term: 1, Config: core.ConfState{Voters: []uint64{2, 1}}}}},
	}
	for i, u := range bad {
		if err := storagetest.SaveWait(t, s, u); err == nil {
			t.Errorf("update %d accepted", i)
		}
	}
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), core.Persisted{Entries: storagetest.NamedEntries(1, 3, 1)}); d != "" {
		t.Fatal(d)
	}
	// The store still works.
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(4, 4, 1), Sync: true})
}

// gen makes random updates for a model of the stored state.
type gen struct {
	rng *rand.Rand
}

func (g *gen) config() core.ConfState {
	var cs core.ConfState
	for id := uint64(1); id <= 5; id++ {
		switch g.rng.IntN(3) {
		case 0:
			cs.Voters = append(cs.Voters, id)
		case 1:
			cs.Learners = append(cs.Learners, id)
		}
	}
	return cs
}

func (g *gen) data(max int) []byte {
	if g.rng.IntN(8) == 0 {
		return nil
	}
	b := make([]byte, g.rng.IntN(max+1))
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

func (g *gen) snapshot(index, term uint64) *core.Snapshot {
	if index == 0 {
		term = 0
	} else if term == 0 {
		term = 1
	}
	return &core.Snapshot{Meta: core.SnapshotMeta{Index: index, Term: term, Config: g.config()}, Data: g.data(300)}
}

func (g *gen) entries(from uint64, n int, term uint64) []core.Entry {
	es := make([]core.Entry, n)
	for i := range es {
		es[i] = core.Entry{Index: from + uint64(i), Term: term, Type: core.EntryType(g.rng.IntN(2)), Data: g.data(100)}
	}
	return es
}

// update returns a random update for the stored state p.
func (g *gen) update(p core.Persisted) *node.Update {
	r := g.rng
	var first, last, snapIndex, snapTerm uint64
	if p.Snapshot != nil {
		snapIndex, snapTerm = p.Snapshot.Meta.Index, p.Snapshot.Meta.Term
	}
	next := snapIndex + 1
	if n := len(p.Entries); n > 0 {
		first, last = p.Entries[0].Index, p.Entries[n-1].Index
		next = last + 1
	}
	term := p.HardState.Term + uint64(r.IntN(2))
	u := &node.Update{Sync: r.IntN(4) != 0}
	if r.IntN(3) == 0 {
		u.HardState = core.HardState{Term: term, Vote: uint64(r.IntN(4)), Commit: uint64(r.IntN(int(next) + 1))}
	}
	// upTo returns a random number in [0, n], 0 if n < 0.
	upTo := func(n int) uint64 { return uint64(r.IntN(max(n, 0) + 1)) }
	switch k := r.IntN(20); {
	case k < 8: // append
		u.Entries = g.entries(next, 1+r.IntN(6), term)
	case k < 10: // overwrite from anywhere in (or before) the log
		from := max(1, int(next)-r.IntN(int(next-first)+3))
		u.Entries = g.entries(uint64(from), 1+r.IntN(6), term+1)
	case k < 11: // gap
		u.Entries = g.entries(next+1+upTo(2), 1+r.IntN(3), term)
	case k < 14: // local snapshot
		idx := snapIndex + upTo(int(next)-int(snapIndex))
		u.LocalSnapshot = g.snapshot(idx, term)
		u.CompactTo = uint64(max(0, int(idx)-r.IntN(4)+1))
		if r.IntN(3) == 0 {
			u.Entries = g.entries(max(next, idx+1), 1+r.IntN(3), term)
		}
	case k < 15: // the same snapshot again, same or other data
		if p.Snapshot != nil {
			s := *p.Snapshot
			if r.IntN(2) == 0 {
				s.Data = g.data(50)
			}
			u.LocalSnapshot = &s
			u.CompactTo = upTo(int(next))
		}
	case k < 17: // leader snapshot, with entries after it sometimes
		idx := snapIndex + upTo(int(next)-int(snapIndex)+4)
		if r.IntN(20) == 0 {
			idx = 0
		}
		u.Snapshot = g.snapshot(idx, max(term, snapTerm))
		if r.IntN(2) == 0 {
			u.Entries = g.entries(u.Snapshot.Meta.Index+1, 1+r.IntN(4), max(term, snapTerm))
		}
	case k < 18: // both snapshots
		idx := snapIndex + upTo(4)
		u.Snapshot = g.snapshot(idx, term)
		u.LocalSnapshot = g.snapshot(idx+upTo(1), term)
		u.CompactTo = u.LocalSnapshot.Meta.Index
	default: // hard state only, or empty
	}
	return u
}

// TestModel applies random sequences of updates, queued in bursts so that
// they are grouped, to the store and to node.MemoryStorage, and compares
// what they load after every burst and after reopening.
func TestModel(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			testModel(t, seed)
		})
	}
}

func testModel(t *testing.T, seed uint64) {
	dir := t.TempDir()
	o := Options{Dir: dir, NoSync: seed%2 == 1}
	if seed%3 == 2 {
		o.BatchBytes = 200 // small groups
	}
	s := openT(t, o)
	defer func() { s.Close() }()
	m := node.NewMemoryStorage()
	g := &gen{rng: rand.New(rand.NewPCG(seed, 99))}
	var wantUpdates uint64
	steps := 250
	if testing.Short() {
		steps = 60
	}
	for step := range steps {
		burst := 1 + g.rng.IntN(4)
		us := make([]*node.Update, burst)
		merrs := make([]error, burst)
		for i := range us {
			us[i] = g.update(m.Persisted())
			m.Save(us[i], func(err error) { merrs[i] = err })
			if merrs[i] == nil {
				wantUpdates++
			}
		}
		var mu sync.Mutex
		var got []int
		errs := make([]error, burst)
		all := make(chan struct{})
		for i, u := range us {
			s.Save(u, func(err error) {
				mu.Lock()
				defer mu.Unlock()
				errs[i] = err
				got = append(got, i)
				if len(got) == burst {
					close(all)
				}
			})
		}
		select {
		case <-all:
		case <-time.After(waitTimeout):
			t.Fatal("done callbacks not called")
		}
		for i := range us {
			if got[i] != i {
				t.Fatalf("step %d: done order %v", step, got)
			}
			if (errs[i] == nil) != (merrs[i] == nil) {
				t.Fatalf("step %d update %d (%+v): error %v, model %v", step, i, us[i], errs[i], merrs[i])
			}
		}
		want := m.Persisted()
		if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
			t.Fatalf("step %d: %s", step, d)
		}
		if st := s.Stats(); st.Updates != wantUpdates {
			t.Fatalf("step %d: Stats.Updates %d, want %d", step, st.Updates, wantUpdates)
		}
		if g.rng.IntN(25) == 0 || step == steps-1 {
			storagetest.MustClose(t, s)
			s = openT(t, o)
			wantUpdates = 0
			if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
				t.Fatalf("step %d after reopen: %s", step, d)
			}
			files := snapFiles(t, dir)
			if want.Snapshot == nil && len(files) != 0 || want.Snapshot != nil && len(files) != 1 {
				t.Fatalf("step %d after reopen: snapshot files %v", step, files)
			}
		}
	}
}

// blockFirst saves a first update whose done blocks until the returned
// release is called, so that the Saves made meanwhile queue up.
func blockFirst(t *testing.T, s *Storage, u *node.Update, order *[]int, mu *sync.Mutex) (release func()) {
	t.Helper()
	ch := make(chan struct{})
	entered := make(chan struct{})
	s.Save(u, func(err error) {
		if err != nil {
			t.Errorf("first Save: %v", err)
		}
		mu.Lock()
		*order = append(*order, 0)
		mu.Unlock()
		close(entered)
		<-ch
	})
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("first done not called")
	}
	return func() { close(ch) }
}

// TestGroupCommit: Saves queued while the committer is busy are written in
// one batch with one fsync, and their callbacks run in order. The first
// done blocks the completer; the committer runs ahead of it by at most the
// completions it can hand over (cap(completions)) plus the one it holds,
// after which the Saves queue up and merge.
func TestGroupCommit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		batchBytes int
		maxSyncs   uint64
	}{
		{"merged", 0, 7},
		{"one per group", 1, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, Options{Dir: dir, BatchBytes: tc.batchBytes})
			const n = 100
			var mu sync.Mutex
			var order []int
			release := blockFirst(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 1, 1), Sync: true}, &order, &mu)
			all := make(chan struct{})
			for i := 1; i < n; i++ {
				s.Save(&node.Update{
					Entries:   storagetest.NamedEntries(uint64(i+1), uint64(i+1), 1),
					HardState: core.HardState{Term: 1, Commit: uint64(i)},
					Sync:      true,
				}, func(err error) {
					if err != nil {
						t.Errorf("Save %d: %v", i, err)
					}
					mu.Lock()
					defer mu.Unlock()
					order = append(order, i)
					if len(order) == n {
						close(all)
					}
				})
			}
			release()
			select {
			case <-all:
			case <-time.After(waitTimeout):
				t.Fatal("done callbacks not called")
			}
			for i, v := range order {
				if v != i {
					t.Fatalf("done order %v", order)
				}
			}
			st := s.Stats()
			t.Logf("%+v", st)
			if st.Updates != n || st.Syncs > tc.maxSyncs || st.Syncs != st.Commits {
				t.Fatalf("stats %+v, want %d updates and at most %d syncs", st, n, tc.maxSyncs)
			}
			if tc.batchBytes == 1 && st.Syncs != n {
				t.Fatalf("stats %+v, want one sync per update", st)
			}
			storagetest.MustClose(t, s)
			s = openT(t, Options{Dir: dir})
			defer storagetest.MustClose(t, s)
			want := core.Persisted{HardState: core.HardState{Term: 1, Commit: n - 1}, Entries: storagetest.NamedEntries(1, n, 1)}
			if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestBatchDelay: with a long BatchDelay the committer waits for
// BatchBytes, then commits the group at once; Close commits what waits.
func TestBatchDelay(t *testing.T) {
	dir := t.TempDir()
	u := func(i int) *node.Update {
		return &node.Update{Entries: []core.Entry{{Index: uint64(i), Term: 1, Data: make([]byte, 36)}}, Sync: true}
	}
	size := updateSize(u(1))
	s := openT(t, Options{Dir: dir, BatchDelay: time.Hour, BatchBytes: 10 * size})
	var wg sync.WaitGroup
	for i := 1; i <= 10; i++ {
		wg.Add(1)
		s.Save(u(i), func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Syncs != 1 || st.Commits != 1 || st.Updates != 10 {
		t.Fatalf("stats %+v, want one commit of 10 updates", st)
	}
	var done []int
	for i := 11; i <= 13; i++ {
		s.Save(u(i), func(err error) {
			if err != nil {
				t.Error(err)
			}
			done = append(done, i) // the committer calls done callbacks one at a time
		})
	}
	storagetest.MustClose(t, s)
	if !slices.Equal(done, []int{11, 12, 13}) {
		t.Fatalf("done callbacks after Close: %v", done)
	}
	s = openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	if p := storagetest.MustLoad(t, s); len(p.Entries) != 13 {
		t.Fatalf("loaded %d entries, want 13", len(p.Entries))
	}
}

func TestClose(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 1, 1), Sync: true})
	storagetest.MustClose(t, s)
	storagetest.MustClose(t, s) // again
	if err := storagetest.SaveWait(t, s, &node.Update{Entries: storagetest.NamedEntries(2, 2, 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}
	if _, err := s.Load(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close: %v", err)
	}
}

// TestNoSync: with NoSync nothing is fsynced, and a clean Close still
// keeps everything.
func TestNoSync(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, NoSync: true})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 5, 1), Sync: true})
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(3, 1, "s3"), CompactTo: 3, Sync: true})
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(4, 1, "s4"), CompactTo: 4, Sync: true})
	if st := s.Stats(); st.Syncs != 0 || st.Commits != 3 {
		t.Fatalf("stats %+v, want 3 commits and no sync", st)
	}
	storagetest.MustClose(t, s)
	if got := snapFiles(t, dir); !slices.Equal(got, []string{"snap-4-1.snap"}) {
		t.Fatalf("snapshot files after Close %v", got)
	}
	s = openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	want := core.Persisted{Snapshot: storagetest.SnapshotWith(4, 1, "s4"), Entries: storagetest.NamedEntries(5, 5, 1)}
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), want); d != "" {
		t.Fatal(d)
	}
}

// TestOrphanFiles: Open deletes temporary files and snapshot files older
// than the one in use, keeps newer unreferenced ones (a crash between
// writing a snapshot file and committing its reference leaves one), and
// leaves other files alone.
func TestOrphanFiles(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	storagetest.MustSave(t, s, &node.Update{Snapshot: storagetest.SnapshotWith(5, 1, "five"), Sync: true})
	storagetest.MustClose(t, s)
	for _, name := range []string{"snap-9-2.snap", "snap-9-2.snap.tmp", "snap-5-1-1.snap", "snap-3-1.snap", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	if got := snapFiles(t, dir); !slices.Equal(got, []string{"snap-5-1.snap", "snap-9-2.snap"}) {
		t.Fatalf("snapshot files %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal(err)
	}
	if p := storagetest.MustLoad(t, s); p.Snapshot == nil || string(p.Snapshot.Data) != "five" {
		t.Fatalf("loaded %+v", p)
	}
}

// TestFailStop: after a failed write every later Save fails, and nothing
// of the failed group is stored.
func TestFailStop(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 3, 1), Sync: true})
	// A directory where the snapshot's temporary file goes makes its
	// creation fail.
	if err := os.Mkdir(filepath.Join(dir, "snap-2-1.snap.tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := storagetest.SaveWait(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(2, 1, "two"), CompactTo: 2, Entries: storagetest.NamedEntries(4, 4, 1), Sync: true}); err == nil {
		t.Fatal("Save succeeded")
	}
	err := storagetest.SaveWait(t, s, &node.Update{Entries: storagetest.NamedEntries(4, 4, 1), Sync: true})
	if err == nil || !strings.Contains(err.Error(), "earlier write failed") {
		t.Fatalf("Save after a failure: %v", err)
	}
	storagetest.MustClose(t, s)
	if err := os.Remove(filepath.Join(dir, "snap-2-1.snap.tmp")); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Dir: dir})
	defer storagetest.MustClose(t, s)
	if d := storagetest.DiffPersisted(storagetest.MustLoad(t, s), core.Persisted{Entries: storagetest.NamedEntries(1, 3, 1)}); d != "" {
		t.Fatal(d)
	}
}

// TestLoadReturnsCopies: what Load returns is not changed by later Saves.
func TestLoadReturnsCopies(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	defer storagetest.MustClose(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, 3, 1), Sync: true})
	p := storagetest.MustLoad(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(2, 3, 2), Snapshot: nil, Sync: true})
	if d := storagetest.DiffPersisted(p, core.Persisted{Entries: storagetest.NamedEntries(1, 3, 1)}); d != "" {
		t.Fatal(d)
	}
}
