package wal

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
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

func listDir(t testing.TB, dir string, suffix string) []string {
	t.Helper()
	return storagetest.DirNames(t, dir, func(name string) bool { return strings.HasSuffix(name, suffix) })
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
