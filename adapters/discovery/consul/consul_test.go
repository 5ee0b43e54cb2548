package consul_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/adapters/discovery/consul"
	"github.com/forge-consensus/consensus/adapters/discovery/consul/consultest"
)

// noConsulEnv clears the environment Consul's client reads, so that a
// developer's own settings do not leak into a test.
func noConsulEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_NAMESPACE", "CONSUL_PARTITION",
		"CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME", "CONSUL_HTTP_SSL_VERIFY"} {
		t.Setenv(k, "")
	}
}

// quiet is a logger for tests: failures the tests provoke on purpose
// would otherwise clutter the output.
func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newSource(t *testing.T, a *consultest.Agent, cfg consul.Config) *consul.Source {
	t.Helper()
	cfg.Address = a.Addr()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	s, err := consul.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func register(t *testing.T, s *consul.Source, ctx context.Context, c discovery.Candidate) func() {
	t.Helper()
	stop, err := s.Register(ctx, c)
	if err != nil {
		t.Fatalf("Register %s: %v", c, err)
	}
	t.Cleanup(stop)
	return stop
}

func lookup(t *testing.T, s *consul.Source) []string {
	t.Helper()
	cs, err := s.Lookup(context.Background())
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
		t.Fatalf("%s: got %q, want %q", step, got, want)
	}
}

// receive waits for a value on ch (a guard, not a timing assertion).
func receive(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the channel was closed", what)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: nothing received", what)
	}
}

func nothing(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		t.Fatalf("%s: received (open %v), want nothing", what, ok)
	default:
	}
}

var (
	n1 = discovery.Candidate{Name: "n1", Host: "10.0.0.1", Port: 7001}
	n2 = discovery.Candidate{Name: "n2", Host: "10.0.0.2", Port: 7002}
	n3 = discovery.Candidate{Name: "node-3", Host: "db3.example.com", Port: 7003}
)

func TestRegisterAndLookup(t *testing.T) {
	noConsulEnv(t)
	a := consultest.NewAgent(t, "")
	s := newSource(t, a, consul.Config{})
	expect(t, "nothing registered", lookup(t, s))
	register(t, s, context.Background(), n2)
	register(t, s, context.Background(), n1)
	expect(t, "two registered", lookup(t, s), "n1@10.0.0.1:7001", "n2@10.0.0.2:7002")

	// What the agent holds, as the package documents it.
	reg, ok := a.Instance("forge-consensus-n1")
	if !ok {
		t.Fatalf("no instance forge-consensus-n1; requests: %q", a.Requests())
	}
	if reg.Name != "forge-consensus" || reg.Address != "10.0.0.1" || reg.Port != 7001 || reg.Meta["node_name"] != "n1" || len(reg.Tags) != 0 {
		t.Errorf("registration %+v", reg)
	}
	if c := reg.Check; c.CheckID != "service:forge-consensus-n1" || c.TTL != "10s" || c.DeregisterCriticalServiceAfter != "1m0s" || c.Status != "passing" {
		t.Errorf("check %+v", *c)
	}
	if n := a.Count("PUT /v1/agent/service/register?replace-existing-checks=true"); n != 2 {
		t.Errorf("%d registrations replacing existing checks, want 2; requests %q", n, a.Requests())
	}

	// An instance registered by other means: no node_name, no address
	// (the Consul node's is used). Critical instances are left out.
	a.Add(consultest.Registration{ID: "by-hand", Name: "forge-consensus", Port: 7009, Check: &consultest.Check{CheckID: "service:by-hand"}}, "passing")
	a.Add(consultest.Registration{ID: "sick", Name: "forge-consensus", Address: "10.0.0.8", Port: 7008, Meta: map[string]string{"node_name": "sick"}, Check: &consultest.Check{CheckID: "service:sick"}}, "critical")
	a.Add(consultest.Registration{ID: "other", Name: "other-service", Address: "10.0.0.7", Port: 7007, Check: &consultest.Check{CheckID: "service:other"}}, "passing")
	expect(t, "with instances registered by hand", lookup(t, s), "10.9.0.1:7009", "n1@10.0.0.1:7001", "n2@10.0.0.2:7002")

	// A tag keeps clusters sharing a service name apart.
	tagged := newSource(t, a, consul.Config{Tag: "cluster-b"})
	register(t, tagged, context.Background(), n3)
	if _, ok := a.Instance("forge-consensus-cluster-b-node-3"); !ok {
		t.Fatalf("no instance forge-consensus-cluster-b-node-3; requests: %q", a.Requests())
	}
	expect(t, "tagged", lookup(t, tagged), "node-3@db3.example.com:7003")
	expect(t, "untagged sees all", lookup(t, s), "10.9.0.1:7009", "n1@10.0.0.1:7001", "n2@10.0.0.2:7002", "node-3@db3.example.com:7003")

	// Another service name, another datacenter.
	expect(t, "other service", lookup(t, newSource(t, a, consul.Config{ServiceName: "other-service"})), "10.0.0.7:7007")
	expect(t, "datacenter dc1", lookup(t, newSource(t, a, consul.Config{Datacenter: "dc1"})), "10.9.0.1:7009", "n1@10.0.0.1:7001", "n2@10.0.0.2:7002", "node-3@db3.example.com:7003")
	if _, err := newSource(t, a, consul.Config{Datacenter: "dc2"}).Lookup(context.Background()); err == nil || !strings.Contains(err.Error(), "No path to datacenter") {
		t.Errorf("Lookup in an unknown datacenter: %v", err)
	}

	// Bad candidates are refused before Consul is asked.
	for _, c := range []discovery.Candidate{{Host: "10.0.0.1", Port: 1}, {Name: "x y", Host: "h", Port: 1}, {Name: "a", Port: 1}, {Name: "a", Host: "h"}, {Name: "a", Host: "h", Port: 65536}} {
		if _, err := s.Register(context.Background(), c); err == nil {
			t.Errorf("Register(%+v): no error", c)
		}
	}
}

