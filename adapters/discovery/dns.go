package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/nodename"
)

// DefaultDNSTimeout bounds one DNSConfig lookup when Timeout is zero.
const DefaultDNSTimeout = 5 * time.Second

// dnsTargetLookups bounds how many SRV targets one lookup resolves at
// the same time.
const dnsTargetLookups = 8

// DNSConfig configures the DNS mechanism.
type DNSConfig struct {
	// Name is the name asked (discovery.dns_name). Without SRV it is a
	// name with A/AAAA records, one per node (a Kubernetes headless
	// Service: "forge-consensus.default.svc.cluster.local"). With SRV it
	// is the full SRV owner name, service and protocol labels included:
	// "_raft._tcp.forge-consensus.default.svc.cluster.local" (Kubernetes
	// publishes such records for a headless Service's port named "raft").
	// A name ending in "." is absolute; any other name is completed with
	// the resolver's search domains the way resolv.conf says (ndots),
	// like every other program on the host.
	Name string
	// SRV selects SRV records: each target is a node, named by the
	// target's first label, at the target's address and the record's
	// port.
	SRV bool
	// Port is the Raft port of the nodes found through A/AAAA records
	// (discovery.port), 1..65535; required without SRV and refused with
	// it, since SRV records carry their own port.
	Port int
	// Server is the "host:port" of the DNS server to ask
	// (discovery.dns_server), instead of every server of the host's
	// resolv.conf (whose search domains and ndots still apply); a host
	// name here is resolved by the host's resolver at each query. ""
	// asks the servers of resolv.conf.
	Server string
	// Timeout bounds one Lookup, every query it makes included; zero
	// means DefaultDNSTimeout.
	Timeout time.Duration
}

// DNS is the DNS mechanism: the addresses of a name (A and AAAA
// records), or the targets of its SRV records.
//
// It asks with Go's own resolver (on every platform, so behaviour does
// not depend on the C library), in strict mode and one record type per
// query: any query that times out or that the server fails (SERVFAIL,
// REFUSED, ...) fails the whole Lookup, rather than giving a partial
// list (the A records without the AAAA records, the SRV targets but
// one) that would look complete; the caller asks again at its next
// refresh. A name that does not exist (NXDOMAIN) or has no records of
// the type asked gives an empty list without an error: a fresh
// deployment has no records yet.
type DNS struct {
	cfg      DNSConfig
	resolver *net.Resolver
}

// NewDNS checks cfg and returns the DNS Source it describes.
func NewDNS(cfg DNSConfig) (*DNS, error) {
	cfg.Name = strings.TrimSpace(cfg.Name)
	if cfg.Name == "" {
		return nil, errors.New("discovery.dns_name: empty; the name to look up is required with discovery type dns")
	}
	if err := checkDomainName(cfg.Name); err != nil {
		return nil, fmt.Errorf("discovery.dns_name: %q: %w", cfg.Name, err)
	}
	switch {
	case cfg.SRV && cfg.Port != 0:
		return nil, fmt.Errorf("discovery.port: %d is not used with SRV records, which carry each node's port; leave it unset", cfg.Port)
	case !cfg.SRV && cfg.Port == 0:
		return nil, errors.New("discovery.port: required with A/AAAA lookups (the Raft port of the nodes found)")
	case !cfg.SRV && (cfg.Port < 1 || cfg.Port > 65535):
		return nil, fmt.Errorf("discovery.port: %d is not in 1..65535", cfg.Port)
	}
	if cfg.Server != "" {
		host, port, err := net.SplitHostPort(cfg.Server)
		if err != nil {
			return nil, fmt.Errorf("discovery.dns_server: %q is not host:port (e.g. 10.96.0.10:53): %w", cfg.Server, err)
		}
		if host == "" {
			return nil, fmt.Errorf("discovery.dns_server: %q has no host", cfg.Server)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("discovery.dns_server: %q: port %q is not in 1..65535", cfg.Server, port)
		}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("discovery: dns timeout %v is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultDNSTimeout
	}
	r := &net.Resolver{PreferGo: true, StrictErrors: true}
	if cfg.Server != "" {
		server := cfg.Server
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}
	}
	return &DNS{cfg: cfg, resolver: r}, nil
}

// Kind returns "dns".
func (d *DNS) Kind() string { return "dns" }

// Lookup asks the DNS and returns the candidates, sorted and without
// duplicates.
//
// Without SRV, each address of the name is a candidate without a name
// at the configured port. With SRV, each target is a candidate named
// by its first label ("web-0" for "web-0.web.default.svc.cluster.local.",
// a StatefulSet's pod behind a headless Service),
// at the record's port and at one address of the target: its lowest
// IPv4 address, or its lowest IPv6 address when it has no IPv4 one, so
// each node has one address and every node picks the same. A target
// whose first label is not a valid node name, or is an address written
// with dashes ("10-1-0-5", Kubernetes' name for a pod without a
// hostname), gives a candidate without a name; a target without addresses (not published yet) and the "."
// target (RFC 2782: no service) give none. SRV priorities and weights
// are ignored: every target is a candidate. An answer with a target
// that is not a domain name (an address: "10.1.0.5.") is an error, as
// Go's resolver has it.
func (d *DNS) Lookup(ctx context.Context) ([]Candidate, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	if d.cfg.SRV {
		return d.lookupSRV(ctx)
	}
	addrs, err := d.addrs(ctx, d.cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("discovery: dns: A/AAAA %s: %w", d.cfg.Name, err)
	}
	out := make([]Candidate, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, Candidate{Host: a.String(), Port: d.cfg.Port})
	}
	return Sort(out), nil
}

