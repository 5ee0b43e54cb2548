package kubernetes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/forge-consensus/consensus/server"
)

// manifests are the objects of deploy/kubernetes.
type manifests struct {
	headless, client *corev1.Service
	sts              *appsv1.StatefulSet
	cm               *corev1.ConfigMap
	pdb              *policyv1.PodDisruptionBudget
	np               *networkingv1.NetworkPolicy
	sa               *corev1.ServiceAccount
	role             *rbacv1.Role
	rb               *rbacv1.RoleBinding
}

func (m *manifests) clone() *manifests {
	return &manifests{
		headless: m.headless.DeepCopy(), client: m.client.DeepCopy(), sts: m.sts.DeepCopy(), cm: m.cm.DeepCopy(),
		pdb: m.pdb.DeepCopy(), np: m.np.DeepCopy(), sa: m.sa.DeepCopy(), role: m.role.DeepCopy(), rb: m.rb.DeepCopy(),
	}
}

// load decodes every document of every YAML file in dir with client-go's
// universal deserializer, and again strictly (unknown or duplicate fields
// are errors: a misspelt publishNotReadyAddresses would otherwise be
// dropped without a word).
func load(dir string) (*manifests, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no YAML files in %s", dir)
	}
	strict := serializerjson.NewSerializerWithOptions(serializerjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		serializerjson.SerializerOptions{Yaml: true, Strict: true})
	m := &manifests{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for n := 1; ; n++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", f, n, err)
			}
			if isEmptyDoc(doc) {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", f, n, err)
			}
			if _, _, err := strict.Decode(doc, nil, nil); err != nil {
				return nil, fmt.Errorf("%s: document %d: strict: %w", f, n, err)
			}
			if err := m.add(obj); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", f, n, err)
			}
		}
	}
	for what, missing := range map[string]bool{
		"headless Service": m.headless == nil, "client Service": m.client == nil, "StatefulSet": m.sts == nil,
		"ConfigMap": m.cm == nil, "PodDisruptionBudget": m.pdb == nil, "NetworkPolicy": m.np == nil,
		"ServiceAccount": m.sa == nil, "Role": m.role == nil, "RoleBinding": m.rb == nil,
	} {
		if missing {
			return nil, fmt.Errorf("no %s in %s", what, dir)
		}
	}
	return m, nil
}

