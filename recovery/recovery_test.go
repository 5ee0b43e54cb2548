package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// rig is a loopback cluster of real servers with pebble storage, each
// started from a configuration file, as consensusd starts them.
type rig struct {
	t     *testing.T
	dir   string
	paths []string // node i+1's configuration file
	srvs  []*server.Server
}

func newRig(t *testing.T, n int) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), srvs: make([]*server.Server, n)}
	ports := servertest.FreePorts(t, 3*n)
	var peers strings.Builder
	for i := range n {
		fmt.Fprintf(&peers, "  - {id: %d, address: 127.0.0.1, port: %d, api_port: %d, client_port: %d}\n",
			i+1, ports[3*i], ports[3*i+1], ports[3*i+2])
	}
	for i := range n {
		raw := fmt.Sprintf(`node_id: %d
bind_port: %d
peers:
%sraft:
  heartbeat_interval: 20ms
  election_timeout_min: 200ms
transport:
  type: tcp
storage:
  type: pebble
  path: %s
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
security:
  tokens: [{token: adm1n, role: admin}]
`, i+1, ports[3*i], peers.String(), filepath.Join(r.dir, fmt.Sprintf("node%d", i+1)), ports[3*i+1], ports[3*i+2])
		p := filepath.Join(r.dir, fmt.Sprintf("node%d.yaml", i+1))
		if err := os.WriteFile(p, []byte(raw), 0o644); err != nil {
			t.Fatal(err)
		}
		r.paths = append(r.paths, p)
	}
	for i := range n {
		r.start(i)
	}
	t.Cleanup(func() {
		for _, s := range r.srvs {
			if s != nil {
				s.Close()
			}
		}
	})
	r.leader()
	return r
}

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// open starts node i+1 from its configuration file as it is now.
func (r *rig) open(i int) (*server.Server, error) {
	cfg, err := server.LoadConfig(r.paths[i])
	if err != nil {
		r.t.Fatal(err)
	}
	return server.New(cfg, logger())
}

func (r *rig) start(i int) {
	r.t.Helper()
	s, err := r.open(i)
	if err != nil {
		r.t.Fatalf("start node %d: %v", i+1, err)
	}
	go s.Serve()
	r.srvs[i] = s
}

func (r *rig) stop(i int) {
	r.t.Helper()
	if err := r.srvs[i].Close(); err != nil {
		r.t.Fatalf("stop node %d: %v", i+1, err)
	}
	r.srvs[i] = nil
}

// leader waits for a leader among the running servers.
func (r *rig) leader() *server.Server {
	r.t.Helper()
	var up []*server.Server
	for _, s := range r.srvs {
		if s != nil {
			up = append(up, s)
		}
	}
	return servertest.Leader(r.t, up)
}

// put writes key=value through node s's HTTP API (it forwards to the
// leader) and fails the test unless it is acknowledged.
func put(t *testing.T, s *server.Server, key, value string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.APIAddr()+"/kv/"+key, strings.NewReader(value))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s: %s", key, resp.Status)
	}
}

// staleGet reads key from s's local state.
func staleGet(t *testing.T, s *server.Server, key string) (string, bool) {
	t.Helper()
	resp, err := http.Get("http://" + s.APIAddr() + "/kv/" + key + "?consistency=stale")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode == http.StatusOK
}

