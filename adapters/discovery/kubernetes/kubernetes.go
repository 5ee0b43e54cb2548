// Package kubernetes is the Kubernetes discovery mechanism: the pods
// behind a Service, read from the Service's EndpointSlices
// (discovery.k8s.io/v1) through the Kubernetes API.
//
// Each endpoint of the Service is a candidate named after its pod (a
// StatefulSet's pod name is the node's node_id), at the endpoint's
// address and at the slice's port named Config.PortName ("raft"). A
// Kubernetes Source is a discovery.Watcher: it watches the slices and
// says when they changed.
//
// # Not-ready pods are candidates
//
// A node is ready (its readiness probe, /consensus/health/ready, passes)
// only once it is in a cluster with a leader and a quorum, and it finds
// the nodes it forms that cluster with through discovery: were only
// ready pods candidates, no pod would ever be. So Lookup returns the
// endpoints whose pods are not ready too, and the Service discovery
// reads is a headless Service with publishNotReadyAddresses: true (the
// EndpointSlice controller then lists every pod that has an address,
// ready or not, and marks them all ready). Endpoints that are
// terminating are left out: their pods are going away (a pod
// rescheduled comes back as a new endpoint, at its new address).
//
// # Permissions
//
// The pod's service account needs get, list and watch on endpointslices
// (API group discovery.k8s.io) in the namespace: see deploy/kubernetes.
package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/nodename"
)