func isEmptyDoc(doc []byte) bool {
	for line := range strings.SplitSeq(string(doc), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

func (m *manifests) add(obj runtime.Object) error {
	once := func(set bool, what string) error {
		if set {
			return fmt.Errorf("a second %s", what)
		}
		return nil
	}
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		if o.Spec.ClusterIP == corev1.ClusterIPNone {
			err, m.headless = once(m.headless != nil, "headless Service"), o
		} else {
			err, m.client = once(m.client != nil, "client Service"), o
		}
	case *appsv1.StatefulSet:
		err, m.sts = once(m.sts != nil, "StatefulSet"), o
	case *corev1.ConfigMap:
		err, m.cm = once(m.cm != nil, "ConfigMap"), o
	case *policyv1.PodDisruptionBudget:
		err, m.pdb = once(m.pdb != nil, "PodDisruptionBudget"), o
	case *networkingv1.NetworkPolicy:
		err, m.np = once(m.np != nil, "NetworkPolicy"), o
	case *corev1.ServiceAccount:
		err, m.sa = once(m.sa != nil, "ServiceAccount"), o
	case *rbacv1.Role:
		err, m.role = once(m.role != nil, "Role"), o
	case *rbacv1.RoleBinding:
		err, m.rb = once(m.rb != nil, "RoleBinding"), o
	default:
		err = fmt.Errorf("unexpected %T", obj)
	}
	return err
}

// The values the fake downward API gives the pod whose configuration is
// checked.
const (
	fakeNamespace = "team-a"
	fakePodIP     = "10.1.0.10"
)

// check returns every way the manifests disagree with each other or with
// what consensusd reads, nil if they agree.
func check(m *manifests) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	sts := m.sts
	pod := sts.Spec.Template
	podLabels := labels.Set(pod.Labels)
	if len(sts.Spec.Template.Spec.Containers) != 1 {
		bad("StatefulSet %s: %d containers, want 1", sts.Name, len(sts.Spec.Template.Spec.Containers))
		return errors.Join(errs...)
	}
	ctr := pod.Spec.Containers[0]

	// Selectors: every one picks the StatefulSet's pods.
	matches := func(what string, sel *metav1.LabelSelector) {
		if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
			bad("%s: selector empty", what)
			return
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			bad("%s: selector: %v", what, err)
		} else if !s.Matches(podLabels) {
			bad("%s: selector %s does not match the pod labels %v", what, s, podLabels)
		}
	}
	matches("StatefulSet "+sts.Name, sts.Spec.Selector)
	for _, svc := range []*corev1.Service{m.headless, m.client} {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			bad("Service %s: selector %v does not match the pod labels %v", svc.Name, svc.Spec.Selector, podLabels)
		}
	}
	matches("PodDisruptionBudget "+m.pdb.Name, m.pdb.Spec.Selector)
	matches("NetworkPolicy "+m.np.Name, &m.np.Spec.PodSelector)

	// The headless Service.
	if m.headless.Spec.ClusterIP != corev1.ClusterIPNone {
		bad("Service %s: clusterIP %q, want None", m.headless.Name, m.headless.Spec.ClusterIP)
	}
	if !m.headless.Spec.PublishNotReadyAddresses {
		bad("Service %s: publishNotReadyAddresses is false: pods that are not ready yet (all of them, before the "+
			"cluster exists) would not be discovered", m.headless.Name)
	}
	if m.client.Spec.PublishNotReadyAddresses {
		bad("Service %s: publishNotReadyAddresses is true: clients would reach pods that are in no cluster", m.client.Name)
	}
	if sts.Spec.ServiceName != m.headless.Name {
		bad("StatefulSet %s: serviceName %q is not the headless Service %q", sts.Name, sts.Spec.ServiceName, m.headless.Name)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		bad("StatefulSet %s: podManagementPolicy %q, want Parallel: with OrderedReady, pod 1 waits for pod 0 to be ready, "+
			"which it is only once bootstrap_expect pods formed a cluster", sts.Name, sts.Spec.PodManagementPolicy)
	}

	// The ServiceAccount and its permissions.
	if pod.Spec.ServiceAccountName != m.sa.Name {
		bad("StatefulSet %s: serviceAccountName %q is not the ServiceAccount %q", sts.Name, pod.Spec.ServiceAccountName, m.sa.Name)
	}
	if m.rb.RoleRef.Kind != "Role" || m.rb.RoleRef.Name != m.role.Name || m.rb.RoleRef.APIGroup != rbacv1.GroupName {
		bad("RoleBinding %s: roleRef %+v is not the Role %q", m.rb.Name, m.rb.RoleRef, m.role.Name)
	}
	if !slices.ContainsFunc(m.rb.Subjects, func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.ServiceAccountKind && s.Name == m.sa.Name
	}) {
		bad("RoleBinding %s: does not bind the ServiceAccount %q", m.rb.Name, m.sa.Name)
	}
	for _, verb := range []string{"get", "list", "watch"} {
		if !slices.ContainsFunc(m.role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, "discovery.k8s.io") && slices.Contains(r.Resources, "endpointslices") &&
				(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*"))
		}) {
			bad("Role %s: does not grant %s on endpointslices (discovery.k8s.io)", m.role.Name, verb)
		}
	}

	// The PodDisruptionBudget.
	if mu := m.pdb.Spec.MaxUnavailable; mu == nil || *mu != intstr.FromInt32(1) {
		bad("PodDisruptionBudget %s: maxUnavailable %v, want 1", m.pdb.Name, mu)
	}

	// The configuration file: the ConfigMap key mounted where -config
	// points.
	raw, cfgErr := configFile(m)
	if cfgErr != nil {
		bad("%v", cfgErr)
		return errors.Join(errs...)
	}
	env, envErr := fakeEnv(sts.Name+"-0", ctr)
	if envErr != nil {
		bad("%v", envErr)
	}
	var unset []string
	expanded := os.Expand(raw, func(v string) string {
		val, ok := env[v]
		if !ok {
			unset = append(unset, v)
		}
		return val
	})
	for _, v := range slices.Compact(unset) {
		bad("the configuration uses ${%s}, which the container's env does not set", v)
	}
	cfg, disc, err := parseConfig(expanded)
	if err != nil {
		bad("%v", err)
		return errors.Join(errs...)
	}

	// The node's name is the pod's, and peers reach it at the pod's IP.
	if string(cfg.NodeID) != sts.Name+"-0" {
		bad("node_id %q is not the pod's name (an env var from metadata.name)", cfg.NodeID)
	}
	if cfg.BindAddr != fakePodIP {
		bad("bind_addr %q is not the pod's IP (an env var from status.podIP): the address in its EndpointSlice", cfg.BindAddr)
	}

	// Discovery.
	if disc.Type != "kubernetes" {
		bad("discovery.type %q, want kubernetes", disc.Type)
	}
	if disc.ServiceName != m.headless.Name {
		bad("discovery.service_name %q is not the headless Service %q", disc.ServiceName, m.headless.Name)
	}
	if disc.Namespace != "" && disc.Namespace != fakeNamespace {
		bad("discovery.namespace %q is not the pod's namespace (an env var from metadata.namespace)", disc.Namespace)
	}
	if replicas := cmpOr(sts.Spec.Replicas, new(int32(1))); disc.BootstrapExpect == 0 || int32(disc.BootstrapExpect) != *replicas {
		bad("discovery.bootstrap_expect %d is not the StatefulSet's replicas %d", disc.BootstrapExpect, *replicas)
	}
	portName := cmpOr(disc.PortName, "raft")
	if p, ok := servicePort(m.headless, portName); !ok {
		bad("Service %s: no port named %q (discovery.port_name)", m.headless.Name, portName)
	} else if n, err := containerPort(ctr, p.TargetPort, p.Port); err != nil {
		bad("Service %s: port %s: %v", m.headless.Name, portName, err)
	} else if n != int32(cfg.BindPort) {
		bad("Service %s: port %s reaches container port %d, but bind_port is %d", m.headless.Name, portName, n, cfg.BindPort)
	}

	// The APIs: what the Services and probes reach is what the node serves.
	apiHost, apiPort := splitPort(cfg.API.Addr)
	clientHost, clientPort := splitPort(cfg.API.ClientAddr)
	for _, a := range []struct {
		key, host string
	}{{"api.addr", apiHost}, {"api.client_addr", clientHost}} {
		if ip := net.ParseIP(a.host); a.host == "localhost" || (ip != nil && ip.IsLoopback()) {
			bad("%s %q: on loopback the kubelet's probes and the Services cannot reach it", a.key, a.host)
		}
	}
	// Discovery gives a node's Raft port only: members found that way
	// are reached on its default API and client ports (server.Member:
	// port + 100 and + 200) to forward writes and name the leader.
	if apiPort != int32(cfg.BindPort+100) || clientPort != int32(cfg.BindPort+200) {
		bad("api.addr port %d and api.client_addr port %d are not bind_port + 100 and + 200 (%d, %d), where "+
			"the other members look for them", apiPort, clientPort, cfg.BindPort+100, cfg.BindPort+200)
	}
	for _, svc := range []*corev1.Service{m.client, m.headless} {
		for _, want := range []struct {
			name string
			port int32
		}{{"api", apiPort}, {"client", clientPort}} {
			p, ok := servicePort(svc, want.name)
			if !ok {
				bad("Service %s: no port named %s", svc.Name, want.name)
				continue
			}
			if n, err := containerPort(ctr, p.TargetPort, p.Port); err != nil || n != want.port {
				bad("Service %s: port %s reaches container port %d (%v), but the node serves it on %d", svc.Name, want.name, n, err, want.port)
			}
		}
	}
	if cfg.AdminAPI.Enabled != nil && !*cfg.AdminAPI.Enabled {
		bad("admin_api.enabled is false: the probes' endpoints are the admin API's")
	}
	scheme := corev1.URISchemeHTTP
	if cfg.API.TLS || cfg.API.MTLS {
		scheme = corev1.URISchemeHTTPS
	}
	for _, pr := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", ctr.ReadinessProbe, "/health/ready"},
		{"livenessProbe", ctr.LivenessProbe, "/health/live"},
		{"startupProbe", ctr.StartupProbe, "/health/live"},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			bad("%s: missing, or not an httpGet", pr.what)
			continue
		}
		g := pr.probe.HTTPGet
		if want := cfg.AdminAPI.PathPrefix + pr.path; g.Path != want {
			bad("%s: path %q, but the node serves %s", pr.what, g.Path, want)
		}
		if n, err := containerPort(ctr, g.Port, 0); err != nil || n != apiPort {
			bad("%s: port %s is container port %d (%v), but the admin API is on api.addr's port %d", pr.what, g.Port.String(), n, err, apiPort)
		}
		if s := cmpOr(g.Scheme, corev1.URISchemeHTTP); s != scheme {
			bad("%s: scheme %s, but the API serves %s", pr.what, s, scheme)
		}
	}

	// Storage on the volume claimed per pod.
	if cfg.Storage.Type != "memory" && cfg.Storage.Type != "postgres" {
		var mount string
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			for _, vm := range ctr.VolumeMounts {
				if vm.Name == vct.Name {
					mount = vm.MountPath
				}
			}
		}
		if mount == "" || !within(cfg.Storage.Path, mount) {
			bad("storage.path %q is not on a volume of the StatefulSet's volumeClaimTemplates (mounted at %q)", cfg.Storage.Path, mount)
		}
	}

	// The NetworkPolicy keeps the Raft port to the consensus pods, since
	// the transport runs without mutual TLS.
	if cfg.Security.AllowInsecureTransport && !cfg.Security.EnableMTLS {
		if err := raftPortClosed(m.np, ctr, cfg.BindPort, podLabels); err != nil {
			bad("NetworkPolicy %s: %v", m.np.Name, err)
		}
	}
	return errors.Join(errs...)
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// configFile returns the configuration consensusd reads: the ConfigMap
// key mounted where the container's -config flag points.
func configFile(m *manifests) (string, error) {
	ctr := m.sts.Spec.Template.Spec.Containers[0]
	args := append(slices.Clone(ctr.Command), ctr.Args...)
	i := slices.Index(args, "-config")
	if i < 0 || i+1 >= len(args) {
		return "", fmt.Errorf("container %s: no -config FILE in its command and args %q", ctr.Name, args)
	}
	file := args[i+1]
	for _, vm := range ctr.VolumeMounts {
		if path.Dir(file) != path.Clean(vm.MountPath) {
			continue
		}
		for _, v := range m.sts.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.ConfigMap == nil || v.ConfigMap.Name != m.cm.Name {
				return "", fmt.Errorf("-config %s: volume %s is not the ConfigMap %s", file, v.Name, m.cm.Name)
			}
			raw, ok := m.cm.Data[path.Base(file)]
			if !ok {
				return "", fmt.Errorf("-config %s: ConfigMap %s has no key %s", file, m.cm.Name, path.Base(file))
			}
			return raw, nil
		}
	}
	return "", fmt.Errorf("-config %s: no volume is mounted at %s", file, path.Dir(file))
}

