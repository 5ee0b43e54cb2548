package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/forge-consensus/consensus/adapters/discovery"
)

// zone is a DNS server's mutable data: the test changes it between
// lookups, as a cluster's DNS changes when pods come, go and move.
type zone struct {
	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case absolute name; a name present with no records of a type answers NODATA
	fail    map[string]int      // "name TYPE" → the rcode to answer instead (SERVFAIL)
	order   func([]dns.RR)      // reorders every answer section, if set
	tcp     int                 // queries that came over TCP
}

func newZone() *zone {
	return &zone{records: map[string][]dns.RR{}, fail: map[string]int{}}
}

// set replaces the records of the names the RRs (zone file lines) own;
// a name with no RRs given is left alone (use remove).
func (z *zone) set(t *testing.T, lines ...string) {
	t.Helper()
	byName := map[string][]dns.RR{}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		name := strings.ToLower(rr.Header().Name)
		byName[name] = append(byName[name], rr)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	for name, rrs := range byName {
		z.records[name] = rrs
	}
}

// remove deletes names: they answer NXDOMAIN.
func (z *zone) remove(names ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, n := range names {
		delete(z.records, strings.ToLower(n))
	}
}

// failWith makes queries of name and type (e.g. dns.TypeAAAA) answer
// rcode; dns.RcodeSuccess clears it.
func (z *zone) failWith(name string, qtype uint16, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	key := strings.ToLower(name) + " " + dns.TypeToString[qtype]
	if rcode == dns.RcodeSuccess {
		delete(z.fail, key)
		return
	}
	z.fail[key] = rcode
}

func (z *zone) setOrder(order func([]dns.RR)) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.order = order
}

func (z *zone) tcpQueries() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.tcp
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	z.mu.Lock()
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		z.tcp++
	}
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		rrs, exists := z.records[name]
		switch rcode, failing := z.fail[name+" "+dns.TypeToString[q.Qtype]]; {
		case failing:
			m.Rcode = rcode
		case !exists:
			m.Rcode = dns.RcodeNameError
		default:
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, dns.Copy(rr))
				}
			}
			if z.order != nil {
				z.order(m.Answer)
			}
		}
	}
	z.mu.Unlock()
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// serve runs a DNS server for h on a loopback port, over UDP and TCP,
// until the test ends, and returns its address.
func serve(t *testing.T, h dns.Handler) string {
	t.Helper()
	var (
		pc  net.PacketConn
		l   net.Listener
		err error
	)
	for range 20 { // the UDP port's TCP twin may be taken: try another port
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no loopback port free for both UDP and TCP: %v", err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("DNS server: %v", err)
		}
		t.Cleanup(func() {
			if err := srv.Shutdown(); err != nil {
				t.Errorf("DNS server shutdown: %v", err)
			}
			<-done
		})
	}
	return pc.LocalAddr().String()
}

