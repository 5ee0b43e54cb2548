package server

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/adapters/discovery/consul"
	"github.com/forge-consensus/consensus/adapters/discovery/etcd"
	"github.com/forge-consensus/consensus/adapters/discovery/kubernetes"
)

// DefaultRefreshInterval is discovery.refresh_interval when unset.
const DefaultRefreshInterval = 5 * time.Second

// DiscoveryConfig is discovery.*: how a node finds the nodes it forms a
// cluster with, or the cluster it joins, and their addresses.
//
// With type static (the default) the peers list is the cluster, as
// before. With any other type the peers list must be empty: the node
// looks its candidates up, asks each (POST /discovery/hello on its HTTP
// API) whether it is a member, and then
//   - joins the existing cluster, asking a member to add it (learner
//     first, then voter once caught up), or
//   - with bootstrap_expect N, forms a new cluster once exactly N nodes
//     without a cluster have found each other and every one of them has
//     promised the same N voters (package discovery/bootstrap: one
//     cluster forms, never two, whatever order nodes start in), or
//   - waits, saying why.
//
// Once a member, a node ignores bootstrap_expect and keeps looking its
// candidates up only to follow members that moved to a new address.
// Discovery never adds or removes members by itself beyond asking for
// its own node to be added: removing a departed node is the operator's
// call (POST /consensus/remove-node).
//
// Every node is assumed to use the same port layout: a candidate's HTTP
// API is at its Raft port plus the offset of this node's api.addr port
// from its bind_port (100 by default), its client protocol likewise.
type DiscoveryConfig struct {
	// Type is static (default), dns, etcd, consul or kubernetes.
	Type string `yaml:"type"`
	// BootstrapExpect is the number of voters a new cluster forms with
	// (0: this node never forms one, it only joins an existing cluster).
	BootstrapExpect int `yaml:"bootstrap_expect"`
	// RefreshInterval is how often candidates are looked up again
	// (default DefaultRefreshInterval; mechanisms that can watch say
	// sooner).
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// AdvertiseAddr is this node's address as the others reach it, its
	// Raft port being bind_port (default bind_addr; required when
	// bind_addr is a wildcard such as 0.0.0.0). Usually ${POD_IP} or the
	// host's address.
	AdvertiseAddr string `yaml:"advertise_addr"`

	// DNSName is the name looked up (dns): A/AAAA records, or with SRV
	// the full SRV name ("_raft._tcp.consensus.example.com").
	DNSName string `yaml:"dns_name"`
	// SRV selects SRV records (dns).
	SRV bool `yaml:"srv"`
	// Port is the Raft port of nodes found through A/AAAA records (dns;
	// default bind_port).
	Port int `yaml:"port"`
	// DNSServer is the host:port of the DNS server to ask (dns; default
	// the servers of /etc/resolv.conf).
	DNSServer string `yaml:"dns_server"`

	// EtcdEndpoints are the etcd servers (etcd).
	EtcdEndpoints []string `yaml:"etcd_endpoints"`
	// Prefix is the etcd key prefix registrations live under (etcd).
	Prefix string `yaml:"prefix"`
	// EtcdTLS are the files of TLS to etcd (etcd).
	EtcdTLS DiscoveryTLS `yaml:"etcd_tls"`
	// EtcdUsername and EtcdPassword authenticate to etcd (etcd).
	EtcdUsername string `yaml:"etcd_username"`
	EtcdPassword string `yaml:"etcd_password"`
	// EtcdTTL is the lease TTL of the node's registration (etcd; default
	// 10s, at least 2s, whole seconds).
	EtcdTTL time.Duration `yaml:"etcd_ttl"`
	// EtcdDialTimeout bounds each request to etcd (etcd; default 5s).
	EtcdDialTimeout time.Duration `yaml:"etcd_dial_timeout"`

	// ConsulAddress is the Consul agent's host:port (consul).
	ConsulAddress string `yaml:"consul_address"`
	// ConsulToken is the ACL token (consul).
	ConsulToken string `yaml:"consul_token"`
	// ConsulDatacenter is the datacenter asked (consul; default the
	// agent's).
	ConsulDatacenter string `yaml:"consul_datacenter"`
	// ConsulScheme is http or https (consul; default the address's, else
	// http).
	ConsulScheme string `yaml:"consul_scheme"`
	// ConsulTLS are the files of TLS to the agent (consul).
	ConsulTLS ConsulTLS `yaml:"consul_tls"`
	// ConsulTag is a tag registered and required on lookup, so that two
	// clusters sharing a service name stay apart (consul; default none).
	ConsulTag string `yaml:"consul_tag"`
	// ConsulCheckTTL is the TTL of the node's health check, passed every
	// third of it (consul; default 10s).
	ConsulCheckTTL time.Duration `yaml:"consul_check_ttl"`
	// ConsulDeregisterAfter is how long a node's check may stay critical
	// before Consul removes it (consul; default and minimum 1m).
	ConsulDeregisterAfter time.Duration `yaml:"consul_deregister_after"`

	// ServiceName is the Consul service (consul) or the Kubernetes
	// Service (kubernetes) the nodes are found through.
	ServiceName string `yaml:"service_name"`
	// Namespace is the Kubernetes namespace (kubernetes; default the
	// pod's own).
	Namespace string `yaml:"namespace"`
	// PortName is the name of the Service's Raft port (kubernetes;
	// default "raft").
	PortName string `yaml:"port_name"`
	// Kubeconfig is a kubeconfig file (kubernetes; default the in-cluster
	// configuration).
	Kubeconfig string `yaml:"kubeconfig"`

	// Source, set in code, is the mechanism to use instead of the one
	// Type names: a program's own, or one built with options YAML does
	// not have. Type then defaults to its Kind.
	Source discovery.Source `yaml:"-"`
}

