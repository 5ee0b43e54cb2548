package server_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestDamagedWALRefused reproduces issue 10's report end to end: a 3-node
// cluster takes 400 writes and a snapshot, node 2 is stopped, one byte in
// the middle of its Pebble write-ahead log is flipped, and node 2 is
// started alone. Pebble replays its WAL only up to the damaged record and
// says so at INFO; node 2 must refuse to start with an error naming the
// damage, never serve less than it acknowledged, and keep its snapshot
// file.
func TestDamagedWALRefused(t *testing.T) {
	srvs, lead := servertest.StartCluster(t, 3, "pebble", "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const writes = 400
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < writes; i += 8 {
				if _, err := lead.Runner().Propose(ctx, setCmd(fmt.Sprintf("key-%03d", i), "value")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("write: %v", err)
	}
	node2 := srvs[1]
	want := lead.Runner().Status().Commit
	eventually(t, "node 2 applies every write", func() bool { return node2.Runner().Status().Applied >= want })
	snapIndex, err := node2.Runner().TakeSnapshot(ctx)
	if err != nil {
		t.Fatalf("snapshot on node 2: %v", err)
	}
	applied := node2.Runner().Status().Applied
	t.Logf("node 2: applied %d, snapshot at %d", applied, snapIndex)

	cfg := node2.Config()
	for _, s := range srvs {
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	dir := cfg.Storage.Path
	snaps, _ := filepath.Glob(filepath.Join(dir, "snap-*.snap"))
	if len(snaps) != 1 {
		t.Fatalf("snapshot files of node 2: %v", snaps)
	}
	wals, _ := filepath.Glob(filepath.Join(dir, "db", "*.log"))
	var wal string
	var size int64
	for _, w := range wals {
		if fi, err := os.Stat(w); err == nil && fi.Size() > size {
			wal, size = w, fi.Size()
		}
	}
	if wal == "" {
		t.Fatalf("no WAL file in %s", dir)
	}
	b, err := os.ReadFile(wal)
	if err != nil {
		t.Fatal(err)
	}
	b[size/2] ^= 0x40
	if err := os.WriteFile(wal, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("flipped byte %d of %s (%d bytes)", size/2, wal, size)

	var logs lockedBuffer
	s, err := server.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err == nil {
		st := s.Runner().Status()
		s.Close()
		t.Fatalf("node 2 started with a damaged WAL, at applied index %d of %d", st.Applied, applied)
	}
	t.Logf("node 2 refused: %v", err)
	if !errors.Is(err, pebblestore.ErrCorrupt) {
		t.Fatalf("error %v does not wrap pebblestore.ErrCorrupt", err)
	}
	for _, name := range []string{filepath.Base(wal), "was acknowledged"} {
		if !strings.Contains(err.Error(), name) {
			t.Fatalf("error %q does not name %q", err, name)
		}
	}
	if !strings.Contains(logs.String(), "stopped reading at offset") {
		t.Fatalf("Pebble did not cut its WAL: the test no longer reproduces the report; logs:\n%s", logs.String())
	}
	if after, _ := filepath.Glob(filepath.Join(dir, "snap-*.snap")); len(after) != 1 || after[0] != snaps[0] {
		t.Fatalf("snapshot files after the refusal: %v, before: %v", after, snaps)
	}
}