func newDNS(t *testing.T, cfg discovery.DNSConfig) *discovery.DNS {
	t.Helper()
	d, err := discovery.NewDNS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// lookup returns the candidates as strings ("name@host:port").
func lookup(t *testing.T, d *discovery.DNS) []string {
	t.Helper()
	cs, err := d.Lookup(context.Background())
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if cs == nil {
		t.Fatal("Lookup returned a nil list without an error")
	}
	out := []string{}
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

func expect(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: Lookup = %q, want %q", step, got, want)
	}
}

func TestDNSAddressRecords(t *testing.T) {
	z := newZone()
	server := serve(t, z)
	d := newDNS(t, discovery.DNSConfig{Name: "raft.cluster.test.", Port: 7000, Server: server})
	if d.Kind() != "dns" {
		t.Fatalf("Kind = %q", d.Kind())
	}

	expect(t, "no records yet (NXDOMAIN)", lookup(t, d))

	z.set(t, "raft.cluster.test. 30 IN TXT \"not an address\"")
	expect(t, "the name without addresses (NODATA)", lookup(t, d))

	z.set(t,
		"raft.cluster.test. 30 IN A 10.0.0.2",
		"raft.cluster.test. 30 IN A 10.0.0.10",
		"raft.cluster.test. 30 IN A 10.0.0.2", // a duplicate
		"raft.cluster.test. 30 IN AAAA fd00::1",
	)
	expect(t, "three nodes", lookup(t, d), "10.0.0.10:7000", "10.0.0.2:7000", "[fd00::1]:7000")
	// A relative name goes through resolv.conf's search list (ndots), every
	// name of which the server answers, NXDOMAIN for all but this one.
	relative := newDNS(t, discovery.DNSConfig{Name: "raft.cluster.test", Port: 7000, Server: server})
	expect(t, "three nodes by a relative name", lookup(t, relative), "10.0.0.10:7000", "10.0.0.2:7000", "[fd00::1]:7000")

	z.set(t,
		"raft.cluster.test. 30 IN A 10.0.0.2",
		"raft.cluster.test. 30 IN A 10.0.0.3", // 10.0.0.10 rescheduled at 10.0.0.3
		"raft.cluster.test. 30 IN AAAA fd00::1",
		"raft.cluster.test. 30 IN AAAA fd00::2", // a node added
	)
	expect(t, "a node moved, one added", lookup(t, d), "10.0.0.2:7000", "10.0.0.3:7000", "[fd00::1]:7000", "[fd00::2]:7000")

	z.set(t, "raft.cluster.test. 30 IN AAAA fd00::2")
	expect(t, "IPv6 only", lookup(t, d), "[fd00::2]:7000")

	z.remove("raft.cluster.test.")
	expect(t, "all records removed", lookup(t, d))
}

func TestDNSSRVRecords(t *testing.T) {
	z := newZone()
	const srv = "_raft._tcp.web.default.svc.cluster.local."
	d := newDNS(t, discovery.DNSConfig{Name: srv, SRV: true, Server: serve(t, z)})

	expect(t, "no records yet (NXDOMAIN)", lookup(t, d))

	z.set(t,
		srv+" 30 IN SRV 0 33 7000 web-0.web.default.svc.cluster.local.",
		srv+" 30 IN SRV 0 33 7000 web-1.web.default.svc.cluster.local.",
		srv+" 30 IN SRV 10 33 7001 web-2.web.default.svc.cluster.local.",
		srv+" 30 IN SRV 0 33 7000 web-3.web.default.svc.cluster.local.", // no address yet
		"web-0.web.default.svc.cluster.local. 30 IN A 10.1.0.5",
		"web-1.web.default.svc.cluster.local. 30 IN A 10.1.0.6",
		// Several addresses: the lowest IPv4 one is taken.
		"web-2.web.default.svc.cluster.local. 30 IN AAAA fd00::7",
		"web-2.web.default.svc.cluster.local. 30 IN A 10.1.0.9",
		"web-2.web.default.svc.cluster.local. 30 IN A 10.1.0.10",
	)
	expect(t, "three targets with addresses", lookup(t, d),
		"web-0@10.1.0.5:7000", "web-1@10.1.0.6:7000", "web-2@10.1.0.9:7001")

	z.set(t,
		"web-1.web.default.svc.cluster.local. 30 IN A 10.1.3.1", // rescheduled pod
		"web-3.web.default.svc.cluster.local. 30 IN AAAA fd00::3",
	)
	expect(t, "a pod moved, one got its address", lookup(t, d),
		"web-0@10.1.0.5:7000", "web-1@10.1.3.1:7000", "web-2@10.1.0.9:7001", "web-3@[fd00::3]:7000")

	z.set(t,
		srv+" 30 IN SRV 0 50 7000 web-0.web.default.svc.cluster.local.",
		srv+" 30 IN SRV 0 50 7000 web-0.web.default.svc.cluster.local.", // a duplicate
		srv+" 30 IN SRV 0 50 7000 web-3.web.default.svc.cluster.local.",
		srv+" 30 IN SRV 0 50 7000 _x.web.default.svc.cluster.local.", // not a node name
		"_x.web.default.svc.cluster.local. 30 IN A 10.1.0.99",
		// Kubernetes' names for pods without a hostname: no node names.
		srv+" 30 IN SRV 0 50 7000 10-1-0-98.web.default.svc.cluster.local.",
		"10-1-0-98.web.default.svc.cluster.local. 30 IN A 10.1.0.98",
		srv+" 30 IN SRV 0 50 7000 fd00--98.web.default.svc.cluster.local.",
		"fd00--98.web.default.svc.cluster.local. 30 IN AAAA fd00::98",
	)
	expect(t, "targets removed", lookup(t, d),
		"10.1.0.98:7000", "10.1.0.99:7000", "[fd00::98]:7000", "web-0@10.1.0.5:7000", "web-3@[fd00::3]:7000")

	z.set(t,
		srv+" 30 IN SRV 0 50 7000 web-0.web.default.svc.cluster.local.",
		srv+" 30 IN SRV 0 50 7000 10.1.0.97.", // RFC 2782 wants a name
	)
	if cs, err := d.Lookup(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid names") {
		t.Fatalf("an address as an SRV target: Lookup = %v, %v; want Go's error for invalid names", cs, err)
	}

	z.set(t, srv+" 30 IN SRV 0 0 0 .")
	expect(t, "no service (the \".\" target)", lookup(t, d))

	z.set(t, srv+" 30 IN TXT \"no SRV\"")
	expect(t, "no SRV records (NODATA)", lookup(t, d))

	z.remove(srv)
	expect(t, "the name removed (NXDOMAIN)", lookup(t, d))
}

// TestDNSShuffledAnswers checks that every order of the answers gives
// the same list: every node computes the same candidates.
func TestDNSShuffledAnswers(t *testing.T) {
	z := newZone()
	server := serve(t, z)
	const srv = "_raft._tcp.s.test."
	var lines []string
	for i := range 7 {
		lines = append(lines,
			fmt.Sprintf("a.test. 30 IN A 10.2.0.%d", 20-i),
			fmt.Sprintf("a.test. 30 IN AAAA fd00::%x", 0x20-i),
			fmt.Sprintf("%s 30 IN SRV %d %d 7000 n%d.s.test.", srv, i%3, i, i),
			fmt.Sprintf("n%d.s.test. 30 IN A 10.3.0.%d", i, 9-i),
			fmt.Sprintf("n%d.s.test. 30 IN A 10.3.1.%d", i, 9-i),
			fmt.Sprintf("n%d.s.test. 30 IN AAAA fd00::%d", i, i),
		)
	}
	z.set(t, lines...)
	a := newDNS(t, discovery.DNSConfig{Name: "a.test.", Port: 7000, Server: server})
	s := newDNS(t, discovery.DNSConfig{Name: srv, SRV: true, Server: server})

	var wantA, wantSRV []string
	for i := range 7 {
		wantA = append(wantA, fmt.Sprintf("10.2.0.%d:7000", 14+i))
		wantSRV = append(wantSRV, fmt.Sprintf("n%d@10.3.0.%d:7000", i, 9-i))
	}
	for i := range 7 {
		wantA = append(wantA, fmt.Sprintf("[fd00::%x]:7000", 0x1a+i))
	}
	slices.Sort(wantA) // the contract's order: by host as a string

	orders := map[string]func([]dns.RR){
		"as set":   nil,
		"reversed": slices.Reverse[[]dns.RR],
	}
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 15))
		orders[fmt.Sprintf("shuffled %d", seed)] = func(rrs []dns.RR) {
			rng.Shuffle(len(rrs), func(i, j int) { rrs[i], rrs[j] = rrs[j], rrs[i] })
		}
	}
	for name, order := range orders {
		z.setOrder(order)
		expect(t, name+": A/AAAA", lookup(t, a), wantA...)
		expect(t, name+": SRV", lookup(t, s), wantSRV...)
	}
}

