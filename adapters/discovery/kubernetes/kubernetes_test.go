package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/forge-consensus/consensus/adapters/discovery"
)

// waitLimit only turns a hang into a failure; no assertion depends on
// timing.
const waitLimit = 30 * time.Second

const (
	testNS  = "prod"
	testSvc = "consensus"
)

// quiet drops the watch's logs.
var quiet = slog.New(slog.DiscardHandler)

func ptr[T any](v T) *T { return &v }

// ep is an endpoint of pod at ip; ready nil leaves the condition unset.
func ep(pod, ip string, ready *bool, terminating bool) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ready},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: pod},
	}
	if terminating {
		e.Conditions.Terminating = ptr(true)
	}
	return e
}

func readyEP(pod, ip string) discoveryv1.Endpoint { return ep(pod, ip, ptr(true), false) }

// slice is an EndpointSlice of service svc in ns with the ports raft
// (7000), api (7100) and admin (7101).
func slice(ns, svc, name string, at discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: at,
		Endpoints:   eps,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("api"), Port: ptr[int32](7100)},
			{Name: ptr("raft"), Port: ptr[int32](7000)},
			{Name: ptr("admin"), Port: ptr[int32](7101)},
		},
	}
}

func newTest(t *testing.T, client *fake.Clientset, mod ...func(*Config)) *Kubernetes {
	t.Helper()
	cfg := Config{Namespace: testNS, ServiceName: testSvc, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		Logger: quiet}
	for _, m := range mod {
		m(&cfg)
	}
	k, err := NewWithClient(cfg, clientOf(client))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clientOf is the EndpointSlices API of a clientset.
func clientOf(client *fake.Clientset) func(string) EndpointSlices {
	return func(ns string) EndpointSlices { return client.DiscoveryV1().EndpointSlices(ns) }
}

func lookup(t *testing.T, k *Kubernetes) []discovery.Candidate {
	t.Helper()
	cs, err := k.Lookup(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func want(t *testing.T, got []discovery.Candidate, want ...discovery.Candidate) {
	t.Helper()
	if want == nil {
		want = []discovery.Candidate{}
	}
	if !slices.Equal(got, want) || got == nil {
		t.Fatalf("candidates:\n got %v\nwant %v", got, want)
	}
}

func c(name, host string) discovery.Candidate {
	return discovery.Candidate{Name: name, Host: host, Port: 7000}
}

func TestKind(t *testing.T) {
	if k := newTest(t, fake.NewClientset()); k.Kind() != "kubernetes" {
		t.Fatalf("Kind() = %q", k.Kind())
	}
}

func TestLookupAcrossSlices(t *testing.T) {
	client := fake.NewClientset(
		slice(testNS, testSvc, "consensus-b", discoveryv1.AddressTypeIPv4, readyEP("consensus-2", "10.0.0.12")),
		slice(testNS, testSvc, "consensus-a", discoveryv1.AddressTypeIPv4,
			readyEP("consensus-1", "10.0.0.11"), readyEP("consensus-0", "10.0.0.10")),
		// The placeholder slice the controller keeps for a Service without
		// endpoints: no ports, no endpoints.
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: testNS, Name: "consensus-c", Labels: map[string]string{discoveryv1.LabelServiceName: testSvc}},
			AddressType: discoveryv1.AddressTypeIPv4,
		},
	)
	want(t, lookup(t, newTest(t, client)), c("consensus-0", "10.0.0.10"), c("consensus-1", "10.0.0.11"), c("consensus-2", "10.0.0.12"))
}

func TestLookupNotReadyIncludedTerminatingSkipped(t *testing.T) {
	client := fake.NewClientset(slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4,
		ep("consensus-0", "10.0.0.10", ptr(false), false),                                          // not ready: still bootstrapping
		ep("consensus-1", "10.0.0.11", nil, false),                                                 // no condition: ready
		ep("consensus-2", "10.0.0.12", ptr(true), true),                                            // terminating
		ep("consensus-3", "10.0.0.13", ptr(false), true),                                           // terminating, not ready
		discoveryv1.Endpoint{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "consensus-4"}}, // no address
	))
	want(t, lookup(t, newTest(t, client)), c("consensus-0", "10.0.0.10"), c("consensus-1", "10.0.0.11"))
}

