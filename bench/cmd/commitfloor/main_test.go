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
	rs, err := startReplicas(base, t.TempDir(), false)
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
	if err := runAll(freeBase(t), t.TempDir(), false, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestClientRejectsBadConfig checks the client's own validation.
func TestClientRejectsBadConfig(t *testing.T) {
	if _, err := runClients(loadConfig{addr: "127.0.0.1:1", clients: 0, conns: 1, n: 1}); err == nil {
		t.Error("zero clients accepted")
	}
}

// TestCommitFloorApplies runs replicas with -apply: every replica applies
// every write to its key-value store, and a replica whose store refuses a
// command fails the run. Two client runs in a row (IDs start again, as
// with each -drive process) both succeed, and so does the whole command.
func TestCommitFloorApplies(t *testing.T) {
	base := freeBase(t)
	rs, err := startReplicas(base, t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.stop()
	for run := range 2 {
		cfg := loadConfig{addr: addr(base, 1), clients: 10, conns: 1, n: 300, warmup: 20, size: 128}
		if _, err := runClients(cfg); err != nil {
			t.Fatalf("client run %d: %v", run+1, err)
		}
	}
	cfg := loadConfig{clients: 10, conns: 1, n: 300, warmup: 20, size: 128}
	if err := runAll(freeBase(t), t.TempDir(), true, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestStateMachineFrames: the leader's frame of a batch, applied on three
// replicas, leaves the same state on each, one Set per write; a cut frame
// is refused.
func TestStateMachineFrames(t *testing.T) {
	var batch []clientWrite
	for id := uint64(1); id <= 2500; id++ {
		data := make([]byte, 8, 8+16)
		data[7], data[6] = byte(id), byte(id>>8)
		batch = append(batch, clientWrite{data: append(data, "value-0123456789"...)})
	}
	lead := newStateMachine(true)
	body := lead.appendBatch(nil, batch)
	var hashes []uint64
	for range 3 {
		sm := newStateMachine(true)
		if err := sm.applyFrame(body); err != nil {
			t.Fatal(err)
		}
		if sm.index != uint64(len(batch)) {
			t.Fatalf("applied %d commands, want %d", sm.index, len(batch))
		}
		hashes = append(hashes, sm.store.Hash())
	}
	if hashes[0] != hashes[1] || hashes[1] != hashes[2] || hashes[0] == newStateMachine(true).store.Hash() {
		t.Fatalf("replica hashes %x", hashes)
	}
	if err := newStateMachine(true).applyFrame(body[:len(body)-3]); err == nil {
		t.Fatal("a cut frame was applied")
	}
	if newStateMachine(false).appendBatch(nil, batch[:1]) == nil {
		t.Fatal("without -apply the frame is empty")
	}
}
