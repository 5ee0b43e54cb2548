package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/backup"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

const backupToken = "backup-op-7f3a91c2"

// writeConfigs writes the configuration files of an n-node loopback
// cluster under dir and returns their paths.
func bkWriteConfigs(t *testing.T, dir string, n int, clusterID, storage string) []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ports := servertest.FreePorts(t, 3*n)
	var peers strings.Builder
	for i := range n {
		fmt.Fprintf(&peers, "  - {id: %d, address: 127.0.0.1, port: %d, api_port: %d, client_port: %d}\n",
			i+1, ports[3*i], ports[3*i+1], ports[3*i+2])
	}
	var paths []string
	for i := range n {
		raw := fmt.Sprintf(`cluster_id: %s
node_id: %d
bind_port: %d
peers:
%sraft:
  heartbeat_interval: 20ms
  election_timeout_min: 200ms
transport:
  type: tcp
storage:
  type: %s
  path: %s
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
security:
  tokens: [{token: %s, role: operator}]
`, clusterID, i+1, ports[3*i], peers.String(), storage, filepath.Join(dir, fmt.Sprintf("data%d", i+1)),
			ports[3*i+1], ports[3*i+2], backupToken)
		p := filepath.Join(dir, fmt.Sprintf("node%d.yaml", i+1))
		if err := os.WriteFile(p, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// startNodes starts a node for each configuration file; the test's
// cleanup closes them.
func bkStartNodes(t *testing.T, paths []string) []*server.Server {
	t.Helper()
	var srvs []*server.Server
	for _, p := range paths {
		cfg, err := server.LoadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := server.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		t.Cleanup(func() { s.Close() })
		go s.Serve()
		srvs = append(srvs, s)
	}
	return srvs
}

func bkPut(t *testing.T, s *server.Server, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Runner().Propose(ctx, kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: key, Value: []byte(value)})); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func bkGet(t *testing.T, s *server.Server, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.Runner().Read(ctx, node.ReadLinearizable, kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: key}))
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	r := res.(kv.Result)
	return string(r.Value), r.Found
}

// download fetches a backup from s's admin API into file.
func bkDownload(t *testing.T, s *server.Server, file string) backup.Info {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.APIAddr()+"/consensus/snapshot/download", nil)
	req.Header.Set("Authorization", "Bearer "+backupToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %v, HTTP %d: %s", err, resp.StatusCode, body)
	}
	info, err := backup.Read(bytes.NewReader(body), nil)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	return info
}

