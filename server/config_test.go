package server

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const goodYAML = `
node_id: ${NODE}
cluster_id: test
bind_addr: 127.0.0.1
bind_port: 7001
peers:
  - {id: 1, address: 127.0.0.1, port: 7001}
  - {id: "2", address: 127.0.0.1, port: 7002}
  - {id: node-3, address: 127.0.0.1, port: 7003, api_port: 9003, client_port: 9203}
raft:
  heartbeat_interval: 50ms
  election_timeout_min: 500ms
  election_timeout_max: 1s
  snapshot_threshold: 500
transport:
  type: tcp
storage:
  type: pebble
  path: /tmp/x
`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestParseConfig: keys, environment expansion, durations, defaults.
func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(goodYAML), env(map[string]string{"NODE": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID.ID() != 1 || c.Peers[1].ID.ID() != 2 || c.Peers[2].ID.ID() != 3 {
		t.Fatalf("IDs: %+v", c)
	}
	if c.Raft.HeartbeatInterval != 50*time.Millisecond || c.Raft.ElectionTimeoutMax != time.Second {
		t.Fatalf("durations: %+v", c.Raft)
	}
	if c.API.Addr != "127.0.0.1:7101" || c.Peers[0].APIPort != 7101 || c.Peers[2].APIPort != 9003 {
		t.Fatalf("API defaults: %+v %+v", c.API, c.Peers)
	}
	if c.API.ClientAddr != "127.0.0.1:7201" || c.Peers[0].ClientPort != 7201 || c.Peers[1].ClientPort != 7202 ||
		c.Peers[2].ClientPort != 9203 {
		t.Fatalf("client protocol defaults: %+v %+v", c.API, c.Peers)
	}
	if !*c.Storage.SyncWrites || !*c.Raft.PreVote || !*c.Raft.CheckQuorum {
		t.Fatal("safe defaults not applied")
	}
	tick, hb, et := c.Ticks()
	if tick != 50*time.Millisecond || hb != 1 || et != 10 {
		t.Fatalf("ticks %v %d %d", tick, hb, et)
	}
}

// TestConfigErrorsNameTheKey: each invalid setting fails with an error
// that names its key.
func TestConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct{ edit, key string }{
		{"node_id: ${NODE}", "node_id"},
		{"bind_port: 7001", "bind_port"},
		{"election_timeout_min: 500ms", "raft.election_timeout_min"},
		{"election_timeout_max: 1s", "raft.election_timeout_max"},
		{"type: tcp", "transport.type"},
		{"path: /tmp/x", "storage.path"},
		{"  - {id: \"2\", address: 127.0.0.1, port: 7002}", "peers[1].port"},
		{"cluster_id: test", "unknown_key"},
		{"storage:", "api.client_addr"},
		{"client_port: 9203", "peers[2].client_port"},
	}
	repl := map[string]string{
		"node_id: ${NODE}":            "node_id: \"a b\"",
		"bind_port: 7001":             "bind_port: 70000",
		"election_timeout_min: 500ms": "election_timeout_min: 10ms",
		"election_timeout_max: 1s":    "election_timeout_max: 100ms",
		"type: tcp":                   "type: carrier-pigeon",
		"path: /tmp/x":                "path: \"\"",
		"  - {id: \"2\", address: 127.0.0.1, port: 7002}": "  - {id: \"2\", address: 127.0.0.1, port: 0}",
		"cluster_id: test":  "unknown_key: 1",
		"storage:":          "api: {client_addr: no-port}\nstorage:",
		"client_port: 9203": "client_port: 70000",
	}
	for _, tc := range tests {
		raw := strings.Replace(goodYAML, tc.edit, repl[tc.edit], 1)
		_, err := ParseConfig([]byte(raw), env(map[string]string{"NODE": "1"}))
		if err == nil {
			t.Errorf("%s: accepted", tc.key)
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: error %q does not name the key", tc.key, err)
		}
	}
}

