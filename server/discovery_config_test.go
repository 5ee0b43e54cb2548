package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestDiscoveryConfigErrors: every invalid discovery.* setting is refused
// with an error naming its key.
func TestDiscoveryConfigErrors(t *testing.T) {
	const good = `node_id: n1
bind_addr: 127.0.0.1
storage: {type: wal, path: /tmp/x}
security: {tokens: [{token: admintoken, role: admin}]}
`
	for _, tc := range []struct{ name, yaml, key string }{
		{"unknown type", "discovery: {type: zookeeper}", "discovery.type"},
		{"static with bootstrap_expect", "discovery: {type: static, bootstrap_expect: 3}\npeers: [{id: n1, address: 127.0.0.1, port: 7000}]", "discovery.bootstrap_expect"},
		{"negative expect", "discovery: {type: dns, dns_name: a.test, bootstrap_expect: -1}", "discovery.bootstrap_expect"},
		{"no dns_name", "discovery: {type: dns}", "discovery.dns_name"},
		{"peers with dns", "discovery: {type: dns, dns_name: a.test}\npeers: [{id: n1, address: 127.0.0.1, port: 7000}]", "peers"},
		{"join with dns", "discovery: {type: dns, dns_name: a.test}\njoin: true", "join"},
		{"refresh too short", "discovery: {type: dns, dns_name: a.test, refresh_interval: 1ms}", "discovery.refresh_interval"},
		{"port with srv", "discovery: {type: dns, dns_name: _raft._tcp.a.test, srv: true, port: 7000}", "discovery.port"},
		{"wildcard bind, no advertise", "bind_addr: 0.0.0.0\ndiscovery: {type: dns, dns_name: a.test}", "discovery.advertise_addr"},
		{"wildcard advertise", "discovery: {type: dns, dns_name: a.test, advertise_addr: 0.0.0.0}", "discovery.advertise_addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := good + tc.yaml + "\n"
			if strings.HasPrefix(tc.yaml, "bind_addr:") {
				raw = strings.Replace(raw, "bind_addr: 127.0.0.1\n", "", 1)
			}
			_, err := server.ParseConfig([]byte(raw), os.Getenv)
			if err == nil {
				t.Fatalf("accepted:\n%s", raw)
			}
			if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name %s", err, tc.key)
			}
		})
	}
	t.Run("no admin token", func(t *testing.T) {
		raw := "node_id: n1\nstorage: {type: memory}\ndiscovery: {type: dns, dns_name: a.test}\n"
		_, err := server.ParseConfig([]byte(raw), os.Getenv)
		if err == nil || !strings.Contains(err.Error(), "admin token") {
			t.Fatalf("discovery without an admin token: %v", err)
		}
	})
	if _, err := server.ParseConfig([]byte(good+"discovery: {type: dns, dns_name: a.test, bootstrap_expect: 3}\n"), os.Getenv); err != nil {
		t.Fatalf("a valid configuration refused: %v", err)
	}
}