func TestTTLLapses(t *testing.T) {
	noConsulEnv(t)
	a := consultest.NewAgent(t, "")
	short := newSource(t, a, consul.Config{CheckTTL: time.Second})
	long := newSource(t, a, consul.Config{})
	register(t, long, context.Background(), n2)
	ctx, cancel := context.WithCancel(context.Background())
	register(t, short, ctx, n1)

	// The keep-alive passes the check (and keeps doing so past its TTL).
	a.WaitFor("n1's check passed twice", func() bool { return a.Updates("service:forge-consensus-n1") >= 2 })
	if st := a.Status("forge-consensus-n1"); st != "passing" {
		t.Fatalf("n1 is %q while kept alive", st)
	}
	expect(t, "both kept", lookup(t, long), "n1@10.0.0.1:7001", "n2@10.0.0.2:7002")

	// The node goes away without deregistering: its check lapses.
	cancel()
	a.WaitFor("n1's check to turn critical", func() bool {
		return a.Status("forge-consensus-n1") == "critical"
	})
	expect(t, "n1 lapsed", lookup(t, long), "n2@10.0.0.2:7002")
	if n := a.Count("PUT /v1/agent/service/deregister/"); n != 0 {
		t.Errorf("%d deregistrations after the context ended, want 0 (the registration lapses)", n)
	}
	if _, ok := a.Instance("forge-consensus-n1"); !ok {
		t.Error("n1's instance is gone; it should only be critical")
	}
}

func TestStopDeregisters(t *testing.T) {
	noConsulEnv(t)
	a := consultest.NewAgent(t, "")
	s := newSource(t, a, consul.Config{})
	stop := register(t, s, context.Background(), n1)
	register(t, s, context.Background(), n2)
	expect(t, "both", lookup(t, s), "n1@10.0.0.1:7001", "n2@10.0.0.2:7002")
	stop()
	if _, ok := a.Instance("forge-consensus-n1"); ok {
		t.Fatal("n1 still registered after stop")
	}
	expect(t, "after stop", lookup(t, s), "n2@10.0.0.2:7002")
	stop()
	if n := a.Count("PUT /v1/agent/service/deregister/forge-consensus-n1"); n != 1 {
		t.Errorf("%d deregistrations of n1, want 1", n)
	}

	// stop after the context ended still deregisters.
	ctx, cancel := context.WithCancel(context.Background())
	stop3 := register(t, s, ctx, n3)
	cancel()
	stop3()
	if _, ok := a.Instance("forge-consensus-node-3"); ok {
		t.Fatal("node-3 still registered after stop")
	}
}