func TestLookupNames(t *testing.T) {
	client := fake.NewClientset(slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4,
		readyEP("consensus-0", "10.0.0.10"),
		// No pod: the hostname names it.
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.11"}, Hostname: ptr("db-1")},
		// A reference to something other than a pod, with a hostname.
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.12"}, Hostname: ptr("db-2"),
			TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "worker-7"}},
		// Nothing names them: candidates without a name, one per address.
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.14"}},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.13"}},
		// A name that is no node name gives no name.
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.15"}, Hostname: ptr("-bad")},
	))
	want(t, lookup(t, newTest(t, client)),
		c("", "10.0.0.13"), c("", "10.0.0.14"), c("", "10.0.0.15"),
		c("consensus-0", "10.0.0.10"), c("db-1", "10.0.0.11"), c("db-2", "10.0.0.12"))
}

// A dual-stack Service has a slice per family with the same pods: one
// candidate per pod, at its IPv4 address, whichever slice comes first.
func TestLookupDualStack(t *testing.T) {
	v6 := slice(testNS, testSvc, "a-v6", discoveryv1.AddressTypeIPv6,
		readyEP("consensus-0", "fd00:0:0:0:0:0:0:10"), readyEP("consensus-1", "fd00::11"), readyEP("consensus-2", "fd00::12"))
	v4 := slice(testNS, testSvc, "b-v4", discoveryv1.AddressTypeIPv4,
		readyEP("consensus-0", "10.0.0.10"), readyEP("consensus-1", "10.0.0.11"))
	expect := []discovery.Candidate{c("consensus-0", "10.0.0.10"), c("consensus-1", "10.0.0.11"), c("consensus-2", "fd00::12")}
	for name, objs := range map[string][]runtime.Object{"v6 first": {v6, v4}, "v4 first": {v4.DeepCopy(), v6.DeepCopy()}} {
		t.Run(name, func(t *testing.T) {
			k := newTest(t, fake.NewClientset())
			var items []discoveryv1.EndpointSlice
			for _, o := range objs {
				items = append(items, *o.(*discoveryv1.EndpointSlice))
			}
			got, err := k.candidates(items)
			if err != nil {
				t.Fatal(err)
			}
			want(t, got, expect...)
		})
	}
	// And through the client, v6 canonicalised.
	want(t, lookup(t, newTest(t, fake.NewClientset(v6))), c("consensus-0", "fd00::10"), c("consensus-1", "fd00::11"), c("consensus-2", "fd00::12"))
}

func TestLookupIgnoresOtherServicesAndNamespaces(t *testing.T) {
	client := fake.NewClientset(
		slice(testNS, testSvc, "ours", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.0.0.10")),
		slice(testNS, "consensus-client", "client", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.0.0.10"),
			readyEP("web-0", "10.0.0.99")),
		slice(testNS, "other", "other", discoveryv1.AddressTypeIPv4, readyEP("other-0", "10.0.0.98")),
		slice("staging", testSvc, "theirs", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.9.0.10"),
			readyEP("consensus-1", "10.9.0.11")),
	)
	want(t, lookup(t, newTest(t, client)), c("consensus-0", "10.0.0.10"))
	want(t, lookup(t, newTest(t, client, func(c *Config) { c.Namespace = "staging" })),
		c("consensus-0", "10.9.0.10"), c("consensus-1", "10.9.0.11"))
	want(t, lookup(t, newTest(t, client, func(c *Config) { c.Namespace = "empty" })))

	// The label filter holds even if the server hands out every slice
	// (the fake does not select by label on its own in every version).
	k := newTest(t, client)
	items := []discoveryv1.EndpointSlice{
		*slice(testNS, "other", "other", discoveryv1.AddressTypeIPv4, readyEP("other-0", "10.0.0.98")),
		*slice("staging", testSvc, "theirs", discoveryv1.AddressTypeIPv4, readyEP("consensus-1", "10.9.0.11")),
		*slice(testNS, testSvc, "ours", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.0.0.10")),
	}
	got, err := k.candidates(items)
	if err != nil {
		t.Fatal(err)
	}
	want(t, got, c("consensus-0", "10.0.0.10"))
}

func TestLookupPortName(t *testing.T) {
	client := fake.NewClientset(slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.0.0.10")))
	got := lookup(t, newTest(t, client, func(c *Config) { c.PortName = "api" }))
	want(t, got, discovery.Candidate{Name: "consensus-0", Host: "10.0.0.10", Port: 7100})

	_, err := newTest(t, client, func(c *Config) { c.PortName = "peer" }).Lookup(t.Context())
	if err == nil || !strings.Contains(err.Error(), "discovery.port_name") || !strings.Contains(err.Error(), `"peer"`) ||
		!strings.Contains(err.Error(), "admin, api, raft") {
		t.Fatalf("wrong port name: err = %v, want one naming discovery.port_name, \"peer\" and the ports there are", err)
	}

	// No slices, or slices without endpoints: nothing yet, not an error.
	want(t, lookup(t, newTest(t, fake.NewClientset(), func(c *Config) { c.PortName = "peer" })))
	empty := slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4)
	want(t, lookup(t, newTest(t, fake.NewClientset(empty), func(c *Config) { c.PortName = "peer" })))
}

func TestLookupError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errForbidden
	})
	_, err := newTest(t, client).Lookup(t.Context())
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), testNS+"/"+testSvc) ||
		!strings.Contains(err.Error(), "needs get, list and watch on endpointslices") {
		t.Fatalf("Lookup err = %v, want the API's error naming the service, with the permission it needs", err)
	}
	client = fake.NewClientset()
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	if _, err := newTest(t, client).Lookup(t.Context()); err == nil || !strings.Contains(err.Error(), "etcd is down") ||
		strings.Contains(err.Error(), "needs get") {
		t.Fatalf("Lookup err = %v, want the API's error without a permission hint", err)
	}
}

