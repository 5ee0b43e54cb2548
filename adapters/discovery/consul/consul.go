// Package consul is the Consul discovery mechanism: each node registers
// itself as an instance of a Consul service with its local Consul agent,
// keeps the registration passing with a TTL health check, and finds the
// other nodes among the service's passing instances. It is a package of
// its own so that the Consul client is linked only into programs that
// use it.
//
// # What Consul holds
//
// A node registers, with the agent at discovery.consul_address, a
// service named discovery.service_name ("forge-consensus") whose
// instance ID is "<service_name>-<node_name>" ("<service_name>-<tag>-<node_name>"
// with discovery.consul_tag set), at the address and port of its Raft
// transport, tagged with discovery.consul_tag when set, with the node's
// name in the instance's metadata (key "node_name"), and with one TTL
// check that the node passes every third of discovery.consul_check_ttl.
//
// A TTL check, rather than a TCP check on the Raft port, because it
// needs nothing of the network between the agent and the node (the
// agent need not be able to reach the Raft port), and because it
// follows the process: a node that stopped, hung or lost its agent
// stops passing it, and within the TTL its instance turns critical and
// leaves the passing list every node reads. The check carries
// DeregisterCriticalServiceAfter (discovery.consul_deregister_after,
// at least Consul's minimum of one minute), so the agent removes the
// instance of a node that died without deregistering.
//
// # Failures
//
// When the agent forgets the registration (it restarted without the
// service in its configuration, or an operator removed it), passing the
// check fails (404, or 500 on older agents); the node then registers
// again, and on failure keeps trying with a back-off that starts at
// 250ms and never waits longer than the keep-alive period. While the
// keep-alive fails, LastError returns its error and Lookup fails with
// it (the discovery contract: keep-alive errors surface through the
// next Lookup), so a node whose own registration is broken does not
// take part in bootstrap decisions as if all were well.
//
// Lookup reads the service's passing instances from the health endpoint
// (one request, bounded by Config.Timeout); Changes follows the same
// endpoint with blocking queries. Membership is never changed from
// here: discovery only finds candidates.
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/nodename"
)

// Defaults and limits of Config.
const (
	DefaultAddress     = "127.0.0.1:8500"
	DefaultServiceName = "forge-consensus"
	DefaultCheckTTL    = 10 * time.Second
	DefaultDeregister  = time.Minute
	DefaultTimeout     = 10 * time.Second
	DefaultWatchWait   = 5 * time.Minute
	MinCheckTTL        = time.Second
	MinDeregisterAfter = time.Minute
	MaxWatchWait       = 10 * time.Minute
)

const (
	// metaNodeName is the instance metadata key holding the node's name.
	metaNodeName = "node_name"
	// keepAliveBackoff is the first retry delay of a failed keep-alive.
	keepAliveBackoff = 250 * time.Millisecond
	// watchBackoff and watchBackoffMax bound the retry delay of a failed
	// blocking query.
	watchBackoff    = 250 * time.Millisecond
	watchBackoffMax = 30 * time.Second
	// watchMinQueryPeriod is the least time between two blocking queries'
	// starts, so a query that returns at once cannot spin.
	watchMinQueryPeriod = 100 * time.Millisecond
)

// TLSConfig configures TLS to the Consul agent (discovery.consul_tls.*).
// Any field set requires scheme https.
type TLSConfig struct {
	// CAFile is a PEM file of the certificate authorities that sign the
	// agent's certificate (discovery.consul_tls.ca_file); "" trusts the
	// host's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key shown
	// to an agent that verifies clients (discovery.consul_tls.cert_file,
	// discovery.consul_tls.key_file); both or neither.
	CertFile string
	KeyFile  string
	// ServerName is the name the agent's certificate must carry
	// (discovery.consul_tls.server_name); "" uses the host of
	// discovery.consul_address.
	ServerName string
	// InsecureSkipVerify turns off verification of the agent's
	// certificate (discovery.consul_tls.insecure_skip_verify): for tests
	// only.
	InsecureSkipVerify bool
}