func TestChanges(t *testing.T) {
	noConsulEnv(t)
	a := consultest.NewAgent(t, "")
	s := newSource(t, a, consul.Config{})
	watcher := newSource(t, a, consul.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := watcher.Changes(ctx)
	receive(t, ch, "the first answer")

	// The watch blocks at the service's index, and does not fire when
	// the query returns without a change (wait elapsed).
	parked := func(n int) {
		a.WaitFor(fmt.Sprintf("%d blocking queries", n), func() bool { return len(a.Parked()) >= n })
	}
	parked(1)
	nothing(t, ch, "nothing changed")
	a.Kick()
	parked(2)
	nothing(t, ch, "woken without a change")

	// A registration returns the blocked query at once.
	register(t, s, context.Background(), n1)
	receive(t, ch, "n1 registered")
	expect(t, "after the change", lookup(t, watcher), "n1@10.0.0.1:7001")

	// An index that goes backwards restarts the watch from index 0,
	// which does not block, then blocks at the new index.
	parked(3)
	before := len(a.Requests())
	a.Restore(3)
	a.WaitFor("a query without an index after the restore", func() bool {
		return slices.ContainsFunc(a.Requests()[before:], func(r string) bool {
			return strings.HasPrefix(r, "GET /v1/health/service/forge-consensus?") && !strings.Contains(r, "index=")
		})
	})
	parked(4)
	if p := a.Parked(); p[len(p)-1] != 3 {
		t.Fatalf("parked at index %d after the restore, want 3", p[len(p)-1])
	}
	nothing(t, ch, "restored without a change of candidates")
	register(t, s, context.Background(), n2)
	receive(t, ch, "n2 registered after the restore")

	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			_, ok = <-ch
		}
		if ok {
			t.Fatal("channel still open after the context ended")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("channel not closed after the context ended")
	}
}

func TestChangesRetriesErrors(t *testing.T) {
	noConsulEnv(t)
	a := consultest.NewAgent(t, "")
	a.SetFailHealth(2)
	s := newSource(t, a, consul.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Changes(ctx)
	receive(t, ch, "the first answer after two failures")
	if n := a.Count("GET /v1/health/service/"); n < 3 {
		t.Fatalf("%d health queries, want at least 3", n)
	}
	register(t, s, context.Background(), n1)
	receive(t, ch, "n1 registered")
}

func TestAgentRestart(t *testing.T) {
	noConsulEnv(t)
	a := consultest.NewAgent(t, "")
	s := newSource(t, a, consul.Config{CheckTTL: time.Second})
	register(t, s, context.Background(), n1)
	a.Restart()
	expect(t, "forgotten by the agent", lookup(t, s))
	a.WaitFor("n1 registered again", func() bool {
		return a.Registers("forge-consensus-n1") == 2 && a.Status("forge-consensus-n1") == "passing"
	})
	expect(t, "registered again", lookup(t, s), "n1@10.0.0.1:7001")
	if err := s.LastError(); err != nil {
		t.Fatalf("LastError after re-registering: %v", err)
	}

	// The agent forgets it again and refuses registrations for a while:
	// the keep-alive's error surfaces through LastError and Lookup.
	a.SetFailRegister(http.StatusInternalServerError)
	a.Restart()
	a.WaitFor("two failed registrations", func() bool { return a.Registers("forge-consensus-n1") >= 4 })
	err := s.LastError()
	if err == nil || !strings.Contains(err.Error(), "keeping the registration forge-consensus-n1") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("LastError while registrations fail: %v", err)
	}
	if _, lerr := s.Lookup(context.Background()); lerr == nil || !strings.Contains(lerr.Error(), "keeping the registration forge-consensus-n1") {
		t.Fatalf("Lookup while registrations fail: %v", lerr)
	}
	a.SetFailRegister(0)
	a.WaitFor("n1 registered and passed again", func() bool {
		return a.Updates("service:forge-consensus-n1") > 0 && a.Status("forge-consensus-n1") == "passing"
	})
	// The keep-alive cleared its error before its next pass; wait for a
	// pass after the registration that succeeded.
	passes := a.Updates("service:forge-consensus-n1")
	a.WaitFor("another pass", func() bool { return a.Updates("service:forge-consensus-n1") > passes })
	if err := s.LastError(); err != nil {
		t.Fatalf("LastError after recovering: %v", err)
	}
	expect(t, "recovered", lookup(t, s), "n1@10.0.0.1:7001")
}

func TestToken(t *testing.T) {
	noConsulEnv(t)
	a := consultest.NewAgent(t, "s3cret")

	none := newSource(t, a, consul.Config{})
	_, err := none.Lookup(context.Background())
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "discovery.consul_token") {
		t.Fatalf("Lookup without a token: %v", err)
	}
	if _, err := none.Register(context.Background(), n1); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "service:write") {
		t.Fatalf("Register without a token: %v", err)
	}

	_, err = newSource(t, a, consul.Config{Token: "wrong"}).Lookup(context.Background())
	if err == nil || !strings.Contains(err.Error(), "ACL not found") {
		t.Fatalf("Lookup with a wrong token: %v", err)
	}

	s := newSource(t, a, consul.Config{Token: "s3cret"})
	register(t, s, context.Background(), n1)
	expect(t, "with the token", lookup(t, s), "n1@10.0.0.1:7001")

	// "" takes CONSUL_HTTP_TOKEN, as Consul's own tools do.
	t.Setenv("CONSUL_HTTP_TOKEN", "s3cret")
	expect(t, "with CONSUL_HTTP_TOKEN", lookup(t, newSource(t, a, consul.Config{})), "n1@10.0.0.1:7001")
}

