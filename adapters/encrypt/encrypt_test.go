package encrypt_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// fixed is a backend whose Load returns a fixed state: what a test made of
// another backend's records.
type fixed struct{ p core.Persisted }

func (f *fixed) Load() (core.Persisted, error)         { return f.p, nil }
func (f *fixed) Save(u *node.Update, done func(error)) { done(errors.New("fixed: read only")) }

func mustOpen(t *testing.T, opts encrypt.Options, open func() (node.Storage, error)) encrypt.Store {
	t.Helper()
	s, err := encrypt.Open(opts, open)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func entries(from, to, term uint64, prefix string) []core.Entry {
	var out []core.Entry
	for i := from; i <= to; i++ {
		out = append(out, core.Entry{Index: i, Term: term, Data: fmt.Appendf(nil, "%s-%d", prefix, i)})
	}
	return out
}

// dirState returns every file of dir with a hash of its contents.
func dirState(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[path] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameDir(t *testing.T, before, after map[string][32]byte) {
	t.Helper()
	for p, h := range before {
		if h2, ok := after[p]; !ok || h2 != h {
			t.Errorf("%s was changed or removed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was created", p)
		}
	}
}

// grepDir fails the test for every file of dir that holds one of values.
func grepDir(t *testing.T, dir string, values [][]byte) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, v := range values {
			if bytes.Contains(b, v) {
				t.Errorf("%s holds %q in plaintext", path, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no file in %s", dir)
	}
}

// TestMovedRecordFails seals entries and a snapshot, then presents their
// ciphertext at other places: each is refused with ErrCorrupt.
func TestMovedRecordFails(t *testing.T) {
	dir := t.TempDir()
	mem := node.NewMemoryStorage()
	opts := encrypt.Options{Dir: dir, Key: testKey(t, 1)}
	s := mustOpen(t, opts, func() (node.Storage, error) { return mem, nil })
	storagetest.MustSave(t, s, &node.Update{Snapshot: storagetest.SnapshotWith(10, 2, strings.Repeat("state ", 30000))})
	storagetest.MustSave(t, s, &node.Update{Entries: entries(11, 14, 2, "value")})
	raw := storagetest.MustLoad(t, mem)
	load := func(p core.Persisted) error {
		s, err := encrypt.Open(opts, func() (node.Storage, error) { return &fixed{p}, nil })
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Load()
		return err
	}
	if err := load(raw); err != nil {
		t.Fatalf("untouched records: %v", err)
	}
	clone := func() core.Persisted {
		p := raw
		p.Entries = slices.Clone(raw.Entries)
		for i := range p.Entries {
			p.Entries[i].Data = slices.Clone(p.Entries[i].Data)
		}
		sn := *raw.Snapshot
		sn.Data = slices.Clone(sn.Data)
		p.Snapshot = &sn
		return p
	}
	for _, tc := range []struct {
		name string
		edit func(p *core.Persisted)
	}{
		{"entries swapped", func(p *core.Persisted) { p.Entries[0].Data, p.Entries[1].Data = p.Entries[1].Data, p.Entries[0].Data }},
		{"entry at another term", func(p *core.Persisted) { p.Entries[2].Term = 3 }},
		{"entry at another index", func(p *core.Persisted) {
			p.Entries = p.Entries[1:]
			for i := range p.Entries {
				p.Entries[i].Index--
			}
		}},
		{"entry of another type", func(p *core.Persisted) { p.Entries[3].Type = core.EntryConfChange }},
		{"entry's ciphertext flipped", func(p *core.Persisted) { d := p.Entries[1].Data; d[len(d)-20] ^= 1 }},
		{"entry's nonce flipped", func(p *core.Persisted) { p.Entries[1].Data[8] ^= 1 }},
		{"entry in plaintext", func(p *core.Persisted) { p.Entries[1].Data = []byte("forged") }},
		{"entry emptied", func(p *core.Persisted) { p.Entries[1].Data = nil }},
		{"snapshot at another index", func(p *core.Persisted) { p.Snapshot.Meta.Index = 11 }},
		{"snapshot at another term", func(p *core.Persisted) { p.Snapshot.Meta.Term = 3 }},
		{"snapshot truncated to its first chunk", func(p *core.Persisted) {
			n := binary.BigEndian.Uint32(p.Snapshot.Data[21+1:])
			p.Snapshot.Data = p.Snapshot.Data[:21+17+int(n)]
		}},
		{"snapshot without its end frame", func(p *core.Persisted) { p.Snapshot.Data = p.Snapshot.Data[:len(p.Snapshot.Data)-(17+8+16)] }},
		{"snapshot chunk flipped", func(p *core.Persisted) { p.Snapshot.Data[100] ^= 0x80 }},
		{"entry as snapshot", func(p *core.Persisted) { p.Snapshot.Data = p.Entries[0].Data }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := clone()
			tc.edit(&p)
			err := load(p)
			if !errors.Is(err, encrypt.ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestWrongKeyRefused opens an encrypted directory with another key: the
// refusal names the keys, and nothing in the directory changes.
func TestWrongKeyRefused(t *testing.T) {
	dir := t.TempDir()
	a, b := testKey(t, 1), testKey(t, 2)
	s := mustOpen(t, encrypt.Options{Dir: dir, Key: a}, openWal(dir))
	storagetest.MustSave(t, s, &node.Update{Entries: entries(1, 5, 1, "v"), HardState: core.HardState{Term: 1, Commit: 5}})
	storagetest.MustClose(t, s)
	before := dirState(t, dir)
	opened := false
	_, err := encrypt.Open(encrypt.Options{Dir: dir, Key: b}, func() (node.Storage, error) {
		opened = true
		return openWal(dir)()
	})
	if !errors.Is(err, encrypt.ErrKey) || !strings.Contains(err.Error(), "wrong key") ||
		!strings.Contains(err.Error(), a.ID().String()) || !strings.Contains(err.Error(), b.ID().String()) {
		t.Fatalf("open with another key: %v, want ErrKey naming both key IDs", err)
	}
	if opened {
		t.Error("the backend was opened")
	}
	sameDir(t, before, dirState(t, dir))
}

// TestMissingKeyRefused rotates from key A to key B, then opens with B
// only while entries sealed with A are stored: refused before the backend
// is opened (Pebble rewrites files when it opens), naming A, and nothing
// changes; on wal and on pebble.
func TestMissingKeyRefused(t *testing.T) {
	for _, bk := range []struct {
		name string
		open func(string) func() (node.Storage, error)
	}{{"wal", openWal}, {"pebble", openPebble}} {
		t.Run(bk.name, func(t *testing.T) {
			dir := t.TempDir()
			a, b := testKey(t, 1), testKey(t, 2)
			s := mustOpen(t, encrypt.Options{Dir: dir, Key: a}, bk.open(dir))
			storagetest.MustSave(t, s, &node.Update{Entries: entries(1, 3, 1, "v")})
			storagetest.MustClose(t, s)
			s = mustOpen(t, encrypt.Options{Dir: dir, Key: b, OldKeys: []encrypt.Key{a}}, bk.open(dir))
			storagetest.MustLoad(t, s)
			storagetest.MustSave(t, s, &node.Update{Entries: entries(4, 6, 1, "v")})
			storagetest.MustClose(t, s)
			before := dirState(t, dir)
			opened := false
			_, err := encrypt.Open(encrypt.Options{Dir: dir, Key: b}, func() (node.Storage, error) {
				opened = true
				return bk.open(dir)()
			})
			if !errors.Is(err, encrypt.ErrMissingKey) || !strings.Contains(err.Error(), a.ID().String()) || !strings.Contains(err.Error(), "not configured") {
				t.Fatalf("open without key A: %v, want ErrMissingKey naming %s", err, a.ID())
			}
			if opened {
				t.Error("the backend was opened")
			}
			sameDir(t, before, dirState(t, dir))
		})
	}
}

// TestRetiredKeyAndLoadBackstop: once a snapshot covers the last record
// sealed with an old key, the marker stops listing it (so the directory
// opens without it); a record sealed with a key that is not configured
// and not listed (an old copy of a record, say) is still refused by Load.
func TestRetiredKeyAndLoadBackstop(t *testing.T) {
	dir := t.TempDir()
	mem := node.NewMemoryStorage()
	inner := func() (node.Storage, error) { return mem, nil }
	a, b := testKey(t, 1), testKey(t, 2)
	s := mustOpen(t, encrypt.Options{Dir: dir, Key: a}, inner)
	storagetest.MustLoad(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: entries(1, 3, 1, "v")})
	raw := storagetest.MustLoad(t, mem)
	s = mustOpen(t, encrypt.Options{Dir: dir, Key: b, OldKeys: []encrypt.Key{a}}, inner)
	storagetest.MustLoad(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: entries(4, 6, 1, "v")})
	if keys, _, _ := encrypt.MarkerKeys(dir); len(keys) != 2 {
		t.Fatalf("marker keys while both are in use: %v", keys)
	}
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(5, 1, "state"), CompactTo: 5})
	if keys, _, _ := encrypt.MarkerKeys(dir); !slices.Equal(keys, []string{b.ID().String()}) {
		t.Fatalf("marker keys after the snapshot: %v, want only %s", keys, b.ID())
	}
	if _, err := encrypt.Open(encrypt.Options{Dir: dir, Key: b}, inner); err != nil {
		t.Fatalf("open without the retired key: %v", err)
	}
	old, err := encrypt.Open(encrypt.Options{Dir: dir, Key: b}, func() (node.Storage, error) { return &fixed{raw}, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Load(); !errors.Is(err, encrypt.ErrMissingKey) || !strings.Contains(err.Error(), a.ID().String()) {
		t.Fatalf("Load of records sealed with a retired key: %v, want ErrMissingKey naming %s", err, a.ID())
	}
}

// TestPlainAndEncryptedDirsRefused opens a plain directory with
// encryption and an encrypted one without: both refused, nothing changed.
func TestPlainAndEncryptedDirsRefused(t *testing.T) {
	plain := t.TempDir()
	ws, err := openWal(plain)()
	if err != nil {
		t.Fatal(err)
	}
	storagetest.MustSave(t, ws, &node.Update{Entries: entries(1, 3, 1, "v")})
	storagetest.MustClose(t, ws.(storagetest.Store))
	before := dirState(t, plain)
	_, err = encrypt.Open(encrypt.Options{Dir: plain, Key: testKey(t, 1)}, openWal(plain))
	if !errors.Is(err, encrypt.ErrKey) || !strings.Contains(err.Error(), "without encryption") {
		t.Fatalf("plain directory opened with encryption: %v, want ErrKey", err)
	}
	sameDir(t, before, dirState(t, plain))
	if err := encrypt.CheckPlain(plain); err != nil {
		t.Fatalf("CheckPlain on a plain directory: %v", err)
	}

	enc := t.TempDir()
	s := mustOpen(t, encrypt.Options{Dir: enc, Key: testKey(t, 1)}, openWal(enc))
	storagetest.MustSave(t, s, &node.Update{Entries: entries(1, 3, 1, "v")})
	storagetest.MustClose(t, s)
	err = encrypt.CheckPlain(enc)
	if !errors.Is(err, encrypt.ErrKey) || !strings.Contains(err.Error(), "encrypted") || !strings.Contains(err.Error(), testKey(t, 1).ID().String()) {
		t.Fatalf("CheckPlain on an encrypted directory: %v, want ErrKey naming the key", err)
	}
}

// rawKeys returns the key ID of each stored entry, read from the backend
// without the wrapper.
func rawKeys(t *testing.T, dir string) map[uint64]string {
	t.Helper()
	ws, err := openWal(dir)()
	if err != nil {
		t.Fatal(err)
	}
	defer storagetest.MustClose(t, ws.(storagetest.Store))
	p := storagetest.MustLoad(t, ws)
	out := map[uint64]string{}
	for _, e := range p.Entries {
		out[e.Index] = fmt.Sprintf("%x", e.Data[1:5])
	}
	return out
}

// TestRotation: entries sealed with the old key stay readable after a new
// key becomes active, new entries use the new key, and once a snapshot
// covers the old entries (and they are compacted) the old key is no
// longer in use and can be dropped.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	a, b := testKey(t, 1), testKey(t, 2)
	s := mustOpen(t, encrypt.Options{Dir: dir, Key: a}, openWal(dir))
	storagetest.MustLoad(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: entries(1, 5, 1, "old"), HardState: core.HardState{Term: 1, Commit: 5}})
	if u := s.Usage(); !slices.Equal(u.InUse, []string{a.ID().String()}) {
		t.Fatalf("usage before rotation: %+v", u)
	}
	storagetest.MustClose(t, s)

	opts := encrypt.Options{Dir: dir, Key: b, OldKeys: []encrypt.Key{a}}
	s = mustOpen(t, opts, openWal(dir))
	p := storagetest.MustLoad(t, s)
	if !slices.EqualFunc(p.Entries, entries(1, 5, 1, "old"), func(x, y core.Entry) bool { return x.Index == y.Index && bytes.Equal(x.Data, y.Data) }) {
		t.Fatalf("old entries after rotation: %v", p.Entries)
	}
	storagetest.MustSave(t, s, &node.Update{Entries: entries(6, 10, 2, "new"), HardState: core.HardState{Term: 2, Commit: 10}})
	u := s.Usage()
	want := []string{a.ID().String(), b.ID().String()}
	slices.Sort(want)
	if !slices.Equal(u.InUse, want) || u.Active != b.ID().String() || len(u.Entries) != 2 ||
		u.Entries[0] != (encrypt.EntryRange{Key: a.ID().String(), First: 1, Last: 5}) ||
		u.Entries[1] != (encrypt.EntryRange{Key: b.ID().String(), First: 6, Last: 10}) {
		t.Fatalf("usage after new writes: %+v", u)
	}
	storagetest.MustClose(t, s)
	for i, id := range rawKeys(t, dir) {
		if wantID := map[bool]string{true: a.ID().String(), false: b.ID().String()}[i <= 5]; id != wantID {
			t.Errorf("entry %d is sealed with %s, want %s", i, id, wantID)
		}
	}

	// A snapshot that covers the old entries, compacting them away.
	s = mustOpen(t, opts, openWal(dir))
	storagetest.MustLoad(t, s)
	f, err := s.(node.SnapshotStore).CreateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("state at 7")); err != nil {
		t.Fatal(err)
	}
	snap := storagetest.SnapshotWith(7, 2, "")
	snap.Data = nil
	storagetest.MustSave(t, s, &node.Update{LocalSnapshot: snap, LocalSnapshotFile: f, CompactTo: 7, Sync: true})
	u = s.Usage()
	if !slices.Equal(u.InUse, []string{b.ID().String()}) || u.Snapshot == nil || u.Snapshot.Key != b.ID().String() ||
		len(u.Entries) != 1 || u.Entries[0] != (encrypt.EntryRange{Key: b.ID().String(), First: 8, Last: 10}) {
		t.Fatalf("usage after the snapshot: %+v", u)
	}
	storagetest.MustClose(t, s)

	// Key A can go: the directory opens and loads with B alone.
	s = mustOpen(t, encrypt.Options{Dir: dir, Key: b}, openWal(dir))
	p = storagetest.MustLoad(t, s)
	if string(p.Snapshot.Data) != "state at 7" || storagetest.Span(p.Entries) != "[8..10]" {
		t.Fatalf("after dropping key A: snapshot %q, entries %s", p.Snapshot.Data, storagetest.Span(p.Entries))
	}
	if u := s.Usage(); !slices.Equal(u.InUse, []string{b.ID().String()}) {
		t.Fatalf("usage reloaded: %+v", u)
	}
	storagetest.MustClose(t, s)
}

// TestStreamedSnapshotEncrypted streams a large snapshot into the
// backend's file: the file holds no plaintext, and the data reads back
// through SnapshotData and Load, only for its own index and term.
func TestStreamedSnapshotEncrypted(t *testing.T) {
	for _, bk := range []struct {
		name string
		open func(string) func() (node.Storage, error)
	}{{"wal", openWal}, {"pebble", openPebble}} {
		t.Run(bk.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := encrypt.Options{Dir: dir, Key: testKey(t, 1)}
			s := mustOpen(t, opts, bk.open(dir))
			storagetest.MustLoad(t, s)
			storagetest.MustSave(t, s, &node.Update{Entries: entries(1, 20, 1, "ENTRYSECRET")})
			var data []byte
			for i := range 20000 {
				data = fmt.Appendf(data, "SNAPSECRET-%06d;", i)
			}
			f, err := s.(node.SnapshotStore).CreateSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			for b := data; len(b) > 0; {
				k := min(len(b), 1000)
				if _, err := f.Write(b[:k]); err != nil {
					t.Fatal(err)
				}
				b = b[k:]
			}
			snap := storagetest.SnapshotWith(15, 1, "")
			snap.Data = nil
			storagetest.MustSave(t, s, &node.Update{LocalSnapshot: snap, LocalSnapshotFile: f, CompactTo: 10, Sync: true})
			got, err := s.(node.SnapshotStore).SnapshotData(snap.Meta)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("SnapshotData: %d bytes, %v; want %d bytes", len(got), err, len(data))
			}
			other := snap.Meta
			other.Term = 2
			if _, err := s.(node.SnapshotStore).SnapshotData(other); err == nil {
				t.Fatal("SnapshotData served the snapshot for another term")
			}
			storagetest.MustClose(t, s)
			grepDir(t, dir, [][]byte{[]byte("SNAPSECRET"), []byte("ENTRYSECRET")}) // long enough never to occur by chance
			s = mustOpen(t, opts, bk.open(dir))
			p := storagetest.MustLoad(t, s)
			if !bytes.Equal(p.Snapshot.Data, data) || p.Snapshot.Meta.Index != 15 {
				t.Fatalf("reloaded snapshot: index %d, %d bytes", p.Snapshot.Meta.Index, len(p.Snapshot.Data))
			}
			storagetest.MustClose(t, s)
		})
	}
}

