package server

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/nodename"
	"github.com/forge-consensus/consensus/wire"
)

// DefaultVerifyInterval is raft.verify_interval when unset.
const DefaultVerifyInterval = 10000

// DefaultLearnerPromoteLag is raft.learner_promote_lag when unset: a
// joining learner is promoted once it is at most this many entries behind
// the leader's last index.
const DefaultLearnerPromoteLag = 1000

// MinMemoryLimit is the lowest memory_limit accepted: below it the garbage
// collector would run all the time against the node's fixed cost.
const MinMemoryLimit = 32 << 20

// ErrInvalidConfig is wrapped by every configuration error; the message
// names the offending key.
var ErrInvalidConfig = errors.New("invalid config")

// Config is a node's configuration, in the keys of the Forge consensus
// extension (node_id, cluster_id, bind_addr, bind_port, peers, raft.*,
// transport.*, storage.*, security.*) plus api.* for the HTTP API and the
// binary client protocol.
type Config struct {
	NodeID    NodeName        `yaml:"node_id"`
	ClusterID string          `yaml:"cluster_id"`
	BindAddr  string          `yaml:"bind_addr"`
	BindPort  int             `yaml:"bind_port"`
	Peers     []PeerConfig    `yaml:"peers"`
	Raft      RaftConfig      `yaml:"raft"`
	Transport TransportConfig `yaml:"transport"`
	Storage   StorageConfig   `yaml:"storage"`
	Security  SecurityConfig  `yaml:"security"`
	API       APIConfig       `yaml:"api"`
	AdminAPI  AdminAPIConfig  `yaml:"admin_api"`
	// Discovery finds the cluster's nodes by DNS, etcd, Consul or
	// Kubernetes instead of the peers list (see DiscoveryConfig).
	Discovery DiscoveryConfig `yaml:"discovery"`
	// MemoryLimit, in bytes, is a soft limit on the whole process's memory
	// given to Go's runtime (runtime/debug.SetMemoryLimit): as the heap
	// nears it the garbage collector runs more often instead of letting
	// the heap grow to twice its live size (GOGC=100). 0 (the default)
	// sets none, leaving GOMEMLIMIT as it is. It is soft: a live state
	// larger than it is still served, at the cost of more GC CPU (at most
	// about half of it). At least 32 MiB (a node's fixed cost is about 35
	// MiB: see docs/measured.md, "Memory"). Process-wide: New sets it and Close
	// puts back the limit it found.
	MemoryLimit int64 `yaml:"memory_limit"`
	// Join starts a node that joins a running cluster: with no membership
	// of its own, it waits for the leader, which contacts it once an
	// operator has added it (POST /consensus/add-node). Peers still lists
	// the existing members' addresses. Ignored once the node has state.
	Join bool `yaml:"join"`
	// AllowPortMapping accepts a bind_port that differs from the port of
	// this node's own peers entry, for a node reached through a port
	// mapping (Docker, NAT: bound on 7000, reached at 17000). Without it
	// such a configuration is refused: peers would dial a port nothing
	// listens on.
	AllowPortMapping bool `yaml:"allow_port_mapping"`
	// App is application state replicated beside the key-value store
	// (optional; set in code, not in YAML). See AppMachine.
	App AppMachine `yaml:"-"`
	// HintURL, if set, gives the base URL the admin API names for a node
	// (the leader's address in its answers and not-leader errors); ""
	// falls back to the node's HTTP API. The Forge extension points it at
	// the node's app. Set in code.
	HintURL func(id uint64) string `yaml:"-"`

	// discovered is what Discover found (nil: not run yet).
	discovered *discovered
}

// NodeID is a node's numeric ID, as the Raft core knows it.
type NodeID uint64

// NodeName is a member's name as configured: "node-1", "us-east-1a", a
// pod name, or a number ("3"); package nodename says which names are
// valid and which ID each stands for. Configurations written with numeric
// IDs keep their IDs.
type NodeName string

// UnmarshalYAML takes a name written as a string or a number (3, "3",
// "node-3", "us-east-1a"); Validate refuses an invalid one, naming its key.
func (n *NodeName) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: node_id or peers[].id: a name or a number, not a %s", v.Line, kindName(v.Kind))
	}
	*n = NodeName(v.Value)
	return nil
}

// ID returns the ID the name stands for (0 for an invalid name, which
// Validate refuses).
func (n NodeName) ID() uint64 {
	id, _ := nodename.ID(string(n))
	return id
}

// String returns the name.
func (n NodeName) String() string { return string(n) }

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value of another kind"
}

