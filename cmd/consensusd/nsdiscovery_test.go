//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge-consensus/consensus/nodename"
	"github.com/forge-consensus/consensus/server"
)

// nsDNSName is the name whose A records are the nodes' addresses.
const nsDNSName = "nodes.nsdisc.test."

// nsAdminToken is the admin token every node of the discovery test has:
// discovery's asks and add-node need it, and so does the admin status.
const nsAdminToken = "nsdisc-admin-token"

// nsZone is the test's DNS server's one name: its A records, changed as
// nodes start and move.
type nsZone struct {
	mu  sync.Mutex
	ips []string
}

func (z *nsZone) add(ip string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.ips = append(z.ips, ip)
}

// replace puts ip where old was.
func (z *nsZone) replace(old, ip string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.ips[slices.Index(z.ips, old)] = ip
}

func (z *nsZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 || !strings.EqualFold(req.Question[0].Name, nsDNSName) {
		m.Rcode = dns.RcodeNameError
	} else if req.Question[0].Qtype == dns.TypeA {
		z.mu.Lock()
		for _, ip := range z.ips {
			m.Answer = append(m.Answer, &dns.A{A: net.ParseIP(ip),
				Hdr: dns.RR_Header{Name: nsDNSName, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}})
		}
		z.mu.Unlock()
	}
	_ = w.WriteMsg(m)
}

// serveNsZone serves z over UDP and TCP on host (the bridge's address,
// which every namespace reaches) until the test ends, and returns the
// host:port.
func serveNsZone(t *testing.T, z *nsZone, host string) string {
	t.Helper()
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp4", net.JoinHostPort(host, "0")); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp4", pc.LocalAddr().String()); err == nil {
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

// nsDiscoveryConfig is every node's configuration, the same text for all:
// the node's name, address and directory come from the environment.
// Every listener is on the wildcard address and the node advertises its
// namespace's address, as a pod does with ${POD_IP}. discovery is the
// mechanism's own keys, each line indented under discovery:.
func nsDiscoveryConfig(transportType, discovery string) string {
	return fmt.Sprintf(`node_id: ${NODE_NAME}
cluster_id: nsdisc
bind_addr: 0.0.0.0
bind_port: %d
raft:
  heartbeat_interval: 50ms
  election_timeout_min: 500ms
  election_timeout_max: 1s
transport:
  type: %s
  connection_timeout: 1s
  timeout: 2s
storage:
  type: wal
  path: ${NODE_DIR}
api:
  addr: 0.0.0.0:%d
  client_addr: 0.0.0.0:%d
  request_timeout: 2s
  # The test's clients reach the nodes across the bridge without a token.
  allow_unauthenticated: true
security:
  # The bridge is the test's own: plain TCP between the nodes.
  allow_insecure_transport: true
  tokens: [{token: %s, role: admin}]
discovery:
%s  advertise_addr: ${NODE_IP}
  bootstrap_expect: 5
  refresh_interval: 300ms
`, nsRaftPort, transportType, nsAPIPort, nsClientPort, nsAdminToken, discovery)
}

// nsClusterInfo is the part of the admin status (GET /consensus/status)
// the test reads.
type nsClusterInfo struct {
	Leader uint64 `json:"leader_id"`
	Nodes  []struct {
		ID      uint64 `json:"id"`
		Name    string `json:"name"`
		Address string `json:"address"`
		Voter   bool   `json:"voter"`
	} `json:"nodes"`
}

func (ci nsClusterInfo) voters() []uint64 {
	var v []uint64
	for _, n := range ci.Nodes {
		if n.Voter {
			v = append(v, n.ID)
		}
	}
	slices.Sort(v)
	return v
}

// adminStatus reads node i's admin status.
func (c *cluster) adminStatus(i int) (nsClusterInfo, error) {
	var ci nsClusterInfo
	req, err := http.NewRequest(http.MethodGet, c.api[i]+"/consensus/status", nil)
	if err != nil {
		return ci, err
	}
	req.Header.Set("Authorization", "Bearer "+nsAdminToken)
	resp, err := quick.Do(req)
	if err != nil {
		return ci, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return ci, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return ci, json.NewDecoder(resp.Body).Decode(&ci)
}

// waitWhy is waitFor with the reason the condition last gave logged when
// it does not come.
func (c *cluster) waitWhy(what string, d time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	why := ""
	defer func() {
		if c.t.Failed() && why != "" {
			c.t.Logf("%s: last: %s", what, why)
		}
	}()
	c.waitFor(what, d, func() bool {
		ok, w := cond()
		why = w
		return ok
	})
}

// terminate stops node i with SIGTERM and waits for it to exit.
func (c *cluster) terminate(i int, d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	p := c.procs[i]
	c.procs[i] = nil
	c.mu.Unlock()
	_ = p.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Fatalf("node %d exited after SIGTERM with %v", i+1, err)
		}
	case <-time.After(d):
		_ = p.Process.Kill()
		<-done
		c.t.Fatalf("node %d did not exit within %v of SIGTERM", i+1, d)
	}
}