var errForbidden = apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
	errors.New(`User "system:serviceaccount:prod:default" cannot list resource "endpointslices"`))

// watchServer hands out the fake watchers of a clientset's watches, one
// at a time: the watch call waits in the reactor until the test called
// release, so the test can look at what happened before it returned.
type watchServer struct {
	watchers chan *watch.RaceFreeFakeWatcher
	proceed  chan struct{}
	opts     chan metav1.ListOptions
}

func newWatchServer(client *fake.Clientset) *watchServer {
	s := &watchServer{
		watchers: make(chan *watch.RaceFreeFakeWatcher),
		proceed:  make(chan struct{}),
		opts:     make(chan metav1.ListOptions, 100),
	}
	client.PrependWatchReactor("endpointslices", func(a k8stesting.Action) (bool, watch.Interface, error) {
		s.opts <- a.(k8stesting.WatchActionImpl).ListOptions
		w := watch.NewRaceFreeFake()
		s.watchers <- w
		<-s.proceed
		return true, w, nil
	})
	return s
}

// next returns the next watch established, still held in the reactor.
func (s *watchServer) next(t *testing.T) *watch.RaceFreeFakeWatcher {
	t.Helper()
	select {
	case w := <-s.watchers:
		return w
	case <-time.After(waitLimit):
		t.Fatal("the watch was not established (again)")
		return nil
	}
}

func (s *watchServer) release() { s.proceed <- struct{}{} }

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: Changes closed", what)
		}
	case <-time.After(waitLimit):
		t.Fatalf("%s: Changes did not fire", what)
	}
}

// empty checks that nothing is pending on ch.
func empty(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	if len(ch) != 0 {
		t.Fatalf("%s: Changes fired", what)
	}
}

