package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestEncryptionStatus runs consensusd encryption-status on a stopped
// encrypted node: it lists the key in use (text and -json), exits 2 with a
// wrong key or on a node without encryption.
func TestEncryptionStatus(t *testing.T) {
	dir := t.TempDir()
	port := servertest.FreePorts(t, 1)[0]
	key := hex.EncodeToString(bytes.Repeat([]byte{0x42}, 32))
	k, err := encrypt.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	yaml := func(security string) string {
		p := filepath.Join(dir, fmt.Sprintf("node-%d.yaml", len(security)))
		raw := fmt.Sprintf("node_id: 1\nbind_port: %d\npeers:\n  - {id: 1, address: 127.0.0.1, port: %d}\n"+
			"raft:\n  heartbeat_interval: 20ms\n  election_timeout_min: 200ms\nstorage:\n  type: wal\n  path: %s\n%s",
			port, port, filepath.Join(dir, "data"), security)
		if err := os.WriteFile(p, []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := yaml("security:\n  enable_encryption: true\n  encryption_key: " + key + "\n")
	cfg, err := server.LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	lead := servertest.Leader(t, []*server.Server{s})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := lead.Runner().Propose(ctx, kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "k", Value: []byte("v")})); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	var out, errb strings.Builder
	if code := run([]string{"encryption-status", "-config", good}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "keys in use:     "+k.ID().String()) || strings.Contains(out.String(), key) {
		t.Fatalf("output:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"encryption-status", "-json", "-config", good}, &out, &errb); code != exitOK {
		t.Fatalf("-json: exit %d: %s", code, errb.String())
	}
	var u encrypt.Usage
	if err := json.Unmarshal([]byte(out.String()), &u); err != nil || u.Active != k.ID().String() || len(u.InUse) != 1 || len(u.Entries) == 0 {
		t.Fatalf("-json: %+v, %v:\n%s", u, err, out.String())
	}

	wrong := yaml("security:\n  enable_encryption: true\n  encryption_key: " + strings.Repeat("77", 32) + "\n")
	errb.Reset()
	if code := run([]string{"encryption-status", "-config", wrong}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), "wrong key") {
		t.Fatalf("wrong key: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"encryption-status", "-config", yaml("")}, &out, &errb); code != exitConfig ||
		!strings.Contains(errb.String(), "security.enable_encryption") {
		t.Fatalf("no encryption: exit %d: %s", code, errb.String())
	}
	// The node itself refuses to start without encryption: exit status 2.
	errb.Reset()
	if code := run([]string{"-config", yaml("")}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), "is encrypted") {
		t.Fatalf("plain start on an encrypted directory: exit %d: %s", code, errb.String())
	}
}

// TestMigrateAndRestoreEncrypted migrates an encrypted wal node to pebble,
// and restores a backup of it into a new encrypted cluster: each copy is
// encrypted (its own ENCRYPTION file, no plaintext key or value in any
// file), and a node starts from it with every key.
func TestMigrateAndRestoreEncrypted(t *testing.T) {
	dir := t.TempDir()
	paths := bkWriteConfigs(t, dir, 1, "encmig", "wal")
	raw, _ := os.ReadFile(paths[0])
	key := hex.EncodeToString(bytes.Repeat([]byte{0x24}, 32))
	raw = bytes.Replace(raw, []byte("security:\n"), []byte("security:\n  enable_encryption: true\n  encryption_key: "+key+"\n"), 1)
	raw = bytes.Replace(raw, []byte("raft:\n"), []byte("raft:\n  snapshot_threshold: 20\n  trailing_logs: 5\n"), 1)
	if err := os.WriteFile(paths[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}
	srvs := bkStartNodes(t, paths)
	lead := servertest.Leader(t, srvs)
	const keys = 30
	for i := range keys {
		bkPut(t, lead, fmt.Sprintf("MIGSECRET%02d", i), fmt.Sprintf("MIGVALUE%d", i))
	}
	backupFile := filepath.Join(dir, "backup.fcb")
	bkDownload(t, lead, backupFile)
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
	pebbleDir := filepath.Join(dir, "pebble")
	if code, out, stderr := bkRunD("migrate-storage", "-config", paths[0], "-to-type", "pebble", "-to-path", pebbleDir); code != 0 {
		t.Fatalf("wal -> pebble: exit %d: %s%s", code, out, stderr)
	}
	if _, ok, err := encrypt.MarkerKeys(pebbleDir); !ok || err != nil {
		t.Fatalf("the copy has no %s file: %v", encrypt.MarkerName, err)
	}
	scan := func(dir string) {
		t.Helper()
		files := 0
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			files++
			for _, n := range []string{"MIGSECRET", "MIGVALUE", key} {
				if bytes.Contains(b, []byte(n)) {
					t.Errorf("%s holds %q in plaintext", path, n)
				}
			}
			return err
		})
		if err != nil || files < 2 {
			t.Fatalf("scan of %s: %d files, %v", dir, files, err)
		}
	}
	scan(pebbleDir)
	// Restore the backup into a new encrypted cluster: its storage is
	// encrypted too.
	newPaths := bkWriteConfigs(t, filepath.Join(dir, "new"), 1, "encnew", "wal")
	newRaw, _ := os.ReadFile(newPaths[0])
	newRaw = bytes.Replace(newRaw, []byte("security:\n"), []byte("security:\n  enable_encryption: true\n  encryption_key: "+key+"\n"), 1)
	os.WriteFile(newPaths[0], newRaw, 0o600)
	if code, out, stderr := bkRunD("restore", "-from", backupFile, "-config", newPaths[0], "-new-cluster-id", "encnew"); code != 0 {
		t.Fatalf("restore: exit %d: %s%s", code, out, stderr)
	}
	restoredDir := filepath.Join(dir, "new", "data1")
	if _, ok, err := encrypt.MarkerKeys(restoredDir); !ok || err != nil {
		t.Fatalf("the restored storage has no %s file: %v", encrypt.MarkerName, err)
	}
	scan(restoredDir)
	restored := bkStartNodes(t, newPaths)
	rl := servertest.Leader(t, restored)
	if v, ok := bkGet(t, rl, "MIGSECRET07"); !ok || v != "MIGVALUE7" {
		t.Errorf("restored MIGSECRET07: %q %v", v, ok)
	}

	pebbleCfg := filepath.Join(dir, "pebble.yaml")
	os.WriteFile(pebbleCfg, bytes.Replace(bytes.Replace(raw, []byte("type: wal"), []byte("type: pebble"), 1),
		[]byte(filepath.Join(dir, "data1")), []byte(pebbleDir), 1), 0o600)
	again := bkStartNodes(t, []string{pebbleCfg})
	l := servertest.Leader(t, again)
	for i := range keys {
		if v, ok := bkGet(t, l, fmt.Sprintf("MIGSECRET%02d", i)); !ok || v != fmt.Sprintf("MIGVALUE%d", i) {
			t.Errorf("MIGSECRET%02d: %q %v", i, v, ok)
		}
	}
}
