package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/discovery/consul/consultest"
	"github.com/forge-consensus/consensus/nodename"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// The Consul service, and the ACL token the stand-in agent requires.
const (
	consulTestService = "consensus-e2e"
	consulTestToken   = "consul-e2e-acl-token"
)

// consulNodeConfig is a node configured by Consul discovery alone: the
// same configuration for every node but its name, address and directory.
func consulNodeConfig(t *testing.T, name, ip string, port int, consulAddr, dir string) server.Config {
	t.Helper()
	raw := fmt.Sprintf(`node_id: %s
bind_addr: %s
bind_port: %d
raft: {heartbeat_interval: 20ms, election_timeout_min: 200ms}
storage: {type: wal, path: %s}
security:
  tokens: [{token: discovery-test-admin-token, role: admin}]
api:
  addr: %s:%d
  client_addr: %s:%d
discovery:
  type: consul
  consul_address: %s
  consul_token: %s
  service_name: %s
  bootstrap_expect: 3
  refresh_interval: 200ms
  consul_check_ttl: 1s
`, name, ip, port, dir, ip, port+100, ip, port+200, consulAddr, consulTestToken, consulTestService)
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// consulInstanceID is the Consul instance a node registers as.
func consulInstanceID(name string) string { return consulTestService + "-" + name }

// consulRegisteredAt reports whether the agent holds node name's
// instance at ip:port with a passing check, and if not what it holds.
func consulRegisteredAt(a *consultest.Agent, name, ip string, port int) (bool, string) {
	reg, ok := a.Instance(consulInstanceID(name))
	if !ok {
		return false, fmt.Sprintf("%s not registered; instances %q", name, a.Instances())
	}
	st := a.Status(reg.ID)
	if reg.Name != consulTestService || reg.Address != ip || reg.Port != port || reg.Meta["node_name"] != name ||
		reg.Check == nil || reg.Check.TTL != "1s" || st != "passing" {
		return false, fmt.Sprintf("%s registered as %+v, check %+v, status %q", name, reg, reg.Check, st)
	}
	return true, ""
}

// TestDiscoveryConsul: three nodes that find each other through Consul
// (package consul, against the stand-in agent of package consultest),
// started at once with the same configuration and bootstrap_expect 3,
// form exactly one cluster and each register with a passing check; a
// fourth joins it by discovery alone and becomes a voter; a node closed
// cleanly deregisters; a member restarted at a new address is followed
// there, and the cluster goes on committing through it; when the agent
// forgets every registration (it restarted), the nodes register again
// by themselves.
func TestDiscoveryConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes")
	}
	// Consul's client reads these; a developer's own must not reach the
	// stand-in, which refuses what it does not expect.
	for _, k := range []string{"CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_NAMESPACE", "CONSUL_PARTITION"} {
		t.Setenv(k, "")
	}
	agent := consultest.NewAgent(t, consulTestToken)
	port := servertest.FreePorts(t, 1)[0] // on each node's own loopback address, with + 100 and + 200
	ips := []string{"127.0.51.1", "127.0.51.2", "127.0.51.3", "127.0.51.4", "127.0.51.5"}
	names := []string{"alpha", "bravo", "charlie", "delta"}
	base := t.TempDir()
	dirs := map[string]string{}
	ids := map[string]uint64{}
	for _, n := range names {
		dirs[n] = filepath.Join(base, n)
		ids[n], _ = nodename.ID(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The first three, started at once: nothing orders them but Consul.
	srvs := startAll(t, ctx, names[:3], func(i int, n string) server.Config {
		return consulNodeConfig(t, n, ips[i], port, agent.Addr(), dirs[n])
	}, nil)
	waitOneCluster(t, srvs, names[:3])
	for i, n := range names[:3] {
		if _, err := os.Stat(filepath.Join(dirs[n], server.PromiseFile)); err != nil {
			t.Errorf("%s kept no promise: %v", n, err)
		}
		waitUntil(t, n+" registered with a passing check", 10*time.Second, func() (bool, string) {
			return consulRegisteredAt(agent, n, ips[i], port)
		})
	}
	consulPut := func(via, key, value string) {
		t.Helper()
		url := "http://" + srvs[via].APIAddr() + "/kv/" + key
		waitUntil(t, "PUT "+key+" via "+via, 15*time.Second, func() (bool, string) {
			code, body, err := tryHTTP(http.MethodPut, url, value)
			return err == nil && code/100 == 2, fmt.Sprint(code, " ", body, " ", err)
		})
	}
	consulReads := func(on, key, value string) {
		t.Helper()
		url := "http://" + srvs[on].APIAddr() + "/kv/" + key
		waitUntil(t, on+" reads "+key, 15*time.Second, func() (bool, string) {
			code, body, err := tryHTTP(http.MethodGet, url, "")
			return err == nil && code == 200 && strings.Contains(body, value), fmt.Sprint(code, " ", body, " ", err)
		})
	}
	consulPut("alpha", "k1", "v1")

	// A fourth node, same configuration (bootstrap_expect 3 included),
	// joins by discovery alone.
	s4, err := startDiscovered(ctx, consulNodeConfig(t, "delta", ips[3], port, agent.Addr(), dirs["delta"]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["delta"] = s4
	want4 := idsOf(names...)
	waitUntil(t, "delta a voter", 30*time.Second, func() (bool, string) {
		v, _ := votersOf(srvs["alpha"])
		return slices.Equal(v, want4), fmt.Sprintf("voters %v, want %v", v, want4)
	})
	if _, err := os.Stat(filepath.Join(dirs["delta"], server.PromiseFile)); err == nil {
		t.Error("delta, which joined, kept a promise")
	}
	waitUntil(t, "delta registered with a passing check", 10*time.Second, func() (bool, string) {
		return consulRegisteredAt(agent, "delta", ips[3], port)
	})
	consulReads("delta", "k1", "v1")

	// bravo, closed cleanly, deregisters: Close returns once it has.
	srvs["bravo"].Close()
	delete(srvs, "bravo")
	if reg, ok := agent.Instance(consulInstanceID("bravo")); ok {
		t.Fatalf("bravo closed, still registered: %+v", reg)
	}
	if n := agent.Count("PUT /v1/agent/service/deregister/" + consulInstanceID("bravo") + "?"); n != 1 {
		t.Errorf("%d deregistrations of bravo, want 1", n)
	}

	// bravo restarts at a new address, registers it, and the others
	// follow it there.
	sb, err := startDiscovered(ctx, consulNodeConfig(t, "bravo", ips[4], port, agent.Addr(), dirs["bravo"]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["bravo"] = sb
	waitUntil(t, "bravo registered at its new address", 10*time.Second, func() (bool, string) {
		return consulRegisteredAt(agent, "bravo", ips[4], port)
	})
	for _, n := range []string{"alpha", "charlie", "delta"} {
		waitUntil(t, n+" has bravo's new address", 15*time.Second, func() (bool, string) {
			u := srvs[n].APIURL(ids["bravo"])
			return strings.Contains(u, "//"+ips[4]+":"), "bravo at " + u
		})
	}
	// With charlie stopped (and deregistered), alpha, bravo and delta
	// (three of four voters) commit a write through bravo.
	srvs["charlie"].Close()
	delete(srvs, "charlie")
	if _, ok := agent.Instance(consulInstanceID("charlie")); ok {
		t.Fatal("charlie closed, still registered")
	}
	consulPut("bravo", "k2", "v2")
	consulReads("alpha", "k2", "v2")
	consulReads("delta", "k2", "v2")

	// The agent restarts and forgets every registration: each running
	// node registers again by itself, at its address, and no other.
	live := map[string]string{"alpha": ips[0], "bravo": ips[4], "delta": ips[3]}
	before := map[string]int{}
	for n := range live {
		before[n] = agent.Registers(consulInstanceID(n))
	}
	agent.Restart()
	for _, n := range []string{"alpha", "bravo", "delta"} {
		waitUntil(t, n+" registered again after the agent restarted", 15*time.Second, func() (bool, string) {
			if r := agent.Registers(consulInstanceID(n)); r <= before[n] {
				return false, fmt.Sprintf("%s: %d registrations, as before the restart", n, r)
			}
			return consulRegisteredAt(agent, n, live[n], port)
		})
	}
	wantIDs := []string{consulInstanceID("alpha"), consulInstanceID("bravo"), consulInstanceID("delta")}
	if got := agent.Instances(); !slices.Equal(got, wantIDs) {
		t.Errorf("instances after the agent restarted: %q, want %q", got, wantIDs)
	}
	// And the cluster still commits through what discovery found.
	consulPut("delta", "k3", "v3")
	consulReads("bravo", "k3", "v3")
}

// consulLogBuffer collects a logger's JSON lines.
type consulLogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *consulLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines that contain every one of parts.
func (l *consulLogBuffer) lines(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			out = append(out, line)
		}
	}
	return out
}

// TestDiscoveryConsulLogs: the Consul mechanism logs to the logger the
// node was given, naming the node (not to slog's default logger).
func TestDiscoveryConsulLogs(t *testing.T) {
	for _, k := range []string{"CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_NAMESPACE", "CONSUL_PARTITION"} {
		t.Setenv(k, "")
	}
	agent := consultest.NewAgent(t, consulTestToken)
	port := servertest.FreePorts(t, 1)[0]
	cfg := consulNodeConfig(t, "solo", "127.0.51.9", port, agent.Addr(), t.TempDir())
	cfg.Discovery.BootstrapExpect = 1
	var buf consulLogBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := server.Discover(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, msg := range []string{"registered", "deregistered"} {
		lines := buf.lines(`"msg":"`+msg+`"`, `"id":"`+consulInstanceID("solo")+`"`)
		if len(lines) != 1 {
			t.Errorf("%d %q lines of the Consul mechanism in the node's log, want 1: %q", len(lines), msg, lines)
			continue
		}
		if !strings.Contains(lines[0], `"node":"solo"`) || strings.Count(lines[0], `"discovery":`) != 1 {
			t.Errorf("%q: not naming the node, or discovery twice: %s", msg, lines[0])
		}
	}
}