// TestNoncesNeverRepeat writes through many opens of one directory, some
// that only load, and checks that every stored record has its own nonce,
// that epochs grow from open to open, and that an open that writes
// nothing leaves the marker as it was.
func TestNoncesNeverRepeat(t *testing.T) {
	dir := t.TempDir()
	opts := encrypt.Options{Dir: dir, Key: testKey(t, 1)}
	var last uint32
	seen := map[string]uint64{}
	next := uint64(1)
	for round := range 6 {
		s := mustOpen(t, opts, openWal(dir))
		storagetest.MustLoad(t, s)
		if round%2 == 1 {
			before := dirState(t, dir)
			storagetest.MustClose(t, s)
			sameDir(t, before, dirState(t, dir))
			continue
		}
		storagetest.MustSave(t, s, &node.Update{Entries: entries(next, next+9, 1, "v")})
		next += 10
		storagetest.MustClose(t, s)
		ws, err := openWal(dir)()
		if err != nil {
			t.Fatal(err)
		}
		p := storagetest.MustLoad(t, ws)
		storagetest.MustClose(t, ws.(storagetest.Store))
		var ep uint32
		for _, e := range p.Entries {
			n := string(e.Data[5:17])
			if i, dup := seen[n]; dup && i != e.Index {
				t.Fatalf("entries %d and %d share a nonce", i, e.Index)
			}
			seen[n] = e.Index
			ep = max(ep, binary.BigEndian.Uint32(e.Data[5:9]))
		}
		if ep <= last {
			t.Fatalf("round %d: newest epoch %d, not above %d", round, ep, last)
		}
		last = ep
	}
	if len(seen) != int(next-1) {
		t.Fatalf("%d nonces for %d entries", len(seen), next-1)
	}
}

