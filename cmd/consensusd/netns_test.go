//go:build linux

package main

import (
	"fmt"
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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/linearizability"
)

// netnsPrefix starts the name of every namespace and interface the netns
// test creates: "cnx<pid>b" (the bridge), "cnx<pid>v<i>" (node i's veth in
// the root namespace) and "cnx-<pid>-n<i>" (node i's namespace), where
// pid is the test process's. A name whose process is gone is a leftover
// of a run that could not clean up, and the next run removes it.
const netnsPrefix = "cnx"

// Ports inside every node's namespace: each node has its own address, so
// all use the same ones.
const (
	nsRaftPort   = 7000
	nsAPIPort    = 7100
	nsClientPort = 7200
)

// nsNet is a bridge in the root namespace and one namespace per node, each
// joined to the bridge by a veth pair, with its own address on the subnet.
type nsNet struct {
	t      *testing.T
	bridge string
	ns     []string // node i's namespace
	ips    []string // node i's address
	gw     string   // the bridge's address: where the clients come from
	subnet string   // a.b.c.0/24
	// hits counts the packets each kind of rule matched (its comment),
	// read from the rules' counters before they are flushed.
	hits map[string]int64
}

// netnsPrereqs returns why the test cannot run here, or "".
func netnsPrereqs() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces, nftables, tc)"
	}
	for _, tool := range []string{"ip", "tc", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("needs %s (apt-get install iproute2 nftables): %v", tool, err)
		}
	}
	return ""
}

func nsRun(t *testing.T, stdin string, args ...string) {
	t.Helper()
	if err := nsTry(stdin, args...); err != nil {
		t.Fatal(err)
	}
}

func nsTry(stdin string, args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeStaleNetns deletes namespaces and links named by netnsPrefix whose
// test process no longer runs.
func removeStaleNetns(t *testing.T) {
	stale := func(pid string) bool {
		if _, err := strconv.Atoi(pid); err != nil {
			return false
		}
		_, err := os.Stat("/proc/" + pid)
		return os.IsNotExist(err)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			parts := strings.Split(name, "-")
			if len(parts) == 3 && parts[0] == netnsPrefix && stale(parts[1]) {
				t.Logf("removing leftover namespace %s", name)
				_ = nsTry("", "ip", "netns", "del", name)
			}
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return
	}
	for _, ifc := range ifaces {
		rest, ok := strings.CutPrefix(ifc.Name, netnsPrefix)
		if !ok {
			continue
		}
		pid, _, ok := strings.Cut(rest, "b")
		if !ok {
			pid, _, ok = strings.Cut(rest, "v")
		}
		if ok && stale(pid) {
			t.Logf("removing leftover link %s", ifc.Name)
			_ = nsTry("", "ip", "link", "del", ifc.Name)
		}
	}
}

// freeSubnet picks 10.213.X.0/24 with X random and no address of this
// host in it.
func freeSubnet(t *testing.T, rng *rand.Rand) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for range 256 {
		prefix := fmt.Sprintf("10.213.%d.", 1+rng.IntN(254))
		if !slices.ContainsFunc(addrs, func(a net.Addr) bool { return strings.HasPrefix(a.String(), prefix) }) {
			return prefix
		}
	}
	t.Fatal("no free 10.213.X.0/24 subnet")
	return ""
}