// DiscoveryTLS names the files of a TLS client configuration.
type DiscoveryTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// ConsulTLS is DiscoveryTLS with the name the agent's certificate must
// carry (default the host of the address).
type ConsulTLS struct {
	DiscoveryTLS `yaml:",inline"`
	ServerName   string `yaml:"server_name"`
}

// Enabled reports whether the node finds its cluster by discovery rather
// than from the peers list.
func (d DiscoveryConfig) Enabled() bool { return d.Type != "" && d.Type != "static" }

func (d *DiscoveryConfig) applyDefaults(c *Config) {
	if d.Type == "" && d.Source != nil {
		d.Type = d.Source.Kind()
	}
	if d.Type == "" {
		d.Type = "static"
	}
	if d.RefreshInterval == 0 {
		d.RefreshInterval = DefaultRefreshInterval
	}
	if d.Type == "dns" && !d.SRV && d.Port == 0 {
		d.Port = c.BindPort
	}
	if d.AdvertiseAddr == "" && c.BindAddr != "" {
		if ip := net.ParseIP(c.BindAddr); ip == nil || !ip.IsUnspecified() {
			d.AdvertiseAddr = c.BindAddr
		}
	}
}

// validate checks discovery.*; peersGiven says whether the peers list
// came from the configuration (it must then be empty with a discovery
// type other than static).
func (d DiscoveryConfig) validate(c *Config) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: discovery.%s: %s", ErrInvalidConfig, key, fmt.Sprintf(format, args...))
	}
	switch {
	case d.Source != nil && d.Type == "static":
		return bad("type", "static with a Source set in code")
	case d.Source != nil:
	case d.Type == "static":
		if d.BootstrapExpect != 0 {
			return bad("bootstrap_expect", "applies to discovery.type dns, etcd, consul and kubernetes; "+
				"with static the peers list is the initial cluster")
		}
		return nil
	case slices.Contains([]string{"dns", "etcd", "consul", "kubernetes"}, d.Type):
	default:
		return bad("type", "%q is not static, dns, etcd, consul or kubernetes", d.Type)
	}
	switch {
	case d.BootstrapExpect < 0:
		return bad("bootstrap_expect", "%d is negative (0: only join an existing cluster)", d.BootstrapExpect)
	case d.RefreshInterval < 100*time.Millisecond:
		return bad("refresh_interval", "%v is below 100ms", d.RefreshInterval)
	case d.AdvertiseAddr == "":
		return bad("advertise_addr", "required when bind_addr (%q) is a wildcard: the address the other nodes reach this one at", c.BindAddr)
	case c.Join:
		return fmt.Errorf("%w: join: not with discovery.type %s, which joins an existing cluster by itself", ErrInvalidConfig, d.Type)
	}
	if ip := net.ParseIP(d.AdvertiseAddr); ip != nil && ip.IsUnspecified() {
		return bad("advertise_addr", "%s is a wildcard, not an address others can reach", d.AdvertiseAddr)
	}
	if !slices.ContainsFunc(c.Security.Tokens, func(t TokenConfig) bool { return t.Role == "admin" }) {
		return bad("type", "%s needs an admin token in security.tokens, the same on every node: a node asks "+
			"a member to add it through the admin API, and nodes answer each other's bootstrap asks only with it", d.Type)
	}
	if c.discovered == nil && len(c.Peers) > 0 {
		return fmt.Errorf("%w: peers: must be empty with discovery.type %s (discovery finds the peers)", ErrInvalidConfig, d.Type)
	}
	if d.BootstrapExpect > 0 && c.Storage.Type != "memory" && c.Storage.Path == "" {
		return bad("bootstrap_expect", "needs storage.path: the node's promise of a voter set is kept there")
	}
	if _, _, err := c.discoveryPorts(); err != nil {
		return err
	}
	src, err := d.source(c, nil, true)
	if err != nil {
		return err
	}
	if cl, ok := src.(io.Closer); ok && d.Source == nil {
		_ = cl.Close() // built only to check the keys (etcd's client connects lazily)
	}
	return nil
}

