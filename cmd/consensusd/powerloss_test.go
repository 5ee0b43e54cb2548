package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/internal/powerfs"
	"github.com/forge-consensus/consensus/linearizability"
)

// freePorts returns a base port p such that p..p+n-1, p+100.. and p+200..
// (the peer, HTTP and client ports WriteLocalConfigs uses) are free now.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + rand.IntN(20000)
		ok := true
		for _, off := range []int{0, 100, 200} {
			for i := range n {
				l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off+i))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// procExited reports whether the process pid has exited (a zombie, not
// yet reaped, or gone).
func procExited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// powerLossBackend is one storage configuration TestPowerLoss runs.
type powerLossBackend struct {
	name    string // the subtest's name
	storage string // storage.type
	encrypt bool   // security.enable_encryption with a key
}

// powerLossBackends are the storages whose data lives in the node's
// directory (postgres keeps it in the database, and has its own power-cut
// test).
var powerLossBackends = []powerLossBackend{
	{name: "wal", storage: "wal"},
	{name: "pebble", storage: "pebble"},
	{name: "bolt", storage: "bolt"},
	{name: "badger", storage: "badger"},
	{name: "encrypted-pebble", storage: "pebble", encrypt: true},
}

// TestPowerLoss runs, for each storage backend (wal, pebble, bolt,
// badger, and pebble encrypted at rest), three consensusd processes, each
// with its data directory on its own powerfs mount (a FUSE file system
// that loses what no fsync covered when the power is cut), under
// concurrent clients, and cuts the power at random moments: to one node,
// or to all nodes at once (the processes are killed with SIGKILL, then
// their file systems drop every write and directory entry not yet
// fsynced). After each cut the nodes restart; each must start (a node
// that refuses, even naming the damage, fails the test: the cuts tear no
// write, so what was fsynced is intact; one that exits without naming
// damage fails it too). At the end every node converges and the history,
// ending with reads of every key on every node, must be linearizable: no
// acknowledged write is lost. CONSENSUSD_POWERCUTS sets the number of
// cuts per backend (4, half of them of all nodes); -run
// 'TestPowerLoss/bolt' runs one backend.
//
// The test process serves the FUSE mounts and never opens a store on
// them: bolt and badger read through mmap, and a fault on the mount from
// the serving process can deadlock with garbage collection (see
// storagetest.PowerCut). Only the consensusd processes touch the mounts.
func TestPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	storagetest.RequirePowerFS(t)
	cuts := 4
	if v := os.Getenv("CONSENSUSD_POWERCUTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CONSENSUSD_POWERCUTS=%q: want a positive number", v)
		}
		cuts = n
	}
	bin := buildDaemon(t)
	for _, b := range powerLossBackends {
		t.Run(b.name, func(t *testing.T) { powerLoss(t, bin, b, cuts) })
	}
}

// powerLossKey is the encryption key of the encrypted subtest (32 bytes,
// hex).
const powerLossKey = "5c0ffee15badc0de5c0ffee15badc0de5c0ffee15badc0de5c0ffee15badc0de"

