package server_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

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