// TestMinFreeSpace: storage.min_free_space defaults to 64 MiB and is
// validated.
func TestMinFreeSpace(t *testing.T) {
	base := "node_id: 1\nstorage: {path: /tmp/x"
	c, err := ParseConfig([]byte(base+"}\n"), func(string) string { return "" })
	if err != nil || c.Storage.MinFreeSpace != DefaultMinFreeSpace {
		t.Fatalf("default: %d %v", c.Storage.MinFreeSpace, err)
	}
	c, err = ParseConfig([]byte(base+", min_free_space: 1048576}\n"), func(string) string { return "" })
	if err != nil || c.Storage.MinFreeSpace != 1<<20 {
		t.Fatalf("set: %d %v", c.Storage.MinFreeSpace, err)
	}
	_, err = ParseConfig([]byte(base+", min_free_space: -1}\n"), func(string) string { return "" })
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "storage.min_free_space") {
		t.Fatalf("negative: %v", err)
	}
}

// TestWALStorageConfig: storage.type wal and its keys, validated with
// errors naming the key; the cluster hash is stable.
func TestWALStorageConfig(t *testing.T) {
	walYAML := strings.Replace(goodYAML, "type: pebble", "type: wal\n  segment_size: 1048576\n  max_batch_size: 65536\n  max_batch_delay: 1ms", 1)
	c, err := ParseConfig([]byte(walYAML), env(map[string]string{"NODE": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Storage; st.Type != "wal" || st.SegmentSize != 1<<20 || st.MaxBatchSize != 65536 || st.MaxBatchDelay != time.Millisecond {
		t.Fatalf("storage %+v", st)
	}
	// FNV-1a 64 of "test".
	if h := c.ClusterHash(); h != 0xf9e6e6ef197c2b25 {
		t.Fatalf("cluster hash %#x", h)
	}
	if h := (&Config{}).ClusterHash(); h != 0 {
		t.Fatalf("empty cluster ID hashes to %#x", h)
	}
	for edit, key := range map[string]string{
		"segment_size: 1048576": "storage.segment_size",
		"max_batch_size: 65536": "storage.max_batch_size",
		"max_batch_delay: 1ms":  "storage.max_batch_delay",
		"path: /tmp/x":          "storage.path",
	} {
		bad := map[string]string{
			"segment_size: 1048576": "segment_size: 100",
			"max_batch_size: 65536": "max_batch_size: -1",
			"max_batch_delay: 1ms":  "max_batch_delay: -1ms",
			"path: /tmp/x":          "path: \"\"",
		}[edit]
		_, err := ParseConfig([]byte(strings.Replace(walYAML, edit, bad, 1)), env(map[string]string{"NODE": "1"}))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v does not name the key", bad, err)
		}
	}
}

// TestMemoryLimit: memory_limit is 0 (none) unless set, and a value below
// 32 MiB is refused with an error naming the key.
func TestMemoryLimit(t *testing.T) {
	base := "node_id: 1\nstorage: {path: /tmp/x}\n"
	c, err := ParseConfig([]byte(base), func(string) string { return "" })
	if err != nil || c.MemoryLimit != 0 {
		t.Fatalf("default: %d %v", c.MemoryLimit, err)
	}
	c, err = ParseConfig([]byte(base+"memory_limit: 536870912\n"), func(string) string { return "" })
	if err != nil || c.MemoryLimit != 512<<20 {
		t.Fatalf("set: %d %v", c.MemoryLimit, err)
	}
	for _, v := range []string{"-1", "1048576"} {
		_, err = ParseConfig([]byte(base+"memory_limit: "+v+"\n"), func(string) string { return "" })
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "memory_limit") {
			t.Fatalf("memory_limit %s: %v", v, err)
		}
	}
}

// TestTLSConfig: TLS is accepted with either transport, and its files are
// required.
func TestTLSConfig(t *testing.T) {
	const sec = "security:\n  enable_mtls: true\n  cert_file: c.pem\n  key_file: k.pem\n  ca_file: ca.pem\n"
	for _, transport := range []string{"grpc", "tcp"} {
		raw := strings.Replace(goodYAML, "type: tcp", "type: "+transport, 1) + sec
		c, err := ParseConfig([]byte(raw), env(map[string]string{"NODE": "1"}))
		if err != nil {
			t.Fatalf("%s with TLS: %v", transport, err)
		}
		if !c.Security.EnableMTLS || c.Security.CAFile != "ca.pem" {
			t.Fatalf("%s: security %+v", transport, c.Security)
		}
		for file, key := range map[string]string{
			"  cert_file: c.pem\n": "security.cert_file",
			"  key_file: k.pem\n":  "security.key_file",
			"  ca_file: ca.pem\n":  "security.ca_file",
		} {
			_, err := ParseConfig([]byte(strings.Replace(raw, file, "", 1)), env(map[string]string{"NODE": "1"}))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), key) {
				t.Errorf("%s without %s: error %v does not name the key", transport, key, err)
			}
		}
	}
}