// TestDiscoveryNetns: five consensusd processes, each in its own network
// namespace with its own address on a bridge, all with the same
// configuration (the node's name, address and directory from the
// environment), find each other by discovery and, started at random
// moments, form exactly one cluster of the five (every node promised the
// same five voters, every node sees them and one leader). A sixth node
// with the same configuration joins by discovery alone and becomes a
// voter. A node stopped with SIGTERM and restarted in another namespace
// at a new address is followed there: the others' admin status shows its
// new address, a write through it commits, and with two other nodes
// stopped the cluster commits only with it. The two come back one after
// the other. At the end every node knows every member at its current
// address and reads every key written (linearizable reads).
//
// The subtests run this scenario with two mechanisms:
//   - dns: a DNS server of the test on the bridge, whose A records the
//     test publishes at other random moments, in random order, and
//     changes when the node moves;
//   - etcd: a real etcd (Debian's etcd-server) in the root namespace on
//     the bridge's address, where the nodes register themselves (a short
//     lease, 2 s). It also checks the registrations: exactly the running
//     nodes, each at its current address (the moved node's key holds its
//     new one), and a node stopped with SIGTERM has withdrawn its key by
//     the time it has exited, not a lease later. And the latest
//     registration wins: a node killed with SIGKILL, whose key the test
//     keeps alive, comes back at another address and registers there in
//     the old record's place; the old lease's end leaves the new record,
//     and the others follow the node there.
//
// CONSENSUSD_NSDISC_SEED replays a seed's schedules (one seed for both
// subtests; its parity picks dns's transport, etcd has the other one).
func TestDiscoveryNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes in network namespaces")
	}
	if why := netnsPrereqs(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why + " (a skip is a failure under CI)")
		}
		t.Skip(why)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CONSENSUSD_NSDISC_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CONSENSUSD_NSDISC_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (CONSENSUSD_NSDISC_SEED=%d replays the schedules)", seed, seed)
	bin := buildDaemon(t)
	t.Run("dns", func(t *testing.T) {
		// The stream and the transport are those the test had before it
		// had subtests: an older seed replays the same schedule.
		rng := rand.New(rand.NewPCG(seed, 0x6e73646973))
		discoveryNetns(t, bin, seed, rng, "dns", []string{"grpc", "tcp"}[seed%2])
	})
	t.Run("etcd", func(t *testing.T) {
		nsEtcdPrereq(t)
		rng := rand.New(rand.NewPCG(seed, 0x6e7365746364))
		discoveryNetns(t, bin, seed, rng, "etcd", []string{"tcp", "grpc"}[seed%2])
	})
}