// ParseNodeID parses a node name ("3", "node-3", "us-east-1a") and returns
// the ID it stands for.
func ParseNodeID(s string) (uint64, error) {
	id, err := nodename.ID(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("node_id or peers[].id: %w", err)
	}
	return id, nil
}

// PeerConfig is one member of the initial cluster (this node included).
type PeerConfig struct {
	ID      NodeName `yaml:"id"`
	Address string   `yaml:"address"`
	Port    int      `yaml:"port"`
	// APIPort is the peer's HTTP API port (0: Port + 100), used to forward
	// writes to the leader or redirect clients to it.
	APIPort int `yaml:"api_port"`
	// ClientPort is the peer's client-protocol port (0: Port + 200), used
	// to tell clients of the binary protocol where the leader is.
	ClientPort int `yaml:"client_port"`
}

// RaftConfig holds protocol timing. Durations are written like "500ms".
type RaftConfig struct {
	HeartbeatInterval  time.Duration `yaml:"heartbeat_interval"`
	ElectionTimeoutMin time.Duration `yaml:"election_timeout_min"`
	ElectionTimeoutMax time.Duration `yaml:"election_timeout_max"`
	// SnapshotInterval is accepted for compatibility; snapshots are taken
	// by entry count (SnapshotThreshold).
	SnapshotInterval  time.Duration `yaml:"snapshot_interval"`
	SnapshotThreshold uint64        `yaml:"snapshot_threshold"`
	TrailingLogs      uint64        `yaml:"trailing_logs"`
	PreVote           *bool         `yaml:"pre_vote"`
	CheckQuorum       *bool         `yaml:"check_quorum"`
	LeaseReads        bool          `yaml:"lease_reads"`
	// LearnerPromoteLag is how close, in log entries, a learner that
	// joined learner-first (add-node) must be to the leader's last index
	// before the leader promotes it to voter (default
	// DefaultLearnerPromoteLag).
	LearnerPromoteLag uint64 `yaml:"learner_promote_lag"`
	// VerifyInterval is the cross-replica verification interval: every
	// node reports its state hash through the log each time it has applied
	// this many entries, and a replica whose hash differs from the
	// majority's raises an alarm (default 10000; 0 turns it off).
	VerifyInterval *uint64 `yaml:"verify_interval"`
}

// TransportConfig chooses and tunes the network transport.
type TransportConfig struct {
	Type              string        `yaml:"type"` // grpc (default) or tcp
	MaxMessageSize    int           `yaml:"max_message_size"`
	Timeout           time.Duration `yaml:"timeout"`
	ConnectionTimeout time.Duration `yaml:"connection_timeout"`
	EnableCompression bool          `yaml:"enable_compression"`
	CompressionLevel  int           `yaml:"compression_level"`
	// Inbound limits of the peer transport (0: the defaults of package
	// transport: 64 connections, 16 per remote IP, 16 in their handshake,
	// a started frame stalled 10s or not done in 10s + 1s per MiB, 2m
	// idle). See transport.Config.
	MaxInboundConns      int           `yaml:"max_inbound_conns"`
	MaxInboundConnsPerIP int           `yaml:"max_inbound_conns_per_ip"`
	MaxHandshakes        int           `yaml:"max_handshakes"`
	FrameTimeout         time.Duration `yaml:"frame_timeout"`
	IdleTimeout          time.Duration `yaml:"idle_timeout"`
}

// StorageConfig chooses and tunes storage.
type StorageConfig struct {
	Type       string `yaml:"type"` // wal (default), pebble, bolt, badger, postgres (experimental) or memory
	Path       string `yaml:"path"`
	SyncWrites *bool  `yaml:"sync_writes"` // default true; false is unsafe
	// MaxBatchSize caps the bytes one group commit merges (wal; 0: 4 MiB).
	MaxBatchSize int `yaml:"max_batch_size"`
	// MaxBatchDelay is how long a group commit waits for more writes.
	MaxBatchDelay time.Duration `yaml:"max_batch_delay"`
	// MinFreeSpace is the space, in bytes, the storage directory's file
	// system must keep free for the node to accept writes (default 64 MiB).
	// Below it writes are refused with a no-space error while reads and
	// Raft's own traffic go on; see NoSpaceError.
	MinFreeSpace int64 `yaml:"min_free_space"`
	// SegmentSize is the size of the wal's preallocated segment files
	// (0: 64 MiB; 4 KiB to 1 GiB).
	SegmentSize int64 `yaml:"segment_size"`
	// Postgres configures the experimental postgres storage.
	Postgres PostgresConfig `yaml:"postgres"`
	// Bolt tunes storage.type bolt.
	Bolt BoltStorageConfig `yaml:"bolt"`
	// Badger tunes storage.type badger.
	Badger BadgerStorageConfig `yaml:"badger"`
}