func TestConfig(t *testing.T) {
	noConsulEnv(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  consul.Config
		want string
	}{
		{consul.Config{Address: "localhost"}, "discovery.consul_address"},
		{consul.Config{Address: "localhost:0"}, "discovery.consul_address"},
		{consul.Config{Address: ":8500"}, "discovery.consul_address"},
		{consul.Config{Address: "ftp://h:1"}, "discovery.consul_address"},
		{consul.Config{Address: "http://h:8500/v1"}, "discovery.consul_address"},
		{consul.Config{Address: "unix://relative"}, "discovery.consul_address"},
		{consul.Config{Scheme: "tcp"}, "discovery.consul_scheme"},
		{consul.Config{Address: "http://h:8500", Scheme: "https"}, "discovery.consul_scheme"},
		{consul.Config{TLS: consul.TLSConfig{CAFile: "/x"}}, "discovery.consul_tls"},
		{consul.Config{Scheme: "https", TLS: consul.TLSConfig{CertFile: "/x"}}, "discovery.consul_tls.cert_file and discovery.consul_tls.key_file"},
		{consul.Config{Scheme: "https", TLS: consul.TLSConfig{CAFile: dir + "/missing.pem"}}, "discovery.consul_tls.ca_file"},
		{consul.Config{Scheme: "https", TLS: consul.TLSConfig{CAFile: writeFile(t, dir, "bad.pem", "not a certificate")}}, "discovery.consul_tls"},
		{consul.Config{Token: " t"}, "discovery.consul_token"},
		{consul.Config{ServiceName: "forge_consensus"}, "discovery.service_name"},
		{consul.Config{ServiceName: "-x"}, "discovery.service_name"},
		{consul.Config{ServiceName: strings.Repeat("a", 64)}, "discovery.service_name"},
		{consul.Config{Datacenter: "dc 1"}, "discovery.consul_datacenter"},
		{consul.Config{Tag: "a/b"}, "discovery.consul_tag"},
		{consul.Config{CheckTTL: 500 * time.Millisecond}, "discovery.consul_check_ttl"},
		{consul.Config{DeregisterAfter: 30 * time.Second}, "discovery.consul_deregister_after"},
		{consul.Config{Timeout: -1}, "timeout"},
		{consul.Config{WatchWait: 11 * time.Minute}, "wait"},
	} {
		_, err := consul.New(tc.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	for _, cfg := range []consul.Config{
		{},
		{Address: "consul.service.example:8501", Scheme: "https", TLS: consul.TLSConfig{ServerName: "consul.example"}},
		{Address: "https://[fd00::1]:8501"},
		{Address: "http://127.0.0.1:8500", Scheme: "http"},
		{Address: "unix:///run/consul/http.sock"},
		{ServiceName: "raft", Tag: "cluster.a_1", Datacenter: "eu-west_1", CheckTTL: time.Second, DeregisterAfter: time.Hour, WatchWait: 10 * time.Minute},
	} {
		if _, err := consul.New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
	s, err := consul.New(consul.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind() != "consul" || s.ServiceID("n1") != "forge-consensus-n1" || s.CheckID("n1") != "service:forge-consensus-n1" {
		t.Errorf("Kind %q, ServiceID %q, CheckID %q", s.Kind(), s.ServiceID("n1"), s.CheckID("n1"))
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := dir + "/" + name
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRealAgent runs against a real Consul agent when CONSUL_HTTP_ADDR
// names one (e.g. `consul agent -dev`, CONSUL_HTTP_ADDR=127.0.0.1:8500).
func TestRealAgent(t *testing.T) {
	addr := os.Getenv("CONSUL_HTTP_ADDR")
	if addr == "" {
		t.Skip("CONSUL_HTTP_ADDR is not set: no real Consul agent to test against (the stand-in tests cover the mechanism; CI runs no Consul agent, so this skips there too)")
	}
	service := "forge-consensus-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s, err := consul.New(consul.Config{Address: addr, ServiceName: service, Tag: "test", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Changes(ctx)
	receive(t, ch, "the first answer")
	stop1 := register(t, s, context.Background(), discovery.Candidate{Name: "n1", Host: "127.0.0.1", Port: 17001})
	register(t, s, context.Background(), discovery.Candidate{Name: "n2", Host: "127.0.0.2", Port: 17002})
	want := []string{"n1@127.0.0.1:17001", "n2@127.0.0.2:17002"}
	for !slices.Equal(lookup(t, s), want) { // the catalog follows the agent within moments
		receive(t, ch, "registrations")
	}
	stop1()
	for !slices.Equal(lookup(t, s), want[1:]) {
		receive(t, ch, "a deregistration")
	}
}
