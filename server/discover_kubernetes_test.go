package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/forge-consensus/consensus/adapters/discovery/kubernetes"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// pods is the EndpointSlice of a headless Service as the test changes it,
// in client-go's fake clientset (the API server's stand-in).
type pods struct {
	t      *testing.T
	client *fake.Clientset
	port   int32
	mu     sync.Mutex
	ips    map[string]string // pod name -> IP
}

func (p *pods) set(pod, ip string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if ip == "" {
		delete(p.ips, pod)
	} else {
		p.ips[pod] = ip
	}
	names := make([]string, 0, len(p.ips))
	for n := range p.ips {
		names = append(names, n)
	}
	slices.Sort(names)
	var eps []discoveryv1.Endpoint
	for _, n := range names {
		ready := false // not ready until in a cluster: published all the same
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{p.ips[n]},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "consensus", Name: n}})
	}
	name, raft := "raft", p.port
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "consensus", Name: "consensus-peers-abc",
			Labels: map[string]string{discoveryv1.LabelServiceName: "consensus-peers"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &raft}},
	}
	api := p.client.DiscoveryV1().EndpointSlices("consensus")
	if _, err := api.Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		if _, err := api.Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			p.t.Fatal(err)
		}
	}
}

func kubernetesConfig(t *testing.T, p *pods, pod, ip string, port int, dir string) server.Config {
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
  type: kubernetes
  namespace: consensus
  service_name: consensus-peers
  port_name: raft
  bootstrap_expect: 3
  refresh_interval: 60s
`, pod, ip, port, dir, ip, port+100, ip, port+200)
	cfg, err := server.ParseConfig([]byte(raw), os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	// The mechanism of discovery.type kubernetes, on the fake API (New
	// would read the pod's in-cluster configuration).
	src, err := kubernetes.NewWithClient(kubernetes.Config{Namespace: "consensus", ServiceName: "consensus-peers",
		PortName: "raft", MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
		func(ns string) kubernetes.EndpointSlices { return p.client.DiscoveryV1().EndpointSlices(ns) })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Discovery.Source = src
	return cfg
}

// TestDiscoveryKubernetes: the walk-through of docs/operations.md with the
// API server's stand-in: three pods of a StatefulSet, listed (not ready)
// in the headless Service's EndpointSlice, form exactly one cluster; a
// fourth (scale to 4) joins; a pod rescheduled at a new IP is followed
// there. The refresh interval is a minute, beyond every wait here: the
// nodes act on the watch's reports (and on the asks they answer) alone.
func TestDiscoveryKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four nodes")
	}
	p := &pods{t: t, client: fake.NewClientset(), port: int32(servertest.FreePorts(t, 1)[0]), ips: map[string]string{}}
	port := int(p.port)
	ips := []string{"127.0.53.1", "127.0.53.2", "127.0.53.3", "127.0.53.4", "127.0.53.5"}
	names := []string{"consensus-0", "consensus-1", "consensus-2", "consensus-3"}
	base := t.TempDir()
	cfgAt := func(n, ip string) server.Config {
		p.set(n, ip) // the pod is scheduled: its endpoint appears
		return kubernetesConfig(t, p, n, ip, port, filepath.Join(base, n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srvs := startAll(t, ctx, names[:3], func(i int, n string) server.Config { return cfgAt(n, ips[i]) }, nil)
	waitOneCluster(t, srvs, names[:3])

	// Scale to 4.
	s4, err := startDiscovered(ctx, cfgAt("consensus-3", ips[3]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["consensus-3"] = s4
	want4 := idsOf(names...)
	waitUntil(t, "consensus-3 a voter", 30*time.Second, func() (bool, string) {
		v, _ := votersOf(srvs["consensus-0"])
		return slices.Equal(v, want4), fmt.Sprintf("voters %v", v)
	})

	// consensus-1 is rescheduled: same name and volume, a new IP.
	srvs["consensus-1"].Close()
	delete(srvs, "consensus-1")
	s1, err := startDiscovered(ctx, cfgAt("consensus-1", ips[4]))
	if err != nil {
		t.Fatal(err)
	}
	srvs["consensus-1"] = s1
	id1 := idsOf("consensus-1")[0]
	for _, n := range []string{"consensus-0", "consensus-2", "consensus-3"} {
		waitUntil(t, n+" follows consensus-1 to its new IP", 15*time.Second, func() (bool, string) {
			u := srvs[n].APIURL(id1)
			return strings.Contains(u, ips[4]), u
		})
	}
	srvs["consensus-2"].Close()
	delete(srvs, "consensus-2")
	putThrough(t, s1, "k", "v")
}