// BoltStorageConfig tunes the bolt storage (adapters/bolt).
type BoltStorageConfig struct {
	// FreelistType is how Bolt keeps its free pages: array (default) or
	// map (faster allocation in a large, fragmented file; more memory).
	FreelistType string `yaml:"freelist_type"`
}

// BadgerStorageConfig tunes the badger storage (adapters/badger). Zero
// values take the adapter's defaults.
type BadgerStorageConfig struct {
	// ValueLogFileSize is the size of each value-log file (1 MiB to
	// 2 GiB - 1; default 64 MiB).
	ValueLogFileSize int64 `yaml:"value_log_file_size"`
	// ValueThreshold: values of at least this many bytes go to the value
	// log (default and most: 1 MiB, or 15% of mem_table_size if smaller).
	ValueThreshold int64 `yaml:"value_threshold"`
	// MemTableSize is the size of each memtable (at least 1 MiB; default
	// 64 MiB); one write holds at most 15% of it.
	MemTableSize int64 `yaml:"mem_table_size"`
}

// PostgresConfig configures the experimental postgres storage: the node's
// log in a schema of its own in a PostgreSQL database.
type PostgresConfig struct {
	// DSN is the connection string (URL or key=value). Write it as
	// ${VAR} to keep its password out of the file; it is never logged.
	DSN string `yaml:"dsn"`
	// PoolSize is the most connections the node opens (0: 4; at most 100).
	PoolSize int `yaml:"pool_size"`
	// Schema overrides the schema name, derived from cluster_id and
	// node_id by default (see pgstore.SchemaName).
	Schema string `yaml:"schema"`
}

// ClusterHash is the cluster ID the wal storage writes into its segment
// headers: the FNV-1a 64-bit hash of cluster_id, 0 for an empty one. A node
// refuses a log written under another cluster_id.
func (c *Config) ClusterHash() uint64 {
	if c.ClusterID == "" {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(c.ClusterID))
	return h.Sum64()
}

