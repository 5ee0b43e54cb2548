package etcd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/forge-consensus/consensus/adapters/discovery"
)

// wait bounds every wait for something etcd does in the background (a
// lease expiring, a watch event arriving, a restart being noticed).
const wait = 30 * time.Second

func lookup(t *testing.T, src *Source) []discovery.Candidate {
	t.Helper()
	cs, err := src.Lookup(context.Background())
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return cs
}

func register(t *testing.T, src *Source, c discovery.Candidate) func() {
	t.Helper()
	stop, err := src.Register(context.Background(), c)
	if err != nil {
		t.Fatalf("Register %v: %v", c, err)
	}
	t.Cleanup(stop)
	return stop
}

func TestRegisterLookup(t *testing.T) {
	srv := startEtcd(t, false)
	n1 := newSource(t, srv.config(0))
	n2 := newSource(t, srv.config(0))
	reader := newSource(t, srv.config(0))
	other := srv.config(0)
	other.ClusterID = "other"
	otherCluster := newSource(t, other)

	if got := lookup(t, reader); len(got) != 0 {
		t.Fatalf("Lookup before any registration = %v, want none", got)
	}
	register(t, n1, discovery.Candidate{Name: "node-b", Host: "10.0.0.2", Port: 7002})
	register(t, n2, discovery.Candidate{Name: "node-a", Host: "10.0.0.1", Port: 7001})

	want := []discovery.Candidate{
		{Name: "node-a", Host: "10.0.0.1", Port: 7001},
		{Name: "node-b", Host: "10.0.0.2", Port: 7002},
	}
	for _, src := range []*Source{reader, n1, n2} {
		if got := lookup(t, src); !slices.Equal(got, want) {
			t.Errorf("Lookup = %v, want %v", got, want)
		}
	}
	if got := lookup(t, otherCluster); len(got) != 0 {
		t.Errorf("another cluster_id's Lookup = %v, want none", got)
	}

	// The record is where the package doc says, as it says.
	c := srv.client()
	defer c.Close()
	resp, err := c.Get(context.Background(), "/forge-consensus/test/node-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{"name":"node-a","host":"10.0.0.1","port":7001}` || resp.Kvs[0].Lease == 0 {
		t.Errorf("key /forge-consensus/test/node-a = %v, want the JSON record with a lease", resp.Kvs)
	}
}

func TestStopWithdrawsAtOnce(t *testing.T) {
	srv := startEtcd(t, false)
	src := newSource(t, srv.config(0)) // TTL 10 s: only a revoke removes the key within the test
	stopA := register(t, src, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	register(t, src, discovery.Candidate{Name: "b", Host: "10.0.0.2", Port: 7000})
	if got := lookup(t, src); len(got) != 2 {
		t.Fatalf("Lookup = %v, want a and b", got)
	}
	stopA()
	stopA() // again: nothing
	want := []discovery.Candidate{{Name: "b", Host: "10.0.0.2", Port: 7000}}
	if got := lookup(t, src); !slices.Equal(got, want) {
		t.Fatalf("Lookup right after stop = %v, want %v", got, want)
	}
}

func TestRegisterEndsWithContext(t *testing.T) {
	srv := startEtcd(t, false)
	src := newSource(t, srv.config(time.Minute)) // longer than wait: only a revoke removes the key in time
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := src.Register(ctx, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, "registration withdrawn after its context ended", wait, func() error {
		if got := lookup(t, src); len(got) != 0 {
			return fmt.Errorf("Lookup = %v", got)
		}
		return nil
	})
	stop()
}

func TestDeadNodeExpiresAfterTTL(t *testing.T) {
	srv := startEtcd(t, false)
	dying := newSource(t, srv.config(MinTTL))
	reader := newSource(t, srv.config(0))
	register(t, dying, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})

	c := srv.client()
	defer c.Close()
	resp, err := c.Get(context.Background(), dying.Prefix()+"a")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get the record: %v %v", resp, err)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)

	// Close drops the connection without revoking, as a node that dies.
	if err := dying.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ttl, err := c.TimeToLive(context.Background(), lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL <= 0 {
		t.Fatalf("lease TTL right after Close = %d s: Close revoked the registration, or it expired within the %v TTL", ttl.TTL, MinTTL)
	}
	waitFor(t, "a dead node's registration expires", wait, func() error {
		if got := lookup(t, reader); len(got) != 0 {
			return fmt.Errorf("Lookup = %v", got)
		}
		return nil
	})
}

func TestChanges(t *testing.T) {
	srv := startEtcd(t, false)
	src := newSource(t, srv.config(0))
	watcher := newSource(t, srv.config(0))
	lookup(t, watcher) // Changes signals what changed after it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := watcher.Changes(ctx)

	stop := register(t, src, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	receive(t, "register", ch, wait)
	if got := lookup(t, watcher); len(got) != 1 {
		t.Fatalf("Lookup after the signal = %v, want a", got)
	}
	stop()
	receive(t, "deregister", ch, wait)
	if got := lookup(t, watcher); len(got) != 0 {
		t.Fatalf("Lookup after the signal = %v, want none", got)
	}
	// A key written behind the Source's back is a change too.
	c := srv.client()
	defer c.Close()
	if _, err := c.Put(context.Background(), watcher.Prefix()+"b", "{}"); err != nil {
		t.Fatal(err)
	}
	receive(t, "a put under the prefix", ch, wait)

	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// A signal may still have been waiting; the next receive must see the close.
			if _, ok := <-ch; ok {
				t.Fatal("Changes channel still open after its context ended")
			}
		}
	case <-time.After(wait):
		t.Fatal("Changes channel not closed after its context ended")
	}
}

