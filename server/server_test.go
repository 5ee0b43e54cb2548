package server_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestNewFailsCleanly: a node whose transport cannot listen (its port is
// taken) fails New with an error naming the transport, for both transports,
// and leaves nothing behind (before, a failed transport left a typed nil
// that Close called into).
func TestNewFailsCleanly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	free := servertest.FreePorts(t, 2)
	for _, transport := range []string{"grpc", "tcp"} {
		raw := fmt.Sprintf(`node_id: 1
bind_port: %d
peers:
  - {id: 1, address: 127.0.0.1, port: %d}
transport:
  type: %s
storage:
  type: memory
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
`, port, port, transport, free[0], free[1])
		cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
		if err != nil {
			t.Fatal(err)
		}
		s, err := server.New(cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			s.Close()
			t.Fatalf("%s: New succeeded on a port already in use", transport)
		}
		if !strings.Contains(err.Error(), "transport") {
			t.Fatalf("%s: error %q does not name the transport", transport, err)
		}
		// The API ports were not taken and are free again.
		for _, p := range free {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				t.Fatalf("%s: port %d still held after a failed New: %v", transport, p, err)
			}
			l.Close()
		}
	}
}

// TestMemoryLimitApplied: a node with memory_limit sets Go's soft memory
// limit while it runs and puts back the one it found when it is closed.
func TestMemoryLimitApplied(t *testing.T) {
	const limit = 300 << 20
	before := debug.SetMemoryLimit(-1)
	if before == limit {
		t.Fatal("the runtime already has the test's limit")
	}
	free := servertest.FreePorts(t, 3)
	raw := fmt.Sprintf(`node_id: 1
bind_port: %d
peers:
  - {id: 1, address: 127.0.0.1, port: %d}
storage:
  type: memory
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
memory_limit: %d
`, free[0], free[0], free[1], free[2], limit)
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		s.Close()
		t.Fatalf("memory limit while the node runs: %d, want %d", got, limit)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("memory limit after Close: %d, want the %d it found", got, before)
	}
}

// TestClusterOverMutualTLS: a three-node cluster elects a leader over
// mutual TLS with either transport. The nodes share one certificate that
// names all three (node-1, node-2, node-3), which is enough to check that
// the security settings reach the transport.
func TestClusterOverMutualTLS(t *testing.T) {
	ca := transporttest.NewPKI(t, "cluster")
	cert, key := ca.Issue("nodes", "node-1", "node-2", "node-3")
	extra := fmt.Sprintf("security:\n  enable_mtls: true\n  cert_file: %s\n  key_file: %s\n  ca_file: %s\n", cert, key, ca.CAFile)
	for _, transport := range []string{"grpc", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			servertest.StartClusterWith(t, 3, "memory", transport, extra)
		})
	}
}

// TestNewLoadsTLSFiles: with TLS on, New fails with an error naming the
// transport and the file when a certificate file is missing, for both
// transports.
func TestNewLoadsTLSFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, transport := range []string{"grpc", "tcp"} {
		free := servertest.FreePorts(t, 3)
		raw := fmt.Sprintf(`node_id: 1
bind_port: %d
peers:
  - {id: 1, address: 127.0.0.1, port: %d}
transport:
  type: %s
storage:
  type: memory
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
security:
  enable_mtls: true
  cert_file: %s
  key_file: %s
  ca_file: %s
`, free[0], free[0], transport, free[1], free[2], missing, missing, missing)
		cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
		if err != nil {
			t.Fatalf("%s: %v", transport, err)
		}
		s, err := server.New(cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			s.Close()
			t.Fatalf("%s: New succeeded with missing TLS files", transport)
		}
		if !strings.Contains(err.Error(), "transport") || !strings.Contains(err.Error(), missing) {
			t.Fatalf("%s: error %q does not name the transport and the file", transport, err)
		}
	}
}