// TestNoPlaintext writes distinctive values through the wrapper, as
// entries, a leader's snapshot and an in-memory local snapshot, over wal
// and pebble, and greps every file of the directory for them.
func TestNoPlaintext(t *testing.T) {
	for _, bk := range []struct {
		name string
		open func(string) func() (node.Storage, error)
	}{{"wal", openWal}, {"pebble", openPebble}} {
		t.Run(bk.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey(t, 7)
			s := mustOpen(t, encrypt.Options{Dir: dir, Key: key}, bk.open(dir))
			storagetest.MustLoad(t, s)
			storagetest.MustSave(t, s, &node.Update{Snapshot: storagetest.SnapshotWith(5, 1, "LEADERSNAP-zebra")})
			storagetest.MustSave(t, s, &node.Update{Entries: entries(6, 30, 1, "ENTRYVAL-okapi")})
			storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(20, 1, "LOCALSNAP-quokka"), CompactTo: 15})
			storagetest.MustClose(t, s)
			grepDir(t, dir, [][]byte{[]byte("LEADERSNAP"), []byte("ENTRYVAL"), []byte("LOCALSNAP")})
		})
	}
}

// TestParseKey accepts base64 and hex of 32 bytes and refuses the rest
// without quoting the text.
func TestParseKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 32)
	k, err := encrypt.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s",
		strings.Repeat("ab", 32), strings.Repeat("AB", 32) + "\n",
	} {
		got, err := encrypt.ParseKey(s)
		if err != nil || got.ID() != k.ID() {
			t.Errorf("ParseKey(%q) = %v, %v; want %v", s, got, err, k)
		}
	}
	for _, s := range []string{"", "short-secret-value", strings.Repeat("ab", 31), "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6ur"} {
		_, err := encrypt.ParseKey(s)
		if !errors.Is(err, encrypt.ErrKey) || (s != "" && strings.Contains(err.Error(), s)) {
			t.Errorf("ParseKey(%q) = %v, want ErrKey not quoting it", s, err)
		}
	}
	if fmt.Sprint(k) != "key "+k.ID().String() || fmt.Sprintf("%#v", k) != "key "+k.ID().String() {
		t.Errorf("a key prints as %q / %q", fmt.Sprint(k), fmt.Sprintf("%#v", k))
	}
}
