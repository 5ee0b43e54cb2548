package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
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

	"github.com/forge-consensus/consensus/linearizability"
)

// cluster is a set of consensusd processes on loopback.
type cluster struct {
	t     *testing.T
	bin   string
	paths []string
	api   []string
	mu    sync.Mutex
	procs []*exec.Cmd
	logs  []*os.File
	// wrap, when set, is the command that runs node i's consensusd (such
	// as "ip netns exec NS"), its arguments before the binary's.
	wrap func(i int) []string
}

func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "consensusd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build consensusd: %v\n%s", err, out)
	}
	return bin
}

func startCluster(t *testing.T, n, port int) *cluster {
	t.Helper()
	dir := t.TempDir()
	paths, err := WriteLocalConfigs(dir, n, port, "tcp", true)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: buildDaemon(t), paths: paths, procs: make([]*exec.Cmd, n), logs: make([]*os.File, n)}
	for i := range n {
		c.api = append(c.api, "http://127.0.0.1:"+strconv.Itoa(port+100+i))
		c.start(i)
	}
	c.stopAtCleanup()
	return c
}

// stopAtCleanup kills every node when the test ends and, if it failed,
// logs the tail of each node's log.
func (c *cluster) stopAtCleanup() {
	t := c.t
	t.Cleanup(func() {
		for i := range c.procs {
			c.kill(i, syscall.SIGKILL)
		}
		if t.Failed() {
			for i, f := range c.logs {
				if f == nil { // never started
					continue
				}
				b, _ := os.ReadFile(f.Name())
				t.Logf("--- node %d log (tail) ---\n%s", i+1, tail(string(b), 3000))
			}
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (c *cluster) start(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logs[i] == nil {
		f, err := os.Create(c.paths[i] + ".log")
		if err != nil {
			c.t.Fatal(err)
		}
		c.logs[i] = f
	}
	var args []string
	if c.wrap != nil {
		args = c.wrap(i)
	}
	args = append(args, c.bin, "-config", c.paths[i])
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = c.logs[i]
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start node %d: %v", i+1, err)
	}
	c.procs[i] = cmd
}

func (c *cluster) kill(i int, sig syscall.Signal) {
	c.mu.Lock()
	p := c.procs[i]
	c.mu.Unlock()
	if p == nil || p.Process == nil {
		return
	}
	_ = p.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		_ = p.Wait()
		c.mu.Lock()
		c.procs[i] = nil
		c.mu.Unlock()
	}
}

type status struct {
	ID      uint64 `json:"id"`
	Role    string `json:"role"`
	Term    uint64 `json:"term"`
	Leader  uint64 `json:"leader"`
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
}

var quick = &http.Client{Timeout: 2 * time.Second}

func (c *cluster) status(i int) (status, error) {
	var st status
	resp, err := quick.Get(c.api[i] + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// leader returns the index of the node that says it leads, or -1.
func (c *cluster) leader() int {
	for i := range c.api {
		if st, err := c.status(i); err == nil && st.Role == "leader" {
			return i
		}
	}
	return -1
}

func (c *cluster) waitFor(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client runs operations with a session, retrying each with the same
// sequence number until it has an answer or gives up (outcome unknown).
type client struct {
	id   int
	c    *cluster
	rng  *rand.Rand
	seq  uint64
	rec  *linearizability.Recorder
	http *http.Client
	ok   *atomic.Int64
	// attempts bounds the tries of one write (20 when 0).
	attempts int
	// readQuery is appended to every read's URL ("?consistency=stale").
	readQuery string
}

func (cl *client) put(key, value string) {
	cl.seq++
	id := cl.rec.Invoke(cl.id, linearizability.Input{Kind: linearizability.Put, Key: key, Value: value}, time.Now().UnixNano())
	attempts := cl.attempts
	if attempts == 0 {
		attempts = 20
	}
	for attempt := 0; attempt < attempts; attempt++ {
		node := cl.rng.IntN(len(cl.c.api))
		req, _ := http.NewRequest(http.MethodPut, cl.c.api[node]+"/kv/"+key, strings.NewReader(value))
		req.Header.Set("X-Client-ID", strconv.Itoa(cl.id))
		req.Header.Set("X-Request-Seq", strconv.FormatUint(cl.seq, 10))
		resp, err := cl.http.Do(req)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			cl.rec.Return(id, linearizability.Output{}, time.Now().UnixNano())
			cl.ok.Add(1)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	cl.rec.Fail(id)
}

func (cl *client) get(node int, key string) bool {
	id := cl.rec.Invoke(cl.id, linearizability.Input{Kind: linearizability.Get, Key: key}, time.Now().UnixNano())
	resp, err := cl.http.Get(cl.c.api[node] + "/kv/" + key + cl.readQuery)
	if err != nil {
		cl.rec.Fail(id)
		return false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		cl.rec.Return(id, linearizability.Output{Value: string(b), Found: true}, time.Now().UnixNano())
	case http.StatusNotFound:
		cl.rec.Return(id, linearizability.Output{}, time.Now().UnixNano())
	default:
		cl.rec.Fail(id)
		return false
	}
	cl.ok.Add(1)
	return true
}

// TestRealFaults runs three consensusd processes on loopback under
// concurrent clients while it SIGKILLs the leader, SIGKILLs a follower in
// the middle of writes, pauses a node with SIGSTOP, and cuts a node off
// with the transport's fault switch. Afterwards every node converges and
// the history, ending with reads of every key on every node, is
// linearizable: no acknowledged write is lost.
func TestRealFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := startCluster(t, 3, localPortBase(t, 3)) // free ports: a fixed base collided with another run of the package
	c.waitFor("a leader", 20*time.Second, func() bool { return c.leader() >= 0 })

	rec := linearizability.NewRecorder()
	var ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const keys = 8
	for i := range 4 {
		cl := &client{id: i, c: c, rng: rand.New(rand.NewPCG(uint64(i), 1)), rec: rec, ok: &ok,
			http: &http.Client{Timeout: 3 * time.Second}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := "k" + strconv.Itoa(cl.rng.IntN(keys))
				if cl.rng.IntN(3) == 0 {
					cl.get(cl.rng.IntN(len(c.api)), key)
				} else {
					cl.put(key, fmt.Sprintf("c%d-%d", cl.id, n))
				}
			}
		}()
	}
	faults := map[string]int{}
	pause := func() { time.Sleep(1500 * time.Millisecond) }

	// 1. SIGKILL the leader, restart it.
	pause()
	l := c.leader()
	if l < 0 {
		t.Fatal("no leader before the first fault")
	}
	c.kill(l, syscall.SIGKILL)
	faults["leader killed"]++
	pause()
	c.start(l)
	// 2. SIGKILL a follower while writes are flowing, restart it.
	pause()
	f := (c.leader() + 1) % 3
	c.kill(f, syscall.SIGKILL)
	faults["follower killed"]++
	pause()
	c.start(f)
	// 3. Pause a node (SIGSTOP), resume it.
	pause()
	p := (f + 1) % 3
	c.kill(p, syscall.SIGSTOP)
	faults["paused"]++
	pause()
	c.kill(p, syscall.SIGCONT)
	// 4. Cut a node off with the fault switch, heal it.
	pause()
	cut := c.leader()
	if cut < 0 {
		cut = 0
	}
	if resp, err := quick.Post(c.api[cut]+"/admin/block?peer=0&on=true", "", nil); err == nil {
		resp.Body.Close()
		faults["cut off"]++
	}
	pause()
	if resp, err := quick.Post(c.api[cut]+"/admin/block?peer=0&on=false", "", nil); err == nil {
		resp.Body.Close()
	}
	pause()
	close(stop)
	wg.Wait()

	// Convergence: every node applies the same index.
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
	// Final reads of every key on every node join the history.
	reader := &client{id: 100, c: c, rec: rec, ok: &ok, http: &http.Client{Timeout: 5 * time.Second}}
	for i := range c.api {
		for k := range keys {
			if !reader.get(i, "k"+strconv.Itoa(k)) {
				t.Fatalf("final read of k%d on node %d failed", k, i+1)
			}
		}
	}
	h := rec.History()
	res := linearizability.Check(h, 60*time.Second)
	t.Logf("faults %v; %d operations recorded, %d answered; verdict %v", faults, len(h.Ops), ok.Load(), res.Verdict)
	if res.Verdict != linearizability.Ok {
		out := filepath.Join(os.TempDir(), "consensusd-realfaults.html")
		if f, err := os.Create(out); err == nil {
			_ = res.WriteHTML(f)
			f.Close()
		}
		t.Fatalf("history is %v (visualisation: %s)", res.Verdict, out)
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d operations answered", ok.Load())
	}
	if len(faults) != 4 {
		t.Fatalf("not every fault was injected: %v", faults)
	}
}
