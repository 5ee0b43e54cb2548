package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge-consensus/consensus/nodename"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// zone is a DNS server's one name: its A records, changed by the test.
type zone struct {
	mu   sync.Mutex
	name string
	ips  []string
}

func (z *zone) set(ips ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.ips = slices.Clone(ips)
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	z.mu.Lock()
	if len(req.Question) == 1 && strings.EqualFold(req.Question[0].Name, z.name) {
		if req.Question[0].Qtype == dns.TypeA {
			for _, ip := range z.ips {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeA,
					Class: dns.ClassINET, Ttl: 0}, A: net.ParseIP(ip)})
			}
		}
	} else {
		m.Rcode = dns.RcodeNameError
	}
	z.mu.Unlock()
	_ = w.WriteMsg(m)
}

// serveZone runs a DNS server for z on loopback, UDP and TCP, until the
// test ends.
func serveZone(t *testing.T, z *zone) string {
	t.Helper()
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: l, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("DNS server: %v", err)
		}
		t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	}
	return pc.LocalAddr().String()
}

// discoveryConfig is a node configured by DNS discovery alone: the same
// configuration for every node but its name, address and directory.
func discoveryConfig(t *testing.T, name, ip string, port int, dnsAddr, dir string, expect int) server.Config {
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
  type: dns
  dns_name: nodes.consensus.test.
  dns_server: %s
  bootstrap_expect: %d
  refresh_interval: 200ms
`, name, ip, port, dir, ip, port+100, ip, port+200, dnsAddr, expect)
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startDiscovered runs Discover and New for cfg, and serves.
func startDiscovered(ctx context.Context, cfg server.Config) (*server.Server, error) {
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("DISCOVERY_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test_node", string(cfg.NodeID))
	}
	cfg, err := server.Discover(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s, err := server.New(cfg, log)
	if err != nil {
		return nil, err
	}
	go func() { _ = s.Serve() }()
	return s, nil
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, d, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// votersOf returns a node's voters, sorted, and the leader it follows.
func votersOf(s *server.Server) ([]uint64, uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := s.Runner().CoreStatus(ctx)
	if err != nil {
		return nil, 0
	}
	return slices.Sorted(slices.Values(st.Config.Voters)), st.Lead
}

// tryHTTP sends one request and returns its status and body.
func tryHTTP(method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestDiscoveryDNS: three nodes that find each other through a real DNS
// server (A records of one name), started at once with the same
// configuration and bootstrap_expect 3, form exactly one cluster; a
// fourth joins it by discovery alone and becomes a voter; a member
// restarted at a new address is followed there, and the cluster goes on
// committing through it.
func TestDiscoveryDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes")
	}
	port := servertest.FreePorts(t, 1)[0] // on each node's own loopback address, with + 100 and + 200
	ips := []string{"127.0.50.1", "127.0.50.2", "127.0.50.3", "127.0.50.4", "127.0.50.5"}
	z := &zone{name: "nodes.consensus.test."}
	dnsAddr := serveZone(t, z)
	base := t.TempDir()
	names := []string{"alpha", "bravo", "charlie", "delta"}
	cfgAt := func(n, ip string) server.Config {
		return discoveryConfig(t, n, ip, port, dnsAddr, filepath.Join(base, n), 3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The first three, in DNS one after another as they start.
	srvs := startAll(t, ctx, names[:3], func(i int, n string) server.Config { return cfgAt(n, ips[i]) },
		func(i int) { z.set(ips[:i+1]...) })
	waitOneCluster(t, srvs, names[:3])
	for _, n := range names[:3] {
		if _, err := os.Stat(filepath.Join(base, n, server.PromiseFile)); err != nil {
			t.Errorf("%s kept no promise: %v", n, err)
		}
	}
	putThrough(t, srvs["alpha"], "k1", "v1")

	// A fourth node, same configuration, joins by discovery alone.
	z.set(ips[:4]...)
	s4, err := startDiscovered(ctx, cfgAt("delta", ips[3]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["delta"] = s4
	want4 := idsOf(names...)
	waitUntil(t, "delta a voter", 30*time.Second, func() (bool, string) {
		v, _ := votersOf(srvs["alpha"])
		return slices.Equal(v, want4), fmt.Sprintf("voters %v, want %v", v, want4)
	})
	if _, err := os.Stat(filepath.Join(base, "delta", server.PromiseFile)); err == nil {
		t.Error("delta, which joined, kept a promise")
	}
	readsOn(t, s4, "k1", "v1")

	// bravo restarts at a new address; DNS says so; the others follow it.
	srvs["bravo"].Close()
	delete(srvs, "bravo")
	z.set(ips[0], ips[4], ips[2], ips[3])
	sb, err := startDiscovered(ctx, cfgAt("bravo", ips[4]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["bravo"] = sb
	putThrough(t, sb, "k2", "v2")
	readsOn(t, sb, "k2", "v2")
	b := idsOf("bravo")[0]
	for _, n := range []string{"alpha", "charlie", "delta"} {
		waitUntil(t, n+" has bravo's new address", 15*time.Second, func() (bool, string) {
			u := srvs[n].APIURL(b)
			return strings.Contains(u, ips[4]), "bravo at " + u
		})
	}
	// With charlie stopped, alpha, bravo and delta (three of four
	// voters) commit only if the links to bravo's new address work.
	srvs["charlie"].Close()
	delete(srvs, "charlie")
	putThrough(t, s4, "k3", "v3")
	readsOn(t, sb, "k3", "v3")
}

// startAll starts the named nodes at once (Discover, then New), cfgOf
// giving each its configuration; after(i), if not nil, runs once node i's
// start is under way (to publish it in DNS, say). The nodes are closed
// when the test ends, as are those the test adds to the map later.
func startAll(t *testing.T, ctx context.Context, names []string, cfgOf func(i int, name string) server.Config,
	after func(i int)) map[string]*server.Server {
	t.Helper()
	srvs := map[string]*server.Server{}
	t.Cleanup(func() {
		for _, s := range srvs {
			s.Close()
		}
	})
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for i, n := range names {
		cfg := cfgOf(i, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := startDiscovered(ctx, cfg)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", n, err)
				return
			}
			mu.Lock()
			srvs[n] = s
			mu.Unlock()
		}()
		if after != nil {
			after(i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return srvs
}

// idsOf returns the IDs of names, sorted.
func idsOf(names ...string) []uint64 {
	var ids []uint64
	for _, n := range names {
		id, _ := nodename.ID(n)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// waitOneCluster waits until the named nodes all have exactly those
// voters and follow one leader: one cluster, not two.
func waitOneCluster(t *testing.T, srvs map[string]*server.Server, names []string) {
	t.Helper()
	want := idsOf(names...)
	waitUntil(t, "one cluster of "+strings.Join(names, ",")+" with one leader", 15*time.Second, func() (bool, string) {
		var lead uint64
		for _, n := range names {
			v, l := votersOf(srvs[n])
			if !slices.Equal(v, want) {
				return false, fmt.Sprintf("%s has voters %v, want %v", n, v, want)
			}
			if l == 0 || (lead != 0 && l != lead) {
				return false, fmt.Sprintf("%s follows %d, another %d", n, l, lead)
			}
			lead = l
		}
		return true, ""
	})
}

// putThrough writes key through node s's HTTP API, until it succeeds.
func putThrough(t *testing.T, s *server.Server, key, value string) {
	t.Helper()
	url := "http://" + s.APIAddr() + "/kv/" + key
	waitUntil(t, "PUT "+key+" through "+s.APIAddr(), 15*time.Second, func() (bool, string) {
		code, body, err := tryHTTP(http.MethodPut, url, value)
		return err == nil && code/100 == 2, fmt.Sprint(code, " ", body, " ", err)
	})
}

// readsOn waits until node s reads value at key.
func readsOn(t *testing.T, s *server.Server, key, value string) {
	t.Helper()
	url := "http://" + s.APIAddr() + "/kv/" + key
	waitUntil(t, s.APIAddr()+" reads "+key, 15*time.Second, func() (bool, string) {
		code, body, err := tryHTTP(http.MethodGet, url, "")
		return err == nil && code == 200 && strings.Contains(body, value), fmt.Sprint(code, " ", body, " ", err)
	})
}