// TestConfigNames: members named by strings (a zone, a pod name, node-N or
// a number) get the IDs package nodename gives them; two names for one ID
// ("3" and "node-3"), an invalid name and a name listed twice are refused,
// naming the key.
func TestConfigNames(t *testing.T) {
	config := func(self, a, b, c string) string {
		return strings.NewReplacer("node_id: ${NODE}", "node_id: "+self, "{id: 1,", "{id: "+a+",",
			`{id: "2",`, "{id: "+b+",", "{id: node-3,", "{id: "+c+",").Replace(goodYAML)
	}
	c, err := ParseConfig([]byte(config("us-east-1a", "us-east-1a", "forge-consensus-0", "node-3")), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "us-east-1a" || c.Peers[0].ID != "us-east-1a" || c.Peers[1].ID != "forge-consensus-0" || c.Peers[2].ID != "node-3" {
		t.Fatalf("names: node %q, peers %q %q %q", c.NodeID, c.Peers[0].ID, c.Peers[1].ID, c.Peers[2].ID)
	}
	if c.NodeID.ID() != 0xbcc3edcc1ecf38f7 || c.Peers[1].ID.ID() != 0x8cef15f394005a0b || c.Peers[2].ID.ID() != 3 {
		t.Fatalf("IDs: %#x %#x %d", c.NodeID.ID(), c.Peers[1].ID.ID(), c.Peers[2].ID.ID())
	}
	for _, tc := range []struct{ raw, key, says string }{
		{config("a", "a", "3", "node-3"), "peers[2].id", `its ID 3 is already "3"'s`},
		{config("a", "a", "b", "a"), "peers[2].id", "listed twice"},
		{config("a", "a", "b", `"c d"`), "peers[2].id", "invalid node name"},
		{config("[a]", "a", "b", "c"), "node_id", "not a list"},
		{config("node-0", "a", "b", "c"), "node_id", "from 1 to 2^63-1"},
		{config("d", "a", "b", "c"), "peers", "node_id d is not among the peers"},
	} {
		_, err := ParseConfig([]byte(tc.raw), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("error %v; want one naming %s and saying %q", err, tc.key, tc.says)
		}
	}
}

// TestConfigErrorsSayWhatTheKeyTakes: decoding errors name the key, its
// line and what it takes (not a Go type); an empty file says so; two
// peers at one address are refused.
func TestConfigErrorsSayWhatTheKeyTakes(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"heartbeat_interval: 50ms", "heartbeat_interval: soon", `raft.heartbeat_interval (line 11): "soon" is not a duration (like 500ms or 2s)`},
		{"bind_port: 7001", "bind_port: x", `bind_port (line 5): "x" is not a whole number`},
		{"heartbeat_interval: 50ms", "heartbeat: 50ms", `raft.heartbeat (line 11): unknown key`},
		{"{id: \"2\", address: 127.0.0.1, port: 7002}", "{id: \"2\", address: 127.0.0.1, port: 7001}", `peers[1].address: 127.0.0.1:7001 is node 1's address too`},
	} {
		raw := strings.Replace(goodYAML, tc.from, tc.to, 1)
		if raw == goodYAML {
			t.Fatalf("%q not in the configuration", tc.from)
		}
		_, err := ParseConfig([]byte(raw), env(map[string]string{"NODE": "1"}))
		if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want one containing %s", tc.to, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "time.Duration") || strings.Contains(err.Error(), "server.")) {
			t.Errorf("%s: error names a Go type: %v", tc.to, err)
		}
	}
	for _, empty := range []string{"", "\n# nothing\n"} {
		if _, err := ParseConfig([]byte(empty), env(nil)); err == nil || !strings.Contains(err.Error(), "configuration is empty") {
			t.Errorf("empty file %q: %v", empty, err)
		}
	}
}