// addrs returns the addresses of name, none if it has none or does not
// exist.
//
// It asks for A and AAAA records in two lookups: in one "ip" lookup,
// Go's resolver answers with the records of one type when the other's
// query fails with an error it does not count as temporary (REFUSED,
// say), even in strict mode, and the list would look complete.
func (d *DNS) addrs(ctx context.Context, name string) ([]netip.Addr, error) {
	var (
		wg   sync.WaitGroup
		v6   []netip.Addr
		err6 error
	)
	wg.Go(func() { v6, err6 = d.lookupNetIP(ctx, "ip6", name) })
	v4, err4 := d.lookupNetIP(ctx, "ip4", name)
	wg.Wait()
	if err4 != nil {
		return nil, err4
	}
	if err6 != nil {
		return nil, err6
	}
	return append(v4, v6...), nil
}

// lookupNetIP returns the addresses of name of one family ("ip4" or
// "ip6"), none if it has none or does not exist.
func (d *DNS) lookupNetIP(ctx context.Context, network, name string) ([]netip.Addr, error) {
	addrs, err := d.resolver.LookupNetIP(ctx, network, name)
	if err != nil {
		if notFound(err) {
			return nil, nil
		}
		return nil, d.named(err)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

func (d *DNS) lookupSRV(ctx context.Context) ([]Candidate, error) {
	_, srvs, err := d.resolver.LookupSRV(ctx, "", "", d.cfg.Name)
	if err != nil {
		if notFound(err) {
			return []Candidate{}, nil
		}
		return nil, fmt.Errorf("discovery: dns: SRV %s: %w", d.cfg.Name, d.named(err))
	}
	type result struct {
		c   Candidate
		ok  bool
		err error
	}
	results := make([]result, len(srvs))
	sem := make(chan struct{}, dnsTargetLookups)
	var wg sync.WaitGroup
	for i, s := range srvs {
		if s.Target == "." || s.Target == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			addrs, err := d.addrs(ctx, s.Target)
			if err != nil {
				results[i].err = fmt.Errorf("discovery: dns: SRV %s: target %s: %w", d.cfg.Name, s.Target, err)
				return
			}
			if len(addrs) == 0 {
				return
			}
			best := addrs[0]
			for _, a := range addrs[1:] {
				// Compare orders IPv4 before IPv6, then by address.
				if a.Compare(best) < 0 {
					best = a
				}
			}
			results[i] = result{c: Candidate{Name: targetName(s.Target), Host: best.String(), Port: int(s.Port)}, ok: true}
		}()
	}
	wg.Wait()
	out := make([]Candidate, 0, len(results))
	var (
		first  error
		failed int
	)
	for _, r := range results {
		if r.err != nil {
			if failed == 0 {
				first = r.err
			}
			failed++
		}
		if r.ok {
			out = append(out, r.c)
		}
	}
	if failed > 1 {
		return nil, fmt.Errorf("%w (and %d more targets failed)", first, failed-1)
	}
	if first != nil {
		return nil, first
	}
	return Sort(out), nil
}

// targetName returns the node name an SRV target stands for: its first
// label when that is a valid node name and not an address written with
// dashes, else "".
func targetName(target string) string {
	label, _, _ := strings.Cut(target, ".")
	if dashedAddr(label) {
		return ""
	}
	if _, err := nodename.ID(label); err != nil {
		return ""
	}
	return label
}

// dashedAddr reports whether label is an IP address with its dots or
// colons written as dashes ("10-1-0-5", "fd00--5"): the name Kubernetes
// DNS gives a headless Service's endpoint whose pod sets no hostname (a
// Deployment's pod, unlike a StatefulSet's), which names no node.
func dashedAddr(label string) bool {
	if _, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ".")); err == nil {
		return true
	}
	a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":"))
	return err == nil && a.Is6()
}

// named returns err naming the configured server, if any, as the one
// asked: Go's resolver names a server of resolv.conf, whose address the
// Dial function replaced.
func (d *DNS) named(err error) error {
	var dnsErr *net.DNSError
	if d.cfg.Server != "" && errors.As(err, &dnsErr) {
		dnsErr.Server = d.cfg.Server
	}
	return err
}

// notFound reports whether err says the name does not exist or has no
// records of the type asked.
func notFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// checkDomainName refuses what Go's resolver would refuse with "no such
// host" (which Lookup would take for "no records yet"): it wants labels
// of 1 to 63 letters, digits, '-' and '_', not starting or ending with
// '-', not all digits, in at most 253 bytes (254 with the final dot).
func checkDomainName(name string) error {
	n := strings.TrimSuffix(name, ".")
	if _, err := netip.ParseAddr(n); err == nil {
		return nil // an address stands for itself
	}
	if len(n) > 253 {
		return fmt.Errorf("%d bytes, at most 253", len(n))
	}
	if !strings.ContainsFunc(n, func(r rune) bool { return r != '.' && (r < '0' || r > '9') }) {
		return errors.New("digits only, neither a name nor an address")
	}
	for label := range strings.SplitSeq(n, ".") {
		switch {
		case label == "":
			return errors.New("empty label")
		case len(label) > 63:
			return fmt.Errorf("label %q is longer than 63 bytes", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("label %q has %q; only letters, digits, '-' and '_' are allowed", label, c)
			}
		}
	}
	return nil
}