// A pod rescheduled: its endpoint moves to a new address in its slice.
// Changes fires and Lookup gives the new address.
func TestChangesRescheduledPod(t *testing.T) {
	s := slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4,
		readyEP("consensus-0", "10.0.0.10"), readyEP("consensus-1", "10.0.0.11"), readyEP("consensus-2", "10.0.0.12"))
	client := fake.NewClientset(s)
	// Hold the watch until the tracker's watcher is registered, so the
	// update below is certain to reach it.
	established := make(chan struct{})
	client.PrependWatchReactor("endpointslices", func(a k8stesting.Action) (bool, watch.Interface, error) {
		wa := a.(k8stesting.WatchActionImpl)
		w, err := client.Tracker().Watch(wa.GetResource(), wa.GetNamespace(), wa.ListOptions)
		close(established)
		return true, w, err
	})
	k := newTest(t, client)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := k.Changes(ctx)
	<-established
	empty(t, ch, "before any change")

	moved := s.DeepCopy()
	moved.Endpoints[1] = ep("consensus-1", "10.0.3.7", ptr(false), false)
	if _, err := client.DiscoveryV1().EndpointSlices(testNS).Update(t.Context(), moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	recv(t, ch, "pod rescheduled")
	want(t, lookup(t, k), c("consensus-0", "10.0.0.10"), c("consensus-1", "10.0.3.7"), c("consensus-2", "10.0.0.12"))

	// The pod's old endpoint goes away in between: terminating, then gone.
	if err := client.DiscoveryV1().EndpointSlices(testNS).Delete(t.Context(), "s", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	recv(t, ch, "slice deleted")
	want(t, lookup(t, k))
}

// The watch asks with the Service's label selector, from the resource
// version of the list it started from.
func TestChangesWatchOptions(t *testing.T) {
	client := fake.NewClientset(slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.0.0.10")))
	ws := newWatchServer(client)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	newTest(t, client).Changes(ctx)
	ws.next(t)
	opts := <-ws.opts
	ws.release()
	if opts.LabelSelector != "kubernetes.io/service-name="+testSvc {
		t.Fatalf("watch label selector %q", opts.LabelSelector)
	}
	if opts.ResourceVersion == "" || opts.ResourceVersion == "0" {
		t.Fatalf("watch resource version %q, want the list's", opts.ResourceVersion)
	}
}

// The API server ends the watch (as it does after some minutes): it is
// established again, and Changes fires then, since slices may have
// changed while there was no watch. Events of other services' slices and
// bookmarks do not fire; an error event ends the watch too.
func TestChangesReestablished(t *testing.T) {
	client := fake.NewClientset()
	ws := newWatchServer(client)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := newTest(t, client).Changes(ctx)

	w1 := ws.next(t)
	ws.release()
	w1.Add(slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.0.0.10")))
	recv(t, ch, "slice added")

	// Closed by the server.
	w1.Add(slice(testNS, "other", "o", discoveryv1.AddressTypeIPv4, readyEP("other-0", "10.0.0.98")))
	// A bookmark carries only a resource version; even one that named
	// the service would change nothing.
	w1.Action(watch.Bookmark, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "77", Namespace: testNS,
		Labels: map[string]string{discoveryv1.LabelServiceName: testSvc}}})
	w1.Stop()
	w2 := ws.next(t)
	// The events before the close were handled in order before the watch
	// was established again: neither fired.
	empty(t, ch, "other service's slice or bookmark")
	ws.release()
	recv(t, ch, "watch established again")

	w2.Modify(slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4, readyEP("consensus-0", "10.0.0.20")))
	recv(t, ch, "slice modified on the new watch")

	// An error event (410 Gone: the resource version is too old).
	w2.Error(&metav1.Status{Status: metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired,
		Message: "too old resource version"})
	w3 := ws.next(t)
	empty(t, ch, "error event")
	ws.release()
	recv(t, ch, "watch established again after an error")
	w3.Delete(slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4))
	recv(t, ch, "slice deleted on the third watch")
}

// Watches that cannot be established are tried again.
func TestChangesWatchFails(t *testing.T) {
	client := fake.NewClientset()
	calls := make(chan struct{}, 100)
	fail := 3
	client.PrependWatchReactor("endpointslices", func(k8stesting.Action) (bool, watch.Interface, error) {
		calls <- struct{}{}
		if fail > 0 {
			fail--
			return true, nil, errForbidden
		}
		return false, nil, nil // to the default reactor: a working watch
	})
	ctx, cancel := context.WithCancel(t.Context())
	ch := newTest(t, client).Changes(ctx)
	for range 4 {
		select {
		case <-calls:
		case <-time.After(waitLimit):
			t.Fatal("the watch was not tried again")
		}
	}
	recv(t, ch, "watch established after failures")
	cancel()
	for range ch {
	}
}