func bkRunD(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestBackupRestoreNewCluster: a backup saved from a running 3-node
// cluster (wal storage) seeds a new 3-node cluster (pebble storage) under
// a new cluster ID, which serves exactly the backed-up keys and takes
// writes; damaged, truncated and foreign files, a storage that is not
// empty and the old cluster's ID are refused, writing nothing. Then the
// new cluster is stopped, every node's storage migrated to bolt, and the
// cluster started on the copies serves every key.
func TestBackupRestoreNewCluster(t *testing.T) {
	dir := t.TempDir()
	old := bkStartNodes(t, bkWriteConfigs(t, filepath.Join(dir, "old"), 3, "old-cluster", "wal"))
	lead := servertest.Leader(t, old)
	const keys = 50
	for i := range keys {
		bkPut(t, lead, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
	}
	// From a follower: the backup still holds every write committed
	// before the request.
	var follower *server.Server
	for _, s := range old {
		if s != lead {
			follower = s
		}
	}
	commit := lead.Runner().Status().Commit
	file := filepath.Join(dir, "backup.fcb")
	info := bkDownload(t, follower, file)
	if info.ClusterID != "old-cluster" || info.Index < commit || info.Term == 0 || len(info.Voters) != 3 {
		t.Fatalf("backup header %+v; want cluster old-cluster, index >= %d, 3 voters", info.Header, commit)
	}
	t.Logf("backup: %+v size %d sha256 %s", info.Header, info.Size, info.SHA256)
	// A write after the backup is not in it.
	bkPut(t, lead, "after", "backup")

	newPaths := bkWriteConfigs(t, filepath.Join(dir, "new"), 3, "new-cluster", "pebble")
	data1 := filepath.Join(dir, "new", "data1")
	raw, _ := os.ReadFile(file)

	// Refusals, each writing nothing.
	flipped := bytes.Clone(raw)
	flipped[len(flipped)/2] ^= 0x40
	notEmpty := filepath.Join(dir, "notempty.yaml")
	cfgRaw, _ := os.ReadFile(newPaths[0])
	os.MkdirAll(filepath.Join(dir, "full"), 0o755)
	os.WriteFile(filepath.Join(dir, "full", "x"), []byte("x"), 0o600)
	os.WriteFile(notEmpty, bytes.Replace(cfgRaw, []byte(data1), []byte(filepath.Join(dir, "full")), 1), 0o600)
	for _, tc := range []struct {
		name   string
		data   []byte
		config string
		id     string
		code   int
		want   string
	}{
		{"flipped byte", flipped, newPaths[0], "new-cluster", exitBackupRefused, "checksum mismatch"},
		{"truncated", raw[:len(raw)-100], newPaths[0], "new-cluster", exitBackupRefused, "truncated"},
		{"truncated in the header", raw[:20], newPaths[0], "new-cluster", exitBackupRefused, "truncated in the header"},
		{"foreign", cfgRaw, newPaths[0], "new-cluster", exitBackupRefused, "not a consensus backup file"},
		{"empty", nil, newPaths[0], "new-cluster", exitBackupRefused, "the file is empty"},
		{"old cluster id", raw, filepath.Join(dir, "old", "node1.yaml"), "old-cluster", exitBackupRefused, "the backed-up cluster's ID"},
		{"id not the config's", raw, newPaths[0], "other", exitUsage, "is not the cluster_id"},
		{"storage not empty", raw, notEmpty, "new-cluster", exitBackupRefused, "must be empty or absent"},
	} {
		f := filepath.Join(dir, "case.fcb")
		os.WriteFile(f, tc.data, 0o600)
		code, _, stderr := bkRunD("restore", "-from", f, "-config", tc.config, "-new-cluster-id", tc.id)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, stderr, tc.code, tc.want)
		}
		if _, err := os.Stat(data1); !os.IsNotExist(err) {
			t.Fatalf("%s: %s was written", tc.name, data1)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "full")); len(ents) != 1 {
		t.Errorf("the non-empty storage was changed: %d entries", len(ents))
	}

	for _, p := range newPaths {
		code, stdout, stderr := bkRunD("restore", "-from", file, "-config", p, "-new-cluster-id", "new-cluster")
		if code != 0 {
			t.Fatalf("restore %s: exit %d: %s", p, code, stderr)
		}
		if !strings.Contains(stdout, fmt.Sprintf("%d keys", keys)) {
			t.Errorf("restore %s: %s", p, stdout)
		}
	}
	// Once restored, the storage is not empty: a second restore is refused.
	if code, _, stderr := bkRunD("restore", "-from", file, "-config", newPaths[0], "-new-cluster-id", "new-cluster"); code != exitBackupRefused {
		t.Errorf("second restore: exit %d: %s", code, stderr)
	}

	fresh := bkStartNodes(t, newPaths)
	nl := servertest.Leader(t, fresh)
	for i := range keys {
		if v, ok := bkGet(t, nl, fmt.Sprintf("k%02d", i)); !ok || v != fmt.Sprintf("v%d", i) {
			t.Errorf("k%02d: %q, %v", i, v, ok)
		}
	}
	if _, ok := bkGet(t, nl, "after"); ok {
		t.Error("a key written after the backup is in the restored cluster")
	}
	bkPut(t, nl, "new", "write")
	if v, ok := bkGet(t, nl, "new"); !ok || v != "write" {
		t.Errorf("new write: %q %v", v, ok)
	}
	// Every node of the new cluster holds the same state: its voters
	// are the new configuration's, and a snapshot taken after the restore
	// downloads with the new cluster's ID.
	st, err := nl.Runner().CoreStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Config.Voters) != 3 || st.Term <= info.Term {
		t.Errorf("new cluster: voters %v, term %d (backup term %d)", st.Config.Voters, st.Term, info.Term)
	}
	for _, s := range fresh {
		deadline := time.Now().Add(10 * time.Second)
		for s.Runner().Status().Applied < nl.Runner().Status().Commit && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if v, ok := bkGet(t, s, "k07"); !ok || v != "v7" {
			t.Errorf("node %d: k07 = %q, %v", s.Runner().ID(), v, ok)
		}
	}
	if again := bkDownload(t, nl, filepath.Join(dir, "again.fcb")); again.ClusterID != "new-cluster" || again.Index <= info.Index {
		t.Errorf("backup of the new cluster: %+v", again.Header)
	}

	// The same after migrating storage: the restored cluster stopped,
	// every node's pebble storage migrated to bolt, the cluster started
	// on the copies serves every key.
	for _, s := range fresh {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var migrated []string
	for i, p := range newPaths {
		boltDir := filepath.Join(dir, "new", fmt.Sprintf("bolt%d", i+1))
		if code, out, stderr := bkRunD("migrate-storage", "-config", p, "-to-type", "bolt", "-to-path", boltDir); code != 0 {
			t.Fatalf("migrate %s: exit %d: %s%s", p, code, out, stderr)
		}
		raw, _ := os.ReadFile(p)
		raw = bytes.Replace(raw, []byte("type: pebble"), []byte("type: bolt"), 1)
		raw = bytes.Replace(raw, []byte(filepath.Join(dir, "new", fmt.Sprintf("data%d", i+1))), []byte(boltDir), 1)
		mp := filepath.Join(dir, "new", fmt.Sprintf("bolt%d.yaml", i+1))
		os.WriteFile(mp, raw, 0o600)
		migrated = append(migrated, mp)
	}
	moved := bkStartNodes(t, migrated)
	ml := servertest.Leader(t, moved)
	for i := range keys {
		if v, ok := bkGet(t, ml, fmt.Sprintf("k%02d", i)); !ok || v != fmt.Sprintf("v%d", i) {
			t.Errorf("after migration: k%02d: %q, %v", i, v, ok)
		}
	}
	if v, ok := bkGet(t, ml, "new"); !ok || v != "write" {
		t.Errorf("after migration: new: %q %v", v, ok)
	}
	_ = core.Leader
}