// TestHelloEndpoint: a node waiting to bootstrap answers asks only with
// the admin token, refuses malformed ones changing nothing, promises the
// first valid voter set it is asked to (persisted before it answers) and
// no other after it; a damaged or foreign promise file stops the node
// from starting.
func TestHelloEndpoint(t *testing.T) {
	port := servertest.FreePorts(t, 1)[0]
	dir := t.TempDir()
	raw := fmt.Sprintf(`node_id: n1
bind_addr: 127.0.0.1
bind_port: %d
storage: {type: wal, path: %s}
security: {tokens: [{token: admintoken, role: admin}]}
discovery: {type: dns, dns_name: nothing.invalid., dns_server: 127.0.0.1:1, bootstrap_expect: 3, refresh_interval: 100ms}
`, port, dir)
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := server.Discover(ctx, cfg, nil)
		done <- err
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/discovery/hello", port+100)
	post := func(token, body string) (int, map[string]any) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			defer resp.Body.Close()
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			return resp.StatusCode, m
		}
	}
	post("", "{}") // wait until it serves
	base := fmt.Sprintf("http://127.0.0.1:%d/consensus/health", port+100)
	if code, body, err := tryHTTP(http.MethodGet, base+"/live", ""); err != nil || code != http.StatusOK {
		t.Fatalf("liveness while discovering: %d %s %v", code, body, err)
	}
	if code, body, err := tryHTTP(http.MethodGet, base+"/ready", ""); err != nil || code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "discovery") {
		t.Fatalf("readiness while discovering: %d %s %v", code, body, err)
	}
	promise := filepath.Join(dir, server.PromiseFile)
	noPromise := func(after string) {
		t.Helper()
		if _, err := os.Stat(promise); err == nil {
			t.Fatalf("a promise file after %s", after)
		}
	}
	set := `{"From":"n2","ClusterID":"default","Propose":["n1","n2","n3"]}`
	if code, _ := post("", set); code != http.StatusUnauthorized {
		t.Fatalf("an ask without a token: %d", code)
	}
	if code, _ := post("wrong", set); code != http.StatusUnauthorized {
		t.Fatalf("an ask with a wrong token: %d", code)
	}
	noPromise("asks without the token")
	for _, bad := range []string{`{`, `{"From":""}`, `{"From":"n2","Nope":1}`, `{"From":"n2","Propose":"x"}`,
		`{"From":"n2","ClusterID":"default","Propose":["` + strings.Repeat("a", 70000) + `"]}`} {
		if code, _ := post("admintoken", bad); code != http.StatusBadRequest {
			t.Fatalf("malformed ask %.40q: %d", bad, code)
		}
	}
	noPromise("malformed asks")
	for _, notForUs := range []string{
		`{"From":"n2","ClusterID":"other","Propose":["n1","n2","n3"]}`,   // another cluster
		`{"From":"n2","ClusterID":"default","Propose":["n2","n3","n4"]}`, // without n1
		`{"From":"n2","ClusterID":"default","Propose":["n1","n2"]}`,      // not bootstrap_expect
		`{"From":"n2","ClusterID":"default","Propose":["n2","n1","n3"]}`, // not sorted
	} {
		code, h := post("admintoken", notForUs)
		if code != http.StatusOK || h["Promise"] != nil {
			t.Fatalf("ask %s: %d %v, want an answer without a promise", notForUs, code, h)
		}
	}
	noPromise("asks of sets it may not promise")
	code, h := post("admintoken", set)
	if code != http.StatusOK || fmt.Sprint(h["Promise"]) != "[n1 n2 n3]" || h["Name"] != "n1" || h["Member"] != false {
		t.Fatalf("a valid ask: %d %v", code, h)
	}
	b, err := os.ReadFile(promise)
	if err != nil || !strings.Contains(string(b), `"voters":["n1","n2","n3"]`) {
		t.Fatalf("the promise was not persisted before the answer: %s %v", b, err)
	}
	code, h = post("admintoken", `{"From":"n4","ClusterID":"default","Propose":["n1","n4","n5"]}`)
	if code != http.StatusOK || fmt.Sprint(h["Promise"]) != "[n1 n2 n3]" {
		t.Fatalf("a second set was promised: %d %v", code, h)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Discover after its context ended: %v", err)
	}

	// A restart keeps the promise; a damaged or foreign file refuses.
	for _, tc := range []struct{ content, want string }{
		{`{"cluster_id":"default","node":"n1","voters":["n1","n2"`, "damaged"},
		{`{"cluster_id":"other","node":"n1","voters":["n1","n2","n3"]}`, "belongs to"},
		{`{"cluster_id":"default","node":"n1","voters":["n1","n2"]}`, "promise"},
	} {
		if err := os.WriteFile(promise, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := server.Discover(ctx, cfg, nil)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("promise file %s: %v, want an error with %q", tc.content, err, tc.want)
		}
		if b, _ := os.ReadFile(promise); string(b) != tc.content {
			t.Fatal("the refused promise file was rewritten")
		}
	}
}