func TestChangesClosedWhenContextEnds(t *testing.T) {
	for name, fail := range map[string]bool{"watching": false, "failing": true} {
		t.Run(name, func(t *testing.T) {
			client := fake.NewClientset()
			ws := newWatchServer(client)
			if fail {
				client.PrependWatchReactor("endpointslices", func(k8stesting.Action) (bool, watch.Interface, error) {
					return true, nil, errForbidden
				})
			}
			ctx, cancel := context.WithCancel(t.Context())
			ch := newTest(t, client, func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Hour, time.Hour }).Changes(ctx)
			if !fail {
				ws.next(t)
				ws.release()
			}
			cancel()
			timeout := time.After(waitLimit)
			for {
				select {
				case _, ok := <-ch:
					if !ok {
						return
					}
				case <-timeout:
					t.Fatal("Changes not closed after the context ended")
				}
			}
		})
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	nsFile := filepath.Join(dir, "namespace")
	if err := os.WriteFile(nsFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Config{ServiceName: " consensus "}.withDefaults(nsFile)
	if err != nil {
		t.Fatal(err)
	}
	if got.Namespace != "from-file" || got.PortName != "raft" || got.ServiceName != "consensus" || got.Timeout != DefaultTimeout ||
		got.MinBackoff != DefaultMinBackoff || got.MaxBackoff != DefaultMaxBackoff {
		t.Fatalf("defaults: %+v", got)
	}
	if got, err := (Config{ServiceName: "consensus"}).withDefaults(filepath.Join(dir, "missing")); err != nil || got.Namespace != "default" {
		t.Fatalf("no namespace file: %+v, %v", got, err)
	}
	if got, err := (Config{ServiceName: "consensus", Namespace: "mine"}).withDefaults(nsFile); err != nil || got.Namespace != "mine" {
		t.Fatalf("namespace set: %+v, %v", got, err)
	}

	for _, tc := range []struct {
		cfg Config
		key string
	}{
		{Config{}, "discovery.service_name"},
		{Config{ServiceName: "Consensus"}, "discovery.service_name"},
		{Config{ServiceName: "consensus.svc"}, "discovery.service_name"},
		{Config{ServiceName: "consensus", Namespace: "Prod"}, "discovery.namespace"},
		{Config{ServiceName: "consensus", Namespace: "a/b"}, "discovery.namespace"},
		{Config{ServiceName: "consensus", PortName: "Raft_Port"}, "discovery.port_name"},
		{Config{ServiceName: "consensus", Timeout: -1}, "timeout"},
		{Config{ServiceName: "consensus", MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "back-off"},
	} {
		_, err := tc.cfg.withDefaults(nsFile)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%+v: err = %v, want one naming %s", tc.cfg, err, tc.key)
		}
	}
	if _, err := NewWithClient(Config{ServiceName: "consensus"}, nil); err == nil {
		t.Error("NewWithClient accepted a nil client")
	}
	if _, err := NewWithClient(Config{ServiceName: "consensus"}, func(string) EndpointSlices { return nil }); err == nil {
		t.Error("NewWithClient accepted a nil EndpointSlices")
	}
	var asked string
	k, err := NewWithClient(Config{ServiceName: "consensus"}, func(ns string) EndpointSlices {
		asked = ns
		return fake.NewClientset().DiscoveryV1().EndpointSlices(ns)
	})
	if err != nil || asked != k.Namespace() || asked == "" {
		t.Errorf("NewWithClient asked for namespace %q, defaulted to %q (%v)", asked, k.Namespace(), err)
	}
}

func TestNewKubeconfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := New(Config{ServiceName: "consensus", Namespace: testNS}); err == nil ||
		!strings.Contains(err.Error(), "discovery.kubeconfig") {
		t.Fatalf("outside a pod without a kubeconfig: err = %v, want one naming discovery.kubeconfig", err)
	}
	if _, err := New(Config{ServiceName: "consensus", Namespace: testNS, Kubeconfig: filepath.Join(t.TempDir(), "none")}); err == nil ||
		!strings.Contains(err.Error(), "discovery.kubeconfig") {
		t.Fatalf("missing kubeconfig: err = %v, want one naming discovery.kubeconfig", err)
	}
}

// apiServer stands in for the Kubernetes API over HTTP: it answers lists
// of the namespace's EndpointSlices with list (or status, if not 200),
// and each watch with the events of the next value of watches: it writes
// them, then ends the watch if close is set, else holds it open until the
// client goes.
type apiServer struct {
	t       *testing.T
	list    discoveryv1.EndpointSliceList
	status  int
	watches chan watchScript
	asked   chan *http.Request
}

type watchScript struct {
	events []metav1.WatchEvent
	close  bool
}

