package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain runs the test binary as the quickstart program when a test
// starts it as a node.
func TestMain(m *testing.M) {
	if os.Getenv("QUICKSTART_NODE") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// freeBases finds a Raft port base and an app port base whose ports for
// three nodes (and the consensus API and client ports, +100 and +200 of
// the Raft ports) are free.
func freeBases(t *testing.T) (raft, app int) {
	t.Helper()
	free := func(port int) bool {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	for base := 20000 + os.Getpid()%10000; base < 60000; base += 317 {
		ok := true
		for i := 1; i <= 3 && ok; i++ {
			ok = free(base+i) && free(base+100+i) && free(base+200+i) && free(base+300+i)
		}
		if ok {
			return base, base + 300
		}
	}
	t.Fatal("no free ports")
	return 0, 0
}

// TestQuickstartCluster builds nothing: it runs this test binary as three
// quickstart nodes, a live cluster of three Forge apps, and uses the users
// API as the program's documentation shows.
func TestQuickstartCluster(t *testing.T) {
	raft, app := freeBases(t)
	for i, name := range names {
		cmd := exec.Command(os.Args[0], "-node", name, "-data", t.TempDir(),
			"-raft-port", fmt.Sprint(raft), "-app-port", fmt.Sprint(app))
		cmd.Env = append(os.Environ(), "QUICKSTART_NODE=1")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("node %d output:\n%s", i+1, out.String())
			}
		})
	}
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", app+i+1) }
	call := func(method string, i int, path, body string) (int, string) {
		req, _ := http.NewRequest(method, url(i)+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Wait until every node serves and agrees on a leader.
	type clusterInfo struct {
		ID         string `json:"id"`
		Leader     string `json:"leader"`
		TotalNodes int    `json:"total_nodes"`
		HasQuorum  bool   `json:"has_quorum"`
		IsLeader   bool   `json:"is_leader"`
		Role       string `json:"role"`
		Health     string `json:"health"`
	}
	var infos [3]clusterInfo
	for {
		agree := true
		for i := range names {
			code, body := call(http.MethodGet, i, "/api/cluster", "")
			if code != http.StatusOK || json.Unmarshal([]byte(body), &infos[i]) != nil ||
				infos[i].Leader == "" || infos[i].Leader != infos[0].Leader {
				agree = false
			}
		}
		if agree {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no agreed leader: %+v", infos)
		}
		time.Sleep(50 * time.Millisecond) // polling processes that start on their own
	}
	l := -1
	for i, info := range infos {
		if info.IsLeader {
			l = i
		}
		if info.ID != "my-cluster" || info.TotalNodes != 3 || !info.HasQuorum {
			t.Fatalf("node %d: cluster info %+v", i+1, info)
		}
	}
	if l < 0 || infos[l].Leader != names[l] || infos[l].Role != "leader" {
		t.Fatalf("leader %q, infos %+v", infos[0].Leader, infos)
	}
	f := (l + 1) % 3
	if code, body := call(http.MethodPost, f, "/api/users", `{"id":"123","name":"Alice"}`); code != http.StatusServiceUnavailable {
		t.Fatalf("create on a follower: %d %s", code, body)
	}
	if code, body := call(http.MethodPost, l, "/api/users", `{"id":"123","name":"Alice"}`); code != http.StatusCreated {
		t.Fatalf("create on the leader: %d %s", code, body)
	}
	for i := range names {
		code, body := call(http.MethodGet, i, "/api/users/123", "")
		var user map[string]any
		if code != http.StatusOK || json.Unmarshal([]byte(body), &user) != nil || user["name"] != "Alice" {
			t.Fatalf("read on node %d: %d %s", i+1, code, body)
		}
	}
	if code, _ := call(http.MethodGet, f, "/api/users/nobody", ""); code != http.StatusNotFound {
		t.Fatalf("a missing user: %d", code)
	}
}
