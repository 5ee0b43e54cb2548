package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/server/servertest"
)

// TestStorageFailureExitCode runs consensusd with its storage on a small
// tmpfs and the free-space guard at one byte, fills the file system, and
// writes until Pebble itself fails to write its log: the process exits
// with the documented code 3 and an ERROR line naming the file and the
// cause, and no panic or stack trace.
func TestStorageFailureExitCode(t *testing.T) {
	tmp := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", tmp).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root): %v: %s", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (a skip is a failure under CI)")
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", tmp).Run() })
	port := servertest.FreePorts(t, 1)[0]
	cfg := filepath.Join(t.TempDir(), "node.yaml")
	raw := fmt.Sprintf(`node_id: 1
bind_port: %d
peers:
  - {id: 1, address: 127.0.0.1, port: %d}
raft:
  heartbeat_interval: 20ms
  election_timeout_min: 200ms
storage:
  type: pebble
  path: %s
  min_free_space: 1
`, port, port, filepath.Join(tmp, "node1"))
	if err := os.WriteFile(cfg, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command(buildDaemon(t), "-config", cfg)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	api := fmt.Sprintf("http://127.0.0.1:%d/kv/", port+100)
	put := func(k, v string) (int, error) {
		req, _ := http.NewRequest(http.MethodPut, api+k, strings.NewReader(v))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, err := put("hello", "world"); err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node never took a write:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ballast, err := os.Create(filepath.Join(tmp, "ballast"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 1
	}
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(tmp, &st); err != nil {
			t.Fatal(err)
		}
		if int64(st.Bavail)*st.Bsize < 2<<20 {
			break
		}
		if _, err := ballast.Write(buf); err != nil {
			break
		}
	}
	ballast.Close()
	val := strings.Repeat("z", 8<<10)
	var werr error
	for i := 0; i < 10000; i++ {
		if _, werr = put(fmt.Sprintf("k%05d", i), val); werr != nil {
			break // the process is gone
		}
		select {
		case werr = <-exited:
			exited <- werr
			i = 10000
		default:
		}
	}
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("consensusd did not exit on a full disk:\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitStorageIO {
		t.Fatalf("consensusd exited with %v, want code %d:\n%s", err, exitStorageIO, stderr.String())
	}
	log := stderr.String()
	if strings.Contains(log, "panic:") || strings.Contains(log, "goroutine ") {
		t.Fatalf("consensusd printed a panic or a stack trace:\n%s", log)
	}
	var final []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "node stopped: storage failure") {
			final = append(final, l)
		}
	}
	if len(final) != 1 || !strings.Contains(final[0], "exit_code=3") ||
		!strings.Contains(final[0], filepath.Join(tmp, "node1")) || !strings.Contains(final[0], "no space left on device") {
		t.Fatalf("want one ERROR line naming the directory, the file and the cause; got %q in:\n%s", final, log)
	}
	t.Logf("final line: %s", final[0])
}