// discoveryPorts returns the offsets of this node's HTTP API and client
// ports from its Raft port, which every node is assumed to share.
func (c *Config) discoveryPorts() (api, client int, err error) {
	port := func(key, addr string) (int, error) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return 0, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, key, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%w: %s: discovery needs a fixed port, not %q", ErrInvalidConfig, key, p)
		}
		return n, nil
	}
	a, err := port("api.addr", c.API.Addr)
	if err != nil {
		return 0, 0, err
	}
	cl, err := port("api.client_addr", c.API.ClientAddr)
	if err != nil {
		return 0, 0, err
	}
	return a - c.BindPort, cl - c.BindPort, nil
}

// source builds the discovery mechanism the configuration names; log
// receives the logs of a mechanism that has its own (nil: slog.Default()).
//
// With check, the source is built only to check the keys: for
// Kubernetes there is none then (nil), since outside a pod there is no
// in-cluster configuration to build a client from.
func (d DiscoveryConfig) source(c *Config, log *slog.Logger, check bool) (discovery.Source, error) {
	wrap := func(err error) error { return fmt.Errorf("%w: %v", ErrInvalidConfig, err) }
	if d.Source != nil {
		return d.Source, nil
	}
	switch d.Type {
	case "dns":
		if d.DNSName == "" {
			return nil, fmt.Errorf("%w: discovery.dns_name: required with discovery.type dns", ErrInvalidConfig)
		}
		s, err := discovery.NewDNS(discovery.DNSConfig{Name: d.DNSName, SRV: d.SRV, Port: d.Port, Server: d.DNSServer})
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	case "etcd":
		s, err := etcd.New(etcd.Config{
			Endpoints: d.EtcdEndpoints, Prefix: d.Prefix, ClusterID: c.ClusterID, DialTimeout: d.EtcdDialTimeout,
			TTL: d.EtcdTTL, CAFile: d.EtcdTLS.CAFile, CertFile: d.EtcdTLS.CertFile, KeyFile: d.EtcdTLS.KeyFile,
			Username: d.EtcdUsername, Password: d.EtcdPassword, Logger: log,
		})
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	case "consul":
		s, err := consul.New(consul.Config{
			Address: d.ConsulAddress, Scheme: d.ConsulScheme, Token: d.ConsulToken, Datacenter: d.ConsulDatacenter,
			ServiceName: d.ServiceName, Tag: d.ConsulTag, CheckTTL: d.ConsulCheckTTL, DeregisterAfter: d.ConsulDeregisterAfter,
			TLS: consul.TLSConfig{CAFile: d.ConsulTLS.CAFile, CertFile: d.ConsulTLS.CertFile, KeyFile: d.ConsulTLS.KeyFile,
				ServerName: d.ConsulTLS.ServerName},
			Logger: log,
		})
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	case "kubernetes":
		kc := kubernetes.Config{Namespace: d.Namespace, ServiceName: d.ServiceName, PortName: d.PortName,
			Kubeconfig: d.Kubeconfig, Logger: log}
		if check {
			if err := kc.Check(); err != nil {
				return nil, wrap(err)
			}
			return nil, nil
		}
		s, err := kubernetes.New(kc)
		if err != nil {
			return nil, wrap(err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: discovery.type: %s is not built into this program yet", ErrInvalidConfig, d.Type)
}