// TestMigrateStorageRoundTrip: a stopped node's wal storage (snapshot and
// log) is copied to pebble and back to wal, each copy verified with equal
// state hashes; the node starts from the copy with every key; a target
// that is not empty is refused.
func TestMigrateStorageRoundTrip(t *testing.T) {
	dir := t.TempDir()
	paths := bkWriteConfigs(t, dir, 1, "mig", "wal")
	// A snapshot every 20 entries: the storage holds a snapshot and a log.
	raw, _ := os.ReadFile(paths[0])
	raw = bytes.Replace(raw, []byte("raft:\n"), []byte("raft:\n  snapshot_threshold: 20\n  trailing_logs: 5\n"), 1)
	os.WriteFile(paths[0], raw, 0o600)
	srvs := bkStartNodes(t, paths)
	lead := servertest.Leader(t, srvs)
	const keys = 45
	for i := range keys {
		bkPut(t, lead, fmt.Sprintf("m%02d", i), fmt.Sprintf("v%d", i))
	}
	// A running node is refused.
	if code, _, stderr := bkRunD("migrate-storage", "-config", paths[0], "-to-type", "pebble", "-to-path",
		filepath.Join(dir, "running")); code != exitBackupRefused || !strings.Contains(stderr, "the node is running") {
		t.Errorf("running node: exit %d: %s", code, stderr)
	}
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
	pebbleDir, walDir := filepath.Join(dir, "pebble"), filepath.Join(dir, "wal2")
	hash := func(stdout string) string {
		_, after, ok := strings.Cut(stdout, "state hash ")
		if !ok {
			t.Fatalf("no state hash in %q", stdout)
		}
		return strings.Fields(after)[0]
	}
	code, out1, stderr := bkRunD("migrate-storage", "-config", paths[0], "-to-type", "pebble", "-to-path", pebbleDir)
	if code != 0 {
		t.Fatalf("wal -> pebble: exit %d: %s", code, stderr)
	}
	t.Log(out1)
	// pebble -> wal, with a configuration naming the pebble copy.
	pebbleCfg := filepath.Join(dir, "pebble.yaml")
	os.WriteFile(pebbleCfg, bytes.Replace(bytes.Replace(raw, []byte("type: wal"), []byte("type: pebble"), 1),
		[]byte(filepath.Join(dir, "data1")), []byte(pebbleDir), 1), 0o600)
	code, out2, stderr := bkRunD("migrate-storage", "-config", pebbleCfg, "-to-type", "wal", "-to-path", walDir)
	if code != 0 {
		t.Fatalf("pebble -> wal: exit %d: %s", code, stderr)
	}
	if h1, h2 := hash(out1), hash(out2); h1 != h2 {
		t.Errorf("state hash %s after wal -> pebble, %s after pebble -> wal", h1, h2)
	}
	// The state hash is the node's: that of a store holding the same keys.
	want := kv.New(kv.Config{})
	for i := range keys {
		want.Apply(uint64(i+1), kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: fmt.Sprintf("m%02d", i), Value: []byte(fmt.Sprintf("v%d", i))}))
	}
	if h := hash(out1); h != fmt.Sprintf("%016x", want.Hash()) {
		t.Errorf("state hash %s, want %016x (the keys written)", h, want.Hash())
	}
	if !strings.Contains(out1, "snapshot at ") || strings.Contains(out1, "snapshot at 0,") {
		t.Errorf("the source held no snapshot: %s", out1)
	}
	// A target that is not empty is refused.
	if code, _, stderr := bkRunD("migrate-storage", "-config", paths[0], "-to-type", "pebble", "-to-path", pebbleDir); code != exitBackupRefused ||
		!strings.Contains(stderr, "must be empty") {
		t.Errorf("non-empty target: exit %d: %s", code, stderr)
	}
	// The node starts from the round-tripped copy with every key.
	walCfg := filepath.Join(dir, "wal2.yaml")
	os.WriteFile(walCfg, bytes.Replace(raw, []byte(filepath.Join(dir, "data1")), []byte(walDir), 1), 0o600)
	again := bkStartNodes(t, []string{walCfg})
	l := servertest.Leader(t, again)
	for i := range keys {
		if v, ok := bkGet(t, l, fmt.Sprintf("m%02d", i)); !ok || v != fmt.Sprintf("v%d", i) {
			t.Errorf("m%02d: %q %v", i, v, ok)
		}
	}
}

