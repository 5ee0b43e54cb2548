package badgerstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/internal/powerfs"
	"github.com/forge-consensus/consensus/node"
)

// Environment of TestPowerCutAfterRecoveryFlush's child processes.
const (
	envFlushStep = "BADGERSTORE_FLUSH_STEP" // save, reopen or verify
	envFlushDir  = "BADGERSTORE_FLUSH_DIR"  // the store
)

// flushEntries is how many entries the saving child acknowledges.
const flushEntries = 50

// TestPowerCutAfterRecoveryFlush cuts the power after a node restarted
// from a crash: Badger replays the memtable WAL the crash left (a .mem
// file) and flushes it into a new table, writing the table (msync) and
// then the MANIFEST entry that names it (fsync), but it never fsyncs the
// directory in between (ristretto's z.OpenMmapFile skips its directory
// sync for a new file it preallocates). The cut then drops the table's
// directory entry and keeps the MANIFEST entry, and Badger refuses the
// store: "file does not exist for table 1", although the cut tore nothing
// and the data is still in the .mem file, whose deletion the cut undid as
// well. Found by cmd/consensusd's TestPowerLoss on badger.
//
// Three children on a powerfs mount, each ending without Close (as a
// kill would): one saves entries, one reopens the store and waits until
// Badger has flushed the replayed memtable (its .mem file is deleted
// after the MANIFEST entry is written), and after the cut one reopens and
// loads it: it must start, holding every acknowledged entry.
func TestPowerCutAfterRecoveryFlush(t *testing.T) {
	if step := os.Getenv(envFlushStep); step != "" {
		flushChild(step, os.Getenv(envFlushDir))
		return
	}
	storagetest.RequirePowerFS(t)
	mnt := t.TempDir()
	fsys, err := powerfs.Mount(mnt, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fsys.Close(); err != nil {
			t.Error(err)
		}
	})
	dir := filepath.Join(mnt, "store")
	run := func(step string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPowerCutAfterRecoveryFlush$", "-test.count=1")
		cmd.Env = append(os.Environ(), envFlushStep+"="+step, envFlushDir+"="+dir)
		cmd.WaitDelay = 10 * time.Second
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("child %s: %v: %s", step, err, out.String())
		}
		return out.String()
	}
	run("save")
	out := run("reopen")
	t.Logf("reopen: %s", strings.TrimSpace(out))
	rep, err := fsys.Cut(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the cut dropped %v", rep)
	out = run("verify")
	if !strings.Contains(out, "loaded "+strconv.Itoa(flushEntries)+" entries") {
		t.Fatalf("after a cut that tore nothing the store must open with all %d acknowledged entries: %s", flushEntries, out)
	}
}

// flushChild is one step of TestPowerCutAfterRecoveryFlush, in a child
// process; it exits without closing the store.
func flushChild(step, dir string) {
	fail := func(format string, a ...any) {
		fmt.Printf(format+"\n", a...)
		os.Exit(1)
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		if step == "verify" {
			fmt.Printf("refused: %v\n", err)
			os.Exit(0)
		}
		fail("open: %v", err)
	}
	switch step {
	case "save":
		for i := uint64(1); i <= flushEntries; i++ {
			done := make(chan error, 1)
			s.Save(&node.Update{
				Entries:   []core.Entry{{Term: 1, Index: i, Data: []byte("entry " + strconv.FormatUint(i, 10))}},
				HardState: core.HardState{Term: 1, Vote: 1, Commit: i},
				Sync:      true,
			}, func(err error) { done <- err })
			if err := <-done; err != nil {
				fail("save %d: %v", i, err)
			}
		}
	case "reopen":
		// The .mem files the save step left hold its entries; Badger
		// deletes each once its table is in the MANIFEST.
		db := filepath.Join(dir, DBSubdir)
		old, _ := filepath.Glob(filepath.Join(db, "*.mem"))
		deadline := time.Now().Add(30 * time.Second)
		for {
			now, _ := filepath.Glob(filepath.Join(db, "*.mem"))
			tables, _ := filepath.Glob(filepath.Join(db, "*.sst"))
			if len(tables) > 0 && !overlaps(old, now[:max(len(now)-1, 0)]) {
				fmt.Printf("flushed: .mem before %d, now %d; tables %d\n", len(old), len(now), len(tables))
				break
			}
			if time.Now().After(deadline) {
				fail("the replayed memtable was not flushed within 30s (mem %v, now %v, tables %v)", old, now, tables)
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "verify":
		p, err := s.Load()
		if err != nil {
			fmt.Printf("refused: %v\n", err)
			os.Exit(0)
		}
		fmt.Printf("loaded %d entries\n", len(p.Entries))
	}
	os.Exit(0)
}

// overlaps reports whether a and b share a name.
func overlaps(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// TestRepairCutState builds, in a plain directory, the state a power cut
// leaves after a restart flushed a replayed memtable (see
// TestPowerCutAfterRecoveryFlush): the MANIFEST names the new level-0
// table, whose file is gone, and the memtable WAL it was flushed from is
// back; plus an empty memtable WAL and an empty value-log file (created,
// their size never synced). Open must repair it, say so, and hold every
// acknowledged entry. Without repairCut, Badger refuses the store.
func TestRepairCutState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	db := filepath.Join(dir, DBSubdir)
	run := func(step string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPowerCutAfterRecoveryFlush$", "-test.count=1")
		cmd.Env = append(os.Environ(), envFlushStep+"="+step, envFlushDir+"="+dir)
		cmd.WaitDelay = 10 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child %s: %v: %s", step, err, out)
		}
	}
	run("save")
	mems, _ := filepath.Glob(filepath.Join(db, "*.mem"))
	saved := map[string][]byte{}
	for _, p := range mems {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[p] = b
	}
	run("reopen")
	tables, _ := filepath.Glob(filepath.Join(db, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("the reopen flushed no table")
	}
	for _, p := range tables {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for p, b := range saved {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		if err := os.WriteFile(filepath.Join(db, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	s, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("open after the cut state: %v\n%s", err, logs.String())
	}
	defer s.Close()
	p, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != flushEntries {
		t.Fatalf("loaded %d entries, want %d", len(p.Entries), flushEntries)
	}
	for _, want := range []string{"dropping them from the MANIFEST", "00099.mem", "000099.vlog"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
}
