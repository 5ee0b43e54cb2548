package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// runEtcd starts Debian's etcd (etcd-server) on loopback for the test and
// returns its client URL; skipped without it, failed under CI=true.
func runEtcd(t *testing.T) string {
	t.Helper()
	const bin = "/usr/bin/etcd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v (CI installs Debian's etcd-server)", bin, err)
		}
		t.Skipf("%s: %v; apt-get install etcd-server to run this test", bin, err)
	}
	ports := servertest.FreePorts(t, 2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	var out bytes.Buffer
	cmd := exec.Command(bin, "--name", "t", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "t="+peer)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("etcd's output:\n%s", out.String())
		}
	})
	waitUntil(t, "etcd serving", 30*time.Second, func() (bool, string) {
		code, body, err := tryHTTP(http.MethodGet, client+"/health", "")
		return err == nil && code == 200 && strings.Contains(body, "true"), fmt.Sprint(code, body, err)
	})
	return client
}

// etcdKeys lists the keys under prefix through etcd's JSON gateway.
func etcdKeys(t *testing.T, client, prefix string) []string {
	t.Helper()
	b64 := func(s string) string { return base64Encode([]byte(s)) }
	end := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	code, body, err := tryHTTP(http.MethodPost, client+"/v3/kv/range",
		fmt.Sprintf(`{"key":%q,"range_end":%q,"keys_only":true}`, b64(prefix), b64(end)))
	if err != nil || code != 200 {
		t.Fatalf("etcd range: %d %s %v", code, body, err)
	}
	var keys []string
	for _, part := range strings.Split(body, `"key":"`)[1:] {
		k, _, _ := strings.Cut(part, `"`)
		keys = append(keys, base64Decode(t, k))
	}
	slices.Sort(keys)
	return keys
}

func etcdConfig(t *testing.T, name, ip string, port int, endpoint, dir string, expect int) server.Config {
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
  type: etcd
  etcd_endpoints: [%s]
  etcd_ttl: 2s
  bootstrap_expect: %d
  refresh_interval: 200ms
`, name, ip, port, dir, ip, port+100, ip, port+200, endpoint, expect)
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestDiscoveryEtcd: three nodes that register in a real etcd and find
// each other there form exactly one cluster; a fourth joins it; a node
// stopped cleanly withdraws its registration, and restarted at a new
// address is followed there by the others.
func TestDiscoveryEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and four nodes")
	}
	endpoint := runEtcd(t)
	port := servertest.FreePorts(t, 1)[0]
	ips := []string{"127.0.52.1", "127.0.52.2", "127.0.52.3", "127.0.52.4", "127.0.52.5"}
	names := []string{"etcd-a", "etcd-b", "etcd-c", "etcd-d"}
	base := t.TempDir()
	cfgAt := func(n, ip string) server.Config {
		return etcdConfig(t, n, ip, port, endpoint, filepath.Join(base, n), 3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srvs := startAll(t, ctx, names[:3], func(i int, n string) server.Config { return cfgAt(n, ips[i]) }, nil)
	waitOneCluster(t, srvs, names[:3])
	prefix := "/forge-consensus/default/"
	if keys := etcdKeys(t, endpoint, prefix); !slices.Equal(keys, []string{prefix + "etcd-a", prefix + "etcd-b", prefix + "etcd-c"}) {
		t.Fatalf("registrations %v", keys)
	}

	s4, err := startDiscovered(ctx, cfgAt("etcd-d", ips[3]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["etcd-d"] = s4
	want4 := idsOf(names...)
	waitUntil(t, "etcd-d a voter", 30*time.Second, func() (bool, string) {
		v, _ := votersOf(srvs["etcd-a"])
		return slices.Equal(v, want4), fmt.Sprintf("voters %v", v)
	})

	// etcd-b stops cleanly: its registration goes at once (not after the
	// lease); it comes back at a new address.
	srvs["etcd-b"].Close()
	delete(srvs, "etcd-b")
	if keys := etcdKeys(t, endpoint, prefix); slices.Contains(keys, prefix+"etcd-b") {
		t.Fatalf("etcd-b stopped cleanly and is still registered: %v", keys)
	}
	sb, err := startDiscovered(ctx, cfgAt("etcd-b", ips[4]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["etcd-b"] = sb
	b := idsOf("etcd-b")[0]
	for _, n := range []string{"etcd-a", "etcd-c", "etcd-d"} {
		waitUntil(t, n+" follows etcd-b to its new address", 15*time.Second, func() (bool, string) {
			u := srvs[n].APIURL(b)
			return strings.Contains(u, ips[4]), u
		})
	}
	srvs["etcd-c"].Close()
	delete(srvs, "etcd-c")
	putThrough(t, sb, "k", "v")
}

func base64Encode(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func base64Decode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