// SecurityConfig configures TLS between nodes (and, with api.tls, on the
// HTTP API and the client protocol) and the bearer tokens of the admin API
// and the data plane.
type SecurityConfig struct {
	EnableTLS  bool   `yaml:"enable_tls"`
	EnableMTLS bool   `yaml:"enable_mtls"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	CAFile     string `yaml:"ca_file"`
	// AllowInsecureTransport lets the peer transport listen on, or talk
	// to, an address off loopback without mutual TLS: any process that
	// reaches the port can then claim to be a member. Off by default (see
	// CheckTransportSecurity).
	AllowInsecureTransport bool `yaml:"allow_insecure_transport"`
	// Tokens are the bearer tokens and their roles: viewer, operator and
	// admin for the admin API, reader and writer for the data plane (/kv,
	// /status and the client protocol; an admin token is a writer there
	// too, a viewer or operator token may read /status). Once a reader or
	// writer token is listed, the data plane needs a token. Write them as
	// ${VAR} to keep them out of the file.
	Tokens []TokenConfig `yaml:"tokens"`
	// EnableEncryption encrypts the storage at rest with AES-256-GCM
	// (package adapters/encrypt): entries and snapshots, for every
	// storage type.
	EnableEncryption bool `yaml:"enable_encryption"`
	// EncryptionKey is the active key, 32 bytes as base64 or hex; write
	// it as ${CONSENSUS_ENCRYPTION_KEY}. Or EncryptionKeyFile.
	EncryptionKey     string `yaml:"encryption_key"`
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// EncryptionOldKeys are earlier keys, still read (never written with)
	// after a rotation, until no stored record uses them.
	EncryptionOldKeys []EncryptionKeyConfig `yaml:"encryption_old_keys"`
}

// TokenConfig is one bearer token.
type TokenConfig struct {
	Token string `yaml:"token"`
	Role  string `yaml:"role"` // viewer, operator, admin, reader or writer
}

// DataTokens reports whether a token with a data-plane role (reader or
// writer) is configured: the HTTP API (/kv, /status) and the client
// protocol then serve only requests that present a token.
func (s SecurityConfig) DataTokens() bool {
	for _, t := range s.Tokens {
		if t.Role == "reader" || t.Role == "writer" {
			return true
		}
	}
	return false
}

// AdminAPIConfig configures the admin REST API (package admin), served on
// the HTTP API's listener.
type AdminAPIConfig struct {
	// Enabled serves it (default true).
	Enabled *bool `yaml:"enabled"`
	// PathPrefix is where it is mounted (default /consensus).
	PathPrefix string `yaml:"path_prefix"`
	// RedirectWrites answers a mutating request on a follower with a 307
	// to the leader instead of a 503 naming it.
	RedirectWrites bool `yaml:"redirect_writes"`
	// AllowUnauthenticated accepts mutating requests without a token when
	// no tokens are configured. For loopback development only.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
}

// APIConfig configures the HTTP API and the binary client protocol.
type APIConfig struct {
	// Addr is host:port (default: loopback, 127.0.0.1, port bind_port + 100).
	Addr string `yaml:"addr"`
	// ClientAddr is the host:port of the binary client protocol (package
	// wire; default: loopback, 127.0.0.1, port bind_port + 200).
	ClientAddr string `yaml:"client_addr"`
	// FollowerWrites says what a follower does with a write: "forward" it
	// to the leader (default) or "redirect" the client (307).
	FollowerWrites string `yaml:"follower_writes"`
	// RequestTimeout bounds one request (default 5s).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// FaultSwitch serves POST /admin/block, which cuts this node off from
	// its peers. For fault tests only; off by default.
	FaultSwitch bool `yaml:"fault_switch"`
	// AllowUnauthenticated serves the data plane (/kv, /status, the client
	// protocol) without tokens on addresses other than loopback. Without
	// it, a node with no reader or writer token (and no api.mtls) whose
	// api.addr or api.client_addr is not loopback refuses to start.
	AllowUnauthenticated bool `yaml:"allow_unauthenticated"`
	// TLS serves the HTTP API (admin API included) and the client protocol
	// over TLS, with security.cert_file and security.key_file.
	TLS bool `yaml:"tls"`
	// MTLS (implies TLS) also requires every client of the HTTP API and
	// the client protocol to present a certificate that security.ca_file
	// verifies.
	MTLS      bool `yaml:"mtls"`
	APILimits `yaml:",inline"`
}

// APILimits are the resource limits of the node's client-facing listeners,
// the HTTP API (with the admin API) and the client protocol: each listener
// applies them on its own. Zero fields take the defaults.
type APILimits struct {
	// MaxConnections is the most connections a listener holds at once;
	// one more is closed as soon as it is accepted (default 4096).
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP is the most connections a listener holds at
	// once from one remote IP address, loopback included (default 2048).
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// ReadTimeout bounds receiving one request once its first byte came:
	// an HTTP request's header and body, a client-protocol frame (default
	// 30s). A client that trickles a request is cut off at it.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each write of responses to a connection: a
	// client that stops reading is cut off at it (default 30s).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a connection that sends nothing for it while no
	// request of it is in progress (default 5m).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxInFlight is the most requests a listener has in progress at once:
	// HTTP requests beyond it are answered 503 with Retry-After; the client
	// protocol stops reading from its connections until answers go out
	// (default 65536).
	MaxInFlight int `yaml:"max_inflight"`
	// MaxReadMemory is the most bytes the client protocol spends on frames
	// being read beyond the first 64 KiB of each connection's buffer, in
	// all: a connection whose frame needs more waits for room, within
	// ReadTimeout (default 64 MiB).
	MaxReadMemory int64 `yaml:"max_read_memory"`
}

// LoadConfig reads a YAML file, expanding ${VAR} from the environment
// first, applies defaults and validates.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(raw, os.Getenv)
}

// ParseConfig parses YAML (after expanding ${VAR} with env), applies
// defaults and validates. Unknown keys are errors.
func ParseConfig(raw []byte, env func(string) string) (Config, error) {
	expanded := os.Expand(string(raw), env)
	dec := yaml.NewDecoder(bytes.NewReader([]byte(expanded)))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("%w: the configuration is empty (it needs at least node_id and peers)", ErrInvalidConfig)
		}
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, decodeError([]byte(expanded), err))
	}
	if emptyDocument([]byte(expanded)) {
		return Config{}, fmt.Errorf("%w: the configuration is empty (it needs at least node_id and peers)", ErrInvalidConfig)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// emptyDocument reports whether raw is a YAML document with nothing in it
// ("---", "null", "~").
func emptyDocument(raw []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil {
		return false
	}
	return len(doc.Content) == 0 || doc.Content[0].Tag == "!!null"
}

// ApplyDefaults fills zero fields with defaults.
func (c *Config) ApplyDefaults() {
	t := true
	if c.ClusterID == "" {
		c.ClusterID = "default"
	}
	if c.BindAddr == "" {
		c.BindAddr = "127.0.0.1"
	}
	if c.BindPort == 0 {
		c.BindPort = 7000
		// Bound where the peers reach it: its own entry's port.
		for _, p := range c.Peers {
			if p.ID != "" && p.ID.ID() == c.NodeID.ID() && p.Port > 0 && p.Port <= 65535 {
				c.BindPort = p.Port
			}
		}
	}
	r := &c.Raft
	if r.HeartbeatInterval == 0 {
		r.HeartbeatInterval = 100 * time.Millisecond
	}
	if r.ElectionTimeoutMin == 0 {
		r.ElectionTimeoutMin = 10 * r.HeartbeatInterval
	}
	if r.ElectionTimeoutMax == 0 {
		r.ElectionTimeoutMax = 2 * r.ElectionTimeoutMin
	}
	if r.SnapshotThreshold == 0 {
		r.SnapshotThreshold = 10000
	}
	if r.TrailingLogs == 0 {
		r.TrailingLogs = 1000
	}
	if r.LearnerPromoteLag == 0 {
		r.LearnerPromoteLag = DefaultLearnerPromoteLag
	}
	if r.VerifyInterval == nil {
		v := uint64(DefaultVerifyInterval)
		r.VerifyInterval = &v
	}
	if r.PreVote == nil {
		r.PreVote = &t
	}
	if r.CheckQuorum == nil {
		r.CheckQuorum = &t
	}
	if c.Transport.Type == "" {
		c.Transport.Type = "grpc"
	}
	if c.Transport.MaxMessageSize == 0 {
		c.Transport.MaxMessageSize = 64 << 20
	}
	if c.Transport.Timeout == 0 {
		c.Transport.Timeout = 5 * time.Second
	}
	if c.Transport.ConnectionTimeout == 0 {
		c.Transport.ConnectionTimeout = 2 * time.Second
	}
	if c.Storage.Type == "" {
		c.Storage.Type = "wal"
	}
	if c.Storage.MinFreeSpace == 0 {
		c.Storage.MinFreeSpace = DefaultMinFreeSpace
	}
	if c.Storage.SyncWrites == nil {
		c.Storage.SyncWrites = &t
	}
	if c.API.Addr == "" {
		c.API.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.BindPort+100))
	}
	if c.API.ClientAddr == "" {
		c.API.ClientAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.BindPort+200))
	}
	if c.API.FollowerWrites == "" {
		c.API.FollowerWrites = "forward"
	}
	if c.API.RequestTimeout == 0 {
		c.API.RequestTimeout = 5 * time.Second
	}
	c.API.APILimits.applyDefaults()
	if c.AdminAPI.Enabled == nil {
		c.AdminAPI.Enabled = &t
	}
	if c.AdminAPI.PathPrefix == "" {
		c.AdminAPI.PathPrefix = "/consensus"
	}
	c.Discovery.applyDefaults(c)
	for i := range c.Peers {
		if c.Peers[i].APIPort == 0 && c.Peers[i].Port != 0 {
			c.Peers[i].APIPort = c.Peers[i].Port + 100
		}
		if c.Peers[i].ClientPort == 0 && c.Peers[i].Port != 0 {
			c.Peers[i].ClientPort = c.Peers[i].Port + 200
		}
	}
}

// Validate checks the configuration; errors name the key.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, key, fmt.Sprintf(format, args...))
	}
	if c.NodeID == "" {
		return bad("node_id", "required (a name such as node-1, or a positive integer)")
	}
	if _, err := nodename.ID(string(c.NodeID)); err != nil {
		return bad("node_id", "%v", err)
	}
	if c.BindPort <= 0 || c.BindPort > 65535 {
		return bad("bind_port", "%d is not a port", c.BindPort)
	}
	self := false
	seen := map[uint64]NodeName{}
	addrs := map[string]NodeName{}
	for i, p := range c.Peers {
		key := fmt.Sprintf("peers[%d]", i)
		_, nameErr := nodename.ID(string(p.ID))
		switch {
		case p.ID == "":
			return bad(key+".id", "required")
		case nameErr != nil:
			return bad(key+".id", "%v", nameErr)
		case seen[p.ID.ID()] == p.ID:
			return bad(key+".id", "node %s listed twice", p.ID)
		case seen[p.ID.ID()] != "":
			return bad(key+".id", "%v", nodename.Collision(string(p.ID), string(seen[p.ID.ID()]), p.ID.ID()))
		case p.Address == "":
			return bad(key+".address", "required")
		case p.Port <= 0 || p.Port > 65535:
			return bad(key+".port", "%d is not a port", p.Port)
		case p.APIPort < 0 || p.APIPort > 65535:
			return bad(key+".api_port", "%d is not a port", p.APIPort)
		case p.ClientPort < 0 || p.ClientPort > 65535:
			return bad(key+".client_port", "%d is not a port", p.ClientPort)
		}
		if err := admin.CheckHost(p.Address); err != nil {
			return bad(key+".address", "%q is not a host name or IP address: %v", p.Address, err)
		}
		host := strings.ToLower(p.Address)
		if ip := net.ParseIP(host); ip != nil {
			host = ip.String() // one spelling of each address
		}
		at := net.JoinHostPort(host, strconv.Itoa(p.Port))
		if other, dup := addrs[at]; dup {
			return bad(key+".address", "%s is node %s's address too", at, other)
		}
		addrs[at] = p.ID
		seen[p.ID.ID()] = p.ID
		if p.ID.ID() == c.NodeID.ID() {
			self = true
			if p.Port != c.BindPort && !c.AllowPortMapping {
				return bad("bind_port", "%d differs from %s.port %d, where the peers reach node %s (set both to one port, "+
					"or allow_port_mapping: true if a port mapping forwards %d to %d)", c.BindPort, key, p.Port, p.ID,
					p.Port, c.BindPort)
			}
		}
	}
	if len(c.Peers) > 0 && !self {
		return bad("peers", "node_id %s is not among the peers", c.NodeID)
	}
	if err := c.Discovery.validate(c); err != nil {
		return err
	}
	r := c.Raft
	switch {
	case r.HeartbeatInterval <= 0:
		return bad("raft.heartbeat_interval", "must be positive")
	case r.ElectionTimeoutMin <= r.HeartbeatInterval:
		return bad("raft.election_timeout_min", "%v must exceed raft.heartbeat_interval %v",
			r.ElectionTimeoutMin, r.HeartbeatInterval)
	case r.ElectionTimeoutMax < r.ElectionTimeoutMin:
		return bad("raft.election_timeout_max", "%v is below raft.election_timeout_min %v",
			r.ElectionTimeoutMax, r.ElectionTimeoutMin)
	case r.LeaseReads && !*r.CheckQuorum:
		return bad("raft.lease_reads", "needs raft.check_quorum")
	}
	switch c.Transport.Type {
	case "grpc", "tcp":
	default:
		return bad("transport.type", "%q is not grpc or tcp", c.Transport.Type)
	}
	if c.Transport.MaxMessageSize < 1<<16 {
		return bad("transport.max_message_size", "%d is below 64 KiB", c.Transport.MaxMessageSize)
	}
	if c.Transport.EnableCompression && (c.Transport.CompressionLevel < -1 || c.Transport.CompressionLevel > 9) {
		return bad("transport.compression_level", "%d is not in -1..9", c.Transport.CompressionLevel)
	}
	switch tr := c.Transport; {
	case tr.MaxInboundConns < 0:
		return bad("transport.max_inbound_conns", "%d is negative (0 is the default, 64)", tr.MaxInboundConns)
	case tr.MaxInboundConnsPerIP < 0:
		return bad("transport.max_inbound_conns_per_ip", "%d is negative (0 is the default, 16)", tr.MaxInboundConnsPerIP)
	case tr.MaxHandshakes < 0:
		return bad("transport.max_handshakes", "%d is negative (0 is the default, 16)", tr.MaxHandshakes)
	case tr.FrameTimeout < 0:
		return bad("transport.frame_timeout", "%v is negative (0 is the default, 10s)", tr.FrameTimeout)
	case tr.IdleTimeout < 0:
		return bad("transport.idle_timeout", "%v is negative (0 is the default, 2m)", tr.IdleTimeout)
	}
	switch c.Storage.Type {
	case "pebble", "wal", "bolt", "badger":
		if c.Storage.Path == "" {
			return bad("storage.path", "required for %s storage", c.Storage.Type)
		}
	case "memory":
	case "postgres":
		if err := c.Storage.Postgres.validate(*c.Storage.SyncWrites, bad); err != nil {
			return err
		}
	default:
		return bad("storage.type", "%q is not wal, pebble, bolt, badger, postgres or memory", c.Storage.Type)
	}
	if err := checkKVStorage(c.Storage); err != nil {
		return err
	}
	switch st := c.Storage; {
	case st.MaxBatchSize < 0:
		return bad("storage.max_batch_size", "%d is negative", st.MaxBatchSize)
	case st.MaxBatchDelay < 0:
		return bad("storage.max_batch_delay", "%v is negative", st.MaxBatchDelay)
	case st.SegmentSize != 0 && (st.SegmentSize < 4<<10 || st.SegmentSize > 1<<30):
		return bad("storage.segment_size", "%d is not between 4 KiB and 1 GiB", st.SegmentSize)
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < MinMemoryLimit {
		return bad("memory_limit", "%d is below 32 MiB (bytes; 0 sets no limit)", c.MemoryLimit)
	}
	if c.Storage.MinFreeSpace < 0 {
		return bad("storage.min_free_space", "%d is negative (bytes; 0 is the default, 64 MiB)", c.Storage.MinFreeSpace)
	}
	s := c.Security
	if s.EnableTLS || s.EnableMTLS {
		if s.CertFile == "" {
			return bad("security.cert_file", "required with TLS")
		}
		if s.KeyFile == "" {
			return bad("security.key_file", "required with TLS")
		}
		if s.CAFile == "" {
			return bad("security.ca_file", "required with TLS")
		}
	}
	if err := CheckTransportSecurity(c); err != nil {
		return err
	}
	if err := validateEncryption(s); err != nil {
		return err
	}
	apiHost, _, err := net.SplitHostPort(c.API.Addr)
	if err != nil {
		return bad("api.addr", "%v", err)
	}
	clientHost, _, err := net.SplitHostPort(c.API.ClientAddr)
	if err != nil {
		return bad("api.client_addr", "%v", err)
	}
	if c.API.TLS || c.API.MTLS {
		key := "api.tls"
		if c.API.MTLS {
			key = "api.mtls"
		}
		if s.CertFile == "" {
			return bad("security.cert_file", "required with %s", key)
		}
		if s.KeyFile == "" {
			return bad("security.key_file", "required with %s", key)
		}
		if c.API.MTLS && s.CAFile == "" {
			return bad("security.ca_file", "required with api.mtls (it verifies the clients' certificates)")
		}
	}
	switch c.API.FollowerWrites {
	case "forward", "redirect":
	default:
		return bad("api.follower_writes", "%q is not forward or redirect", c.API.FollowerWrites)
	}
	if key, err := c.API.APILimits.validate(); err != nil {
		return bad(key, "%v", err)
	}
	if p := c.AdminAPI.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/")) {
		return bad("admin_api.path_prefix", "%q must start with / and not end with one", p)
	}
	seenTokens := map[string]int{}
	for i, t := range c.Security.Tokens {
		key := fmt.Sprintf("security.tokens[%d]", i)
		switch j, dup := seenTokens[t.Token]; {
		case strings.TrimSpace(t.Token) == "" || strings.TrimSpace(t.Token) != t.Token:
			return bad(key+".token", "empty or surrounded by spaces")
		case len(t.Token) > maxTokenLen:
			return bad(key+".token", "longer than %d bytes", maxTokenLen)
		case dup:
			return bad(key+".token", "the same token as security.tokens[%d] (a token has one role)", j)
		}
		switch t.Role {
		case "viewer", "operator", "admin", "reader", "writer":
		default:
			return bad(key+".role", "%q is not viewer, operator, admin (admin API), reader or writer (data plane)", t.Role)
		}
		seenTokens[t.Token] = i
	}
	if !c.API.AllowUnauthenticated && !c.API.MTLS && !c.Security.DataTokens() {
		for _, a := range []struct{ key, host string }{{"api.addr", apiHost}, {"api.client_addr", clientHost}} {
			if !loopbackHost(a.host) {
				return bad(a.key, "%q is not a loopback address, and the data plane (/kv, /status, the client "+
					"protocol) has no tokens: anyone who can reach it could read and write every key. "+
					"Set security.tokens with role reader or writer, or api.mtls, or api.allow_unauthenticated: true "+
					"to serve it to anyone", a.host)
			}
		}
	}
	return nil
}

// maxTokenLen is the longest token: what an Auth request of the client
// protocol can carry (wire.MaxTokenLen).
const maxTokenLen = 4096

// loopbackHost reports whether a listening host is loopback only:
// "localhost" or a loopback IP. "" (every interface) and other names are
// not.
func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Ticks converts the timing into core ticks: a tick is one heartbeat
// interval, a heartbeat one tick, and the election timeout the minimum in
// ticks (the core draws each timeout between it and twice it).
func (c *Config) Ticks() (tick time.Duration, heartbeat, election int) {
	tick = c.Raft.HeartbeatInterval
	election = int(c.Raft.ElectionTimeoutMin / tick)
	if election < 2 {
		election = 2
	}
	return tick, 1, election
}

// CheckTransportSecurity is the authentication rule of the peer transport
// (tcp or grpc): without mutual TLS a listener takes a peer's claimed
// node ID on trust, so a node must not listen on (bind_addr) or talk to
// (peers[].address) an address off loopback without security.enable_mtls,
// unless security.allow_insecure_transport says the network is trusted.
// Loopback (127.0.0.0/8, ::1, "localhost") keeps working without TLS, as
// local-cluster and tests run. The error names the keys.
func CheckTransportSecurity(c *Config) error {
	s := c.Security
	if s.EnableMTLS || s.AllowInsecureTransport {
		return nil
	}
	why := func(key, what string) error {
		tls := "security.enable_mtls is off"
		if s.EnableTLS {
			tls = "security.enable_tls is on but security.enable_mtls is off (a peer's claimed node ID is not checked)"
		}
		return fmt.Errorf("%w: %s: %s is off loopback and %s: any process that reaches the peer port can claim to be a member; "+
			"set security.enable_tls and security.enable_mtls (with security.cert_file, key_file and ca_file), "+
			"or security.allow_insecure_transport: true on a trusted network", ErrInvalidConfig, key, what, tls)
	}
	if !isLoopbackHost(c.BindAddr) {
		return why("bind_addr", fmt.Sprintf("the peer transport listens on %q, which", c.BindAddr))
	}
	for i, p := range c.Peers {
		if !isLoopbackHost(p.Address) {
			return why(fmt.Sprintf("peers[%d].address", i), fmt.Sprintf("peer %s at %q", p.ID, p.Address))
		}
	}
	return nil
}

// isLoopbackHost reports whether host (an IP address or a name, without a
// port) is a loopback address or "localhost". Other names are not looked
// up: they count as off loopback.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Defaults of APILimits.
const (
	DefaultMaxConnections      = 4096
	DefaultMaxConnectionsPerIP = 2048
	DefaultAPIReadTimeout      = 30 * time.Second
	DefaultAPIWriteTimeout     = 30 * time.Second
	DefaultAPIIdleTimeout      = 5 * time.Minute
	DefaultMaxInFlight         = 65536
	DefaultMaxReadMemory       = 64 << 20
)

func (l *APILimits) applyDefaults() {
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxConnectionsPerIP == 0 {
		l.MaxConnectionsPerIP = min(DefaultMaxConnectionsPerIP, l.MaxConnections)
	}
	if l.ReadTimeout == 0 {
		l.ReadTimeout = DefaultAPIReadTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = DefaultAPIWriteTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultAPIIdleTimeout
	}
	if l.MaxInFlight == 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
	if l.MaxReadMemory == 0 {
		l.MaxReadMemory = DefaultMaxReadMemory
	}
}

// validate returns the key of the first bad limit and what is wrong with it.
func (l *APILimits) validate() (string, error) {
	switch {
	case l.MaxConnections < 0:
		return "api.max_connections", fmt.Errorf("%d is negative (0 is the default, %d)", l.MaxConnections, DefaultMaxConnections)
	case l.MaxConnectionsPerIP < 0:
		return "api.max_connections_per_ip", fmt.Errorf("%d is negative (0 is the default, %d)", l.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	case l.MaxConnections > 0 && l.MaxConnectionsPerIP > l.MaxConnections:
		return "api.max_connections_per_ip", fmt.Errorf("%d is more than api.max_connections (%d)", l.MaxConnectionsPerIP, l.MaxConnections)
	case l.ReadTimeout < 0:
		return "api.read_timeout", fmt.Errorf("%v is negative (0 is the default, %v)", l.ReadTimeout, DefaultAPIReadTimeout)
	case l.WriteTimeout < 0:
		return "api.write_timeout", fmt.Errorf("%v is negative (0 is the default, %v)", l.WriteTimeout, DefaultAPIWriteTimeout)
	case l.IdleTimeout < 0:
		return "api.idle_timeout", fmt.Errorf("%v is negative (0 is the default, %v)", l.IdleTimeout, DefaultAPIIdleTimeout)
	case l.MaxInFlight < 0:
		return "api.max_inflight", fmt.Errorf("%d is negative (0 is the default, %d)", l.MaxInFlight, DefaultMaxInFlight)
	case l.MaxReadMemory < 0:
		return "api.max_read_memory", fmt.Errorf("%d is negative (bytes; 0 is the default, 64 MiB)", l.MaxReadMemory)
	case l.MaxReadMemory > 0 && l.MaxReadMemory < wire.MaxFrameBytes:
		return "api.max_read_memory", fmt.Errorf("%d bytes is less than the largest frame (%d bytes)", l.MaxReadMemory, wire.MaxFrameBytes)
	}
	return "", nil
}