func TestSameNameReplaces(t *testing.T) {
	srv := startEtcd(t, false)
	old := newSource(t, srv.config(0))
	restarted := newSource(t, srv.config(0))
	stopOld := register(t, old, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	register(t, restarted, discovery.Candidate{Name: "a", Host: "10.0.0.9", Port: 7000})
	want := []discovery.Candidate{{Name: "a", Host: "10.0.0.9", Port: 7000}}
	if got := lookup(t, old); !slices.Equal(got, want) {
		t.Fatalf("Lookup = %v, want %v: the latest registration wins", got, want)
	}
	// The old registration's withdrawal does not remove the new one.
	stopOld()
	if got := lookup(t, old); !slices.Equal(got, want) {
		t.Fatalf("Lookup after the old registration's stop = %v, want %v", got, want)
	}
}

func TestEtcdRestart(t *testing.T) {
	srv := startEtcd(t, false)
	src := newSource(t, srv.config(MinTTL))
	watcher := newSource(t, srv.config(MinTTL))
	lookup(t, watcher) // Changes signals what changed after it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := watcher.Changes(ctx)

	register(t, src, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	receive(t, "register", ch, wait) // the only change before the kill: nothing waits now
	c := srv.client()
	defer c.Close()
	resp, err := c.Get(context.Background(), src.Prefix()+"a")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get the record: %v %v", resp, err)
	}
	firstLease := resp.Kvs[0].Lease

	srv.kill()
	waitFor(t, "the registration's loss reported", wait, func() error {
		if src.RegistrationErr() == nil {
			return errNotYet
		}
		return nil
	})
	if _, err := src.Lookup(context.Background()); err == nil {
		t.Fatal("Lookup with etcd down and the registration lost: no error")
	}
	t.Logf("while etcd is down: %v", src.RegistrationErr())

	srv.start() // same data directory and ports
	waitFor(t, "registered again under a new lease", wait, func() error {
		got, err := src.Lookup(context.Background())
		if err != nil {
			return err
		}
		if want := []discovery.Candidate{{Name: "a", Host: "10.0.0.1", Port: 7000}}; !slices.Equal(got, want) {
			return fmt.Errorf("Lookup = %v, want %v", got, want)
		}
		resp, err := c.Get(context.Background(), src.Prefix()+"a")
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1 || resp.Kvs[0].Lease == firstLease {
			return fmt.Errorf("record %v still under the first lease %x", resp.Kvs, firstLease)
		}
		return nil
	})
	// The put again after the restart reaches the watch made before it.
	receive(t, "the registration put again after the restart", ch, wait)
	register(t, src, discovery.Candidate{Name: "b", Host: "10.0.0.2", Port: 7000})
	receive(t, "a registration after the restart", ch, wait)
	if got := lookup(t, watcher); len(got) != 2 {
		t.Fatalf("Lookup = %v, want a and b", got)
	}
}

func TestMalformedSkipped(t *testing.T) {
	srv := startEtcd(t, false)
	src := newSource(t, srv.config(0))
	register(t, src, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	c := srv.client()
	defer c.Close()
	p := src.Prefix()
	for k, v := range map[string]string{
		p + "good":                 `{"name":"good","host":"10.0.0.3","port":7003}`,
		p + "notjson":              `node at 10.0.0.4`,
		p + "mismatch":             `{"name":"other","host":"10.0.0.5","port":7000}`,
		p + "noport":               `{"name":"noport","host":"10.0.0.6"}`,
		p + "nohost":               `{"name":"nohost","port":7000}`,
		p + "deep/key":             `{"name":"deep/key","host":"10.0.0.7","port":7000}`,
		p + "-badname":             `{"name":"-badname","host":"10.0.0.8","port":7000}`,
		p + "bigport":              `{"name":"bigport","host":"10.0.0.9","port":70000}`,
		"/forge-consensus/testx/z": `garbage of another cluster`,
	} {
		if _, err := c.Put(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	want := []discovery.Candidate{
		{Name: "a", Host: "10.0.0.1", Port: 7000},
		{Name: "good", Host: "10.0.0.3", Port: 7003},
	}
	if got := lookup(t, src); !slices.Equal(got, want) {
		t.Fatalf("Lookup = %v, want %v", got, want)
	}
	if got := src.Malformed(); got != 7 {
		t.Errorf("Malformed() = %d, want 7", got)
	}
}

func TestRegisterRefuses(t *testing.T) {
	srv := startEtcd(t, false)
	src := newSource(t, srv.config(0))
	for _, c := range []discovery.Candidate{
		{Name: "", Host: "10.0.0.1", Port: 7000},
		{Name: "a/b", Host: "10.0.0.1", Port: 7000},
		{Name: "a", Host: "", Port: 7000},
		{Name: "a", Host: "10.0.0.1", Port: 0},
		{Name: "a", Host: "10.0.0.1", Port: 65536},
	} {
		if _, err := src.Register(context.Background(), c); err == nil {
			t.Errorf("Register(%+v): no error", c)
		}
	}
	if got := lookup(t, src); len(got) != 0 {
		t.Errorf("Lookup = %v, want none", got)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := []string{"http://127.0.0.1:2379"}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"no endpoints", Config{}, "discovery.etcd_endpoints"},
		{"empty endpoint", Config{Endpoints: []string{""}}, "discovery.etcd_endpoints"},
		{"no port", Config{Endpoints: []string{"http://10.0.0.1"}}, "discovery.etcd_endpoints"},
		{"bad scheme", Config{Endpoints: []string{"grpc://10.0.0.1:2379"}}, "discovery.etcd_endpoints"},
		{"path", Config{Endpoints: []string{"http://10.0.0.1:2379/v3"}}, "discovery.etcd_endpoints"},
		{"mixed schemes", Config{Endpoints: []string{"http://a:2379", "https://b:2379"}}, "discovery.etcd_endpoints"},
		{"prefix with space", Config{Endpoints: ok, Prefix: "/forge consensus/"}, "discovery.prefix"},
		{"cluster id with slash", Config{Endpoints: ok, ClusterID: "a/b"}, "cluster_id"},
		{"short ttl", Config{Endpoints: ok, TTL: time.Second}, "discovery.etcd_ttl"},
		{"fractional ttl", Config{Endpoints: ok, TTL: 2500 * time.Millisecond}, "discovery.etcd_ttl"},
		{"negative dial timeout", Config{Endpoints: ok, DialTimeout: -time.Second}, "discovery.etcd_dial_timeout"},
		{"password only", Config{Endpoints: ok, Password: "x"}, "discovery.etcd_username"},
		{"username only", Config{Endpoints: ok, Username: "x"}, "discovery.etcd_password"},
		{"missing ca file", Config{Endpoints: ok, CAFile: filepath.Join(dir, "none.pem")}, "discovery.etcd_tls.ca_file"},
		{"ca file not pem", Config{Endpoints: []string{"https://a:2379"}, CAFile: notPEM}, "discovery.etcd_tls.ca_file"},
		{"cert without key", Config{Endpoints: ok, CertFile: notPEM}, "discovery.etcd_tls.key_file"},
		{"key without cert", Config{Endpoints: ok, KeyFile: notPEM}, "discovery.etcd_tls.cert_file"},
		{"bad key pair", Config{Endpoints: []string{"https://a:2379"}, CertFile: notPEM, KeyFile: notPEM}, "discovery.etcd_tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := New(tc.cfg)
			if err == nil {
				src.Close()
				t.Fatalf("New(%+v): no error", tc.cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want it to name %s", err, tc.want)
			}
		})
	}

	// http:// endpoints with TLS settings contradict each other.
	srv := &testServer{t: t}
	srv.tls = newTestTLS(t)
	_, err := New(Config{Endpoints: ok, CAFile: srv.tls.caFile})
	if err == nil || !strings.Contains(err.Error(), "discovery.etcd_endpoints") {
		t.Errorf("New with http:// and a CA file: %v, want an error naming discovery.etcd_endpoints", err)
	}

	// Defaults.
	for _, tc := range []struct{ prefix, cluster, want string }{
		{"", "default", "/forge-consensus/default/"},
		{"/apps/raft", "c1", "/apps/raft/c1/"},
		{"/apps/raft/", "", "/apps/raft/"},
	} {
		src, err := New(Config{Endpoints: ok, Prefix: tc.prefix, ClusterID: tc.cluster})
		if err != nil {
			t.Fatal(err)
		}
		if got := src.Prefix(); got != tc.want {
			t.Errorf("prefix %q, cluster %q: keys under %q, want %q", tc.prefix, tc.cluster, got, tc.want)
		}
		if src.ttl != 10 || src.timeout != DefaultDialTimeout {
			t.Errorf("TTL %d s, timeout %v; want the defaults", src.ttl, src.timeout)
		}
		src.Close()
	}
}

func TestTLS(t *testing.T) {
	srv := startEtcd(t, true)
	cfg := srv.config(0)
	cfg.CAFile, cfg.CertFile, cfg.KeyFile = srv.tls.caFile, srv.tls.clientCert, srv.tls.clientKey
	src := newSource(t, cfg)
	register(t, src, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	if got := lookup(t, src); len(got) != 1 {
		t.Fatalf("Lookup over TLS = %v, want a", got)
	}

	// Without a client certificate etcd refuses the connection.
	noCert := srv.config(0)
	noCert.CAFile = srv.tls.caFile
	noCert.DialTimeout = 2 * time.Second
	src2 := newSource(t, noCert)
	if got, err := src2.Lookup(context.Background()); err == nil {
		t.Fatalf("Lookup without a client certificate = %v, no error", got)
	}
}

func TestCompactedWatchSignalsAndResumes(t *testing.T) {
	srv := startEtcd(t, false)
	src := newSource(t, srv.config(0))
	c := srv.client()
	defer c.Close()
	var rev int64
	for i := range 3 {
		resp, err := c.Put(context.Background(), src.Prefix()+"x", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	// The compaction's revision is a key outside the prefix, so the
	// watch resumed there has nothing to report until the put below.
	resp, err := c.Put(context.Background(), "/elsewhere", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A watch from a compacted revision: as a watch that fell behind
	// while etcd compacted, or that resumes after a long outage.
	ch := src.changes(ctx, rev-1)
	receive(t, "compacted watch", ch, wait)
	if _, err := c.Put(context.Background(), src.Prefix()+"y", "{}"); err != nil {
		t.Fatal(err)
	}
	receive(t, "a put after the compaction", ch, wait)
}

func TestAuth(t *testing.T) {
	srv := startEtcd(t, false)
	ctx := context.Background()
	c := srv.client()
	defer c.Close()
	prefix := "/forge-consensus/test/"
	for _, step := range []func() error{
		func() error { _, err := c.RoleAdd(ctx, "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, "node"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "node", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, "node", "secret"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "node", "node"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up etcd auth: %v", err)
		}
	}

	cfg := srv.config(0)
	cfg.Username, cfg.Password = "node", "secret"
	src := newSource(t, cfg)
	// With a user name the watch is set up only after an authentication
	// (bcrypt on etcd's side): Changes must still signal a change made
	// right after it returns, which came after the Lookup.
	lookup(t, src)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := src.Changes(wctx)
	stop := register(t, src, discovery.Candidate{Name: "a", Host: "10.0.0.1", Port: 7000})
	receive(t, "register with auth", ch, wait)
	if got := lookup(t, src); len(got) != 1 {
		t.Fatalf("Lookup with auth = %v, want a", got)
	}
	stop()
	if got := lookup(t, src); len(got) != 0 {
		t.Fatalf("Lookup after stop with auth = %v, want none", got)
	}

	for _, tc := range []struct{ name, user, password string }{
		{"no credentials", "", ""},
		{"wrong password", "node", "wrong"},
	} {
		cfg := srv.config(0)
		cfg.Username, cfg.Password = tc.user, tc.password
		cfg.DialTimeout = 2 * time.Second
		src, err := New(cfg)
		if err != nil {
			continue // refused at once: fine
		}
		t.Cleanup(func() { _ = src.Close() })
		if got, err := src.Lookup(ctx); err == nil {
			t.Errorf("%s: Lookup = %v, no error", tc.name, got)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}
