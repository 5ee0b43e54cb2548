package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// localCluster writes one configuration per node under a directory and
// runs each node as a child process of this binary, until interrupted.
func localCluster(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consensusd local-cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "data and config directory (default: a new temporary directory)")
	nodes := fs.Int("nodes", 3, "number of nodes")
	port := fs.Int("port", 7001, "raft port of node 1; node i uses port+i-1, its HTTP API port+100+i-1,"+
		" its client protocol port+200+i-1")
	transportType := fs.String("transport", "grpc", "grpc or tcp")
	faults := fs.Bool("fault-switch", false, "serve POST /admin/block on every node (tests)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *nodes < 1 || *nodes > 9 {
		fmt.Fprintln(stderr, "consensusd local-cluster: -nodes must be 1..9")
		return 2
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "consensusd-")
		if err != nil {
			fmt.Fprintf(stderr, "consensusd local-cluster: %v\n", err)
			return 1
		}
		*dir = d
	}
	paths, err := WriteLocalConfigs(*dir, *nodes, *port, *transportType, *faults)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd local-cluster: %v\n", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "consensusd local-cluster: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var out sync.Mutex
	var wg sync.WaitGroup
	var cmds []*exec.Cmd
	for i, p := range paths {
		cmd := exec.Command(self, "-config", p)
		cmd.SysProcAttr = childAttr()
		// The node checks that this process is still its parent once it
		// has started: Pdeathsig cannot fire for a parent that died
		// between the fork and the node's start.
		cmd.Env = append(os.Environ(), localParentEnv+"="+strconv.Itoa(os.Getpid()))
		pipe, err := cmd.StderrPipe()
		if err != nil {
			fmt.Fprintf(stderr, "consensusd local-cluster: %v\n", err)
			return 1
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "consensusd local-cluster: start node %d: %v\n", i+1, err)
			return 1
		}
		cmds = append(cmds, cmd)
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				out.Lock()
				fmt.Fprintf(stderr, "n%d | %s\n", id, sc.Text())
				out.Unlock()
			}
		}(i + 1)
	}
	api := *port + 100
	fmt.Fprintf(stdout, "%d nodes running, data and configs in %s\n", *nodes, *dir)
	fmt.Fprintf(stdout, "  curl -X PUT -d hello http://127.0.0.1:%d/kv/greeting\n", api)
	fmt.Fprintf(stdout, "  curl http://127.0.0.1:%d/kv/greeting\n", api+min(1, *nodes-1))
	fmt.Fprintf(stdout, "  curl http://127.0.0.1:%d/status\n", api)
	var clients []string
	for i := range *nodes {
		clients = append(clients, fmt.Sprintf("127.0.0.1:%d", *port+200+i))
	}
	fmt.Fprintf(stdout, "  client protocol (package client, loadgen -proto wire): %s\n", strings.Join(clients, ","))
	fmt.Fprintf(stdout, "  loadgen -addrs %s -n 20000 -clients 100\n", strings.Join(clients, ","))
	fmt.Fprintln(stdout, "Ctrl-C (or killing this process) stops the cluster.")
	<-ctx.Done()
	for _, c := range cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		for _, c := range cmds {
			_ = c.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
		<-done
	}
	wg.Wait()
	return 0
}

// localParentEnv names the environment variable through which
// local-cluster tells a node its parent's PID.
const localParentEnv = "CONSENSUSD_LOCAL_CLUSTER_PARENT"

// orphanedLocalNode reports whether this process is a local-cluster node
// whose local-cluster process has already gone (it was started with
// localParentEnv, and its parent is now another process).
func orphanedLocalNode() bool {
	v := os.Getenv(localParentEnv)
	if v == "" {
		return false
	}
	pid, err := strconv.Atoi(v)
	return err == nil && os.Getppid() != pid
}

// WriteLocalConfigs writes node<i>.yaml for a loopback cluster of n nodes
// under dir, data under dir/node<i>, and returns the paths.
func WriteLocalConfigs(dir string, n, port int, transportType string, faultSwitch bool) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("config dir: %w", err)
	}
	var peers strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&peers, "  - {id: %d, address: 127.0.0.1, port: %d}\n", i, port+i-1)
	}
	var paths []string
	for i := 1; i <= n; i++ {
		cfg := fmt.Sprintf(`node_id: %d
cluster_id: local
bind_addr: 127.0.0.1
bind_port: %d
peers:
%sraft:
  heartbeat_interval: 50ms
  election_timeout_min: 500ms
  election_timeout_max: 1s
transport:
  type: %s
storage:
  type: wal
  path: %s
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
  fault_switch: %t
# A loopback cluster for trying things out: the admin API takes changes
# without a token. Set security.tokens (and drop this) anywhere else.
admin_api:
  allow_unauthenticated: true
`, i, port+i-1, peers.String(), transportType, filepath.Join(dir, fmt.Sprintf("node%d", i)), port+100+i-1,
			port+200+i-1, faultSwitch)
		p := filepath.Join(dir, fmt.Sprintf("node%d.yaml", i))
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
