package wal

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// waitTimeout bounds every wait for a done callback: a deadlock guard, not
// a timing assertion.
const waitTimeout = 30 * time.Second

func testOpts(dir string) Options {
	return Options{Dir: dir, ClusterID: 7, NodeID: 1, SegmentSize: 8 << 10, RetryInterval: 20 * time.Millisecond}
}

func openT(t testing.TB, o Options) *Storage {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func closeT(t testing.TB, s *Storage) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func saveWait(t testing.TB, s *Storage, u *node.Update) error {
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

func mustSave(t testing.TB, s *Storage, u *node.Update) {
	t.Helper()
	if err := saveWait(t, s, u); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func loadT(t testing.TB, s *Storage) core.Persisted {
	t.Helper()
	p, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

// ents returns entries from..to of the given term.
func ents(from, to, term uint64) []core.Entry {
	var out []core.Entry
	for i := from; i <= to; i++ {
		out = append(out, core.Entry{Index: i, Term: term, Data: fmt.Appendf(nil, "entry %d/%d", i, term)})
	}
	return out
}

func snapAt(index, term uint64, data string) *core.Snapshot {
	return &core.Snapshot{
		Meta: core.SnapshotMeta{Index: index, Term: term, Config: core.ConfState{Voters: []uint64{1, 2, 3}}},
		Data: []byte(data),
	}
}

// diffPersisted describes how got differs from want ("" if equal), with
// nil and empty slices equal.
func diffPersisted(got, want core.Persisted) string {
	var d []string
	if got.HardState != want.HardState {
		d = append(d, fmt.Sprintf("hard state %+v, want %+v", got.HardState, want.HardState))
	}
	switch {
	case (got.Snapshot == nil) != (want.Snapshot == nil):
		d = append(d, fmt.Sprintf("snapshot %v, want %v", got.Snapshot != nil, want.Snapshot != nil))
	case got.Snapshot != nil:
		g, w := got.Snapshot, want.Snapshot
		gc, wc := g.Meta.Config, w.Meta.Config
		if g.Meta.Index != w.Meta.Index || g.Meta.Term != w.Meta.Term ||
			!slices.Equal(gc.Voters, wc.Voters) || !slices.Equal(gc.Learners, wc.Learners) {
			d = append(d, fmt.Sprintf("snapshot meta %+v, want %+v", g.Meta, w.Meta))
		}
		if !bytes.Equal(g.Data, w.Data) {
			d = append(d, fmt.Sprintf("snapshot data %q, want %q", g.Data, w.Data))
		}
	}
	if len(got.Entries) != len(want.Entries) {
		d = append(d, fmt.Sprintf("%d entries %s, want %d %s",
			len(got.Entries), span(got.Entries), len(want.Entries), span(want.Entries)))
	} else {
		for i := range got.Entries {
			g, w := got.Entries[i], want.Entries[i]
			if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || !bytes.Equal(g.Data, w.Data) {
				d = append(d, fmt.Sprintf("entry %d is %d/%d/%v/%q, want %d/%d/%v/%q", i,
					g.Index, g.Term, g.Type, g.Data, w.Index, w.Term, w.Type, w.Data))
				break
			}
		}
	}
	return strings.Join(d, "; ")
}

func span(es []core.Entry) string {
	if len(es) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%d..%d]", es[0].Index, es[len(es)-1].Index)
}

func listDir(t testing.TB, dir string, suffix string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if strings.HasSuffix(de.Name(), suffix) {
			out = append(out, de.Name())
		}
	}
	return out
}

// logBuffer collects log output for assertions.
type logBuffer struct{ bytes.Buffer }

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&b.Buffer, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// contains reports whether err's message holds every one of subs.
func contains(err error, subs ...string) bool {
	if err == nil {
		return false
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}

var refFixture = func() snapfile.Ref {
	return snapfile.Ref{Meta: core.SnapshotMeta{Index: 4, Term: 1, Config: core.ConfState{Voters: []uint64{1}}}, File: "snap-4-1.snap", CRC: 7, Size: 3}
}()
