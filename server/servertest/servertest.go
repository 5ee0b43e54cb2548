// Package servertest starts real nodes (package server) on loopback for
// tests: a cluster of any size with a chosen storage and transport, and a
// wait for its leader.
package servertest

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/server"
)

// FreePorts returns n loopback ports that were free a moment ago.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// StartCluster starts n nodes on loopback ports, serving HTTP and the
// client protocol, with the given storage ("memory", or "pebble" under a
// temporary directory with fsync on) and transport ("tcp" or "grpc"); the
// test's cleanup closes them. It waits for a leader that every node knows
// and returns the servers by position (node i+1 at index i) and the leader.
// With -test.v the nodes log warnings to standard error.
func StartCluster(t testing.TB, n int, storage, transport string) ([]*server.Server, *server.Server) {
	t.Helper()
	return StartClusterWith(t, n, storage, transport, "")
}

// StartClusterWith is StartCluster with extra YAML appended to every
// node's configuration (top-level keys not set by StartCluster, such as
// security or admin_api).
func StartClusterWith(t testing.TB, n int, storage, transport, extra string) ([]*server.Server, *server.Server) {
	t.Helper()
	return StartClusterOpts(t, Options{Nodes: n, Storage: storage, Transport: transport, Extra: extra})
}

// Options configures StartClusterOpts.
type Options struct {
	Nodes     int
	Storage   string // "memory" or "pebble"
	Transport string // "tcp" or "grpc"
	// Extra is YAML appended to every node's configuration (top-level
	// keys StartCluster does not set); Raft is YAML appended to its raft
	// section (each line indented by two spaces).
	Extra string
	Raft  string
	// API is YAML appended to every node's api section (each line
	// indented by two spaces), such as "  tls: true\n".
	API string
	// Logger receives every node's logs (nil: discarded, or warnings to
	// standard error with -test.v).
	Logger *slog.Logger
	// Names, when set, are the nodes' names (node_id and peers[].id), in
	// order; by default node i+1 is named "i+1".
	Names []string
}

// StartClusterOpts is StartCluster with Options.
func StartClusterOpts(t testing.TB, o Options) ([]*server.Server, *server.Server) {
	t.Helper()
	n := o.Nodes
	dir := t.TempDir()
	ports := FreePorts(t, 3*n)
	var peers strings.Builder
	name := func(i int) string {
		if i < len(o.Names) {
			return o.Names[i]
		}
		return strconv.Itoa(i + 1)
	}
	for i := range n {
		fmt.Fprintf(&peers, "  - {id: %q, address: 127.0.0.1, port: %d, api_port: %d, client_port: %d}\n",
			name(i), ports[3*i], ports[3*i+1], ports[3*i+2])
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
	}
	var srvs []*server.Server
	for i := range n {
		raw := fmt.Sprintf(`node_id: %q
bind_port: %d
peers:
%sraft:
  heartbeat_interval: 20ms
  election_timeout_min: 200ms
%stransport:
  type: %s
storage:
  type: %s
  path: %s
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
%s%s`, name(i), ports[3*i], peers.String(), o.Raft, o.Transport, o.Storage, filepath.Join(dir, strconv.Itoa(i+1)),
			ports[3*i+1], ports[3*i+2], o.API, o.Extra)
		cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
		if err != nil {
			t.Fatal(err)
		}
		s, err := server.New(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		go s.Serve()
		srvs = append(srvs, s)
	}
	return srvs, Leader(t, srvs)
}

// Leader waits until one server is the leader and every server knows it,
// and returns it.
func Leader(t testing.TB, srvs []*server.Server) *server.Server {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var lead *server.Server
		agreed := true
		for _, s := range srvs {
			st := s.Runner().Status()
			if st.Role == core.Leader {
				lead = s
			}
			agreed = agreed && st.Lead != 0 && st.Lead == srvs[0].Runner().Status().Lead
		}
		if lead != nil && agreed {
			return lead
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

// ClientAddrs returns the servers' client-protocol addresses.
func ClientAddrs(srvs []*server.Server) []string {
	var a []string
	for _, s := range srvs {
		a = append(a, s.ClientAddr())
	}
	return a
}