// fakeEnv is the container's environment in pod podName: the downward
// API's fields with their fake values, a secret's key as a value of its
// own.
func fakeEnv(podName string, ctr corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	var errs []error
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env[e.Name] = podName
			case "metadata.namespace":
				env[e.Name] = fakeNamespace
			case "status.podIP":
				env[e.Name] = fakePodIP
			default:
				errs = append(errs, fmt.Errorf("env %s: field %s is not simulated", e.Name, e.ValueFrom.FieldRef.FieldPath))
			}
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret-" + e.ValueFrom.SecretKeyRef.Name + "-" + e.ValueFrom.SecretKeyRef.Key
		default:
			errs = append(errs, fmt.Errorf("env %s: source not simulated", e.Name))
		}
	}
	return env, errors.Join(errs...)
}

// discoveryConfig is the discovery section, as the manifests use it.
type discoveryConfig struct {
	Type            string `yaml:"type"`
	Namespace       string `yaml:"namespace"`
	ServiceName     string `yaml:"service_name"`
	PortName        string `yaml:"port_name"`
	BootstrapExpect int    `yaml:"bootstrap_expect"`
	RefreshInterval string `yaml:"refresh_interval"`
}

// parseConfig parses the expanded configuration with consensusd's own
// parser, which also validates it, and reads its discovery section. While
// server.Config has no discovery section (it is being added), the file is
// parsed without it.
func parseConfig(expanded string) (server.Config, discoveryConfig, error) {
	var doc struct {
		Discovery discoveryConfig `yaml:"discovery"`
	}
	if err := yaml.Unmarshal([]byte(expanded), &doc); err != nil {
		return server.Config{}, doc.Discovery, fmt.Errorf("configuration: %w", err)
	}
	noEnv := func(string) string { return "" } // expanded already
	if !knowsKey(reflect.TypeFor[server.Config](), "discovery") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(expanded), &m); err != nil {
			return server.Config{}, doc.Discovery, fmt.Errorf("configuration: %w", err)
		}
		delete(m, "discovery")
		stripped, err := yaml.Marshal(m)
		if err != nil {
			return server.Config{}, doc.Discovery, err
		}
		expanded = string(stripped)
	}
	cfg, err := server.ParseConfig([]byte(expanded), noEnv)
	if err != nil {
		return server.Config{}, doc.Discovery, fmt.Errorf("configuration: %w", err)
	}
	return cfg, doc.Discovery, nil
}

