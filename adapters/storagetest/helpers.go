package storagetest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// Helpers for the backends' own tests, shared with the suite.

// MustClose closes s and fails the test if that fails.
func MustClose(t testing.TB, s Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// SaveWait saves u to s and waits for its done callback.
func SaveWait(t testing.TB, s node.Storage, u *node.Update) error {
	t.Helper()
	ch := make(chan error, 1)
	s.Save(u, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("done not called within %v", waitTimeout)
		return nil
	}
}

// MustSave saves u to s, waits for its done callback and fails the test if
// the Save fails.
func MustSave(t testing.TB, s node.Storage, u *node.Update) {
	t.Helper()
	if err := SaveWait(t, s, u); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

// MustLoad loads s and fails the test if that fails.
func MustLoad(t testing.TB, s node.Storage) core.Persisted {
	t.Helper()
	p, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

// NamedEntries returns entries from..to of the given term whose data only
// names them ("entry <index>/<term>"): smaller than Entries', for tests
// that size files by hand.
func NamedEntries(from, to, term uint64) []core.Entry {
	var out []core.Entry
	for i := from; i <= to; i++ {
		out = append(out, core.Entry{Index: i, Term: term, Data: fmt.Appendf(nil, "entry %d/%d", i, term)})
	}
	return out
}

// SnapshotWith returns a snapshot at index and term, of a three-voter
// configuration, holding data.
func SnapshotWith(index, term uint64, data string) *core.Snapshot {
	return &core.Snapshot{
		Meta: core.SnapshotMeta{Index: index, Term: term, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
		Data: []byte(data),
	}
}

// DirNames returns the names of the entries of dir for which keep is true,
// sorted, failing the test if dir cannot be read.
func DirNames(t testing.TB, dir string, keep func(name string) bool) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if keep(de.Name()) {
			out = append(out, de.Name())
		}
	}
	return out
}

// Span describes the indexes of es: "[first..last]", "[]" if none.
func Span(es []core.Entry) string {
	if len(es) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%d..%d]", es[0].Index, es[len(es)-1].Index)
}