func (t TLSConfig) set() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Config configures the Consul mechanism. The environment does not
// change it, except for the token (see Token) and, as for every Consul
// client, Consul Enterprise's CONSUL_NAMESPACE and CONSUL_PARTITION.
type Config struct {
	// Address is the local Consul agent's HTTP API
	// (discovery.consul_address): "host:port", "http://host:port",
	// "https://host:port" or "unix:///path/to/socket". ""
	// means DefaultAddress, 127.0.0.1:8500. Register with the agent on
	// the node's own host: the registration lives as long as that agent
	// knows it.
	Address string
	// Scheme is "http" or "https" (discovery.consul_scheme); "" means
	// the scheme of Address if it has one, else "http".
	Scheme string
	// TLS configures https (discovery.consul_tls.*).
	TLS TLSConfig
	// Token is the ACL token sent with every request
	// (discovery.consul_token). "" uses the token Consul's own tools
	// use: the file named by CONSUL_HTTP_TOKEN_FILE, else
	// CONSUL_HTTP_TOKEN, else none (the agent's default token). With
	// ACLs on it needs service:write on ServiceName (to register) and
	// service:read on it plus node:read (to look up).
	Token string
	// Datacenter is the datacenter whose instances Lookup and Changes
	// read (discovery.consul_datacenter); "" means the agent's own.
	// Registration always goes to the local agent, in its datacenter,
	// so leave this empty unless every node's agent is in the named one.
	Datacenter string
	// ServiceName is the Consul service the nodes register as
	// (discovery.service_name); "" means DefaultServiceName,
	// "forge-consensus". Letters, digits and '-' only, so the name is
	// also a valid DNS label for Consul's DNS interface.
	ServiceName string
	// Tag, when set (discovery.consul_tag), is added to each node's
	// registration and required of the instances Lookup returns, so two
	// clusters sharing a service name (and a Consul datacenter) do not
	// find each other's nodes: the cluster_id is a natural choice. Letters,
	// digits, '-', '_' and '.', at most 128 bytes.
	Tag string
	// CheckTTL is the TTL of each node's health check
	// (discovery.consul_check_ttl); the node passes it every CheckTTL/3.
	// Zero means DefaultCheckTTL (10s); at least MinCheckTTL (1s). A node
	// that stops leaves the passing list within CheckTTL.
	CheckTTL time.Duration
	// DeregisterAfter is how long a node's check may stay critical
	// before the agent removes its instance
	// (discovery.consul_deregister_after). Zero means DefaultDeregister;
	// at least MinDeregisterAfter (1m), Consul's minimum. Consul's reaper
	// runs every 30 seconds, so removal can take that much longer.
	DeregisterAfter time.Duration
	// Timeout bounds each request other than a blocking query (a lookup,
	// a registration, a keep-alive); zero means DefaultTimeout.
	Timeout time.Duration
	// WatchWait is the longest a blocking query of Changes waits for a
	// change (Consul adds up to WatchWait/16); zero means
	// DefaultWatchWait (5m), at most MaxWatchWait (10m), Consul's limit.
	WatchWait time.Duration
	// Logger receives keep-alive and watch failures; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Source is the Consul mechanism: a discovery.Registrar and a
// discovery.Watcher. It is safe for concurrent use.
type Source struct {
	cfg    Config
	client *api.Client
	target string // the agent, for errors
	log    *slog.Logger

	mu      sync.Mutex
	keepErr map[string]error // by service ID: the failing keep-alives
}

var (
	_ discovery.Registrar = (*Source)(nil)
	_ discovery.Watcher   = (*Source)(nil)
)

// New checks cfg, fills in its defaults and returns the Source it
// describes. It does not contact Consul.
func New(cfg Config) (*Source, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	ac := &api.Config{Address: cfg.Address, Scheme: cfg.Scheme, Token: cfg.Token}
	if !strings.HasPrefix(cfg.Address, "unix://") {
		// Our own transport, so that TLS comes from cfg alone (NewClient
		// would fill empty TLS settings from CONSUL_CACERT and friends).
		tlsConf, err := api.SetupTLSConfig(&api.TLSConfig{
			Address:            cfg.TLS.ServerName,
			CAFile:             cfg.TLS.CAFile,
			CertFile:           cfg.TLS.CertFile,
			KeyFile:            cfg.TLS.KeyFile,
			InsecureSkipVerify: cfg.TLS.InsecureSkipVerify,
		})
		if err != nil {
			return nil, fmt.Errorf("discovery.consul_tls: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsConf
		tr.MaxIdleConnsPerHost = 4
		ac.Transport = tr
		ac.HttpClient = &http.Client{Transport: tr}
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("discovery.consul_address: %q: %w", cfg.Address, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	target := cfg.Address
	if !strings.Contains(target, "://") {
		target = cfg.Scheme + "://" + target
	}
	return &Source{
		cfg:     cfg,
		client:  client,
		target:  target,
		log:     log.With("discovery", "consul", "service", cfg.ServiceName),
		keepErr: map[string]error{},
	}, nil
}

func (c *Config) normalize() error {
	c.Address = strings.TrimSpace(c.Address)
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	scheme, rest, hasScheme := strings.Cut(c.Address, "://")
	if !hasScheme {
		scheme, rest = "", c.Address
	}
	switch scheme {
	case "", "http", "https":
		if strings.ContainsAny(rest, "/?#") {
			return fmt.Errorf("discovery.consul_address: %q: want host:port, http://host:port or https://host:port, without a path", c.Address)
		}
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return fmt.Errorf("discovery.consul_address: %q is not host:port (e.g. 127.0.0.1:8500): %w", c.Address, err)
		}
		if host == "" {
			return fmt.Errorf("discovery.consul_address: %q has no host", c.Address)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("discovery.consul_address: %q: port %q is not in 1..65535", c.Address, port)
		}
	case "unix":
		if !strings.HasPrefix(rest, "/") {
			return fmt.Errorf("discovery.consul_address: %q: a unix socket needs an absolute path (unix:///run/consul/http.sock)", c.Address)
		}
	default:
		return fmt.Errorf("discovery.consul_address: %q: unknown scheme %q; use http://, https:// or unix://", c.Address, scheme)
	}
	switch {
	case c.Scheme != "" && c.Scheme != "http" && c.Scheme != "https":
		return fmt.Errorf("discovery.consul_scheme: %q is neither http nor https", c.Scheme)
	case c.Scheme != "" && (scheme == "http" || scheme == "https") && scheme != c.Scheme:
		return fmt.Errorf("discovery.consul_scheme: %q contradicts discovery.consul_address %q", c.Scheme, c.Address)
	case c.Scheme != "" && scheme == "unix":
		return fmt.Errorf("discovery.consul_scheme: %q does not apply to a unix socket (discovery.consul_address %q)", c.Scheme, c.Address)
	case c.Scheme == "" && scheme == "https":
		c.Scheme = "https"
	case c.Scheme == "":
		c.Scheme = "http"
	}
	if scheme == "http" || scheme == "https" {
		c.Address = rest // the scheme lives in c.Scheme
	}
	if c.TLS.set() && c.Scheme != "https" {
		return fmt.Errorf("discovery.consul_tls: set, but the agent is reached over %s; use an https:// discovery.consul_address or discovery.consul_scheme https", c.Scheme)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("discovery.consul_tls.cert_file and discovery.consul_tls.key_file: give both or neither")
	}
	for _, f := range []struct{ key, path string }{
		{"discovery.consul_tls.ca_file", c.TLS.CAFile},
		{"discovery.consul_tls.cert_file", c.TLS.CertFile},
		{"discovery.consul_tls.key_file", c.TLS.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	if c.Token != "" && strings.TrimSpace(c.Token) != c.Token {
		return errors.New("discovery.consul_token: has leading or trailing white space")
	}
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
	if err := checkServiceName(c.ServiceName); err != nil {
		return fmt.Errorf("discovery.service_name: %q: %w", c.ServiceName, err)
	}
	if c.Datacenter != "" && !validChars(c.Datacenter, "-_") {
		return fmt.Errorf("discovery.consul_datacenter: %q: only letters, digits, '-' and '_' are allowed", c.Datacenter)
	}
	if c.Tag != "" && (len(c.Tag) > 128 || !validChars(c.Tag, "-_.")) {
		return fmt.Errorf("discovery.consul_tag: %q: at most 128 letters, digits, '-', '_' and '.'", c.Tag)
	}
	switch {
	case c.CheckTTL == 0:
		c.CheckTTL = DefaultCheckTTL
	case c.CheckTTL < MinCheckTTL:
		return fmt.Errorf("discovery.consul_check_ttl: %v is shorter than %v", c.CheckTTL, MinCheckTTL)
	}
	switch {
	case c.DeregisterAfter == 0:
		c.DeregisterAfter = DefaultDeregister
	case c.DeregisterAfter < MinDeregisterAfter:
		return fmt.Errorf("discovery.consul_deregister_after: %v is shorter than %v, Consul's minimum", c.DeregisterAfter, MinDeregisterAfter)
	}
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("discovery: consul timeout %v is negative", c.Timeout)
	case c.Timeout == 0:
		c.Timeout = DefaultTimeout
	}
	switch {
	case c.WatchWait < 0 || c.WatchWait > MaxWatchWait:
		return fmt.Errorf("discovery: consul watch wait %v is not in 0..%v", c.WatchWait, MaxWatchWait)
	case c.WatchWait == 0:
		c.WatchWait = DefaultWatchWait
	}
	return nil
}

// checkServiceName accepts what Consul's DNS interface can serve: 1 to
// 63 letters, digits and '-', not starting or ending with '-'.
func checkServiceName(name string) error {
	switch {
	case len(name) > 63:
		return fmt.Errorf("%d bytes, at most 63", len(name))
	case !validChars(name, "-"):
		return errors.New("only letters, digits and '-' are allowed")
	case name[0] == '-' || name[len(name)-1] == '-':
		return errors.New("starts or ends with '-'")
	}
	return nil
}

// validChars reports whether s is non-empty and all ASCII letters,
// digits and the bytes of extra.
func validChars(s, extra string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// Kind returns "consul".
func (s *Source) Kind() string { return "consul" }

// ServiceID returns the Consul service instance ID a node named
// nodeName registers under: "<service_name>-<node_name>", or
// "<service_name>-<tag>-<node_name>" with a tag. Instance IDs are
// unique per agent, so two clusters that share an agent (and differ in
// service name or tag) do not overwrite each other's instances.
func (s *Source) ServiceID(nodeName string) string {
	if s.cfg.Tag != "" {
		return s.cfg.ServiceName + "-" + s.cfg.Tag + "-" + nodeName
	}
	return s.cfg.ServiceName + "-" + nodeName
}

// CheckID returns the ID of the TTL check of the node named nodeName:
// "service:" and its service ID, the name Consul gives a service's
// single check.
func (s *Source) CheckID(nodeName string) string { return "service:" + s.ServiceID(nodeName) }

// Lookup returns the passing instances of the service (with the tag,
// when configured), sorted and without duplicates. Each is named by
// its "node_name" metadata when that is a valid node name (the name a
// node registered with), else unnamed (an instance registered by
// other means: a probe names it); its host is the instance's address,
// or its Consul node's address when the instance has none; an instance
// without a usable port is skipped.
//
// While a keep-alive of a registration made through this Source fails,
// Lookup fails with its error instead.
func (s *Source) Lookup(ctx context.Context) ([]discovery.Candidate, error) {
	if err := s.LastError(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	entries, _, err := s.client.Health().Service(s.cfg.ServiceName, s.cfg.Tag, true, s.query(ctx, 0, 0))
	if err != nil {
		return nil, s.failed("looking up the passing instances of service "+strconv.Quote(s.cfg.ServiceName), "service:read and node:read", err)
	}
	return s.candidates(entries), nil
}

// query returns the options of a health query.
func (s *Source) query(ctx context.Context, index uint64, wait time.Duration) *api.QueryOptions {
	q := &api.QueryOptions{Datacenter: s.cfg.Datacenter, WaitIndex: index, WaitTime: wait}
	return q.WithContext(ctx)
}

func (s *Source) candidates(entries []*api.ServiceEntry) []discovery.Candidate {
	out := make([]discovery.Candidate, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		c := discovery.Candidate{Host: e.Service.Address, Port: e.Service.DefaultPort()}
		if c.Host == "" && e.Node != nil {
			c.Host = e.Node.Address
		}
		if c.Host == "" || c.Port < 1 || c.Port > 65535 {
			s.log.Debug("skipping an instance without a usable address", "id", e.Service.ID, "address", c.Host, "port", c.Port)
			continue
		}
		if name := e.Service.Meta[metaNodeName]; name != "" {
			if _, err := nodename.ID(name); err == nil {
				c.Name = name
			}
		}
		out = append(out, c)
	}
	return discovery.Sort(out)
}

// failed wraps err of a request to the agent, with a hint when the
// agent refused the ACL token.
func (s *Source) failed(what, perms string, err error) error {
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusForbidden {
		return fmt.Errorf("discovery: consul: %s at %s: %w (the ACL token, discovery.consul_token or CONSUL_HTTP_TOKEN, is missing, unknown or lacks %s on %q)",
			what, s.target, err, perms, s.cfg.ServiceName)
	}
	return fmt.Errorf("discovery: consul: %s at %s: %w", what, s.target, err)
}

// LastError returns the error of the last keep-alive of a registration
// made through this Source, while it keeps failing; nil when every
// registration is being kept (or there is none).
func (s *Source) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keepErr) == 0 {
		return nil
	}
	ids := make([]string, 0, len(s.keepErr))
	for id := range s.keepErr {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return s.keepErr[ids[0]]
}

func (s *Source) setKeepErr(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.keepErr, id)
		return
	}
	s.keepErr[id] = err
}

// Register registers self (its name, and the address and port of its
// Raft transport) with the agent, with a passing TTL check, and keeps
// the check passing every CheckTTL/3 until ctx ends or stop is called;
// see the package documentation for what it does when the agent
// forgets the registration. When ctx ends the registration is left to
// lapse: the check turns critical within CheckTTL, so the node leaves
// the passing list, and the agent removes it DeregisterAfter later.
// stop ends the keep-alive and deregisters the instance (bounded by
// Config.Timeout; a failure is logged); it may be called more than
// once, and after ctx ended.
func (s *Source) Register(ctx context.Context, self discovery.Candidate) (stop func(), err error) {
	if _, err := nodename.ID(self.Name); err != nil {
		return nil, fmt.Errorf("discovery: consul: registering: %w", err)
	}
	if self.Host == "" {
		return nil, fmt.Errorf("discovery: consul: registering %s: no host", self.Name)
	}
	if self.Port < 1 || self.Port > 65535 {
		return nil, fmt.Errorf("discovery: consul: registering %s: port %d is not in 1..65535", self.Name, self.Port)
	}
	reg := s.registration(self)
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err = s.register(rctx, reg)
	cancel()
	if err != nil {
		return nil, err
	}
	s.log.Info("registered", "id", reg.ID, "address", self.Addr(), "check_ttl", s.cfg.CheckTTL)
	kctx, kcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.keepAlive(kctx, reg)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			kcancel()
			<-done
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
			defer cancel()
			err := s.client.Agent().ServiceDeregisterOpts(reg.ID, (&api.QueryOptions{}).WithContext(dctx))
			if err != nil {
				s.log.Warn("deregistering failed; the instance lapses instead", "id", reg.ID, "err", s.failed("deregistering "+reg.ID, "service:write", err))
				return
			}
			s.log.Info("deregistered", "id", reg.ID)
		})
	}, nil
}

func (s *Source) registration(self discovery.Candidate) *api.AgentServiceRegistration {
	id := s.ServiceID(self.Name)
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    s.cfg.ServiceName,
		Address: self.Host,
		Port:    self.Port,
		Meta:    map[string]string{metaNodeName: self.Name},
		Check: &api.AgentServiceCheck{
			CheckID:                        "service:" + id,
			Name:                           "forge-consensus keep-alive",
			Notes:                          fmt.Sprintf("passed by node %s every %v; critical when it stops", self.Name, s.cfg.CheckTTL/3),
			TTL:                            s.cfg.CheckTTL.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: s.cfg.DeregisterAfter.String(),
		},
	}
	if s.cfg.Tag != "" {
		reg.Tags = []string{s.cfg.Tag}
	}
	return reg
}

