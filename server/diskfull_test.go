package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/client"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory and returns
// it. Without the right to mount the test is skipped, except under CI
// (CI=true), where that is a failure.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root): %v: %s", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (a skip is a failure under CI)")
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillTo writes a ballast file into dir until only leave bytes are free.
func fillTo(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i) | 1 // tmpfs stores what it is given
	}
	for {
		n := freeBytes(t, dir) - leave
		if n <= 0 {
			return path
		}
		if _, err := f.Write(buf[:min(n, int64(len(buf)))]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatal(err)
		}
	}
}

// startNode starts a one-node cluster with its storage in dir.
func startNode(t *testing.T, storage, dir string, ports []int, minFree int64) *server.Server {
	t.Helper()
	segment := ""
	if storage == "wal" {
		segment = "  segment_size: 4194304\n"
	}
	raw := fmt.Sprintf(`node_id: 1
bind_port: %d
peers:
  - {id: 1, address: 127.0.0.1, port: %d, api_port: %d, client_port: %d}
raft:
  heartbeat_interval: 20ms
  election_timeout_min: 200ms
storage:
  type: %s
  path: %s
  min_free_space: %d
%sapi:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
admin_api:
  allow_unauthenticated: true
`, ports[0], ports[0], ports[1], ports[2], storage, filepath.Join(dir, "node1"), minFree, segment, ports[1], ports[2])
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	s, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go s.Serve()
	servertest.Leader(t, []*server.Server{s})
	return s
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDiskFullRefusesWritesAndResumes fills the file system of a real node
// (Pebble storage on a small tmpfs) with a ballast file: writes are refused
// with HTTP 507 and the client's ErrNoSpace, reads and health go on and
// health names the reason; once the ballast is gone, writes resume by
// themselves, and every acknowledged write survives a restart.
func TestDiskFullRefusesWritesAndResumes(t *testing.T) {
	for _, storage := range []string{"pebble", "wal"} {
		t.Run(storage, func(t *testing.T) { testDiskFullRefusesWrites(t, storage) })
	}
}

func testDiskFullRefusesWrites(t *testing.T, storage string) {
	const minFree = 16 << 20
	tmp := mountTmpfs(t, 96<<20)
	ports := servertest.FreePorts(t, 3)
	s := startNode(t, storage, tmp, ports, minFree)
	api := "http://" + s.APIAddr()
	acked := map[string]string{}
	put := func(k, v string) int {
		code, body := httpDo(t, http.MethodPut, api+"/kv/"+k, v)
		if code == http.StatusOK {
			acked[k] = v
		} else if code != http.StatusInsufficientStorage {
			t.Fatalf("PUT %s: %d %s", k, code, body)
		}
		return code
	}
	for i := range 100 {
		put(fmt.Sprintf("before-%03d", i), strings.Repeat("v", 100)+fmt.Sprint(i))
	}

	ballast := fillTo(t, tmp, minFree/2)
	var body string
	waitFor(t, "a PUT refused with 507", func() bool {
		var code int
		code, body = httpDo(t, http.MethodPut, api+"/kv/full", "x")
		return code == http.StatusInsufficientStorage
	})
	want := "no space left on device in " + filepath.Join(tmp, "node1")
	if !strings.Contains(body, want) {
		t.Fatalf("507 body %q does not say %q", body, want)
	}

	cl, err := client.New(client.Config{Addrs: []string{s.ClientAddr()}, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Put(ctx, "full", []byte("x")); !errors.Is(err, client.ErrNoSpace) || !strings.Contains(err.Error(), want) {
		t.Fatalf("client Put on a full disk: %v, want ErrNoSpace naming %s", err, want)
	}
	if _, err := s.Runner().Propose(ctx, []byte("x")); !errors.Is(err, node.ErrNoSpace) {
		t.Fatalf("Propose on a full disk: %v, want node.ErrNoSpace", err)
	}

	// Reads go on, linearizable ones included, over HTTP and the client.
	for k, v := range acked {
		code, got := httpDo(t, http.MethodGet, api+"/kv/"+k, "")
		if code != http.StatusOK || got != v {
			t.Fatalf("GET %s on a full disk: %d %q, want %q", k, code, got, v)
		}
	}
	if v, ok, err := cl.Get(ctx, "before-007", client.Linearizable); err != nil || !ok || string(v) != acked["before-007"] {
		t.Fatalf("client Get on a full disk: %q %v %v", v, ok, err)
	}
	// Health answers and says why.
	code, hb := httpDo(t, http.MethodGet, api+"/consensus/health", "")
	var h struct {
		Status string `json:"status"`
		Checks []struct {
			Name    string `json:"name"`
			Healthy bool   `json:"healthy"`
			Message string `json:"message"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(hb), &h); err != nil {
		t.Fatalf("health %d %q: %v", code, hb, err)
	}
	found := false
	for _, c := range h.Checks {
		if c.Name == "storage_space" && !c.Healthy && strings.Contains(c.Message, want) &&
			strings.Contains(c.Message, "bytes free, need 16777216") {
			found = true
		}
	}
	if code != http.StatusServiceUnavailable || h.Status != "unhealthy" || !found {
		t.Fatalf("health on a full disk: %d %s", code, hb)
	}
	t.Logf("health on a full disk: %s", hb)

	// Space returns: writes resume by themselves.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "writes to resume", func() bool { return put("resumed", "yes") == http.StatusOK })
	for i := range 50 {
		if code := put(fmt.Sprintf("after-%03d", i), fmt.Sprint(i)); code != http.StatusOK {
			t.Fatalf("PUT after space returned: %d", code)
		}
	}
	if err := cl.Put(ctx, "client-after", []byte("ok")); err != nil {
		t.Fatalf("client Put after space returned: %v", err)
	}
	acked["client-after"] = "ok"
	if code, hb := httpDo(t, http.MethodGet, api+"/consensus/health", ""); code != http.StatusOK {
		t.Fatalf("health after space returned: %d %s", code, hb)
	}

	// Every acknowledged write survives a restart.
	cl.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = startNode(t, storage, tmp, ports, minFree)
	api = "http://" + s.APIAddr()
	for k, v := range acked {
		code, got := httpDo(t, http.MethodGet, api+"/kv/"+k, "")
		if code != http.StatusOK || got != v {
			t.Fatalf("after restart GET %s: %d %q, want %q", k, code, got, v)
		}
	}
	t.Logf("%d acknowledged writes intact after the disk filled, emptied and the node restarted", len(acked))
}

// TestDiskFullUnderPebbleStopsCleanly lets Pebble itself run into ENOSPC
// (the free-space guard is set to one byte): the node stops with a storage
// error wrapping syscall.ENOSPC instead of crashing the process with a
// panic, and once space returns it restarts with every write it
// acknowledged.
func TestDiskFullUnderPebbleStopsCleanly(t *testing.T) {
	tmp := mountTmpfs(t, 48<<20)
	ports := servertest.FreePorts(t, 3)
	s := startNode(t, "pebble", tmp, ports, 1)
	api := "http://" + s.APIAddr()
	acked := map[string]string{}
	ballast := fillTo(t, tmp, 2<<20)
	val := strings.Repeat("z", 8<<10)
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("the disk never filled up")
		}
		k := fmt.Sprintf("k%05d", i)
		code, _ := httpDo(t, http.MethodPut, api+"/kv/"+k, val)
		if code == http.StatusOK {
			acked[k] = val
			continue
		}
		break
	}
	waitFor(t, "the node to stop", func() bool { return s.Runner().Err() != nil })
	err := s.Runner().Err()
	if !errors.Is(err, node.ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("node stopped with %v, want node.ErrStorage wrapping ENOSPC", err)
	}
	t.Logf("node stopped: %v (after %d acknowledged writes)", err, len(acked))
	_ = s.Close() // a failed Pebble may fail to close: only its acknowledged writes matter
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s = startNode(t, "pebble", tmp, ports, 1)
	api = "http://" + s.APIAddr()
	for k, v := range acked {
		code, got := httpDo(t, http.MethodGet, api+"/kv/"+k, "")
		if code != http.StatusOK || got != v {
			t.Fatalf("after restart GET %s: %d (%d bytes), want the acknowledged value", k, code, len(got))
		}
	}
}

// TestDiskFullUnderWALWaits lets the wal storage itself run out of space
// (the free-space guard is set to one byte): it cannot preallocate its next
// segment, reports SpaceErr, and its writes wait instead of failing; the
// node refuses new writes with 507 and keeps running, resumes once space
// returns, and every acknowledged write survives a restart.
func TestDiskFullUnderWALWaits(t *testing.T) {
	tmp := mountTmpfs(t, 48<<20)
	ports := servertest.FreePorts(t, 3)
	s := startNode(t, "wal", tmp, ports, 1)
	api := "http://" + s.APIAddr()
	acked := map[string]string{}
	ballast := fillTo(t, tmp, 2<<20)
	val := strings.Repeat("w", 8<<10)
	refused := false
	for i := 0; i < 10000 && !refused; i++ {
		k := fmt.Sprintf("k%05d", i)
		code, body := httpDo(t, http.MethodPut, api+"/kv/"+k, val)
		switch code {
		case http.StatusOK:
			acked[k] = val
		case http.StatusInsufficientStorage:
			refused = true
			t.Logf("refused after %d acknowledged writes: %s", len(acked), body)
		case http.StatusGatewayTimeout: // waited for space: outcome unknown
		default:
			t.Fatalf("PUT %s: %d %s", k, code, body)
		}
	}
	if !refused {
		t.Fatal("the wal never reported the disk full")
	}
	if err := s.Runner().Err(); err != nil {
		t.Fatalf("node stopped on a full disk: %v", err)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "writes to resume", func() bool {
		code, _ := httpDo(t, http.MethodPut, api+"/kv/resumed", "yes")
		return code == http.StatusOK
	})
	acked["resumed"] = "yes"
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = startNode(t, "wal", tmp, ports, 1)
	api = "http://" + s.APIAddr()
	for k, v := range acked {
		code, got := httpDo(t, http.MethodGet, api+"/kv/"+k, "")
		if code != http.StatusOK || got != v {
			t.Fatalf("after restart GET %s: %d (%d bytes), want the acknowledged value", k, code, len(got))
		}
	}
}