// damageSnapshot flips one byte in the middle of the data of node i+1's
// snapshot file, which the pebble adapter refuses (data checksum).
func (r *rig) damageSnapshot(i int) {
	r.t.Helper()
	files, _ := filepath.Glob(filepath.Join(r.dir, fmt.Sprintf("node%d", i+1), "snap-*.snap"))
	if len(files) != 1 {
		r.t.Fatalf("node %d has snapshot files %v, want one", i+1, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		r.t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(files[0], b, 0o640); err != nil {
		r.t.Fatal(err)
	}
}

// writeAndDamage writes keys, snapshots node 2, stops it and damages it;
// node 2 must then refuse to start. Leadership is moved off node 2 first.
func writeAndDamage(t *testing.T, r *rig, keys int) {
	t.Helper()
	ctx := context.Background()
	if lead := r.leader(); lead == r.srvs[1] {
		if err := lead.TransferLeadership(ctx, 1); err != nil {
			t.Fatal(err)
		}
		r.leader()
	}
	for k := range keys {
		put(t, r.srvs[0], fmt.Sprintf("k%03d", k), fmt.Sprintf("v%03d", k))
	}
	if _, err := r.srvs[1].Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	r.stop(1)
	r.damageSnapshot(1)
	s, err := r.open(1)
	if err == nil {
		s.Close()
		t.Fatal("node 2 started with a damaged snapshot file")
	}
	if !server.IsCorrupt(err) {
		t.Fatalf("node 2 refused to start, but not as damaged: %v", err)
	}
}

func (r *rig) options(path string, newID uint64, out io.Writer) Options {
	return Options{ConfigPath: path, NewID: newID, Out: out, Logger: logger(), MaxLag: 5,
		CatchUpTimeout: time.Minute}
}

// TestRecoverDamagedNode: node 2's storage is damaged; recovery brings it
// back as node 4, a voter with every acknowledged key, and a second run
// changes nothing.
func TestRecoverDamagedNode(t *testing.T) {
	r := newRig(t, 3)
	const keys = 60
	writeAndDamage(t, r, keys)
	before, _ := os.ReadFile(r.paths[1])

	var out bytes.Buffer
	res, err := Run(context.Background(), r.options(r.paths[1], 4, &out))
	t.Logf("first run:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.OldID != 2 || res.NewID != 4 || res.NothingToDo || !slices.Equal(res.Voters, []uint64{1, 3, 4}) {
		t.Fatalf("result %+v", res)
	}
	for _, want := range []string{"refuses to open: damaged", "remove node 2: done", "as a learner", "caught up",
		"promote node 4 to voter: done; voters {1,3,4}"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The damaged data and the old configuration are kept.
	if files, _ := filepath.Glob(filepath.Join(res.Moved, "snap-*.snap")); !strings.Contains(res.Moved, ".damaged-") ||
		len(files) != 1 {
		t.Fatalf("damaged data moved to %q, snapshot files there %v", res.Moved, files)
	}
	if b, err := os.ReadFile(res.ConfigBackup); err != nil || !bytes.Equal(b, before) {
		t.Fatalf("backup %s: %v, equal to the old file: %v", res.ConfigBackup, err, bytes.Equal(b, before))
	}
	cfg, err := server.LoadConfig(r.paths[1])
	if err != nil || cfg.NodeID.ID() != 4 || !cfg.Join {
		t.Fatalf("new config: node_id %s join %v, %v", cfg.NodeID, cfg.Join, err)
	}

	// A normal start from the rewritten file: node 4 with every key.
	r.start(1)
	lead := r.leader()
	info := lead.Info(context.Background())
	if v := (view{info: info}).voters(); !slices.Equal(v, []uint64{1, 3, 4}) {
		t.Fatalf("voters %v, want {1,3,4}", v)
	}
	if _, ok := (view{info: info}).member(2); ok || !slices.Contains(info.RemovedNodes, 2) {
		t.Fatalf("node 2 is still a member, or not among the removed %v", info.RemovedNodes)
	}
	deadline := time.Now().Add(20 * time.Second)
	for r.srvs[1].Runner().Status().Applied < info.CommitIndex && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for k := range keys {
		key := fmt.Sprintf("k%03d", k)
		if v, ok := staleGet(t, r.srvs[1], key); !ok || v != fmt.Sprintf("v%03d", k) {
			t.Fatalf("node 4: %s = %q (found %v)", key, v, ok)
		}
	}
	put(t, r.srvs[1], "after", "recovery") // the cluster takes writes through node 4
	if v, ok := staleGet(t, r.srvs[0], "after"); !ok || v != "recovery" {
		t.Logf("node 1 has not applied the write yet: %q", v) // stale read: allowed to lag
	}

	// Again, with node 4 running: nothing to do.
	mid, _ := os.ReadFile(r.paths[1])
	out.Reset()
	res, err = Run(context.Background(), r.options(r.paths[1], 4, &out))
	t.Logf("second run:\n%s", out.String())
	if err != nil || !res.NothingToDo || res.Moved != "" || res.ConfigBackup != "" {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	// And with node 4 stopped (its healthy storage is checked).
	r.stop(1)
	out.Reset()
	if res, err = Run(context.Background(), r.options(r.paths[1], 4, &out)); err != nil || !res.NothingToDo {
		t.Fatalf("third run: %+v, %v\n%s", res, err, out.String())
	}
	if after, _ := os.ReadFile(r.paths[1]); !bytes.Equal(after, mid) {
		t.Fatal("a run with nothing to do changed the config file")
	}
}

// TestRecoverResumes: a run interrupted after the config was rewritten
// (the learner not added yet) is completed by the next one.
func TestRecoverResumes(t *testing.T) {
	r := newRig(t, 3)
	writeAndDamage(t, r, 20)
	// Run steps 1 to 5 only: remove node 2, move its data, rewrite the
	// config. This is where a crash before step 6 leaves things.
	raw, _ := os.ReadFile(r.paths[1])
	cfg, _ := server.ParseConfig(raw, os.Getenv)
	var out bytes.Buffer
	ru := &run{o: r.options(r.paths[1], 4, &out), out: &out, cfg: cfg, raw: raw, res: &Result{NewID: 4, OldID: 2}}
	ru.o.Now, ru.o.Getenv, ru.o.HTTPClient = time.Now, os.Getenv, http.DefaultClient
	if err := ru.setup(); err != nil {
		t.Fatal(err)
	}
	if _, err := ru.change(context.Background(), "/remove-node", admin.RemoveNodeRequest{NodeID: admin.ID(2)},
		func(v view) bool { _, ok := v.member(2); return !ok }); err != nil {
		t.Fatal(err)
	}
	if err := ru.moveAside(false); err != nil {
		t.Fatal(err)
	}
	if err := ru.writeConfig(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	o := r.options(r.paths[1], 4, &out)
	o.KeepRunning = true
	res, err := Run(context.Background(), o)
	t.Logf("resumed run:\n%s", out.String())
	if err != nil || !slices.Equal(res.Voters, []uint64{1, 3, 4}) || res.Server == nil {
		t.Fatalf("resumed run: %+v, %v", res, err)
	}
	// KeepRunning: the node serves; its API answers as node 4.
	defer res.Server.Close()
	resp, err := http.Get("http://" + res.Server.APIAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st := res.Server.Runner().Status(); st.ID != 4 || resp.StatusCode != http.StatusOK {
		t.Fatalf("kept node: id %d, status %s", st.ID, resp.Status)
	}
	if !strings.Contains(out.String(), "resuming") {
		t.Fatal("the run did not say it resumed")
	}
}

// wantRefused checks that err is a refusal mentioning want.
func wantRefused(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want a refusal mentioning %q", err, want)
	}
	t.Logf("refused: %v", err)
}

// unchanged checks that node 2's config and data directory are as before.
func unchanged(t *testing.T, r *rig, cfg []byte) {
	t.Helper()
	if b, _ := os.ReadFile(r.paths[1]); !bytes.Equal(b, cfg) {
		t.Fatal("the config file changed")
	}
	if _, err := os.Stat(filepath.Join(r.dir, "node2", "db")); err != nil {
		t.Fatalf("the data directory moved: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(r.dir, "*.damaged-*")); len(m) != 0 {
		t.Fatalf("moved aside: %v", m)
	}
}

// TestRecoverRefuses: a healthy store, a new ID in use or used before,
// and a cluster without a quorum are refused, changing nothing.
func TestRecoverRefuses(t *testing.T) {
	r := newRig(t, 3)
	ctx := context.Background()
	// Node 3 leads: the new ID 3 below is then the leader's own, and the
	// leader must be reached although the run's default endpoints are
	// "the other members". (It once failed only when the election
	// happened to pick node 3: the endpoints left node 3 out, and the
	// token was not sent to the leader's address that node 1 named.)
	if lead := r.leader(); lead != r.srvs[2] {
		if err := lead.TransferLeadership(ctx, 3); err != nil {
			t.Fatal(err)
		}
	}
	put(t, r.srvs[0], "a", "b")
	if _, err := r.srvs[1].Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	r.stop(1)
	cfg, _ := os.ReadFile(r.paths[1])
	memberCount := func() int { return len(r.leader().Info(ctx).Nodes) }

	_, err := Run(ctx, r.options(r.paths[1], 4, io.Discard))
	wantRefused(t, err, "opens cleanly")
	unchanged(t, r, cfg)

	r.damageSnapshot(1)
	_, err = Run(ctx, r.options(r.paths[1], 3, io.Discard))
	wantRefused(t, err, "node 3 is a member at")
	unchanged(t, r, cfg)

	_, err = Run(ctx, r.options(r.paths[1], 2, io.Discard))
	wantRefused(t, err, "must not rejoin as node 2")
	unchanged(t, r, cfg)

	// An ID that was a member once: add node 9 as a learner, remove it.
	lead := r.leader()
	if err := lead.AddLearner(ctx, 9, "127.0.0.1", 1); err != nil {
		t.Fatal(err)
	}
	if err := r.leader().RemoveNode(ctx, 9); err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, r.options(r.paths[1], 9, io.Discard))
	wantRefused(t, err, "node 9 was a member and has been removed")
	unchanged(t, r, cfg)

	// Node 3 down too: the others are no quorum; no leader answers.
	r.stop(2)
	deadline := time.Now().Add(10 * time.Second)
	for r.srvs[0].Runner().Status().Lead != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // until node 1 sees it has no quorum
	}
	_, err = Run(ctx, r.options(r.paths[1], 4, io.Discard))
	wantRefused(t, err, "recovery needs a leader")
	unchanged(t, r, cfg)
	r.start(2)
	if n := memberCount(); n != 3 {
		t.Fatalf("%d members after the refusals, want 3", n)
	}
}

// TestCheckQuorum: removing a voter is refused unless the other active
// voters are a majority of the voters.
func TestCheckQuorum(t *testing.T) {
	mk := func(active ...uint64) view {
		var v view
		for id := uint64(1); id <= 5; id++ {
			v.info.Nodes = append(v.info.Nodes, admin.NodeStatus{ID: id, Voter: true, Active: slices.Contains(active, id)})
		}
		return v
	}
	if err := checkQuorum(mk(1, 3, 4), 2); err != nil {
		t.Fatalf("3 of 5 active without node 2: %v", err)
	}
	wantRefused(t, checkQuorum(mk(1, 2, 3), 2), "needs 3 of the 5 voters {1,2,3,4,5}, but only 2 other voters are active {1,3}")
	if err := checkQuorum(mk(1), 9); err != nil {
		t.Fatalf("a non-voter: %v", err)
	}
	one := view{info: admin.ClusterInfo{Nodes: []admin.NodeStatus{{ID: 2, Voter: true}}}}
	wantRefused(t, checkQuorum(one, 2), "only voter")
}

// damageHardState flips a byte of the hard state value ("h", see package
// pebblestore) in node i+1's database, opened directly.
func (r *rig) damageHardState(i int) {
	r.t.Helper()
	db, err := pebble.Open(filepath.Join(r.dir, fmt.Sprintf("node%d", i+1), "db"), &pebble.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	v, closer, err := db.Get([]byte("h"))
	if err != nil {
		r.t.Fatal(err)
	}
	v = append([]byte(nil), v...)
	closer.Close()
	v[len(v)-1] ^= 0x01
	if err := db.Set([]byte("h"), v, pebble.Sync); err != nil {
		r.t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		r.t.Fatal(err)
	}
}

// TestRecoverDamagedHardState: a flipped byte in the stored hard state
// (term, vote, commit) is refused at start, and recovery brings the node
// back as node 4.
func TestRecoverDamagedHardState(t *testing.T) {
	r := newRig(t, 3)
	if lead := r.leader(); lead == r.srvs[1] {
		if err := lead.TransferLeadership(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		r.leader()
	}
	for k := range 10 {
		put(t, r.srvs[0], fmt.Sprintf("k%d", k), "v")
	}
	r.stop(1)
	r.damageHardState(1)
	if s, err := r.open(1); err == nil {
		s.Close()
		t.Fatal("node 2 started with a damaged hard state")
	} else if !server.IsCorrupt(err) {
		t.Fatalf("not refused as damaged: %v", err)
	}
	var out bytes.Buffer
	res, err := Run(context.Background(), r.options(r.paths[1], 4, &out))
	t.Logf("run:\n%s", out.String())
	if err != nil || !slices.Equal(res.Voters, []uint64{1, 3, 4}) {
		t.Fatalf("%+v, %v", res, err)
	}
	if !strings.Contains(out.String(), "corrupt value at key h") {
		t.Fatal("step 1 does not name the damaged key")
	}
}