// register (re)registers reg, replacing the checks the agent has for it.
func (s *Source) register(ctx context.Context, reg *api.AgentServiceRegistration) error {
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := s.client.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return s.failed("registering "+reg.ID, "service:write", err)
	}
	return nil
}

// keepAlive passes reg's check every CheckTTL/3 until ctx ends. When
// passing fails it registers again at once, and after a failure of
// that retries with a back-off from keepAliveBackoff up to the
// keep-alive period.
func (s *Source) keepAlive(ctx context.Context, reg *api.AgentServiceRegistration) {
	defer s.setKeepErr(reg.ID, nil)
	period := s.cfg.CheckTTL / 3
	t := time.NewTimer(period)
	defer t.Stop()
	needRegister := false
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.refresh(ctx, reg, &needRegister)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			s.setKeepErr(reg.ID, fmt.Errorf("discovery: consul: keeping the registration %s: %w", reg.ID, err))
			s.log.Warn("keep-alive failed", "id", reg.ID, "failures", failures, "err", err)
			t.Reset(min(period, keepAliveBackoff<<min(failures-1, 16)))
			continue
		}
		if failures > 0 {
			s.log.Info("keep-alive recovered", "id", reg.ID, "after_failures", failures)
		}
		failures = 0
		s.setKeepErr(reg.ID, nil)
		t.Reset(period)
	}
}