// TestConfigIssue13Probes (issue 13 §3): a bind_port that differs from
// the node's own peers entry is refused naming both keys, unless
// allow_port_mapping says a port mapping forwards it; an unset bind_port
// is the node's own entry's port; a value of the wrong shape (a list for
// a duration, a mapping for the peers, a list for the whole file) and a
// wrong value among several keys on one line name the key, not a Go
// type; a document with nothing in it says it is empty, not EOF.
func TestConfigIssue13Probes(t *testing.T) {
	parse := func(raw string) (Config, error) {
		return ParseConfig([]byte(raw), env(map[string]string{"NODE": "1"}))
	}
	mapped := strings.Replace(goodYAML, "bind_port: 7001", "bind_port: 7000", 1)
	_, err := parse(mapped)
	if err == nil || !strings.Contains(err.Error(), "bind_port: 7000 differs from peers[0].port 7001") ||
		!strings.Contains(err.Error(), "allow_port_mapping") {
		t.Fatalf("bind_port 7000 with the node's entry at 7001: %v", err)
	}
	if c, err := parse(mapped + "allow_port_mapping: true\n"); err != nil || c.BindPort != 7000 {
		t.Fatalf("with allow_port_mapping: %v (bind_port %d)", err, c.BindPort)
	}
	if c, err := parse(strings.Replace(goodYAML, "bind_port: 7001\n", "", 1)); err != nil || c.BindPort != 7001 {
		t.Fatalf("bind_port unset: %v, bound on %d, want the node's entry's port 7001", err, c.BindPort)
	}

	for _, tc := range []struct{ from, to, want string }{
		{"heartbeat_interval: 50ms", "heartbeat_interval: [50ms]", `raft.heartbeat_interval (line 11): a list is not a duration`},
		{"port: 7003, api_port: 9003", "port: 7003, api_port: x", `peers[2].api_port (line 9): "x" is not a whole number`},
		{"peers:\n  - {id: 1, address: 127.0.0.1, port: 7001}\n  - {id: \"2\", address: 127.0.0.1, port: 7002}\n  - {id: node-3, address: 127.0.0.1, port: 7003, api_port: 9003, client_port: 9203}",
			"peers: {a: 1}", `peers (line 6): a mapping is not a list`},
		{"election_timeout_max: 1s", "election_timeout_max: 1s:", `not valid YAML: line 13`},
	} {
		raw := strings.Replace(goodYAML, tc.from, tc.to, 1)
		if raw == goodYAML {
			t.Fatalf("%q not in the configuration", tc.from)
		}
		_, err := parse(raw)
		if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want one containing %s", tc.to, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "time.Duration") || strings.Contains(err.Error(), "server.") ||
			strings.Contains(err.Error(), "!!")) {
			t.Errorf("%s: error names a Go type or a YAML tag: %v", tc.to, err)
		}
	}
	// A peer's address is a host, and one address is one member however
	// it is spelt.
	ipv6 := strings.Replace(goodYAML, `{id: 1, address: 127.0.0.1, port: 7001}`, `{id: 1, address: "::1", port: 7001}`, 1)
	for _, tc := range []struct{ base, to, want string }{
		{goodYAML, `{id: "2", address: "a b/c", port: 7002}`, `peers[1].address: "a b/c" is not a host name or IP address`},
		{goodYAML, `{id: "2", address: "10.0.0.2:7002", port: 7002}`, `peers[1].address: "10.0.0.2:7002" is not a host`},
		{ipv6, `{id: "2", address: "0:0::1", port: 7001}`, `peers[1].address: [::1]:7001 is node 1's address too`},
	} {
		raw := strings.Replace(tc.base, `{id: "2", address: 127.0.0.1, port: 7002}`, tc.to, 1)
		if _, err := parse(raw); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error containing %s", tc.to, err, tc.want)
		}
	}
	if _, err := parse("[]"); err == nil || err.Error() != "invalid config: the configuration (line 1): a list is not a mapping of keys" {
		t.Errorf("a list for the whole file: %v", err)
	}
	for _, empty := range []string{"---\n", "null\n", "~", "# nothing\n---\n"} {
		if _, err := parse(empty); err == nil || !strings.Contains(err.Error(), "configuration is empty") || strings.Contains(err.Error(), "EOF") {
			t.Errorf("empty document %q: %v", empty, err)
		}
	}
}
