package forgeext

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strconv"

	"go.opentelemetry.io/otel/trace"
	"gopkg.in/yaml.v3"

	"github.com/forge-consensus/consensus/server"
)

// ConfigKey is the extension's name and its configuration key: its settings
// live under extensions.consensus.
const ConfigKey = "consensus"

// Config is the extension's configuration: a node's configuration in
// consensusd's keys.
type Config struct {
	server.Config `yaml:",inline"`
	Observability ObservabilityConfig `yaml:"observability"`
	// AppURLs maps node IDs ("3" or "node-3") to the base URL of that
	// node's app (e.g. "http://10.0.0.3:8080"). Redirects to the leader
	// and not-leader hints use it; without an entry they name the leader's
	// consensus HTTP API (its api_port).
	AppURLs map[string]string `yaml:"app_urls"`

	// TracerProvider receives the service's spans (nil: OpenTelemetry's
	// global provider). Set in code.
	TracerProvider trace.TracerProvider `yaml:"-"`
	// Logger receives the service's logs (nil: slog.Default()). Set in
	// code.
	Logger *slog.Logger `yaml:"-"`
}

// ObservabilityConfig is observability.*.
type ObservabilityConfig struct {
	// LogRaftDetails logs protocol-level detail at Debug: every Ready's
	// outline (entries, commits, messages, term and vote changes).
	LogRaftDetails bool `yaml:"log_raft_details"`
}

// WithAppURLs sets app_urls: each node's app base URL, by node ID, for
// redirects to the leader.
func WithAppURLs(urls map[string]string) Option {
	return func(c *Config) error { c.AppURLs = urls; return nil }
}

// WithTracerProvider sends the service's spans to tp.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Config) error { c.TracerProvider = tp; return nil }
}

// WithLogger sends the service's logs to l.
func WithLogger(l *slog.Logger) Option {
	return func(c *Config) error { c.Logger = l; return nil }
}

// PeerConfig is one member of the initial cluster. ID is "3" or "node-3".
type PeerConfig struct {
	ID      string
	Address string
	Port    int
}

// Option changes the extension's configuration in code; it overrides the
// keys it sets, and only those.
type Option func(*Config) error

// WithNodeID sets node_id, this node's name ("node-1", "us-east-1a", or a
// number such as "3"; see package nodename).
func WithNodeID(id string) Option {
	return func(c *Config) error {
		if _, err := server.ParseNodeID(id); err != nil {
			return fmt.Errorf("WithNodeID: %w", err)
		}
		c.NodeID = server.NodeName(id)
		return nil
	}
}

// WithClusterID sets cluster_id.
func WithClusterID(id string) Option {
	return func(c *Config) error { c.ClusterID = id; return nil }
}

// WithBindAddress sets bind_addr and bind_port, where peers reach this node.
func WithBindAddress(addr string, port int) Option {
	return func(c *Config) error { c.BindAddr, c.BindPort = addr, port; return nil }
}

// WithPeers sets peers: every member of the initial cluster, this node
// included.
func WithPeers(peers []PeerConfig) Option {
	return func(c *Config) error {
		ps := make([]server.PeerConfig, 0, len(peers))
		for i, p := range peers {
			if _, err := server.ParseNodeID(p.ID); err != nil {
				return fmt.Errorf("WithPeers: peers[%d]: %w", i, err)
			}
			ps = append(ps, server.PeerConfig{ID: server.NodeName(p.ID), Address: p.Address, Port: p.Port})
		}
		c.Peers = ps
		return nil
	}
}

// WithTransportType sets transport.type: "grpc" (the default) or "tcp".
func WithTransportType(t string) Option {
	return func(c *Config) error { c.Transport.Type = t; return nil }
}

// WithStorageType sets storage.type: "wal" (the default), "pebble",
// "bolt", "badger", "postgres" (experimental; its keys under
// storage.postgres) or "memory" (tests only: nothing survives a restart).
// See docs/configuration.md.
func WithStorageType(t string) Option {
	return func(c *Config) error { c.Storage.Type = t; return nil }
}