// refresh passes reg's check, or registers reg again when passing
// fails or failed before.
func (s *Source) refresh(ctx context.Context, reg *api.AgentServiceRegistration, needRegister *bool) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var passErr error
	if !*needRegister {
		passErr = s.client.Agent().UpdateTTLOpts(reg.Check.CheckID, "alive", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx))
		if passErr == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		passErr = s.failed("passing check "+reg.Check.CheckID, "service:write", passErr)
		s.log.Info("passing the check failed; registering again", "id", reg.ID, "err", passErr)
	}
	*needRegister = true
	if err := s.register(ctx, reg); err != nil {
		if passErr != nil {
			return fmt.Errorf("%w (after %w)", err, passErr)
		}
		return err
	}
	*needRegister = false
	s.log.Info("registered again", "id", reg.ID)
	return nil
}

// Changes follows the service's passing instances with blocking
// queries on the health endpoint and sends a value when they change:
// once for the first answer (so a change between the caller's last
// Lookup and the start of the watch is not missed), then whenever
// Consul's index moved and the candidates differ from the previous
// answer's. Sends do not block and coalesce (the channel holds one
// value). The index is reset when it goes backwards (a snapshot
// restore), and never waited on as 0, as Consul's documentation asks;
// queries start at most every 100ms; errors are logged and retried with
// a back-off from 250ms to 30s. The channel is closed when ctx ends.
func (s *Source) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		s.watch(ctx, ch)
	}()
	return ch
}