func TestDNSServerFailure(t *testing.T) {
	z := newZone()
	server := serve(t, z)
	const srv = "_raft._tcp.s.test."
	z.set(t,
		"a.test. 30 IN A 10.0.0.1",
		"a.test. 30 IN AAAA fd00::1",
		srv+" 30 IN SRV 0 0 7000 n1.s.test.",
		srv+" 30 IN SRV 0 0 7000 n2.s.test.",
		"n1.s.test. 30 IN A 10.0.1.1",
		"n2.s.test. 30 IN A 10.0.1.2",
	)
	a := newDNS(t, discovery.DNSConfig{Name: "a.test.", Port: 7000, Server: server})
	s := newDNS(t, discovery.DNSConfig{Name: srv, SRV: true, Server: server})
	expect(t, "before failures", lookup(t, a), "10.0.0.1:7000", "[fd00::1]:7000")
	expect(t, "before failures", lookup(t, s), "n1@10.0.1.1:7000", "n2@10.0.1.2:7000")

	cases := []struct {
		name  string
		qtype uint16
		d     *discovery.DNS
		asked string // the name the error must give
	}{
		{"a.test.", dns.TypeA, a, "a.test."},
		// The A records alone would look like a complete answer.
		{"a.test.", dns.TypeAAAA, a, "a.test."},
		{srv, dns.TypeSRV, s, srv},
		// One target failing fails the lookup, rather than losing a node.
		{"n2.s.test.", dns.TypeA, s, "n2.s.test."},
		{"n2.s.test.", dns.TypeAAAA, s, "n2.s.test."},
	}
	for _, c := range cases {
		for _, rcode := range []int{dns.RcodeServerFailure, dns.RcodeRefused} {
			step := fmt.Sprintf("%s %s %s", c.name, dns.TypeToString[c.qtype], dns.RcodeToString[rcode])
			z.failWith(c.name, c.qtype, rcode)
			cs, err := c.d.Lookup(context.Background())
			z.failWith(c.name, c.qtype, dns.RcodeSuccess)
			if err == nil {
				t.Fatalf("%s: Lookup = %v without an error", step, cs)
			}
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !strings.Contains(err.Error(), c.asked) || !strings.Contains(err.Error(), " on "+server+": ") {
				t.Fatalf("%s: error %q is not a *net.DNSError naming %s and server %s", step, err, c.asked, server)
			}
			if cs != nil {
				t.Fatalf("%s: Lookup returned %v with its error", step, cs)
			}
		}
	}
	expect(t, "after failures", lookup(t, a), "10.0.0.1:7000", "[fd00::1]:7000")
	expect(t, "after failures", lookup(t, s), "n1@10.0.1.1:7000", "n2@10.0.1.2:7000")
}