// metric reads the first sample of s's metrics (admin API) whose line
// starts with series.
func bkMetric(t *testing.T, s *server.Server, series string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.APIAddr()+"/consensus/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+backupToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, series) {
			var f float64
			fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &f)
			return f
		}
	}
	return 0
}

// TestRestoredClusterRefusesOldNodes: a node restored into a new cluster
// at the address of an old member (same node ID, same raft port) refuses
// the old cluster's leader, which keeps dialing it: its transport rejects
// every connection (another cluster_id), its term and state stay its own,
// and the old cluster's later writes never reach it.
func TestRestoredClusterRefusesOldNodes(t *testing.T) {
	dir := t.TempDir()
	oldPaths := bkWriteConfigs(t, filepath.Join(dir, "old"), 3, "old-cluster", "wal")
	old := bkStartNodes(t, oldPaths)
	lead := servertest.Leader(t, old)
	for i := range 10 {
		bkPut(t, lead, fmt.Sprintf("k%d", i), "old")
	}
	file := filepath.Join(dir, "b.fcb")
	bkDownload(t, lead, file)
	// Stop a follower; a new cluster's node takes its ID and address.
	var gone int
	for i, s := range old {
		if s != lead {
			gone = i
		}
	}
	if err := old[gone].Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(oldPaths[gone])
	cfg, err := server.LoadConfig(oldPaths[gone])
	if err != nil {
		t.Fatal(err)
	}
	var self string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, fmt.Sprintf("{id: %d,", cfg.NodeID.ID())) {
			self = l
		}
	}
	newCfg := strings.NewReplacer("cluster_id: old-cluster", "cluster_id: new-cluster",
		cfg.Storage.Path, filepath.Join(dir, "new-data")).Replace(string(raw))
	// Its peers: itself alone.
	start, _ := strings.CutPrefix(newCfg[strings.Index(newCfg, "peers:\n"):], "peers:\n")
	end := strings.Index(start, "raft:")
	newCfg = strings.Replace(newCfg, start[:end], self+"\n", 1)
	newPath := filepath.Join(dir, "new.yaml")
	os.WriteFile(newPath, []byte(newCfg), 0o600)
	if code, _, stderr := bkRunD("restore", "-from", file, "-config", newPath, "-new-cluster-id", "new-cluster"); code != 0 {
		t.Fatalf("restore: %d: %s\n%s", code, stderr, newCfg)
	}
	fresh := bkStartNodes(t, []string{newPath})
	servertest.Leader(t, fresh)
	term := fresh[0].Runner().Status().Term

	const rejected = `forge_consensus_transport_errors_total{kind="rejected"`
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; bkMetric(t, fresh[0], rejected) < 3; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the old leader's connections were not refused; new node %+v", fresh[0].Runner().Status())
		}
		bkPut(t, lead, fmt.Sprintf("late%d", i), "old")
		time.Sleep(20 * time.Millisecond)
	}
	if got := fresh[0].Runner().Status(); got.Term != term || got.Lead != cfg.NodeID.ID() {
		t.Errorf("the new node moved: term %d (was %d), leader %d", got.Term, term, got.Lead)
	}
	if _, ok := bkGet(t, fresh[0], "late0"); ok {
		t.Error("an old-cluster write reached the new cluster")
	}
	if v, ok := bkGet(t, fresh[0], "k3"); !ok || v != "old" {
		t.Errorf("restored key k3: %q %v", v, ok)
	}
}
