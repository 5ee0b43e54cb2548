package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// localPortBase returns a port p such that local-cluster's ports for n
// nodes (p.., p+100.., p+200..) were all free a moment ago.
func localPortBase(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		p := 20000 + rand.IntN(30000)
		free := true
		var lns []net.Listener
		for _, off := range []int{0, 100, 200} {
			for i := range n {
				ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+off+i))
				if err != nil {
					free = false
					continue
				}
				lns = append(lns, ln)
			}
		}
		for _, ln := range lns {
			ln.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no free port range for local-cluster")
	return 0
}

// children returns the PIDs of the processes whose parent is ppid.
func children(t *testing.T, ppid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(pid); ok && st.ppid == ppid {
			out = append(out, pid)
		}
	}
	return out
}

type stat struct {
	state byte
	ppid  int
}

// procStat reads a process's state and parent from /proc/PID/stat.
func procStat(pid int) (stat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return stat{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return stat{}, false
	}
	return stat{state: f[0][0], ppid: ppid}, true
}

// alive reports whether any thread of pid still runs. The thread-group
// leader shows as a zombie as soon as it has exited, while other threads
// may still be exiting and holding the process's files (its listening
// sockets), so every task in /proc/PID/task is checked.
func alive(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, e := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, e.Name()))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		if st := s[i+2]; st != 'Z' && st != 'X' {
			return true
		}
	}
	return false
}

// TestLocalClusterDiesWithParent: killing a backgrounded local-cluster
// with SIGKILL (it cannot stop its nodes itself) stops its nodes, and their
// ports are free again. Before, the three nodes kept running.
func TestLocalClusterDiesWithParent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs consensusd")
	}
	bin := buildDaemon(t)
	port := localPortBase(t, 3)
	cmd := exec.Command(bin, "local-cluster", "-dir", t.TempDir(), "-port", strconv.Itoa(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var nodes []int
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for _, pid := range nodes {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "nodes running") {
		t.Fatalf("local-cluster did not start: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	// Wait until every node serves its API and follows a leader: the
	// cluster is settled and its nodes quiet (a node that writes to its
	// stderr pipe after the parent is gone dies of SIGPIPE anyway, which
	// would hide what this test is about).
	deadline := time.Now().Add(30 * time.Second)
	for i := range 3 {
		url := fmt.Sprintf("http://127.0.0.1:%d/status", port+100+i)
		for {
			var st struct{ Leader uint64 }
			resp, err := http.Get(url)
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
			}
			if err == nil && st.Leader != 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d never served %s with a leader: %v", i+1, url, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	nodes = children(t, cmd.Process.Pid)
	if len(nodes) != 3 {
		t.Fatalf("local-cluster has %d child processes, want 3", len(nodes))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline = time.Now().Add(15 * time.Second)
	for _, pid := range nodes {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("node process %d still runs after its local-cluster was killed", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range 3 {
		for _, off := range []int{0, 100, 200} {
			addr := "127.0.0.1:" + strconv.Itoa(port+off+i)
			// The kernel releases a dead process's sockets as its last
			// thread exits; allow that moment until the deadline.
			for {
				ln, err := net.Listen("tcp", addr)
				if err == nil {
					ln.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("port %s still held after the cluster stopped: %v", addr, err)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// TestOrphanedLocalNodeExits: a node started by a local-cluster process
// that is no longer its parent does not start.
func TestOrphanedLocalNodeExits(t *testing.T) {
	t.Setenv(localParentEnv, strconv.Itoa(os.Getppid()+1e6))
	if !orphanedLocalNode() {
		t.Fatal("a node whose parent is not the named local-cluster process does not see it is orphaned")
	}
	t.Setenv(localParentEnv, strconv.Itoa(os.Getppid()))
	if orphanedLocalNode() {
		t.Fatal("a node whose parent is its local-cluster process thinks it is orphaned")
	}
}