// Defaults of Config.
const (
	// DefaultPortName is the name of the Service port of the nodes' Raft
	// transport (discovery.port_name).
	DefaultPortName = "raft"
	// DefaultNamespace is the namespace used when none is configured and
	// the service account's namespace file is not there.
	DefaultNamespace = "default"
	// DefaultTimeout bounds one Lookup when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait before the
	// watch of Changes is established again after it failed or ended.
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// NamespaceFile is where a pod finds its own namespace (the service
// account's mount).
const NamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config configures the Kubernetes mechanism.
type Config struct {
	// Namespace is the namespace of the Service (discovery.namespace);
	// "" is the pod's own namespace, read from NamespaceFile, or
	// "default" outside a pod.
	Namespace string
	// ServiceName is the Service whose endpoints are the nodes
	// (discovery.service_name), required: a headless Service with
	// publishNotReadyAddresses: true (see the package documentation).
	ServiceName string
	// PortName is the name of the Service's port of the Raft transport
	// (discovery.port_name); "" is DefaultPortName.
	PortName string
	// Kubeconfig is the path of a kubeconfig file to reach the API with
	// (discovery.kubeconfig); "" uses the pod's service account
	// (in-cluster configuration).
	Kubeconfig string
	// Timeout bounds one Lookup; zero means DefaultTimeout.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before the watch is
	// established again (zero: DefaultMinBackoff, DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the watch's errors and re-establishments (nil:
	// slog.Default()).
	Logger *slog.Logger
}

// Kubernetes is the Kubernetes Source. It is safe for concurrent use.
type Kubernetes struct {
	cfg    Config
	slices EndpointSlices
	log    *slog.Logger
}

var _ discovery.Watcher = (*Kubernetes)(nil)

// EndpointSlices is the part of the Kubernetes API the mechanism uses: the
// EndpointSlices (discovery.k8s.io/v1) of one namespace. client-go's typed
// client has these methods: clientset.DiscoveryV1().EndpointSlices(ns).
type EndpointSlices interface {
	List(ctx context.Context, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// New checks cfg and returns the Source it describes, with a client built
// from cfg.Kubeconfig or, without one, from the pod's service account.
// It does not contact the API: an unreachable API or missing permissions
// show in Lookup's errors.
//
// The client is a REST client that knows the discovery.k8s.io/v1 types
// only, not client-go's clientset, whose registration of every API group
// would add some 50 MB to the binary (measured: 14 MB this way).
func New(cfg Config) (*Kubernetes, error) {
	cfg, err := cfg.withDefaults(NamespaceFile)
	if err != nil {
		return nil, err
	}
	var rc *rest.Config
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("discovery.kubeconfig: %q: %w", cfg.Kubeconfig, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("discovery.kubeconfig: empty, and the in-cluster configuration (the pod's service account) "+
				"is not available: %w; run in a pod or set discovery.kubeconfig to a kubeconfig file", err)
		}
	}
	api, err := newRESTSlices(rc, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	return newSource(cfg, api), nil
}

// Check reports what New would find wrong with cfg, without building a
// client (outside a pod there is no in-cluster configuration to build
// one from).
func (cfg Config) Check() error {
	_, err := cfg.withDefaults(NamespaceFile)
	return err
}

// NewWithClient checks cfg and returns the Source it describes, asking
// the EndpointSlices API that slices returns for the namespace (after
// defaults); cfg.Kubeconfig is ignored. With client-go's clientset (a
// fake one in tests):
//
//	kubernetes.NewWithClient(cfg, func(ns string) kubernetes.EndpointSlices {
//		return clientset.DiscoveryV1().EndpointSlices(ns)
//	})
func NewWithClient(cfg Config, slices func(namespace string) EndpointSlices) (*Kubernetes, error) {
	if slices == nil {
		return nil, errors.New("discovery: kubernetes: nil client")
	}
	cfg, err := cfg.withDefaults(NamespaceFile)
	if err != nil {
		return nil, err
	}
	api := slices(cfg.Namespace)
	if api == nil {
		return nil, errors.New("discovery: kubernetes: nil client")
	}
	return newSource(cfg, api), nil
}

func newSource(cfg Config, api EndpointSlices) *Kubernetes {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("discovery", "kubernetes", "namespace", cfg.Namespace, "service", cfg.ServiceName)
	return &Kubernetes{cfg: cfg, slices: api, log: log}
}

// withDefaults fills the defaults (the namespace from nsFile) and
// validates; errors name the YAML keys.
func (c Config) withDefaults(nsFile string) (Config, error) {
	c.Namespace = strings.TrimSpace(c.Namespace)
	c.ServiceName = strings.TrimSpace(c.ServiceName)
	c.PortName = strings.TrimSpace(c.PortName)
	if c.ServiceName == "" {
		return c, errors.New("discovery.service_name: empty; the Service whose endpoints are the nodes (a headless Service) " +
			"is required with discovery type kubernetes")
	}
	if errs := validation.IsDNS1035Label(c.ServiceName); len(errs) > 0 {
		return c, fmt.Errorf("discovery.service_name: %q is not a Service name: %s", c.ServiceName, strings.Join(errs, "; "))
	}
	if c.Namespace == "" {
		c.Namespace = namespaceFrom(nsFile)
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return c, fmt.Errorf("discovery.namespace: %q is not a namespace name: %s", c.Namespace, strings.Join(errs, "; "))
	}
	if c.PortName == "" {
		c.PortName = DefaultPortName
	}
	if errs := validation.IsDNS1123Label(c.PortName); len(errs) > 0 {
		return c, fmt.Errorf("discovery.port_name: %q is not a Service port name: %s", c.PortName, strings.Join(errs, "; "))
	}
	switch {
	case c.Timeout < 0:
		return c, fmt.Errorf("discovery: kubernetes: timeout %v is negative", c.Timeout)
	case c.MinBackoff < 0 || c.MaxBackoff < 0:
		return c, fmt.Errorf("discovery: kubernetes: back-off %v..%v is negative", c.MinBackoff, c.MaxBackoff)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.MaxBackoff < c.MinBackoff {
		return c, fmt.Errorf("discovery: kubernetes: maximum back-off %v is below the minimum %v", c.MaxBackoff, c.MinBackoff)
	}
	return c, nil
}

// namespaceFrom returns the namespace written in path (the service
// account's namespace file), or DefaultNamespace if it cannot be read or
// is empty.
func namespaceFrom(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return DefaultNamespace
	}
	if ns := strings.TrimSpace(string(b)); ns != "" {
		return ns
	}
	return DefaultNamespace
}

// Namespace returns the namespace asked, after defaults.
func (k *Kubernetes) Namespace() string { return k.cfg.Namespace }

// Kind returns "kubernetes".
func (k *Kubernetes) Kind() string { return "kubernetes" }

// selector is the label selector of the Service's EndpointSlices.
func (k *Kubernetes) selector() string {
	return discoveryv1.LabelServiceName + "=" + k.cfg.ServiceName
}

// ours reports whether a slice is one of the Service's: the API server
// selects by label already, this guards against a server (or a fake) that
// does not.
func (k *Kubernetes) ours(s *discoveryv1.EndpointSlice) bool {
	return s.Namespace == k.cfg.Namespace && s.Labels[discoveryv1.LabelServiceName] == k.cfg.ServiceName
}

// Lookup lists the Service's EndpointSlices and returns its endpoints as
// candidates, sorted and without duplicates:
//
//   - Name is the pod's name (the endpoint's targetRef, kind Pod), else
//     the endpoint's hostname, else "" (an endpoint that names no pod,
//     which the node's answer to a probe names); a name that is not a
//     valid node name gives "" too;
//   - Host is the endpoint's first address;
//   - Port is the slice's port named Config.PortName.
//
// Endpoints whose pods are not ready are included (see the package
// documentation); terminating ones are not. A pod listed in more than one
// slice (a dual-stack Service has an IPv4 and an IPv6 slice) is one
// candidate, at its IPv4 address if it has one, else its lowest address,
// whatever order the slices come in.
//
// An error says the API could not be asked (unreachable, no permission:
// the error says which), or that the Service has endpoints but none of
// its slices has a port named Config.PortName (a wrong
// discovery.port_name). No slices, or slices without endpoints (a
// Service with no pods yet), give an empty list without an error.
func (k *Kubernetes) Lookup(ctx context.Context) ([]discovery.Candidate, error) {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	defer cancel()
	list, err := k.slices.List(ctx, metav1.ListOptions{LabelSelector: k.selector()})
	if err != nil {
		return nil, k.listError(err)
	}
	return k.candidates(list.Items)
}

// listError wraps an error of listing the slices, with a hint when the
// pod lacks the permission.
func (k *Kubernetes) listError(err error) error {
	hint := ""
	if apierrors.IsForbidden(err) {
		hint = " (the pod's service account needs get, list and watch on endpointslices, API group discovery.k8s.io, " +
			"in namespace " + k.cfg.Namespace + ": a Role and RoleBinding as in deploy/kubernetes/rbac.yaml)"
	}
	return fmt.Errorf("discovery: kubernetes: list endpointslices of service %s/%s: %w%s", k.cfg.Namespace, k.cfg.ServiceName, err, hint)
}

// candidates turns slices into candidates (see Lookup).
func (k *Kubernetes) candidates(items []discoveryv1.EndpointSlice) ([]discovery.Candidate, error) {
	best := map[string]found{}
	var (
		withEndpoints int
		withPort      int
		otherPorts    []string
	)
	for i := range items {
		s := &items[i]
		if !k.ours(s) || len(s.Endpoints) == 0 {
			continue
		}
		withEndpoints++
		port := 0
		for _, p := range s.Ports {
			switch {
			case p.Name != nil && *p.Name == k.cfg.PortName && p.Port != nil:
				port = int(*p.Port)
			case p.Name != nil && *p.Name != "":
				otherPorts = append(otherPorts, *p.Name)
			default:
				otherPorts = append(otherPorts, `""`)
			}
		}
		if port < 1 || port > 65535 {
			continue
		}
		withPort++
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 || (e.Conditions.Terminating != nil && *e.Conditions.Terminating) {
				continue
			}
			f := found{
				c:    discovery.Candidate{Name: endpointName(e), Host: canonicalHost(e.Addresses[0]), Port: port},
				rank: addressRank(s.AddressType),
			}
			key := f.c.Name
			if key == "" {
				key = "\x00" + f.c.Host // a nameless endpoint is known by its address
			}
			if old, ok := best[key]; !ok || f.better(old) {
				best[key] = f
			}
		}
	}
	if withEndpoints > 0 && withPort == 0 {
		slices.Sort(otherPorts)
		return nil, fmt.Errorf("discovery.port_name: service %s/%s has endpoints but no port named %q (its ports: %s); "+
			"set discovery.port_name to the name of the Service port of the Raft transport",
			k.cfg.Namespace, k.cfg.ServiceName, k.cfg.PortName, strings.Join(slices.Compact(otherPorts), ", "))
	}
	out := make([]discovery.Candidate, 0, len(best))
	for _, f := range best {
		out = append(out, f.c)
	}
	return discovery.Sort(out), nil
}

// found is a candidate and the rank of its slice's address type.
type found struct {
	c    discovery.Candidate
	rank int
}

// better reports whether f is preferred to g for the same node: IPv4
// before IPv6 before FQDN, then the lower host, then the lower port, so
// every node picks the same whatever order the slices come in.
func (f found) better(g found) bool {
	if f.rank != g.rank {
		return f.rank < g.rank
	}
	if c := cmp.Compare(f.c.Host, g.c.Host); c != 0 {
		return c < 0
	}
	return f.c.Port < g.c.Port
}

func addressRank(t discoveryv1.AddressType) int {
	switch t {
	case discoveryv1.AddressTypeIPv4:
		return 0
	case discoveryv1.AddressTypeIPv6:
		return 1
	}
	return 2
}

// endpointName is the node name an endpoint stands for: its pod's name,
// else its hostname, else "".
func endpointName(e discoveryv1.Endpoint) string {
	name := ""
	switch {
	case e.TargetRef != nil && e.TargetRef.Kind == "Pod" && e.TargetRef.Name != "":
		name = e.TargetRef.Name
	case e.Hostname != nil:
		name = *e.Hostname
	}
	if name == "" {
		return ""
	}
	if _, err := nodename.ID(name); err != nil {
		return ""
	}
	return name
}

// canonicalHost writes an IP address in its one canonical form (an IPv6
// address compressed, an IPv4-mapped one as IPv4); anything else is
// returned as it is.
func canonicalHost(h string) string {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}

// Changes watches the Service's EndpointSlices and sends a value, without
// blocking and coalesced (one pending value stands for any number of
// changes), after each change of one of them. The watch starts from a
// list, so changes made before Changes was called are not reported;
// when it fails or the API server ends it (as it does after some
// minutes), it is established again after a back-off (Config.MinBackoff,
// doubling up to Config.MaxBackoff, back to the minimum after a watch
// that lasted at least the maximum) from a new list, and a value is sent
// then too, since changes may have been missed in between. The channel
// is closed when ctx ends.
func (k *Kubernetes) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go k.watchLoop(ctx, ch)
	return ch
}

func (k *Kubernetes) watchLoop(ctx context.Context, ch chan struct{}) {
	defer close(ch)
	fire := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	backoff := k.cfg.MinBackoff
	first := true
	for {
		started := time.Now()
		err := k.watchOnce(ctx, fire, !first)
		if ctx.Err() != nil {
			return
		}
		first = false
		if time.Since(started) >= k.cfg.MaxBackoff {
			backoff = k.cfg.MinBackoff
		}
		if err != nil {
			k.log.Warn("watch of endpointslices failed; establishing it again", "error", err, "after", backoff)
		} else {
			k.log.Debug("watch of endpointslices ended; establishing it again", "after", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, k.cfg.MaxBackoff)
	}
}

// watchOnce lists the slices, fires if again (a re-establishment), and
// watches from the list's resource version until the watch fails or
// ends, firing on each change of one of the Service's slices. It returns
// nil when the server closed the watch, an error when it could not be
// established or the server sent an error.
func (k *Kubernetes) watchOnce(ctx context.Context, fire func(), again bool) error {
	slicesAPI := k.slices
	lctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	list, err := slicesAPI.List(lctx, metav1.ListOptions{LabelSelector: k.selector()})
	cancel()
	if err != nil {
		return k.listError(err)
	}
	w, err := slicesAPI.Watch(ctx, metav1.ListOptions{
		LabelSelector:   k.selector(),
		ResourceVersion: list.ResourceVersion,
	})
	if err != nil {
		return fmt.Errorf("discovery: kubernetes: watch endpointslices of service %s/%s: %w", k.cfg.Namespace, k.cfg.ServiceName, err)
	}
	defer w.Stop()
	if again {
		fire()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			switch ev.Type {
			case watch.Error:
				return fmt.Errorf("discovery: kubernetes: watch endpointslices of service %s/%s: %w",
					k.cfg.Namespace, k.cfg.ServiceName, apierrors.FromObject(ev.Object))
			case watch.Bookmark:
				continue
			}
			if s, ok := ev.Object.(*discoveryv1.EndpointSlice); ok && !k.ours(s) {
				continue
			}
			fire()
		}
	}
}
