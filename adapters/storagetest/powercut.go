package storagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/internal/powerfs"
)

// RequirePowerFS skips t where the power-loss file system (package
// internal/powerfs: FUSE, root) cannot be mounted, and fails it instead
// under CI (CI=true), where it must run.
func RequirePowerFS(t testing.TB) {
	t.Helper()
	if err := powerfs.Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI runs the power-cut tests: %v", err)
		}
		t.Skip(err)
	}
}

// PowerCut is Crash with the power cut as well: the store lives on a
// powerfs mount (a FUSE file system that keeps apart what no fsync
// covered), a child process saves updates and prints each
// acknowledgement, and at a random moment it is killed with SIGKILL and
// the file system loses everything not yet fsynced (file data, and
// directory entries whose directory was not fsynced), in half the rounds
// tearing writes (a random prefix of each file's unsynced writes lands,
// the last of them in part). After each cut the store is reopened: it
// must hold every acknowledged update and exactly the updates of a prefix
// of what was saved, or, after a cut that tore writes only, refuse with
// the backend's corruption error (IsCorrupt), which names the damage (a
// refusal starts the next round on an empty store). A refusal after a cut
// that tore nothing fails: the fsynced state is intact, so refusing it
// means something acknowledged was never fsynced. Rounds are counted by verdict and logged.
//
// A backend runs it with one line in a test file:
//
//	func TestPowerCut(t *testing.T) { storagetest.PowerCut(t, backend) }
//
// The store is reopened in a child process (the test binary run again on
// the same test), never in the test process: that process serves the FUSE
// mount, and a store that reads through mmap (bolt, badger) would fault
// on the mount from a thread the Go runtime must stop for a garbage
// collection, while the goroutines that answer the fault are stopped:
// a deadlock. The child writes what it loaded, or the error, to a file.
//
// It runs 20 rounds within 15 seconds by default (5 within 4 seconds with
// -short); STORAGE_POWERCUTS sets the number of rounds.
func PowerCut(t *testing.T, b Backend) { PowerCutWith(t, b, PowerCutOptions{Tear: true}) }

// PowerCutOptions adjusts PowerCutWith.
type PowerCutOptions struct {
	// Tear tears writes in half the rounds (else no round tears).
	Tear bool
	// Server, if set, is a server keeping the store with its files on
	// the mount (a database server): see PowerCutServer.
	Server PowerCutServer
	// Mount is how the file system is mounted (AllowOther for a server
	// of another user; the mount point is then made reachable by every
	// user too).
	Mount powerfs.MountOptions
	// Rounds and Budget, if positive, replace the default number of
	// rounds and its time budget (20 within 15 s; 5 within 4 s with
	// -short).
	Rounds int
	Budget time.Duration
	// RoundsEnv names the environment variable setting the number of
	// rounds (STORAGE_POWERCUTS if empty); the budget then grows in
	// proportion (with the defaults, a second a round).
	RoundsEnv string
}

// PowerCutServer is a server that keeps the store (a database server)
// with its files on the power-cut mount. PowerCutWith starts it once
// mounted, kills it with the writing child at each cut (a power cut
// stops every process at once) and starts it again after the cut, so
// that it recovers from the cut before the store is reopened. The
// Backend reaches it (through an address both know) rather than files
// under the store's directory, which then only names the store.
type PowerCutServer interface {
	// Start starts the server with its files on fsys (creating them at
	// the first call) and returns once it serves. An error means the
	// server refuses to start: the test fails, saying whether the cut
	// before tore writes.
	Start(t *testing.T, fsys *powerfs.FS) error
	// Kill kills every process of the server with SIGKILL and returns
	// once none is left. It does nothing if the server is not running.
	Kill(t *testing.T)
	// Remove deletes the store of dir durably, after the store refused
	// itself as damaged, so that the next round starts on an empty store.
	Remove(t *testing.T, dir string)
}

