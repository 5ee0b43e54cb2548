package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// encKey returns a 32-byte key of repeated b, as hex.
func encKey(b byte) string { return hex.EncodeToString(bytes.Repeat([]byte{b}, 32)) }

func encKeyID(t *testing.T, b byte) string {
	k, err := encrypt.ParseKey(encKey(b))
	if err != nil {
		t.Fatal(err)
	}
	return k.ID().String()
}

// TestEncryptionAtRestNoPlaintext runs a 3-node cluster with
// security.enable_encryption on wal, pebble, bolt and badger (postgres keeps
// its data in the server, not in files), with snapshots taken and
// shipped to a lagging follower, writes distinctive keys and values, stops
// it, and scans every byte of every file in every node's data directory:
// no key, value or encryption key appears. The nodes then restart from
// their encrypted directories and serve every value.
func TestEncryptionAtRestNoPlaintext(t *testing.T) {
	for _, storage := range []string{"wal", "pebble", "bolt", "badger"} {
		t.Run(storage, func(t *testing.T) { testNoPlaintext(t, storage) })
	}
}

func testNoPlaintext(t *testing.T, storage string) {
	extra := fmt.Sprintf("security:\n  enable_encryption: true\n  encryption_key: %s\n", encKey(0x5a))
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 3, Storage: storage, Transport: "tcp",
		Raft: "  snapshot_threshold: 20\n  trailing_logs: 5\n", Extra: extra})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := 0
	if srvs[f] == lead {
		f = 1
	}
	if err := srvs[f].Close(); err != nil { // it catches up from an encrypted snapshot later
		t.Fatal(err)
	}
	const keys = 120
	key := func(i int) string { return fmt.Sprintf("SECRETKEY-%03d", i) }
	val := func(i int) string { return fmt.Sprintf("SECRETVAL-%03d-zebra-quagga", i) }
	for i := range keys {
		if _, err := lead.Runner().Propose(ctx, setCmd(key(i), val(i))); err != nil {
			t.Fatal(err)
		}
	}
	s, err := server.New(srvs[f].Config(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("restart node %d: %v", f+1, err)
	}
	t.Cleanup(func() { s.Close() })
	go s.Serve()
	srvs[f] = s
	commit := lead.Runner().Status().Commit
	for _, srv := range srvs {
		eventually(t, "every node applies everything", func() bool { return srv.Runner().Status().Applied >= commit })
	}
	if first := s.Runner().Status().FirstIndex; first <= 1 {
		t.Fatalf("the follower's log starts at %d: it caught up without a snapshot", first)
	}

	// /status says which key the records use.
	resp, err := http.Get("http://" + lead.APIAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Encryption encrypt.Usage }
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if id := encKeyID(t, 0x5a); err != nil || st.Encryption.Active != id || !slices.Equal(st.Encryption.InUse, []string{id}) ||
		st.Encryption.Snapshot == nil {
		t.Fatalf("/status encryption: %+v, %v", st.Encryption, err)
	}

	cfgs := make([]server.Config, len(srvs))
	for i, srv := range srvs {
		cfgs[i] = srv.Config()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	raw := bytes.Repeat([]byte{0x5a}, 32)
	// Needles of 9 bytes or more: ciphertext holds one by chance with a
	// probability below 2^-40 per file.
	needles := [][]byte{[]byte("SECRETKEY"), []byte("SECRETVAL"), []byte("-zebra-quagga"), raw,
		[]byte(encKey(0x5a)), []byte(base64.StdEncoding.EncodeToString(raw)[:40])}
	files, snaps := 0, 0
	for _, cfg := range cfgs {
		err := filepath.WalkDir(cfg.Storage.Path, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			if strings.HasPrefix(d.Name(), "snap-") {
				snaps++
			}
			for _, n := range needles {
				if i := bytes.Index(b, n); i >= 0 {
					t.Errorf("%s holds %q in plaintext at offset %d", path, n[:min(len(n), 12)], i)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if snaps == 0 {
		t.Fatalf("no snapshot file among %d files: the scan covered no snapshot", files)
	}
	t.Logf("%s: scanned %d files (%d snapshot files) of 3 nodes: no plaintext", storage, files, snaps)

	for i, cfg := range cfgs {
		s, err := server.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("restart node %d: %v", i+1, err)
		}
		t.Cleanup(func() { s.Close() })
		go s.Serve()
		srvs[i] = s
	}
	for _, srv := range srvs {
		eventually(t, "a restarted node applies the old commit index", func() bool { return srv.Runner().Status().Applied >= commit })
		for i := range keys {
			res, err := srv.Runner().Read(ctx, node.ReadStale, kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: key(i)}))
			if r, ok := res.(kv.Result); err != nil || !ok || string(r.Value) != val(i) {
				t.Fatalf("node %d: %s = %+v, %v", srv.Runner().ID(), key(i), res, err)
			}
		}
	}
}

// TestEncryptionRefusals: a node whose encrypted directory is opened
// without encryption, with a wrong key, or without an old key its records
// still use refuses to start with a configuration error naming the key,
// and its directory is left as it was; a plain directory opened with
// encryption likewise.
func TestEncryptionRefusals(t *testing.T) {
	extra := fmt.Sprintf("security:\n  enable_encryption: true\n  encryption_key: %s\n", encKey(1))
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "wal", Transport: "tcp", Extra: extra})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := lead.Runner().Propose(ctx, setCmd(fmt.Sprint("a", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := srvs[0].Config()
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
	// Rotate: key 2 active, key 1 old; write with key 2.
	rot := cfg
	rot.Security.EncryptionKey = encKey(2)
	rot.Security.EncryptionOldKeys = []server.EncryptionKeyConfig{{Key: encKey(1)}}
	s, err := server.New(rot, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("restart with a new key and the old one: %v", err)
	}
	go s.Serve()
	lead = servertest.Leader(t, []*server.Server{s})
	if _, err := lead.Runner().Propose(ctx, setCmd("b", "v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := dirHashes(t, cfg.Storage.Path)

	plain := cfg
	plain.Security.EnableEncryption, plain.Security.EncryptionKey = false, ""
	wrong := cfg
	wrong.Security.EncryptionKey = encKey(3)
	missing := cfg
	missing.Security.EncryptionKey = encKey(2)
	for _, tc := range []struct {
		name string
		cfg  server.Config
		want []string
	}{
		{"without encryption", plain, []string{"security.enable_encryption", "is encrypted", encKeyID(t, 1), encKeyID(t, 2)}},
		{"wrong key", wrong, []string{"security.encryption_key", "wrong key", encKeyID(t, 3), encKeyID(t, 1)}},
		{"missing old key", missing, []string{"security.encryption_old_keys", encKeyID(t, 1), "not configured"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := server.New(tc.cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				s.Close()
				t.Fatal("the node started")
			}
			if !errors.Is(err, server.ErrInvalidConfig) {
				t.Errorf("error is not a configuration error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), encKey(1)) || strings.Contains(err.Error(), encKey(3)) {
				t.Errorf("the error quotes a key: %v", err)
			}
			t.Logf("refused: %v", err)
			if after := dirHashes(t, cfg.Storage.Path); !maps2Equal(before, after) {
				t.Errorf("the data directory changed")
			}
			if err := server.CheckStorage(tc.cfg, nil); err == nil {
				t.Error("CheckStorage accepts it")
			}
		})
	}

	// A plain directory opened with encryption.
	_, plainLead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "wal", Transport: "tcp"})
	if _, err := plainLead.Runner().Propose(ctx, setCmd("p", "v")); err != nil {
		t.Fatal(err)
	}
	pcfg := plainLead.Config()
	if err := plainLead.Close(); err != nil {
		t.Fatal(err)
	}
	pbefore := dirHashes(t, pcfg.Storage.Path)
	pcfg.Security = cfg.Security
	if s, err := server.New(pcfg, slog.New(slog.DiscardHandler)); err == nil || !errors.Is(err, server.ErrInvalidConfig) ||
		!strings.Contains(err.Error(), "without encryption") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("a plain directory with encryption: %v", err)
	}
	if !maps2Equal(pbefore, dirHashes(t, pcfg.Storage.Path)) {
		t.Error("the plain data directory changed")
	}
}

// TestEncryptionRotation rotates a node's key without losing a record:
// old records stay readable, new ones use the new key, and once a snapshot
// covers the old ones EncryptionStatus (consensusd encryption-status)
// reports the old key unused, and the node starts without it.
func TestEncryptionRotation(t *testing.T) {
	extra := fmt.Sprintf("security:\n  enable_encryption: true\n  encryption_key: %s\n", encKey(1))
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "wal", Transport: "tcp",
		Extra: extra, Raft: "  trailing_logs: 2\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := lead.Runner().Propose(ctx, setCmd(fmt.Sprint("old", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	cfg := srvs[0].Config()
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Security.EncryptionKey = encKey(2)
	cfg.Security.EncryptionOldKeys = []server.EncryptionKeyConfig{{Key: encKey(1)}}
	u, err := server.EncryptionStatus(cfg, nil)
	if err != nil || !slices.Equal(u.InUse, []string{encKeyID(t, 1)}) {
		t.Fatalf("before writing with the new key: %+v, %v", u, err)
	}
	start := func(cfg server.Config) *server.Server {
		t.Helper()
		s, err := server.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve()
		return servertest.Leader(t, []*server.Server{s})
	}
	s := start(cfg)
	for i := range 10 {
		if _, err := s.Runner().Propose(ctx, setCmd(fmt.Sprint("new", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	u, err = server.EncryptionStatus(cfg, nil)
	want := []string{encKeyID(t, 1), encKeyID(t, 2)}
	slices.Sort(want)
	if err != nil || !slices.Equal(u.InUse, want) {
		t.Fatalf("after writing with the new key: %+v, %v", u, err)
	}
	s = start(cfg)
	if _, err := s.Runner().TakeSnapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	u, err = server.EncryptionStatus(cfg, nil)
	if err != nil || !slices.Equal(u.InUse, []string{encKeyID(t, 2)}) {
		t.Fatalf("after a snapshot: %+v, %v", u, err)
	}
	cfg.Security.EncryptionOldKeys = nil
	s = start(cfg)
	defer s.Close()
	for _, k := range []string{"old0", "old4", "new9"} {
		res, err := s.Runner().Read(ctx, node.ReadStale, kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: k}))
		if r, ok := res.(kv.Result); err != nil || !ok || !r.Found {
			t.Fatalf("%s after dropping the old key: %+v, %v", k, res, err)
		}
	}
}

// TestEncryptionConfig: the encryption keys are validated with errors that
// name the key and never quote a key's value.
func TestEncryptionConfig(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad")
	if err := os.WriteFile(badFile, []byte("not-a-key-at-all"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "node_id: \"1\"\nbind_port: 7001\npeers:\n  - {id: \"1\", address: 127.0.0.1, port: 7001}\nstorage:\n  type: wal\n  path: " +
		filepath.Join(dir, "data") + "\nsecurity:\n"
	for _, tc := range []struct{ yaml, key string }{
		{"  enable_encryption: true\n", "security.encryption_key"},
		{"  enable_encryption: true\n  encryption_key: tooshortsecret\n", "security.encryption_key"},
		{"  enable_encryption: true\n  encryption_key: " + encKey(1) + "\n  encryption_key_file: " + keyFile + "\n", "security.encryption_key"},
		{"  encryption_key: " + encKey(1) + "\n", "security.encryption_key"},
		{"  encryption_key_file: " + keyFile + "\n", "security.encryption_key_file"},
		{"  enable_encryption: true\n  encryption_key: " + encKey(1) + "\n  encryption_old_keys:\n    - {}\n", "security.encryption_old_keys[0].key"},
		{"  enable_encryption: true\n  encryption_key: " + encKey(1) + "\n  encryption_old_keys:\n    - {key: tooshortsecret}\n", "security.encryption_old_keys[0].key"},
	} {
		_, err := server.ParseConfig([]byte(base+tc.yaml), os.Getenv)
		if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%q: %v, want an error naming %s", tc.yaml, err, tc.key)
		}
		if err != nil && (strings.Contains(err.Error(), "tooshortsecret") || strings.Contains(err.Error(), encKey(1))) {
			t.Errorf("%q: the error quotes a key: %v", tc.yaml, err)
		}
	}
	// Key files are read at start.
	for _, tc := range []struct{ yaml, key string }{
		{"  enable_encryption: true\n  encryption_key_file: " + badFile + "\n", "security.encryption_key_file"},
		{"  enable_encryption: true\n  encryption_key_file: " + filepath.Join(dir, "absent") + "\n", "security.encryption_key_file"},
		{"  enable_encryption: true\n  encryption_key: " + encKey(7) + "\n  encryption_old_keys:\n    - {key_file: " + keyFile + "}\n",
			"security.encryption_old_keys[0].key"},
	} {
		cfg, err := server.ParseConfig([]byte(base+tc.yaml), os.Getenv)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		err = server.CheckStorage(cfg, nil)
		if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.key) || strings.Contains(err.Error(), "not-a-key") {
			t.Errorf("%q: %v, want an error naming %s", tc.yaml, err, tc.key)
		}
	}
	cfg, err := server.ParseConfig([]byte(base+"  enable_encryption: true\n  encryption_key_file: "+keyFile+"\n"), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := server.CheckStorage(cfg, nil); err != nil {
		t.Fatalf("a raw 32-byte key file: %v", err)
	}
}

func dirHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