// WithDiscovery sets discovery.*: how the node finds its cluster (DNS,
// etcd, Consul, Kubernetes, or a Source of the program's own) instead of
// the peers list.
func WithDiscovery(d server.DiscoveryConfig) Option {
	return func(c *Config) error { c.Discovery = d; return nil }
}

// WithStoragePath sets storage.path, the node's data directory.
func WithStoragePath(p string) Option {
	return func(c *Config) error { c.Storage.Path = p; return nil }
}

// WithTLS turns on TLS between nodes with this node's certificate and key,
// and the CA that signs its peers' certificates.
func WithTLS(certFile, keyFile, caFile string) Option {
	return func(c *Config) error {
		s := &c.Security
		s.EnableTLS, s.CertFile, s.KeyFile, s.CAFile = true, certFile, keyFile, caFile
		return nil
	}
}

// WithMTLS turns on mutual TLS: as WithTLS, and every peer must present a
// certificate for the node ID it claims.
func WithMTLS(certFile, keyFile, caFile string) Option {
	return func(c *Config) error {
		if err := WithTLS(certFile, keyFile, caFile)(c); err != nil {
			return err
		}
		c.Security.EnableMTLS = true
		return nil
	}
}

// WithConfig replaces the whole configuration given in code so far. Keys
// it leaves zero are still taken from the app's configuration.
func WithConfig(cfg Config) Option {
	return func(c *Config) error { *c = cfg; return nil }
}

// parseYAML decodes the extensions.consensus section strictly: an unknown
// key is an error naming it.
func parseYAML(raw []byte) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: extensions.%s: %v", server.ErrInvalidConfig, ConfigKey, server.DescribeYAMLError(raw, err))
	}
	return c, nil
}

// resolve builds the final configuration: the app's YAML, then the options
// over it, then defaults for what is still unset, then validation.
func resolve(yamlCfg Config, opts []Option) (Config, error) {
	var code Config
	for _, o := range opts {
		if err := o(&code); err != nil {
			return Config{}, fmt.Errorf("%w: %w", server.ErrInvalidConfig, err)
		}
	}
	c := yamlCfg
	overlay(&c, &code)
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("extensions.%s: %w", ConfigKey, err)
	}
	for id, u := range c.AppURLs {
		if _, err := server.ParseNodeID(id); err != nil {
			return Config{}, fmt.Errorf("%w: extensions.%s: app_urls: %w", server.ErrInvalidConfig, ConfigKey, err)
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return Config{}, fmt.Errorf("%w: extensions.%s: app_urls[%s]: %q is not an http(s) base URL",
				server.ErrInvalidConfig, ConfigKey, id, u)
		}
	}
	return c, nil
}