// PowerCutWith is PowerCut with options.
func PowerCutWith(t *testing.T, b Backend, o PowerCutOptions) {
	if dir := os.Getenv(envCrashDir); dir != "" {
		crashChild(t, b, dir)
		return
	}
	if dir := os.Getenv(envVerifyDir); dir != "" {
		verifyChild(t, b, dir, os.Getenv(envVerifyOut))
		return
	}
	RequirePowerFS(t)
	rounds, budget := 20, 15*time.Second
	if testing.Short() {
		rounds, budget = 5, 4*time.Second
	}
	if o.Rounds > 0 {
		rounds = o.Rounds
	}
	if o.Budget > 0 {
		budget = o.Budget
	}
	env := o.RoundsEnv
	if env == "" {
		env = "STORAGE_POWERCUTS"
	}
	if v := os.Getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of rounds", env, v)
		}
		rounds, budget = n, budget*time.Duration(n)/time.Duration(rounds)
	}
	mnt := t.TempDir()
	if o.Mount.AllowOther {
		// t.TempDir's directories are for root only.
		for _, d := range []string{filepath.Dir(mnt), mnt} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	fsys, err := powerfs.MountWith(mnt, t.TempDir(), o.Mount)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fsys.Close(); err != nil {
			t.Error(err)
		}
	})
	var onKill func()
	starts := 0
	if srv := o.Server; srv != nil {
		t.Cleanup(func() { srv.Kill(t) }) // before the unmount
		if err := srv.Start(t, fsys); err != nil {
			t.Fatalf("the server does not start: %v", err)
		}
		starts++
		onKill = func() { srv.Kill(t) }
	}
	dir := filepath.Join(mnt, "store")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var model core.Persisted
	start := time.Now()
	var acks, extra, lost, refused, torn int
	var refusals []string
	var dropped powerfs.CutReport
	round := 0
	for ; round < rounds && time.Since(start) < budget; round++ {
		seed := rng.Uint64()
		killAfter := rng.IntN(200)
		tear := o.Tear && rng.IntN(2) == 0
		specs, acked := crashRound(t, dir, seed, killAfter, onKill) // the child (and the server) are dead when it returns
		rep, err := fsys.Cut(tear, rng)
		if err != nil {
			t.Fatalf("round %d: cut: %v", round, err)
		}
		if o.Server != nil {
			if err := o.Server.Start(t, fsys); err != nil {
				if tear {
					t.Fatalf("round %d (seed %d, %d saved, %d acknowledged; cut: %v): the server refuses to start after a cut that tore writes (a server must survive the torn tail of what it never fsynced): %v", round, seed, len(specs), acked, rep, err)
				}
				t.Fatalf("round %d (seed %d, %d saved, %d acknowledged; cut: %v): the server refuses to start after a cut that tore nothing (what it fsynced is intact): %v", round, seed, len(specs), acked, rep, err)
			}
			starts++
		}
		dropped.Files += rep.Files
		dropped.DroppedWrites += rep.DroppedWrites
		dropped.DroppedBytes += rep.DroppedBytes
		dropped.TornWrites += rep.TornWrites
		dropped.RevertedEntries += rep.RevertedEntries
		if tear {
			torn++
		}
		what := fmt.Sprintf("round %d (seed %d, tear %t, %d saved, %d acknowledged; cut: %v)", round, seed, tear, len(specs), acked, rep)
		v := verifyRound(t, what, dir)
		p := v.Persisted
		if v.Err != "" {
			if !v.Corrupt {
				t.Fatalf("%s: reopen fails, and not as a refusal of damaged data: %s", what, v.Err)
			}
			if !tear {
				// Nothing was damaged: what was fsynced is intact and only
				// unsynced changes are gone, which a store must accept.
				t.Fatalf("%s: reopen refuses after a cut that tore nothing (a durability bug: something acknowledged was not fsynced): %s", what, v.Err)
			}
			refused++
			refusals = append(refusals, fmt.Sprintf("%s: %s", what, v.Err))
			if o.Server != nil {
				o.Server.Remove(t, dir)
				model = core.Persisted{}
				continue
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			// Make the removal durable, or the next cut would bring
			// the refused store back.
			if err := syncDir(mnt); err != nil {
				t.Fatal(err)
			}
			model = core.Persisted{}
			continue
		}
		checkCrashState(t, p)
		matched := -1
		var diffs []string
		for k := acked; k <= len(specs); k++ {
			d := DiffPersisted(p, replay(t, model, specs[:k]))
			if d == "" {
				matched = k
				break
			}
			diffs = append(diffs, fmt.Sprintf("with %d updates: %s", k, d))
		}
		if matched < 0 {
			var tail []string
			for _, c := range specs[max(acked-2, 0):] {
				tail = append(tail, c.String())
			}
			t.Fatalf("%s: the store holds none of the allowed states (every acknowledged update, then a prefix of the rest):\n%s\nthe last updates (I seq snap snapIndex snapTerm compactTo from to term hs.Term hs.Vote hs.Commit):\n%s",
				what, strings.Join(diffs, "\n"), strings.Join(tail, "\n"))
		}
		model = p
		acks += acked
		extra += matched - acked
		lost += len(specs) - matched
	}
	t.Logf("%s: %d power cuts (%d tearing) in %v: %d updates acknowledged, all kept; of the unacknowledged ones %d kept, %d lost; %d refusals; the cuts dropped %v; log %s",
		b.Name, round, torn, time.Since(start).Round(time.Millisecond), acks, extra, lost, refused, dropped, Span(model.Entries))
	if o.Server != nil {
		t.Logf("%s: the server started %d times (once at first, then after every cut), every time", b.Name, starts)
	}
	for _, r := range refusals {
		t.Logf("refusal: %s", r)
	}
	if round < 3 {
		t.Fatalf("only %d rounds", round)
	}
}

