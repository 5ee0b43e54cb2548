package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestClusterOnWAL runs a cluster on storage.type wal, writes, restarts one
// node and then every node: what was committed survives on their disks.
func TestClusterOnWAL(t *testing.T) {
	srvs, lead := servertest.StartCluster(t, 3, "wal", "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := lead.Runner().Propose(ctx, setCmd("k", string(rune('a'+i%26)))); err != nil {
			t.Fatal(err)
		}
	}
	restart := func(i int) {
		t.Helper()
		cfg := srvs[i].Config()
		if err := srvs[i].Close(); err != nil {
			t.Fatalf("close node %d: %v", i+1, err)
		}
		s, err := server.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("restart node %d: %v", i+1, err)
		}
		t.Cleanup(func() { s.Close() })
		go s.Serve()
		srvs[i] = s
	}
	// One follower restarts and catches up.
	f := 0
	if srvs[f] == lead {
		f = 1
	}
	restart(f)
	commit := lead.Runner().Status().Commit
	eventually(t, "the restarted follower applies everything", func() bool {
		return srvs[f].Runner().Status().Applied >= commit
	})
	// Every node restarts: the log comes from their disks only.
	for i := range srvs {
		if err := srvs[i].Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range srvs {
		restart(i)
	}
	lead = servertest.Leader(t, srvs)
	if _, err := lead.Runner().Propose(ctx, setCmd("after", "restart")); err != nil {
		t.Fatal(err)
	}
	for _, s := range srvs {
		eventually(t, "every node applies past the old commit index", func() bool {
			return s.Runner().Status().Applied > commit
		})
	}
}

// TestClusterOnWALStreamsSnapshots: on storage.type wal (and pebble) a
// node streams its snapshots into the storage's files and keeps no
// snapshot of its own; a
// follower that fell behind the leader's log catches up from the snapshot
// the leader reads back from its disk, and nodes restarted from streamed
// snapshots hold every key.
func TestClusterOnWALStreamsSnapshots(t *testing.T) {
	for _, storage := range []string{"wal", "pebble"} {
		t.Run(storage, func(t *testing.T) { testStreamsSnapshots(t, storage) })
	}
}

func testStreamsSnapshots(t *testing.T, storage string) {
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 3, Storage: storage, Transport: "tcp",
		Raft: "  snapshot_threshold: 20\n  trailing_logs: 5\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := 0
	if srvs[f] == lead {
		f = 1
	}
	fcfg := srvs[f].Config()
	if err := srvs[f].Close(); err != nil {
		t.Fatal(err)
	}
	const keys = 200
	for i := range keys {
		if _, err := lead.Runner().Propose(ctx, setCmd(fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var snapIdx uint64
	if err := lead.Runner().Do(ctx, func(n *node.Node) {
		if s := n.Core().Snapshot(); s != nil {
			snapIdx = s.Meta.Index
			if s.Data != nil {
				t.Errorf("the leader's core holds %d bytes of snapshot data", len(s.Data))
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if snapIdx == 0 {
		t.Fatal("the leader took no snapshot")
	}
	if tmp, _ := filepath.Glob(filepath.Join(lead.Config().Storage.Path, "*.tmp")); len(tmp) > 0 {
		t.Fatalf("temporary files left in the leader's directory: %v", tmp)
	}

	s, err := server.New(fcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("restart node %d: %v", f+1, err)
	}
	t.Cleanup(func() { s.Close() })
	go s.Serve()
	srvs[f] = s
	commit := lead.Runner().Status().Commit
	eventually(t, "the lagging follower applies everything", func() bool {
		return s.Runner().Status().Applied >= commit
	})
	if first := s.Runner().Status().FirstIndex; first <= 1 {
		t.Fatalf("the follower's log starts at %d: it caught up without a snapshot", first)
	}
	check := func(srv *server.Server) {
		t.Helper()
		for i := range keys {
			q := kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: fmt.Sprintf("k%03d", i)})
			res, err := srv.Runner().Read(ctx, node.ReadStale, q)
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := res.(kv.Result); !ok || !r.Found || string(r.Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("node %d: k%03d = %+v", srv.Runner().ID(), i, res)
			}
		}
	}
	check(s)

	// Every node restarts from its streamed snapshot and the log after it.
	for i := range srvs {
		if err := srvs[i].Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range srvs {
		s, err := server.New(srvs[i].Config(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("restart node %d: %v", i+1, err)
		}
		t.Cleanup(func() { s.Close() })
		go s.Serve()
		srvs[i] = s
	}
	for _, srv := range srvs {
		eventually(t, "a restarted node applies the old commit index", func() bool {
			return srv.Runner().Status().Applied >= commit
		})
		check(srv)
	}
}