// knowsKey reports whether a struct type has a field with YAML key key.
func knowsKey(t reflect.Type, key string) bool {
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return true
		}
	}
	return false
}

func servicePort(svc *corev1.Service, name string) (corev1.ServicePort, bool) {
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

// containerPort resolves a Service's targetPort, or a probe's port, to
// the container's port number; def is the Service port, the target when
// targetPort is unset.
func containerPort(ctr corev1.Container, target intstr.IntOrString, def int32) (int32, error) {
	if target.Type == intstr.String {
		if target.StrVal == "" {
			return def, nil
		}
		for _, p := range ctr.Ports {
			if p.Name == target.StrVal {
				return p.ContainerPort, nil
			}
		}
		return 0, fmt.Errorf("the container has no port named %q", target.StrVal)
	}
	n := target.IntVal
	if n == 0 {
		n = def
	}
	if n == 0 {
		return 0, errors.New("no port")
	}
	return n, nil
}

func splitPort(addr string) (string, int32) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(port)
	return host, int32(n)
}

// within reports whether p is dir or under it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// raftPortClosed checks that every ingress rule admitting the Raft port
// admits only pods with the consensus pods' labels.
func raftPortClosed(np *networkingv1.NetworkPolicy, ctr corev1.Container, raftPort int, podLabels labels.Set) error {
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		return errors.New("policyTypes lacks Ingress")
	}
	admitted := false
	for i, rule := range np.Spec.Ingress {
		covers := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			if p.Port == nil {
				covers = true
				continue
			}
			if n, err := containerPort(ctr, *p.Port, 0); err == nil && int(n) == raftPort {
				covers = true
			}
		}
		if !covers {
			continue
		}
		admitted = true
		if len(rule.From) == 0 {
			return fmt.Errorf("ingress[%d] admits anyone to the Raft port %d", i, raftPort)
		}
		for j, peer := range rule.From {
			if peer.IPBlock != nil || peer.NamespaceSelector != nil || peer.PodSelector == nil {
				return fmt.Errorf("ingress[%d].from[%d] admits more than the consensus pods to the Raft port", i, j)
			}
			s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil || !s.Matches(podLabels) || s.Empty() {
				return fmt.Errorf("ingress[%d].from[%d]: pod selector %v is not the consensus pods'", i, j, peer.PodSelector)
			}
		}
	}
	if !admitted {
		return fmt.Errorf("no ingress rule admits the consensus pods to the Raft port %d", raftPort)
	}
	return nil
}

