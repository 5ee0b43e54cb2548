//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the command when it starts
// the replicas and the client process (it runs os.Executable with -replica
// or -drive first).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "-replica" || os.Args[1] == "-drive") {
		main()
		return
	}
	os.Exit(m.Run())
}

// freeBase finds three consecutive free loopback ports.
func freeBase(t *testing.T) int {
	t.Helper()
	for base := 21000; base < 60000; base += 97 {
		ok := true
		var ls []net.Listener
		for i := 0; i < 3 && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			_ = l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no three consecutive free ports")
	return 0
}

// TestCommitFloorRuns runs clients against the replicas and checks that
// every write was answered and timed.
func TestCommitFloorRuns(t *testing.T) {
	base := freeBase(t)
	rs, err := startReplicas(base, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.stop()
	for _, c := range []struct{ clients, conns int }{{1, 1}, {20, 1}, {20, 3}} {
		cfg := loadConfig{addr: addr(base, 1), clients: c.clients, conns: c.conns, n: 300, warmup: 50, size: 128}
		res, err := runClients(cfg)
		if err != nil {
			t.Fatalf("clients=%d conns=%d: %v", c.clients, c.conns, err)
		}
		if res.elapsed <= 0 || res.p50 <= 0 || res.p99 < res.p50 || res.p999 < res.p99 || res.conns != c.conns {
			t.Errorf("clients=%d conns=%d: implausible result %v", c.clients, c.conns, res)
		}
	}
}

// TestCommitFloorSeparateClientProcess runs the whole command: replicas
// and a client process.
func TestCommitFloorSeparateClientProcess(t *testing.T) {
	cfg := loadConfig{clients: 10, conns: 1, n: 200, warmup: 20, size: 128}
	if err := runAll(freeBase(t), t.TempDir(), cfg); err != nil {
		t.Fatal(err)
	}
}

// TestClientRejectsBadConfig checks the client's own validation.
func TestClientRejectsBadConfig(t *testing.T) {
	if _, err := runClients(loadConfig{addr: "127.0.0.1:1", clients: 0, conns: 1, n: 1}); err == nil {
		t.Error("zero clients accepted")
	}
}