// TestDNSTimeout asks a server that never answers: the lookup fails
// with a timeout once DNSConfig.Timeout has passed, or when the
// caller's context ends.
func TestDNSTimeout(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	for _, srv := range []bool{false, true} {
		cfg := discovery.DNSConfig{Name: "a.test.", Port: 7000, Server: silent.LocalAddr().String(), Timeout: 200 * time.Millisecond}
		if srv {
			cfg = discovery.DNSConfig{Name: "_raft._tcp.a.test.", SRV: true, Server: silent.LocalAddr().String(), Timeout: 200 * time.Millisecond}
		}
		cs, err := newDNS(t, cfg).Lookup(context.Background())
		if err == nil {
			t.Fatalf("SRV %v: Lookup = %v without an error", srv, cs)
		}
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.Timeout() || !strings.Contains(err.Error(), cfg.Name) {
			t.Fatalf("SRV %v: error %q is not a DNS timeout naming %s", srv, err, cfg.Name)
		}

		// The caller's context ends first (the configured timeout is an hour).
		cfg.Timeout = time.Hour
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		cs, err = newDNS(t, cfg).Lookup(ctx)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("SRV %v: Lookup with an ending context = %v, %v; want a deadline error", srv, cs, err)
		}
	}
}

// TestDNSTruncatedAnswer serves more addresses than a UDP answer holds:
// the resolver asks again over TCP, through the configured server.
func TestDNSTruncatedAnswer(t *testing.T) {
	z := newZone()
	d := newDNS(t, discovery.DNSConfig{Name: "big.test.", Port: 7000, Server: serve(t, z)})
	var lines, hosts, want []string
	for i := range 200 {
		lines = append(lines, fmt.Sprintf("big.test. 30 IN A 10.4.%d.%d", i/100, i%100))
		hosts = append(hosts, fmt.Sprintf("10.4.%d.%d", i/100, i%100))
	}
	z.set(t, lines...)
	slices.Sort(hosts) // the contract's order: by host as a string
	for _, h := range hosts {
		want = append(want, h+":7000")
	}
	expect(t, "200 addresses", lookup(t, d), want...)
	if z.tcpQueries() == 0 {
		t.Fatal("no query came over TCP: the answer was not truncated, the test proves nothing")
	}
}

func TestNewDNSRefusesBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  discovery.DNSConfig
		want string
	}{
		{discovery.DNSConfig{Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: "  ", Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: "a..b", Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: "a b.test", Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: "-a.test", Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: "12.34", Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: strings.Repeat("a", 64) + ".test", Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: strings.Repeat("abcdefg.", 32) + "test", Port: 7000}, "discovery.dns_name"},
		{discovery.DNSConfig{Name: "a.test"}, "discovery.port"},
		{discovery.DNSConfig{Name: "a.test", Port: -1}, "discovery.port"},
		{discovery.DNSConfig{Name: "a.test", Port: 65536}, "discovery.port"},
		{discovery.DNSConfig{Name: "_raft._tcp.a.test", SRV: true, Port: 7000}, "discovery.port"},
		{discovery.DNSConfig{Name: "a.test", Port: 7000, Server: "10.0.0.1"}, "discovery.dns_server"},
		{discovery.DNSConfig{Name: "a.test", Port: 7000, Server: ":53"}, "discovery.dns_server"},
		{discovery.DNSConfig{Name: "a.test", Port: 7000, Server: "10.0.0.1:0"}, "discovery.dns_server"},
		{discovery.DNSConfig{Name: "a.test", Port: 7000, Server: "10.0.0.1:domain"}, "discovery.dns_server"},
		{discovery.DNSConfig{Name: "a.test", Port: 7000, Timeout: -time.Second}, "timeout"},
	} {
		if _, err := discovery.NewDNS(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewDNS(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	for _, cfg := range []discovery.DNSConfig{
		{Name: "forge-consensus", Port: 7000},
		{Name: "forge-consensus.default.svc.cluster.local.", Port: 1, Server: "[fd00::10]:53"},
		{Name: "_raft._tcp.forge-consensus.default.svc.cluster.local", SRV: true, Server: "dns.test:5353", Timeout: time.Second},
		{Name: "10.0.0.1", Port: 65535},
	} {
		if _, err := discovery.NewDNS(cfg); err != nil {
			t.Errorf("NewDNS(%+v): %v", cfg, err)
		}
	}
}