// Environment of the verifying child process.
const (
	envVerifyDir = "STORAGETEST_VERIFY_DIR" // the store to open and load
	envVerifyOut = "STORAGETEST_VERIFY_OUT" // where to write the verdict
)

// verifyTimeout bounds a verifying child: open and Load take well under
// a second; a child past this has hung (on the mount, most likely).
const verifyTimeout = time.Minute

// verdict is what a verifying child found: the loaded state, or the
// error of Open, Load or Close and whether the backend's IsCorrupt says
// it is a refusal of damaged data.
type verdict struct {
	Persisted core.Persisted
	Err       string
	Corrupt   bool
}

// verifyChild is the child process of verifyRound: it opens the store in
// dir, loads it, closes it and writes the verdict to out as JSON.
func verifyChild(t *testing.T, b Backend, dir, out string) {
	var v verdict
	s, err := b.Open(t, dir)
	if err == nil {
		v.Persisted, err = s.Load()
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		v.Persisted = core.Persisted{}
		v.Err = err.Error()
		v.Corrupt = b.IsCorrupt != nil && b.IsCorrupt(err)
	}
	data, err := json.Marshal(v)
	if err == nil {
		err = os.WriteFile(out, data, 0o644)
	}
	if err != nil {
		t.Fatalf("verifying child: %v", err)
	}
}

// verifyRound opens and loads the store in dir in a child process and
// returns its verdict; what names the round in failures. The child is
// killed, and the test fails, if it takes longer than verifyTimeout.
func verifyRound(t *testing.T, what, dir string) verdict {
	t.Helper()
	out := filepath.Join(t.TempDir(), "verdict.json")
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1")
	cmd.Env = append(os.Environ(), envVerifyDir+"="+dir, envVerifyOut+"="+out)
	cmd.WaitDelay = 10 * time.Second
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s: the child reopening the store did not finish within %v (killed; hung on the mount?): %s", what, verifyTimeout, output.String())
	}
	if err != nil {
		t.Fatalf("%s: the child reopening the store failed: %v: %s", what, err, output.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%s: the child reopening the store wrote no verdict: %v: %s", what, err, output.String())
	}
	var v verdict
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: the child's verdict: %v", what, err)
	}
	return v
}

// syncDir fsyncs the directory dir.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return d.Close()
}