func loadHere(t *testing.T) *manifests {
	t.Helper()
	m, err := load(".")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestManifests(t *testing.T) {
	if err := check(loadHere(t)); err != nil {
		t.Fatal(err)
	}
}

// Each check catches what it is for: a copy of the manifests with one
// thing broken fails with an error that says what.
func TestManifestChecks(t *testing.T) {
	m := loadHere(t)
	setConfig := func(old, new string) func(*manifests) {
		return func(m *manifests) {
			for k, v := range m.cm.Data {
				if !strings.Contains(v, old) {
					panic(fmt.Sprintf("the configuration has no %q", old))
				}
				m.cm.Data[k] = strings.Replace(v, old, new, 1)
			}
		}
	}
	ctr := func(m *manifests) *corev1.Container { return &m.sts.Spec.Template.Spec.Containers[0] }
	for _, tc := range []struct {
		name   string
		mutate func(*manifests)
		want   string
	}{
		{"headless selector", func(m *manifests) { m.headless.Spec.Selector["app.kubernetes.io/name"] = "other" },
			"Service consensus-peers: selector"},
		{"client selector", func(m *manifests) { m.client.Spec.Selector = nil }, "Service consensus: selector"},
		{"statefulset selector", func(m *manifests) { m.sts.Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "x" },
			"StatefulSet consensus: selector"},
		{"client service publishes not-ready pods", func(m *manifests) { m.client.Spec.PublishNotReadyAddresses = true },
			"clients would reach pods that are in no cluster"},
		{"statefulset serviceName", func(m *manifests) { m.sts.Spec.ServiceName = "consensus" }, "serviceName"},
		{"not headless", func(m *manifests) { m.headless.Spec.ClusterIP = "10.96.0.9" }, "clusterIP"},
		{"not-ready pods unpublished", func(m *manifests) { m.headless.Spec.PublishNotReadyAddresses = false },
			"publishNotReadyAddresses"},
		{"ordered ready", func(m *manifests) { m.sts.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement },
			"podManagementPolicy"},
		{"replicas", func(m *manifests) { m.sts.Spec.Replicas = new(int32(5)) }, "bootstrap_expect"},
		{"service account", func(m *manifests) { m.sts.Spec.Template.Spec.ServiceAccountName = "default" }, "serviceAccountName"},
		{"role without watch", func(m *manifests) { m.role.Rules[0].Verbs = []string{"get", "list"} },
			"does not grant watch on endpointslices"},
		{"role on endpoints", func(m *manifests) { m.role.Rules[0].APIGroups = []string{""} },
			"does not grant list on endpointslices"},
		{"binding another account", func(m *manifests) { m.rb.Subjects[0].Name = "default" }, "does not bind"},
		{"binding another role", func(m *manifests) { m.rb.RoleRef.Name = "view" }, "roleRef"},
		{"pdb selector", func(m *manifests) { m.pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "x" },
			"PodDisruptionBudget consensus: selector"},
		{"pdb max unavailable", func(m *manifests) { m.pdb.Spec.MaxUnavailable = new(intstr.FromInt32(2)) }, "maxUnavailable"},
		{"headless port renamed", func(m *manifests) { m.headless.Spec.Ports[0].Name = "peer" }, `no port named "raft"`},
		{"port_name", setConfig("port_name: raft", "port_name: api"), "reaches container port 7100, but bind_port is 7000"},
		{"container raft port", func(m *manifests) { ctr(m).Ports[0].ContainerPort = 7001 }, "but bind_port is 7000"},
		{"bind_port", setConfig("bind_port: 7000", "bind_port: 7005"), "but bind_port is 7005"},
		{"service_name", setConfig("service_name: consensus-peers", "service_name: consensus"), "discovery.service_name"},
		{"discovery type", setConfig("type: kubernetes", "type: dns"), "discovery.type"},
		{"namespace", setConfig("namespace: ${POD_NAMESPACE}", "namespace: default"), "discovery.namespace"},
		{"node_id", setConfig("node_id: ${POD_NAME}", "node_id: node-1"), "node_id"},
		{"bind_addr", setConfig("bind_addr: ${POD_IP}", "bind_addr: 0.0.0.0"), "bind_addr"},
		{"env missing", func(m *manifests) { ctr(m).Env = ctr(m).Env[1:] }, "${POD_NAME}, which the container's env does not set"},
		{"api on loopback", setConfig("addr: 0.0.0.0:7100", "addr: 127.0.0.1:7100"), "api.addr"},
		{"api port", setConfig("addr: 0.0.0.0:7100", "addr: 0.0.0.0:7300"), "admin API is on api.addr's port 7300"},
		{"client port", setConfig("client_addr: 0.0.0.0:7200", "client_addr: 0.0.0.0:7201"), "are not bind_port + 100 and + 200"},
		{"readiness path", func(m *manifests) { ctr(m).ReadinessProbe.HTTPGet.Path = "/consensus/health" }, "readinessProbe: path"},
		{"liveness path", func(m *manifests) { ctr(m).LivenessProbe.HTTPGet.Path = "/health/live" }, "livenessProbe: path"},
		{"probe port", func(m *manifests) { ctr(m).ReadinessProbe.HTTPGet.Port = intstr.FromString("client") }, "readinessProbe: port"},
		{"probe prefix", setConfig("storage:", "admin_api:\n  path_prefix: /admin\nstorage:"), "but the node serves /admin/health/ready"},
		{"storage outside the volume", setConfig("path: /var/lib/consensus/data", "path: /data"), "storage.path"},
		{"configmap renamed", func(m *manifests) { m.cm.Name = "other" }, "is not the ConfigMap other"},
		{"raft port open", func(m *manifests) { m.np.Spec.Ingress[0].From = nil }, "admits anyone to the Raft port"},
		{"np selector", func(m *manifests) { m.np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] = "x" },
			"NetworkPolicy consensus-peers: selector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := m.clone()
			tc.mutate(c)
			err := check(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check = %v, want an error with %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// The loader refuses what kubectl would apply wrongly or not at all.
func TestLoadStrict(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  clusterIP: None\n  publishNotReadyAdresses: true\n")
	if _, err := load(dir); err == nil || !strings.Contains(err.Error(), "publishNotReadyAdresses") {
		t.Fatalf("misspelt field: err = %v", err)
	}
	write("svc.yaml", "apiVersion: v1\nkind: Sevrice\nmetadata: {name: x}\n")
	if _, err := load(dir); err == nil {
		t.Fatal("unknown kind accepted")
	}
	write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
	if _, err := load(dir); err == nil || !strings.Contains(err.Error(), "no ") {
		t.Fatalf("missing objects: err = %v", err)
	}
}
