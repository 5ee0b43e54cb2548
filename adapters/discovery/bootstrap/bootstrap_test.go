package bootstrap_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/discovery/bootstrap"
)

func mustNew(t *testing.T, cfg bootstrap.Config) *bootstrap.Node {
	t.Helper()
	n, err := bootstrap.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func hello(name string, member bool, promise ...string) bootstrap.Hello {
	return bootstrap.Hello{Name: name, ClusterID: "c", Member: member, Promise: promise}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  bootstrap.Config
		want string
	}{
		{bootstrap.Config{Expect: 3}, "no node name"},
		{bootstrap.Config{Name: "a"}, "discovery.bootstrap_expect"},
		{bootstrap.Config{Name: "a", Expect: 2, Promise: []string{"a"}}, "1 names"},
		{bootstrap.Config{Name: "a", Expect: 2, Promise: []string{"b", "a"}}, "not sorted"},
		{bootstrap.Config{Name: "a", Expect: 2, Promise: []string{"b", "c"}}, "a is not among"},
	} {
		if _, err := bootstrap.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", c.cfg, err, c.want)
		}
	}
}

func TestWaitsForExpectThenProposes(t *testing.T) {
	n := mustNew(t, bootstrap.Config{Name: "b", ClusterID: "c", Expect: 3})
	if d := n.Decide([]bootstrap.Hello{hello("a", false)}); d.Kind != bootstrap.Wait || !strings.Contains(d.Reason, "found 2 of 3") {
		t.Fatalf("two of three: %+v", d)
	}
	// Answers of another cluster_id and without a name are ignored.
	other := bootstrap.Hello{Name: "x", ClusterID: "other"}
	if d := n.Decide([]bootstrap.Hello{hello("a", false), other, {ClusterID: "c"}}); d.Kind != bootstrap.Wait || !strings.Contains(d.Reason, "another cluster_id: x") {
		t.Fatalf("foreign answer: %+v", d)
	}
	if n.Promise() != nil {
		t.Fatal("promised while waiting")
	}
	d := n.Decide([]bootstrap.Hello{hello("c", false), hello("a", false)})
	if d.Kind != bootstrap.Propose || !slices.Equal(d.Voters, []string{"a", "b", "c"}) {
		t.Fatalf("three of three: %+v", d)
	}
	if !slices.Equal(n.Promise(), []string{"a", "b", "c"}) || !slices.Equal(n.Ask().Propose, n.Promise()) {
		t.Fatalf("promise %v, ask %+v", n.Promise(), n.Ask())
	}
	// Not every promise yet.
	if d := n.Decide([]bootstrap.Hello{hello("a", false, "a", "b", "c"), hello("c", false)}); d.Kind != bootstrap.Wait || !strings.Contains(d.Reason, "promise of c") {
		t.Fatalf("one promise missing: %+v", d)
	}
	// Every promise, one of them from a node that already bootstrapped.
	d = n.Decide([]bootstrap.Hello{hello("a", false, "a", "b", "c"), hello("c", true, "a", "b", "c")})
	if d.Kind != bootstrap.Bootstrap || !slices.Equal(d.Voters, []string{"a", "b", "c"}) {
		t.Fatalf("all promised: %+v", d)
	}
}

func TestMoreThanExpectWaits(t *testing.T) {
	n := mustNew(t, bootstrap.Config{Name: "a", ClusterID: "c", Expect: 2})
	d := n.Decide([]bootstrap.Hello{hello("b", false), hello("c", false)})
	if d.Kind != bootstrap.Wait || !strings.Contains(d.Reason, "more than bootstrap_expect") || n.Promise() != nil {
		t.Fatalf("%+v, promise %v", d, n.Promise())
	}
}