// newNsNet builds the network of n nodes and removes it when the test
// ends (also when it fails).
func newNsNet(t *testing.T, n int, rng *rand.Rand) *nsNet {
	removeStaleNetns(t)
	pid := strconv.Itoa(os.Getpid())
	prefix := freeSubnet(t, rng)
	nw := &nsNet{t: t, bridge: netnsPrefix + pid + "b", gw: prefix + "1", subnet: prefix + "0/24", hits: map[string]int64{}}
	t.Cleanup(func() {
		for _, ns := range nw.ns {
			if err := nsTry("", "ip", "netns", "del", ns); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := nsTry("", "ip", "link", "del", nw.bridge); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	nsRun(t, "", "ip", "link", "add", nw.bridge, "type", "bridge")
	nsRun(t, "", "ip", "addr", "add", nw.gw+"/24", "dev", nw.bridge)
	nsRun(t, "", "ip", "link", "set", nw.bridge, "up")
	for i := range n {
		ns := fmt.Sprintf("%s-%s-n%d", netnsPrefix, pid, i+1)
		veth := fmt.Sprintf("%s%sv%d", netnsPrefix, pid, i+1)
		ip := prefix + strconv.Itoa(11+i)
		nsRun(t, "", "ip", "netns", "add", ns)
		nw.ns = append(nw.ns, ns)
		nw.ips = append(nw.ips, ip)
		nsRun(t, "", "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		nsRun(t, "", "ip", "link", "set", veth, "master", nw.bridge, "up")
		nsRun(t, "", "ip", "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		nsRun(t, "", "ip", "-n", ns, "link", "set", "eth0", "up")
		nsRun(t, "", "ip", "-n", ns, "link", "set", "lo", "up")
		// The fault hooks: partitions in part_*, link impairments in
		// link_out, and an HTB qdisc with a fast default class 1:10 and a
		// slow class 1:20 that link_out sends packets to by priority.
		nw.nft(i, `table ip chaos {
  chain part_in { type filter hook input priority 0; policy accept; }
  chain part_out { type filter hook output priority 0; policy accept; }
  chain link_out { type filter hook output priority 10; policy accept; }
}`)
		nw.tc(i, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10")
		nw.tc(i, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate", "1gbit", "quantum", "60000")
		nw.tc(i, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:20", "htb",
			"rate", "256kbit", "ceil", "256kbit", "burst", "1600", "cburst", "1600", "quantum", "1514")
	}
	return nw
}

func (nw *nsNet) nft(i int, script string) {
	nw.t.Helper()
	// nft 1.0.6 misreads "1:20" at the very end of its input: end lines.
	nsRun(nw.t, script+"\n", "ip", "netns", "exec", nw.ns[i], "nft", "-f", "-")
}

func (nw *nsNet) tc(i int, args ...string) {
	nw.t.Helper()
	nsRun(nw.t, "", append([]string{"ip", "netns", "exec", nw.ns[i], "tc"}, args...)...)
}

// netemAvailable reports whether the kernel has the netem qdisc, trying it
// on node 0's loopback.
func (nw *nsNet) netemAvailable() error {
	err := nsTry("", "ip", "netns", "exec", nw.ns[0], "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "10ms")
	if err == nil {
		_ = nsTry("", "ip", "netns", "exec", nw.ns[0], "tc", "qdisc", "del", "dev", "lo", "root")
	}
	return err
}

// Link impairments of node i's outgoing packets (to the peers and to the
// clients). The kernel here has no netem, so they are built from what it
// has: nftables' random numbers drop and duplicate packets, and send a
// fraction of them through HTB's slow class, where they queue behind each
// other (delay with jitter) and fall behind the rest (reordering).

func (nw *nsNet) loss(i, pct int) {
	nw.nft(i, fmt.Sprintf(`add rule ip chaos link_out ip daddr %s numgen random mod 100 < %d counter drop comment "loss"`,
		nw.subnet, pct))
}

func (nw *nsNet) duplicate(i, pct int) {
	nw.nft(i, fmt.Sprintf(`add rule ip chaos link_out ip daddr %s numgen random mod 100 < %d counter dup to ip daddr comment "duplication"`,
		nw.subnet, pct))
}

// slow sends pct% of node i's packets through a class of kbit kbit/s: all
// of them is a slow link (delay), a fraction lets the others overtake
// them (reordering).
func (nw *nsNet) slow(i, pct, kbit int, kind string) {
	rate := strconv.Itoa(kbit) + "kbit"
	nw.tc(i, "class", "change", "dev", "eth0", "parent", "1:", "classid", "1:20", "htb",
		"rate", rate, "ceil", rate, "burst", "1600", "cburst", "1600", "quantum", "1514")
	sample := "" // every packet
	if pct < 100 {
		sample = fmt.Sprintf("numgen random mod 100 < %d ", pct)
	}
	nw.nft(i, fmt.Sprintf(`add rule ip chaos link_out ip daddr %s %scounter meta priority set 1:20 comment "%s"`,
		nw.subnet, sample, kind))
}

var nftCounter = regexp.MustCompile(`counter packets (\d+) .*comment "([^"]+)"`)

// flush counts the packets the rules of node i's chain matched, and
// deletes the rules.
func (nw *nsNet) flush(i int, chain string) {
	nw.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", nw.ns[i], "nft", "list", "chain", "ip", "chaos", chain).CombinedOutput()
	if err != nil {
		nw.t.Fatalf("nft list chain %s in %s: %v: %s", chain, nw.ns[i], err, out)
	}
	for _, m := range nftCounter.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		nw.hits[m[2]] += n
	}
	nw.nft(i, "flush chain ip chaos "+chain)
}

func (nw *nsNet) clearLink(i int) { nw.flush(i, "link_out") }

// cut drops what node i receives from node j; both ways also what it sends
// to j.
func (nw *nsNet) cut(i, j int, bothWays bool) {
	rules := fmt.Sprintf("add rule ip chaos part_in ip saddr %s counter drop comment \"partition\"\n", nw.ips[j])
	if bothWays {
		rules += fmt.Sprintf("add rule ip chaos part_out ip daddr %s counter drop comment \"partition\"\n", nw.ips[j])
	}
	nw.nft(i, rules)
}

func (nw *nsNet) healPartitions() {
	for i := range nw.ns {
		nw.flush(i, "part_in")
		nw.flush(i, "part_out")
	}
}

// netnsConfigs writes each node's consensusd configuration under dir and
// returns the paths: one node per namespace, every listener on the node's
// own address, the peer transport over mutual TLS with a certificate that
// names the node (and its address, for the dialling side's host check).
// All the keys of the test's clusters are here, in one place.
func netnsConfigs(t *testing.T, dir string, ips []string, transportType string) []string {
	pki := transporttest.NewPKI(t, "netns")
	var peers strings.Builder
	for i, ip := range ips {
		fmt.Fprintf(&peers, "  - {id: %d, address: %s, port: %d}\n", i+1, ip, nsRaftPort)
	}
	var paths []string
	for i, ip := range ips {
		ident := fmt.Sprintf("node-%d", i+1)
		cert, key := pki.IssueFor(ident, []net.IP{net.ParseIP(ip)}, ident)
		cfg := fmt.Sprintf(`node_id: %d
cluster_id: netns
bind_addr: %s
bind_port: %d
peers:
%sraft:
  heartbeat_interval: 50ms
  election_timeout_min: 500ms
  election_timeout_max: 1s
transport:
  type: %s
  connection_timeout: 1s
  timeout: 2s
storage:
  type: wal
  path: %s
api:
  addr: %s:%d
  client_addr: %s:%d
  request_timeout: 2s
  # The test's clients reach the nodes across the bridge without a token:
  # the data plane off loopback must say so explicitly.
  allow_unauthenticated: true
security:
  enable_tls: true
  enable_mtls: true
  cert_file: %s
  key_file: %s
  ca_file: %s
`, i+1, ip, nsRaftPort, peers.String(), transportType, filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			ip, nsAPIPort, ip, nsClientPort, cert, key, pki.CAFile)
		p := filepath.Join(dir, fmt.Sprintf("node%d.yaml", i+1))
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// TestNetnsFaults runs three consensusd processes (CONSENSUSD_NETNS_NODES
// sets another number), each in its own network namespace joined to the
// others by veth pairs and a bridge, talking mutual TLS, under concurrent
// clients in the root namespace, while it impairs the links (loss, delay
// with jitter, duplication, reordering), partitions the nodes with
// nftables (two nodes from each other, one node from all, one way only),
// SIGKILLs and restarts a node and pauses one with SIGSTOP. Each fault is
// drawn from a logged seed (CONSENSUSD_NETNS_SEED replays one).
// After each heal, a leader that every node follows must come within
// netnsLiveness; at the end every node converges, and the history, ending
// with reads of every key on every node, is linearizable: no acknowledged
// write is lost.
func TestNetnsFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes in network namespaces")
	}
	if why := netnsPrereqs(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why + " (a skip is a failure under CI)")
		}
		t.Skip(why)
	}
	nodes := 3
	if n := os.Getenv("CONSENSUSD_NETNS_NODES"); n != "" {
		v, err := strconv.Atoi(n)
		if err != nil || v < 3 || v > 9 {
			t.Fatalf("CONSENSUSD_NETNS_NODES: want 3..9, got %q", n)
		}
		nodes = v
	}
	const (
		keys          = 8
		clients       = 4
		opsPerClient  = 600
		netnsLiveness = 30 * time.Second
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CONSENSUSD_NETNS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CONSENSUSD_NETNS_SEED: %v", err)
		}
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 0x6e65746e73))
	transportType := []string{"grpc", "tcp"}[seed%2]
	if tt := os.Getenv("CONSENSUSD_NETNS_TRANSPORT"); tt != "" {
		transportType = tt
	}
	t.Logf("seed %d (CONSENSUSD_NETNS_SEED=%d replays the faults), transport %s over mutual TLS", seed, seed, transportType)
	// CONSENSUSD_NETNS_READS=stale makes the clients read without
	// consensus: the check must then fail, which shows that it can.
	readQuery := ""
	if r := os.Getenv("CONSENSUSD_NETNS_READS"); r != "" {
		readQuery = "?consistency=" + r
		t.Logf("clients read with %s", readQuery)
	}

	nw := newNsNet(t, nodes, rng)
	if err := nw.netemAvailable(); err != nil {
		t.Logf("tc netem is not available (%v): loss, duplication, delay and reordering come from nftables and HTB", err)
	}
	dir := t.TempDir()
	c := &cluster{t: t, bin: buildDaemon(t), paths: netnsConfigs(t, dir, nw.ips, transportType),
		procs: make([]*exec.Cmd, nodes), logs: make([]*os.File, nodes),
		wrap: func(i int) []string { return []string{"ip", "netns", "exec", nw.ns[i]} }}
	for i, ip := range nw.ips {
		c.api = append(c.api, fmt.Sprintf("http://%s:%d", ip, nsAPIPort))
		c.start(i)
	}
	c.stopAtCleanup()
	c.waitFor("a first leader", 20*time.Second, func() bool { return c.leader() >= 0 })

	rec := linearizability.NewRecorder()
	var ok atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		cl := &client{id: i, c: c, rng: rand.New(rand.NewPCG(seed, uint64(i))), rec: rec, ok: &ok,
			http: &http.Client{Timeout: 2 * time.Second}, attempts: 8, readQuery: readQuery}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range opsPerClient {
				select {
				case <-stop:
					return
				default:
				}
				// About 7 operations a second per client: enough to
				// overlap every fault, few enough to check quickly.
				time.Sleep(time.Duration(50+cl.rng.IntN(200)) * time.Millisecond)
				key := "k" + strconv.Itoa(cl.rng.IntN(keys))
				if cl.rng.IntN(3) == 0 {
					cl.get(cl.rng.IntN(nodes), key)
				} else {
					cl.put(key, fmt.Sprintf("c%d-%d", cl.id, n))
				}
			}
		}()
	}

	faults := map[string]int{}
	links := []string{"loss", "duplication", "delay", "reordering"}
	sleep := func(lo, hi int) { time.Sleep(time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond) }
	killed, paused := -1, -1
	// impair puts one link impairment on node i and names it.
	impair := func(i int, kind string) string {
		switch kind {
		case "loss":
			nw.loss(i, 10+rng.IntN(31))
			return "loss"
		case "duplication":
			nw.duplicate(i, 10+rng.IntN(31))
			return "duplication"
		case "delay":
			nw.slow(i, 100, 128+rng.IntN(385), "delay")
			return "delay"
		default:
			nw.slow(i, 10+rng.IntN(31), 64+rng.IntN(193), "reordering")
			return "reordering"
		}
	}
	heal := func() {
		for i := range nodes {
			nw.clearLink(i)
		}
		nw.healPartitions()
		if paused >= 0 {
			c.kill(paused, syscall.SIGCONT)
			paused = -1
		}
		if killed >= 0 {
			c.start(killed)
			killed = -1
		}
	}
	// inject starts one fault of the kind; heal ends it.
	inject := func(kind string) {
		a := rng.IntN(nodes)
		b := (a + 1 + rng.IntN(nodes-1)) % nodes
		switch kind {
		case "loss", "duplication", "delay", "reordering":
			impair(a, kind)
		case "partition (two nodes)":
			nw.cut(a, b, true)
			nw.cut(b, a, true)
		case "partition (one node from all)":
			for j := range nodes {
				if j != a {
					nw.cut(a, j, true)
				}
			}
		case "partition (one way)":
			nw.cut(a, b, false)
		case "kill -9 and restart":
			if l := c.leader(); l >= 0 && rng.IntN(2) == 0 {
				a = l
			}
			c.kill(a, syscall.SIGKILL)
			killed = a
		case "pause (SIGSTOP)":
			c.kill(a, syscall.SIGSTOP)
			paused = a
		}
		faults[kind]++
	}
	kinds := []string{"loss", "duplication", "delay", "reordering", "partition (two nodes)",
		"partition (one node from all)", "partition (one way)", "kill -9 and restart", "pause (SIGSTOP)"}
	// agreed reports whether every node answers and follows one leader.
	agreed := func() bool {
		var leader uint64
		for i := range nodes {
			st, err := c.status(i)
			if err != nil || st.Leader == 0 || (leader != 0 && st.Leader != leader) {
				return false
			}
			leader = st.Leader
		}
		return true
	}
	// After each heal, a leader that every node follows within the
	// liveness bound; the times are reported.
	var toLeader []time.Duration
	var slowest string
	waitLeader := func(after string) {
		healed := time.Now()
		c.waitFor("a leader every node follows after healing "+after, netnsLiveness, agreed)
		d := time.Since(healed)
		if len(toLeader) == 0 || d > slices.Max(toLeader) {
			slowest = after
		}
		toLeader = append(toLeader, d)
	}
	// Two rounds over every kind in a seeded order: the first one fault
	// at a time, the second each with a link impairment on another node,
	// changed halfway through.
	sleep(1000, 1500)
	for round := range 2 {
		order := slices.Clone(kinds)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, kind := range order {
			inject(kind)
			if round == 1 {
				other := rng.IntN(nodes)
				faults[impair(other, links[rng.IntN(len(links))])]++
				sleep(800, 1500)
				nw.clearLink(other)
				faults[impair(other, links[rng.IntN(len(links))])]++
				sleep(800, 1500)
			} else {
				sleep(1500, 3000)
			}
			heal()
			waitLeader(kind)
			sleep(500, 1000)
		}
	}
	close(stop)
	wg.Wait()

	c.waitFor("convergence", 30*time.Second, func() bool {
		var applied []uint64
		for i := range nodes {
			st, err := c.status(i)
			if err != nil || st.Leader == 0 {
				return false
			}
			applied = append(applied, st.Applied)
		}
		return applied[0] > 0 && slices.Min(applied) == slices.Max(applied)
	})
	reader := &client{id: 100, c: c, rec: rec, ok: &ok, http: &http.Client{Timeout: 5 * time.Second}}
	for i := range nodes {
		for k := range keys {
			if !reader.get(i, "k"+strconv.Itoa(k)) {
				t.Fatalf("final read of k%d on node %d failed", k, i+1)
			}
		}
	}
	h := rec.History()
	var answered, openWrites, failedReads int
	for _, op := range h.Ops {
		switch {
		case !op.Open:
			answered++
		case op.Input.Kind == linearizability.Get:
			failedReads++
		default:
			openWrites++
		}
	}
	res := linearizability.Check(h, 60*time.Second)
	var kindsSeen []string
	total := 0
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range faults {
			if !yield(k) {
				return
			}
		}
	}) {
		kindsSeen = append(kindsSeen, fmt.Sprintf("%s %d", k, faults[k]))
		total += faults[k]
	}
	t.Logf("netns summary: seed %d, %s over mTLS, %d nodes; operations %d: %d ok, %d failed (reads with no answer), "+
		"%d unknown (writes with no answer); faults %d: %s; packets matched: dropped by loss %d, duplicated %d, "+
		"delayed %d, reordered %d, dropped by partitions %d; a leader after each of %d heals within %v (after %s; median %v); verdict %v",
		seed, transportType, nodes, len(h.Ops), answered, failedReads, openWrites, total,
		strings.Join(kindsSeen, ", "), nw.hits["loss"], nw.hits["duplication"], nw.hits["delay"],
		nw.hits["reordering"], nw.hits["partition"], len(toLeader), slices.Max(toLeader).Round(time.Millisecond), slowest,
		median(toLeader).Round(time.Millisecond), res.Verdict)
	if res.Verdict != linearizability.Ok {
		out := filepath.Join(os.TempDir(), "consensusd-netns.html")
		if f, err := os.Create(out); err == nil {
			_ = res.WriteHTML(f)
			f.Close()
		}
		t.Fatalf("history is %v (visualisation: %s)", res.Verdict, out)
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d operations answered", ok.Load())
	}
	for _, k := range kinds {
		if faults[k] == 0 {
			t.Fatalf("fault %q was never injected: %v", k, faults)
		}
	}
	// The network faults bit: their rules matched packets.
	for _, k := range append(links, "partition") {
		if nw.hits[k] == 0 {
			t.Fatalf("no packet matched the %s rules: %v", k, nw.hits)
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