func (a *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case a.asked <- r:
	default:
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != "/apis/discovery.k8s.io/v1/namespaces/"+testNS+"/endpointslices" {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound, Message: "no " + r.URL.Path})
		return
	}
	if r.URL.Query().Get("watch") == "" {
		if a.status != 0 && a.status != http.StatusOK {
			w.WriteHeader(a.status)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Code: int32(a.status), Reason: metav1.StatusReasonForbidden,
				Message: `endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:prod:default" cannot list resource`})
			return
		}
		_ = json.NewEncoder(w).Encode(a.list)
		return
	}
	var script watchScript
	select {
	case script = <-a.watches:
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(http.StatusOK)
	for _, ev := range script.events {
		_ = json.NewEncoder(w).Encode(ev)
	}
	w.(http.Flusher).Flush()
	if !script.close {
		<-r.Context().Done()
	}
}

// serveWatch hands script to the next watch asked.
func (a *apiServer) serveWatch(t *testing.T, script watchScript) {
	t.Helper()
	select {
	case a.watches <- script:
	case <-time.After(waitLimit):
		t.Fatal("no watch was asked")
	}
}

func rawSlice(t *testing.T, s *discoveryv1.EndpointSlice) runtime.RawExtension {
	t.Helper()
	s = s.DeepCopy()
	s.APIVersion, s.Kind = "discovery.k8s.io/v1", "EndpointSlice"
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: b}
}

// newThroughKubeconfig returns a Source made by New with a kubeconfig
// that points at a.
func newThroughKubeconfig(t *testing.T, a *apiServer) *Kubernetes {
	t.Helper()
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	raw := `apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "` + srv.URL + `"}}]
users: [{name: test, user: {token: abc}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`
	if err := os.WriteFile(kubeconfig, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := New(Config{ServiceName: testSvc, Namespace: testNS, Kubeconfig: kubeconfig,
		MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newAPIServer(t *testing.T) *apiServer {
	return &apiServer{
		t:       t,
		watches: make(chan watchScript),
		asked:   make(chan *http.Request, 100),
		list: discoveryv1.EndpointSliceList{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSliceList"},
			ListMeta: metav1.ListMeta{ResourceVersion: "5"},
			Items: []discoveryv1.EndpointSlice{*slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4,
				readyEP("consensus-1", "10.0.0.11"), ep("consensus-0", "10.0.0.10", ptr(false), false))},
		},
	}
}

// Through New's REST client and a kubeconfig, against an HTTP server
// standing in for the API: the request asks for the Service's slices by
// label in the namespace, the answer is decoded, and so is an error.
func TestLookupThroughKubeconfig(t *testing.T) {
	a := newAPIServer(t)
	k := newThroughKubeconfig(t, a)
	want(t, lookup(t, k), c("consensus-0", "10.0.0.10"), c("consensus-1", "10.0.0.11"))
	r := <-a.asked
	if got := r.URL.Query().Get("labelSelector"); got != "kubernetes.io/service-name="+testSvc {
		t.Fatalf("asked with labelSelector %q", got)
	}

	a.status = http.StatusForbidden
	_, err := k.Lookup(t.Context())
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "needs get, list and watch") {
		t.Fatalf("Lookup err = %v, want a forbidden error with the permission it needs", err)
	}
}

// Changes through New's REST client: watch events are decoded, and a
// watch the server ends is established again.
func TestChangesThroughKubeconfig(t *testing.T) {
	a := newAPIServer(t)
	k := newThroughKubeconfig(t, a)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := k.Changes(ctx)

	moved := slice(testNS, testSvc, "s", discoveryv1.AddressTypeIPv4, readyEP("consensus-1", "10.0.3.7"))
	a.serveWatch(t, watchScript{events: []metav1.WatchEvent{{Type: string(watch.Modified), Object: rawSlice(t, moved)}}, close: true})
	recv(t, ch, "watch event")
	// The server ended that watch: a new one, which fires.
	a.serveWatch(t, watchScript{})
	recv(t, ch, "watch established again")
	var watchesAsked int
	for len(a.asked) > 0 {
		r := <-a.asked
		if r.URL.Query().Get("watch") != "" {
			watchesAsked++
			if rv := r.URL.Query().Get("resourceVersion"); rv != "5" {
				t.Errorf("watch from resource version %q, want the list's, 5", rv)
			}
		}
	}
	if watchesAsked != 2 {
		t.Fatalf("%d watches asked, want 2", watchesAsked)
	}
}