// powerLoss is one backend's run of TestPowerLoss.
func powerLoss(t *testing.T, bin string, b powerLossBackend, cuts int) {
	start := time.Now()
	const n = 3
	port := freePorts(t, n)
	dir := t.TempDir()
	paths, err := WriteLocalConfigs(dir, n, port, "tcp", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(raw), "storage:\n  type: wal\n", "storage:\n  type: "+b.storage+"\n", 1)
		if !strings.Contains(cfg, "storage:\n  type: "+b.storage+"\n") {
			t.Fatalf("%s: no storage.type to set", p)
		}
		if b.encrypt {
			cfg += "security:\n  enable_encryption: true\n  encryption_key: " + powerLossKey + "\n"
		}
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Each node's data directory (dir/nodeI) is a powerfs mount; the
	// cleanups unmount after the nodes are killed (cleanups run last
	// registered first).
	fss := make([]*powerfs.FS, n)
	for i := range n {
		mnt := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := powerfs.Mount(mnt, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fss[i] = f
		t.Cleanup(func() {
			if err := f.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	c := &cluster{t: t, bin: bin, paths: paths, procs: make([]*exec.Cmd, n), logs: make([]*os.File, n)}
	for i := range n {
		c.api = append(c.api, "http://127.0.0.1:"+strconv.Itoa(port+100+i))
		c.start(i)
	}
	c.stopAtCleanup()
	c.waitFor("a leader", 20*time.Second, func() bool { return c.leader() >= 0 })

	rec := linearizability.NewRecorder()
	var ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const keys = 8
	for i := range 4 {
		cl := &client{id: i, c: c, rng: rand.New(rand.NewPCG(uint64(i), 3)), rec: rec, ok: &ok,
			http: &http.Client{Timeout: 3 * time.Second}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				key := "k" + strconv.Itoa(cl.rng.IntN(keys))
				if cl.rng.IntN(3) == 0 {
					cl.get(cl.rng.IntN(len(c.api)), key)
				} else {
					cl.put(key, fmt.Sprintf("c%d-%d", cl.id, k))
				}
			}
		}()
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("cut seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	var one, all, started, refused int
	var dropped powerfs.CutReport
	for cut := 0; cut < cuts; cut++ {
		// A random moment: 0.3 to 1.5 s of load after the cluster is back.
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		victims := []int{rng.IntN(n)}
		if cut%2 == 1 {
			victims = []int{0, 1, 2}
			all++
		} else {
			one++
		}
		for _, i := range victims {
			c.kill(i, syscall.SIGKILL)
		}
		for _, i := range victims {
			r, err := fss[i].Cut(false, rng)
			if err != nil {
				t.Fatalf("cut %d: node %d: %v", cut, i+1, err)
			}
			dropped.Files += r.Files
			dropped.DroppedWrites += r.DroppedWrites
			dropped.DroppedBytes += r.DroppedBytes
			dropped.RevertedEntries += r.RevertedEntries
		}
		for _, i := range victims {
			c.start(i)
		}
		// Each restarted node starts (answers /status) or refuses naming
		// the damage (exits, its log saying what is corrupt).
		for _, i := range victims {
			c.mu.Lock()
			pid := c.procs[i].Process.Pid
			c.mu.Unlock()
			deadline := time.Now().Add(30 * time.Second)
			for {
				if _, err := c.status(i); err == nil {
					started++
					break
				}
				if procExited(pid) {
					b, _ := os.ReadFile(c.logs[i].Name())
					if !strings.Contains(strings.ToLower(string(b)), "corrupt") {
						t.Fatalf("cut %d: node %d exited without naming damage:\n%s", cut, i+1, tail(string(b), 3000))
					}
					refused++
					t.Logf("cut %d: node %d refuses to start: %s", cut, i+1, tail(string(b), 600))
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("cut %d: node %d neither starts nor exits within 30s", cut, i+1)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if refused > 0 {
			break // a node that refuses stays down: stop cutting, check the history
		}
		c.waitFor("a leader after the cut", 30*time.Second, func() bool { return c.leader() >= 0 })
	}
	time.Sleep(500 * time.Millisecond) // load after the last cut
	close(stop)
	wg.Wait()

	if refused == 0 {
		c.waitFor("convergence", 30*time.Second, func() bool {
			var applied []uint64
			for i := range c.api {
				st, err := c.status(i)
				if err != nil || st.Leader == 0 {
					return false
				}
				applied = append(applied, st.Applied)
			}
			return applied[0] == applied[1] && applied[1] == applied[2] && applied[0] > 0
		})
	}
	reader := &client{id: 100, c: c, rec: rec, ok: &ok, http: &http.Client{Timeout: 5 * time.Second}}
	for i := range c.api {
		if _, err := c.status(i); err != nil {
			continue // refused to start
		}
		for k := range keys {
			if !reader.get(i, "k"+strconv.Itoa(k)) {
				t.Fatalf("final read of k%d on node %d failed", k, i+1)
			}
		}
	}
	h := rec.History()
	res := linearizability.Check(h, 60*time.Second)
	t.Logf("%s: %d power cuts (%d of one node, %d of all nodes): %d restarts started, %d refused; the cuts dropped %v; %d operations recorded, %d answered; verdict %v; %v",
		b.name, one+all, one, all, started, refused, dropped, len(h.Ops), ok.Load(), res.Verdict, time.Since(start).Round(time.Second))
	if refused > 0 {
		t.Errorf("%d restarts refused after cuts that tore no write: the fsynced state is intact, the node must start", refused)
	}
	if res.Verdict != linearizability.Ok {
		out := filepath.Join(os.TempDir(), "consensusd-powerloss-"+b.name+".html")
		if f, err := os.Create(out); err == nil {
			_ = res.WriteHTML(f)
			f.Close()
		}
		t.Fatalf("history is %v (visualisation: %s)", res.Verdict, out)
	}
	if ok.Load() < 50 {
		t.Fatalf("only %d operations answered", ok.Load())
	}
}
