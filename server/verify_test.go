package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// lockedBuffer is a log sink shared by the nodes' goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func corruptionCount(t *testing.T, s *server.Server) float64 {
	t.Helper()
	mfs, err := s.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "forge_consensus_corruption_detected_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no forge_consensus_corruption_detected_total")
	return 0
}

// TestVerifyTamperedReplica: one node of a real three-node cluster has its
// state changed behind the log's back. At the next checkpoint every node
// raises the alarm (metric, health, status, ERROR log naming the node, the
// index and both hashes), and the tampered node refuses reads at every
// level, over HTTP too, while the others serve.
func TestVerifyTamperedReplica(t *testing.T) {
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{
		Nodes: 3, Storage: "memory", Transport: "tcp", Raft: "  verify_interval: 20\n", Logger: log,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(i int) {
		t.Helper()
		cmd := kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: fmt.Sprintf("k%d", i%7), Value: []byte(fmt.Sprint(i))})
		if _, err := lead.Runner().Propose(ctx, cmd); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	for i := range 30 {
		put(i)
	}
	for _, s := range srvs {
		if h := s.Health(ctx); !h.Healthy || corruptionCount(t, s) != 0 {
			t.Fatalf("node %s before tampering: health %+v, corruption count %v", s.Config().NodeID, h, corruptionCount(t, s))
		}
	}
	var bad *server.Server
	for _, s := range srvs {
		if s != lead {
			bad = s
			break
		}
	}
	badID := bad.Config().NodeID.ID()
	if err := bad.TamperState(ctx, "tampered", "not what the log says"); err != nil {
		t.Fatal(err)
	}

	// Write until every node holds the alarm (one or two checkpoints).
	deadline := time.Now().Add(20 * time.Second)
	for i := 30; ; i++ {
		all := true
		for _, s := range srvs {
			as := s.Runner().Alarms()
			all = all && len(as) == 1 && as[0].Node == badID
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			for _, s := range srvs {
				t.Logf("node %s alarms %+v", s.Config().NodeID, s.Runner().Alarms())
			}
			t.Fatal("no alarm on every node")
		}
		put(i)
	}
	alarm := srvs[0].Runner().Alarms()[0]
	if !alarm.Decided || alarm.Index%20 != 0 || alarm.Hash == alarm.Want {
		t.Fatalf("alarm %+v", alarm)
	}

	for _, s := range srvs {
		id := s.Config().NodeID.ID()
		if n := corruptionCount(t, s); n < 1 {
			t.Errorf("node %d: forge_consensus_corruption_detected_total = %v", id, n)
		}
		h := s.Health(ctx)
		var msg string
		for _, c := range h.Checks {
			if c.Name == "replicas" && !c.Healthy {
				msg = c.Message
			}
		}
		want := fmt.Sprintf("node %d diverged at index %d", badID, alarm.Index)
		if h.Healthy || h.Status != "unhealthy" || !strings.Contains(msg, want) {
			t.Errorf("node %d health %s, replicas check %q, want it naming %q", id, h.Status, msg, want)
		}
		info := s.Info(ctx)
		if len(info.Diverged) != 1 || info.Diverged[0].ID != badID || info.Diverged[0].Index != alarm.Index {
			t.Errorf("node %d status diverged = %+v", id, info.Diverged)
		}
	}

	// The ERROR log names the node, the index and both hashes.
	found := false
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "replica state diverged" {
			continue
		}
		if rec["level"] == "ERROR" && rec["diverged_node"] == float64(badID) && rec["index"] == float64(alarm.Index) &&
			rec["hash"] == fmt.Sprintf("%#016x", alarm.Hash) && rec["majority_hash"] == fmt.Sprintf("%#016x", alarm.Want) {
			found = true
		}
	}
	if !found {
		t.Errorf("no ERROR log naming node %d, index %d and both hashes in:\n%s", badID, alarm.Index, logs.String())
	}

	// The tampered node refuses reads at every level; the leader serves.
	q := kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: "k1"})
	for _, level := range []node.ReadLevel{node.ReadLinearizable, node.ReadLease, node.ReadStale} {
		if _, err := bad.Runner().Read(ctx, level, q); !errors.Is(err, node.ErrDiverged) {
			t.Errorf("%v read on the diverged node: %v, want ErrDiverged", level, err)
		}
	}
	if _, err := lead.Runner().Read(ctx, node.ReadLinearizable, q); err != nil {
		t.Errorf("read on the leader: %v", err)
	}
	resp, err := http.Get("http://" + bad.APIAddr() + "/kv/k1?consistency=stale")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "diverged") {
		t.Errorf("HTTP read on the diverged node: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + bad.APIAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"diverged"`) {
		t.Errorf("/status of the diverged node: %s", body)
	}
	// The admin health endpoint says so too, on every node.
	for _, s := range srvs {
		resp, err := http.Get("http://" + s.APIAddr() + "/consensus/health")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("node %d diverged at index %d", badID, alarm.Index)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), want) {
			t.Errorf("node %s admin health: %d %s", s.Config().NodeID, resp.StatusCode, body)
		}
	}
}