func TestPromisesOneSetOnly(t *testing.T) {
	n := mustNew(t, bootstrap.Config{Name: "b", ClusterID: "c", Expect: 3})
	for _, a := range []bootstrap.Ask{
		{From: "x", ClusterID: "other", Propose: []string{"a", "b", "c"}}, // another cluster
		{From: "a", ClusterID: "c", Propose: []string{"a", "c", "d"}},     // without b
		{From: "a", ClusterID: "c", Propose: []string{"a", "b"}},          // too few
		{From: "a", ClusterID: "c", Propose: []string{"c", "b", "a"}},     // not sorted
		{From: "a", ClusterID: "c"},                                       // nothing proposed
	} {
		if h, changed := n.Answer(a); changed || h.Promise != nil {
			t.Fatalf("Answer(%+v) promised %v", a, h.Promise)
		}
	}
	h, changed := n.Answer(bootstrap.Ask{From: "a", ClusterID: "c", Propose: []string{"a", "b", "c"}})
	if !changed || !slices.Equal(h.Promise, []string{"a", "b", "c"}) || h.Name != "b" {
		t.Fatalf("first valid ask: %+v, %t", h, changed)
	}
	h, changed = n.Answer(bootstrap.Ask{From: "d", ClusterID: "c", Propose: []string{"b", "c", "d"}})
	if changed || !slices.Equal(h.Promise, []string{"a", "b", "c"}) {
		t.Fatalf("second set: %+v, %t", h, changed)
	}
	// A restart keeps the promise.
	r := mustNew(t, bootstrap.Config{Name: "b", ClusterID: "c", Expect: 3, Promise: n.Promise()})
	if _, changed := r.Answer(bootstrap.Ask{From: "d", ClusterID: "c", Propose: []string{"b", "c", "d"}}); changed {
		t.Fatal("a restarted node promised a second set")
	}
}

func TestMemberNeverPromises(t *testing.T) {
	n := mustNew(t, bootstrap.Config{Name: "b", ClusterID: "c", Expect: 3, Member: true})
	if h, changed := n.Answer(bootstrap.Ask{From: "a", ClusterID: "c", Propose: []string{"a", "b", "c"}}); changed || !h.Member || h.Promise != nil {
		t.Fatalf("%+v, %t", h, changed)
	}
	if d := n.Decide(nil); d.Kind != bootstrap.Wait {
		t.Fatalf("a member decided %+v", d)
	}
}

func TestJoinsAnExistingCluster(t *testing.T) {
	n := mustNew(t, bootstrap.Config{Name: "d", ClusterID: "c", Expect: 3})
	d := n.Decide([]bootstrap.Hello{hello("b", true, "a", "b", "c"), hello("a", true, "a", "b", "c"), hello("e", false)})
	if d.Kind != bootstrap.Join || !slices.Equal(d.Via, []string{"a", "b"}) {
		t.Fatalf("%+v", d)
	}
}

func TestGivesUpAPromiseThatCannotComplete(t *testing.T) {
	n := mustNew(t, bootstrap.Config{Name: "d", ClusterID: "c", Expect: 3})
	if _, changed := n.Answer(bootstrap.Ask{From: "b", ClusterID: "c", Propose: []string{"b", "c", "d"}}); !changed {
		t.Fatal("no promise")
	}
	// A member that formed another cluster, but is not in our set: our
	// set could still complete; keep waiting.
	if d := n.Decide([]bootstrap.Hello{hello("a", true, "a", "e", "f"), hello("b", false, "b", "c", "d")}); d.Kind != bootstrap.Wait || n.Promise() == nil {
		t.Fatalf("member outside the set: %+v", d)
	}
	// c, of our set, is a member of a cluster formed from another set:
	// ours can never complete.
	d := n.Decide([]bootstrap.Hello{hello("c", true, "a", "b", "c"), hello("b", false, "b", "c", "d")})
	if d.Kind != bootstrap.Join || n.Promise() != nil || !strings.Contains(d.Reason, "giving the promise up") || !strings.Contains(d.Reason, "b,c,d") {
		t.Fatalf("member inside the set: %+v, promise %v", d, n.Promise())
	}
}