// overlay copies into c every field that o sets (non-zero), recursively
// through the nested sections.
func overlay(c, o *Config) {
	if o.NodeID != "" {
		c.NodeID = o.NodeID
	}
	setString(&c.ClusterID, o.ClusterID)
	setString(&c.BindAddr, o.BindAddr)
	setInt(&c.BindPort, o.BindPort)
	c.AllowPortMapping = c.AllowPortMapping || o.AllowPortMapping
	if o.Peers != nil {
		c.Peers = o.Peers
	}
	r, or := &c.Raft, &o.Raft
	setDur(&r.HeartbeatInterval, or.HeartbeatInterval)
	setDur(&r.ElectionTimeoutMin, or.ElectionTimeoutMin)
	setDur(&r.ElectionTimeoutMax, or.ElectionTimeoutMax)
	setDur(&r.SnapshotInterval, or.SnapshotInterval)
	if or.SnapshotThreshold != 0 {
		r.SnapshotThreshold = or.SnapshotThreshold
	}
	if or.TrailingLogs != 0 {
		r.TrailingLogs = or.TrailingLogs
	}
	if or.LearnerPromoteLag != 0 {
		r.LearnerPromoteLag = or.LearnerPromoteLag
	}
	if or.PreVote != nil {
		r.PreVote = or.PreVote
	}
	if or.CheckQuorum != nil {
		r.CheckQuorum = or.CheckQuorum
	}
	if or.VerifyInterval != nil {
		r.VerifyInterval = or.VerifyInterval
	}
	r.LeaseReads = r.LeaseReads || or.LeaseReads
	t, ot := &c.Transport, &o.Transport
	setString(&t.Type, ot.Type)
	setInt(&t.MaxMessageSize, ot.MaxMessageSize)
	setDur(&t.Timeout, ot.Timeout)
	setDur(&t.ConnectionTimeout, ot.ConnectionTimeout)
	t.EnableCompression = t.EnableCompression || ot.EnableCompression
	setInt(&t.CompressionLevel, ot.CompressionLevel)
	s, ost := &c.Storage, &o.Storage
	setString(&s.Type, ost.Type)
	setString(&s.Path, ost.Path)
	if ost.SyncWrites != nil {
		s.SyncWrites = ost.SyncWrites
	}
	setInt(&s.MaxBatchSize, ost.MaxBatchSize)
	setDur(&s.MaxBatchDelay, ost.MaxBatchDelay)
	if sec := o.Security; sec.EnableTLS || sec.EnableMTLS || sec.CertFile != "" {
		tokens, enc := c.Security.Tokens, c.Security
		c.Security = sec
		c.Security.Tokens = tokens
		// Encryption at rest is overlaid apart, below.
		c.Security.EnableEncryption, c.Security.EncryptionKey = enc.EnableEncryption, enc.EncryptionKey
		c.Security.EncryptionKeyFile, c.Security.EncryptionOldKeys = enc.EncryptionKeyFile, enc.EncryptionOldKeys
	}
	if sec := o.Security; sec.EnableEncryption {
		c.Security.EnableEncryption, c.Security.EncryptionKey = true, sec.EncryptionKey
		c.Security.EncryptionKeyFile, c.Security.EncryptionOldKeys = sec.EncryptionKeyFile, sec.EncryptionOldKeys
	}
	if o.Security.Tokens != nil {
		c.Security.Tokens = o.Security.Tokens
	}
	ad, oad := &c.AdminAPI, &o.AdminAPI
	if oad.Enabled != nil {
		ad.Enabled = oad.Enabled
	}
	setString(&ad.PathPrefix, oad.PathPrefix)
	ad.RedirectWrites = ad.RedirectWrites || oad.RedirectWrites
	ad.AllowUnauthenticated = ad.AllowUnauthenticated || oad.AllowUnauthenticated
	c.Join = c.Join || o.Join
	c.Observability.LogRaftDetails = c.Observability.LogRaftDetails || o.Observability.LogRaftDetails
	if !reflect.DeepEqual(o.Discovery, server.DiscoveryConfig{}) {
		c.Discovery = o.Discovery // set in code: the whole section
	}
	if o.AppURLs != nil {
		c.AppURLs = o.AppURLs
	}
	if o.TracerProvider != nil {
		c.TracerProvider = o.TracerProvider
	}
	if o.Logger != nil {
		c.Logger = o.Logger
	}
	a, oa := &c.API, &o.API
	setString(&a.Addr, oa.Addr)
	setString(&a.ClientAddr, oa.ClientAddr)
	setString(&a.FollowerWrites, oa.FollowerWrites)
	setDur(&a.RequestTimeout, oa.RequestTimeout)
	a.FaultSwitch = a.FaultSwitch || oa.FaultSwitch
	a.AllowUnauthenticated = a.AllowUnauthenticated || oa.AllowUnauthenticated
	a.TLS = a.TLS || oa.TLS
	a.MTLS = a.MTLS || oa.MTLS
}

func setString(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func setInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

func setDur[T ~int64](dst *T, v T) {
	if v != 0 {
		*dst = v
	}
}

// address joins a host and port.
func address(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