// discoveryNetns runs TestDiscoveryNetns's scenario with the discovery
// mechanism named (dns or etcd).
func discoveryNetns(t *testing.T, bin string, seed uint64, rng *rand.Rand, mech, transportType string) {
	began := time.Now()
	t.Logf("seed %d, %s discovery, transport %s", seed, mech, transportType)
	const first, nodes = 5, 6
	// Namespaces 0..5 are the nodes' first homes, 6 the new home of the
	// node that moves.
	nw := newNsNet(t, nodes+1, rng)
	dir := t.TempDir()
	// zone (dns) holds the A records the test publishes; registered
	// (etcd) reads the nodes' own registrations, by name.
	var (
		zone       *nsZone
		registered func() (map[string]string, error)
		endpoint   string // etcd: its client URL
		keys       string // etcd: the prefix of the nodes' keys
		disc       string // the mechanism's own discovery keys
	)
	switch mech {
	case "dns":
		zone = &nsZone{}
		disc = fmt.Sprintf("  type: dns\n  dns_name: %s\n  dns_server: %s\n", nsDNSName, serveNsZone(t, zone, nw.gw))
	case "etcd":
		endpoint = runNsEtcd(t, nw.gw, dir)
		// discovery.prefix unset: the default, then the cluster_id.
		keys = "/forge-consensus/nsdisc/"
		registered = func() (map[string]string, error) { return nsEtcdRegistrations(endpoint, keys) }
		disc = fmt.Sprintf("  type: etcd\n  etcd_endpoints: [%s]\n  etcd_ttl: 2s\n", endpoint)
	default:
		t.Fatalf("no discovery mechanism %q", mech)
	}
	text := nsDiscoveryConfig(transportType, disc)
	names := make([]string, nodes)
	ids := make([]uint64, nodes)
	paths := make([]string, nodes)
	home := make([]int, nodes) // node i's namespace
	for i := range nodes {
		names[i] = fmt.Sprintf("node-%d", i+1)
		id, err := nodename.ID(names[i])
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		// The same text in one file per node, so each has its own log
		// next to it.
		paths[i] = filepath.Join(dir, names[i]+".yaml")
		if err := os.WriteFile(paths[i], []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		home[i] = i
	}
	nodeDir := func(i int) string { return filepath.Join(dir, names[i]) }
	c := &cluster{t: t, bin: bin, paths: paths, procs: make([]*exec.Cmd, nodes), logs: make([]*os.File, nodes),
		wrap: func(i int) []string {
			return []string{"ip", "netns", "exec", nw.ns[home[i]], "env",
				"NODE_NAME=" + names[i], "NODE_IP=" + nw.ips[home[i]], "NODE_DIR=" + nodeDir(i)}
		}}
	apiOf := func(i int) string { return fmt.Sprintf("http://%s:%d", nw.ips[home[i]], nsAPIPort) }
	for i := range nodes {
		c.api = append(c.api, apiOf(i))
	}
	c.stopAtCleanup()

	// agreeOn reads the admin status of the nodes given, and says whether
	// each has voters want and all follow one leader.
	agreeOn := func(on []int, want []uint64) (bool, string) {
		var lead uint64
		for _, i := range on {
			ci, err := c.adminStatus(i)
			switch {
			case err != nil:
				return false, fmt.Sprintf("%s: %v", names[i], err)
			case !slices.Equal(ci.voters(), want):
				return false, fmt.Sprintf("%s has voters %v, want %v", names[i], ci.voters(), want)
			case ci.Leader == 0 || (lead != 0 && ci.Leader != lead):
				return false, fmt.Sprintf("%s follows %d, another %d", names[i], ci.Leader, lead)
			}
			lead = ci.Leader
		}
		return true, ""
	}
	written := map[string]string{}
	put := func(via int, key, value string) {
		t.Helper()
		c.waitWhy(fmt.Sprintf("PUT %s via %s", key, names[via]), 15*time.Second, func() (bool, string) {
			req, _ := http.NewRequest(http.MethodPut, c.api[via]+"/kv/"+key, strings.NewReader(value))
			resp, err := quick.Do(req)
			if err != nil {
				return false, err.Error()
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode/100 == 2, resp.Status + " " + strings.TrimSpace(string(b))
		})
		written[key] = value
	}
	// reads says whether node i reads every key written, linearizably.
	reads := func(i int) (bool, string) {
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range written {
				if !yield(k) {
					return
				}
			}
		}) {
			resp, err := quick.Get(c.api[i] + "/kv/" + k + "?consistency=linearizable")
			if err != nil {
				return false, fmt.Sprintf("%s: GET %s: %v", names[i], k, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != written[k] {
				return false, fmt.Sprintf("%s: GET %s: %s %q, want %q", names[i], k, resp.Status, b, written[k])
			}
		}
		return true, ""
	}
	// registeredAre says whether exactly the nodes given are registered
	// (etcd), each at its current address; with dns, nothing to check.
	registeredAre := func(on ...int) (bool, string) {
		if registered == nil {
			return true, ""
		}
		got, err := registered()
		if err != nil {
			return false, err.Error()
		}
		want := map[string]string{}
		for _, i := range on {
			want[names[i]] = net.JoinHostPort(nw.ips[home[i]], strconv.Itoa(nsRaftPort))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) { // maps print sorted by key
			return false, fmt.Sprintf("registered under %s: %v, want %v", keys, got, want)
		}
		return true, ""
	}
	// mustBeRegistered checks the registrations now, without waiting.
	mustBeRegistered := func(what string, on ...int) {
		t.Helper()
		if ok, why := registeredAre(on...); !ok {
			t.Fatalf("%s: %s", what, why)
		}
	}
	// stop stops node i with SIGTERM: once it has exited, its
	// registration (etcd) must be gone, not left to expire with its lease.
	stop := func(i int, stillUp ...int) {
		t.Helper()
		c.terminate(i, 15*time.Second)
		mustBeRegistered(names[i]+" exited after SIGTERM and must have withdrawn its registration", stillUp...)
	}

	// 1. The first five start at random moments within 3 s; with dns,
	// their A records appear at other random moments, in random order
	// (with etcd each node registers itself when it starts).
	type event struct {
		at    time.Duration
		node  int
		start bool
	}
	var events []event
	for i := range first {
		events = append(events, event{time.Duration(rng.Int64N(int64(3 * time.Second))), i, true})
		if zone != nil {
			events = append(events, event{time.Duration(rng.Int64N(int64(3 * time.Second))), i, false})
		}
	}
	slices.SortFunc(events, func(a, b event) int { return int(a.at - b.at) })
	var plan []string
	for _, e := range events {
		what := "dns"
		if e.start {
			what = "start"
		}
		plan = append(plan, fmt.Sprintf("%v %s %s", e.at.Round(time.Millisecond), what, names[e.node]))
	}
	t.Logf("schedule: %s", strings.Join(plan, ", "))
	t0 := time.Now()
	for _, e := range events {
		time.Sleep(time.Until(t0.Add(e.at)))
		if e.start {
			c.start(e.node)
		} else {
			zone.add(nw.ips[home[e.node]])
		}
	}
	firstFive := []int{0, 1, 2, 3, 4}
	want5 := slices.Sorted(slices.Values(ids[:first]))
	c.waitWhy("one cluster of the five with one leader", 30*time.Second, func() (bool, string) {
		return agreeOn(firstFive, want5)
	})
	formed := time.Since(t0)
	// No node bootstrapped a cluster of its own: each promised, and
	// formed the cluster with, the same five voters.
	wantNames := slices.Sorted(slices.Values(names[:first]))
	forming := regexp.MustCompile(`msg="discovery: forming a new cluster".* voters=(\S+)`)
	for _, i := range firstFive {
		b, err := os.ReadFile(filepath.Join(nodeDir(i), server.PromiseFile))
		if err != nil {
			t.Fatalf("%s kept no promise: %v", names[i], err)
		}
		var pf struct {
			Voters []string `json:"voters"`
		}
		if err := json.Unmarshal(b, &pf); err != nil {
			t.Fatalf("%s's promise: %v", names[i], err)
		}
		if got := slices.Sorted(slices.Values(pf.Voters)); !slices.Equal(got, wantNames) {
			t.Fatalf("%s promised %v, want %v", names[i], got, wantNames)
		}
		log, _ := os.ReadFile(c.logs[i].Name())
		m := forming.FindAllStringSubmatch(string(log), -1)
		if len(m) != 1 {
			t.Fatalf("%s said it forms a cluster %d times, want once", names[i], len(m))
		}
		if got := slices.Sorted(slices.Values(strings.Split(m[0][1], ","))); !slices.Equal(got, wantNames) {
			t.Fatalf("%s formed a cluster of %v, want %v", names[i], got, wantNames)
		}
	}
	t.Logf("one cluster of five formed %v after the first event", formed.Round(time.Millisecond))
	mustBeRegistered("the five formed a cluster", firstFive...)
	put(rng.IntN(first), "k1", "v1")

	// 2. A sixth node, same configuration, fresh directory, joins by
	// discovery alone and becomes a voter.
	joiner := first
	switch {
	case zone == nil:
		c.start(joiner)
	case rng.IntN(2) == 0:
		zone.add(nw.ips[home[joiner]])
		c.start(joiner)
	default:
		c.start(joiner)
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		zone.add(nw.ips[home[joiner]])
	}
	all := []int{0, 1, 2, 3, 4, 5}
	want6 := slices.Sorted(slices.Values(ids))
	c.waitWhy(names[joiner]+" a voter, seen by every node", 30*time.Second, func() (bool, string) {
		return agreeOn(all, want6)
	})
	if _, err := os.Stat(filepath.Join(nodeDir(joiner), server.PromiseFile)); err == nil {
		t.Fatalf("%s, which joined, kept a promise", names[joiner])
	}
	if log, _ := os.ReadFile(c.logs[joiner].Name()); !strings.Contains(string(log), "discovery: joining the existing cluster") ||
		forming.Match(log) {
		t.Fatalf("%s did not join the existing cluster by discovery (see its log)", names[joiner])
	}
	joined := time.Since(t0) - formed
	mustBeRegistered(names[joiner]+" joined", all...)
	put(joiner, "k2", "v2")

	// 3. A node stops, comes back in another namespace at a new address,
	// and DNS says so (with etcd, the node registers its new address).
	moved := rng.IntN(nodes)
	oldIP, newIP := nw.ips[home[moved]], nw.ips[nodes]
	t.Logf("%s moves from %s to %s", names[moved], oldIP, newIP)
	movedAt := time.Now()
	stop(moved, slices.DeleteFunc(slices.Clone(all), func(i int) bool { return i == moved })...)
	put((moved+1+rng.IntN(nodes-1))%nodes, "k3", "v3")
	home[moved] = nodes
	c.api[moved] = apiOf(moved)
	c.start(moved)
	if zone != nil {
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		zone.replace(oldIP, newIP)
	}
	put(moved, "k4", "v4")
	// It registered before it served: its key holds its new address.
	mustBeRegistered(names[moved]+" serves at its new address", all...)
	for _, i := range all {
		if i == moved {
			continue
		}
		c.waitWhy(names[i]+" sees "+names[moved]+" at its new address", 15*time.Second, func() (bool, string) {
			ci, err := c.adminStatus(i)
			if err != nil {
				return false, err.Error()
			}
			for _, n := range ci.Nodes {
				if n.ID == ids[moved] {
					host, _, _ := net.SplitHostPort(n.Address)
					return host == newIP && n.Voter, fmt.Sprintf("%s at %s (voter %v)", names[moved], n.Address, n.Voter)
				}
			}
			return false, names[moved] + " is not listed"
		})
	}
	followed := time.Since(movedAt)
	// With two other nodes stopped, four of the six voters remain: a
	// quorum only with the moved node, reached at its new address. The
	// two are among the five that formed the cluster, whose addresses
	// every node knows only from its lookups (the sixth's address is
	// replicated, from its add-node).
	others := slices.DeleteFunc(slices.Clone(firstFive), func(i int) bool { return i == moved })
	rng.Shuffle(len(others), func(a, b int) { others[a], others[b] = others[b], others[a] })
	stopped, up := others[:2], slices.DeleteFunc(slices.Clone(all), func(i int) bool { return i == others[0] || i == others[1] })
	t.Logf("stopping %s and %s: the quorum needs %s", names[stopped[0]], names[stopped[1]], names[moved])
	stillUp := slices.Clone(all)
	for _, i := range stopped {
		stillUp = slices.DeleteFunc(stillUp, func(j int) bool { return j == i })
		stop(i, stillUp...)
	}
	put(up[rng.IntN(len(up))], "k5", "v5")
	c.waitWhy(names[moved]+" reads every key", 15*time.Second, func() (bool, string) { return reads(moved) })
	// One comes back while the other is still away (its lookup at start
	// misses the other), then the other.
	for _, i := range stopped {
		c.start(i)
		c.waitWhy(names[i]+" serves again", 15*time.Second, func() (bool, string) {
			_, err := c.status(i)
			return err == nil, fmt.Sprint(err)
		})
	}

	// 4. With etcd, the latest registration wins: a node killed with
	// SIGKILL leaves its key, held by its lease, which the test keeps
	// alive meanwhile; restarted in the namespace the moved node left,
	// the node registers its new address in its place, and the old
	// lease's end (revoked here, as its expiry would) leaves the new
	// record. Its new address is checked with the others' below.
	replaced := ""
	if registered != nil {
		j := rng.IntN(nodes)
		free := -1 // the one namespace no node is at
		for k := range nw.ns {
			if !slices.Contains(home, k) {
				free = k
			}
		}
		cli := nsEtcdClient(t, endpoint)
		key := keys + names[j]
		oldAddr, oldLease, err := nsEtcdRecord(cli, key)
		if err != nil || oldLease == 0 {
			t.Fatalf("%s's registration: %q, lease %x, %v", names[j], oldAddr, int64(oldLease), err)
		}
		keep := nsKeepLease(cli, oldLease)
		c.kill(j, syscall.SIGKILL)
		home[j] = free
		c.api[j] = apiOf(j)
		newAddr := net.JoinHostPort(nw.ips[free], strconv.Itoa(nsRaftPort))
		t.Logf("%s killed (SIGKILL), restarted at %s; its old registration, %s, held alive meanwhile", names[j], newAddr, oldAddr)
		c.start(j)
		c.waitWhy(names[j]+" registered at its new address in its old registration's place", 15*time.Second, func() (bool, string) {
			addr, lease, err := nsEtcdRecord(cli, key)
			return err == nil && addr == newAddr && lease != oldLease, fmt.Sprintf("%s at %q, lease %x, %v", key, addr, int64(lease), err)
		})
		if err := keep(); err != nil {
			t.Fatalf("%s's old lease did not live until the new registration: %v", names[j], err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cli.Revoke(ctx, oldLease)
		cancel()
		if err != nil {
			t.Fatalf("revoke %s's old lease: %v", names[j], err)
		}
		mustBeRegistered(names[j]+"'s old lease ended", all...)
		put(j, "k6", "v6")
		replaced = fmt.Sprintf("; %s killed and registered again at %s over its live registration at %s", names[j], newAddr, oldAddr)
	}

	// 5. All agree on the six voters, every node knows every member at
	// its address, and every node reads every key.
	c.waitWhy("six voters and one leader on every node", 30*time.Second, func() (bool, string) {
		return agreeOn(all, want6)
	})
	c.waitWhy("every node knows every member's address", 15*time.Second, func() (bool, string) {
		for _, i := range all {
			ci, err := c.adminStatus(i)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", names[i], err)
			}
			for _, n := range ci.Nodes {
				j := slices.Index(ids, n.ID)
				if host, _, _ := net.SplitHostPort(n.Address); j < 0 || host != nw.ips[home[j]] {
					return false, fmt.Sprintf("%s has %s (%d) at %q", names[i], n.Name, n.ID, n.Address)
				}
			}
		}
		return true, ""
	})
	for _, i := range all {
		c.waitWhy(names[i]+" reads every key", 15*time.Second, func() (bool, string) { return reads(i) })
	}
	mustBeRegistered("every node back", all...)
	t.Logf("discovery netns (%s): seed %d, %s; one cluster of 5 formed %v after the first event; %s a voter %v later; "+
		"%s moved %s -> %s and followed by all %v after its SIGTERM%s; %d keys read on %d nodes; %v in all",
		mech, seed, transportType, formed.Round(time.Millisecond), names[joiner], joined.Round(time.Millisecond),
		names[moved], oldIP, newIP, followed.Round(time.Millisecond), replaced, len(written), nodes, time.Since(began).Round(time.Millisecond))
}