func (s *Source) watch(ctx context.Context, ch chan<- struct{}) {
	var (
		index    uint64
		last     []discovery.Candidate
		baseline bool // last holds an answer
		failures int
		started  time.Time
	)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	for {
		if wait := watchMinQueryPeriod - time.Since(started); wait > 0 && !started.IsZero() {
			if !sleep(ctx, wait) {
				return
			}
		}
		started = time.Now()
		// The request may take WatchWait plus Consul's jitter of up to
		// WatchWait/16; give it Timeout more before giving up on it.
		qctx, cancel := context.WithTimeout(ctx, s.cfg.WatchWait+s.cfg.WatchWait/16+s.cfg.Timeout)
		entries, meta, err := s.client.Health().Service(s.cfg.ServiceName, s.cfg.Tag, true, s.query(qctx, index, s.cfg.WatchWait))
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			delay := min(watchBackoffMax, watchBackoff<<min(failures-1, 16))
			s.log.Warn("watch failed", "failures", failures, "retry_in", delay,
				"err", s.failed("watching service "+strconv.Quote(s.cfg.ServiceName), "service:read and node:read", err))
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		failures = 0
		cands := s.candidates(entries)
		switch {
		case meta.LastIndex < index:
			// Consul's index went backwards (a snapshot restore, ...): start
			// over without an index, as its documentation says.
			index = 0
			if !slices.Equal(cands, last) {
				notify()
			}
			last = cands
			continue
		case !baseline, meta.LastIndex != index && !slices.Equal(cands, last):
			notify()
		}
		baseline = true
		last = cands
		index = max(meta.LastIndex, 1) // never wait on 0: it would not block
	}
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
