package forgeext_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xraph/forge"

	"github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/server"
)

// startWithYAML starts a Forge app whose extensions.consensus section is
// section, with the extension configured by opts; it returns the resolved
// configuration, or the start error.
func startWithYAML(t *testing.T, section map[string]any, opts ...forgeext.Option) (forgeext.Config, error) {
	t.Helper()
	app := forge.NewApp(forge.AppConfig{Name: "cfg", EnableConfigAutoDiscovery: false, HTTPAddress: "127.0.0.1:0"})
	app.Config().Set("extensions.consensus", section)
	ext := forgeext.NewExtension(opts...)
	err := app.RegisterExtension(ext)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = app.Start(ctx)
		t.Cleanup(func() { _ = app.Stop(context.Background()) })
	}
	if err != nil {
		return forgeext.Config{}, err
	}
	return ext.Service().Config(), nil
}

func TestYAMLAndOptionsCombine(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 3)
	section := map[string]any{
		"node_id":    "node-2",
		"cluster_id": "from-yaml",
		"bind_port":  ports[0],
		"peers": []any{
			map[string]any{"id": 2, "address": "127.0.0.1", "port": ports[0]},
		},
		"raft":          map[string]any{"heartbeat_interval": "30ms", "election_timeout_min": "300ms", "verify_interval": 500},
		"storage":       map[string]any{"type": "pebble", "path": dir},
		"api":           map[string]any{"addr": addr(ports[1]), "client_addr": addr(ports[2])},
		"observability": map[string]any{"log_raft_details": true},
		"discovery":     map[string]any{"type": "static"},
		"admin_api":     map[string]any{"path_prefix": "/raft"},
	}
	cfg, err := startWithYAML(t, section, forgeext.WithClusterID("from-code"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClusterID != "from-code" {
		t.Errorf("cluster_id = %q; the option should override YAML", cfg.ClusterID)
	}
	if cfg.NodeID.ID() != 2 || cfg.BindPort != ports[0] || cfg.Storage.Path != dir {
		t.Errorf("YAML keys lost: node_id %s, bind_port %d, storage.path %q", cfg.NodeID, cfg.BindPort, cfg.Storage.Path)
	}
	if cfg.Raft.HeartbeatInterval != 30*time.Millisecond || cfg.Raft.ElectionTimeoutMin != 300*time.Millisecond {
		t.Errorf("raft durations = %v, %v; want 30ms, 300ms from YAML", cfg.Raft.HeartbeatInterval, cfg.Raft.ElectionTimeoutMin)
	}
	if v := cfg.Raft.VerifyInterval; v == nil || *v != 500 {
		t.Errorf("raft.verify_interval = %v; want 500 from YAML", v)
	}
	if !cfg.Observability.LogRaftDetails || cfg.AdminAPI.PathPrefix != "/raft" {
		t.Errorf("observability/admin_api keys lost: %+v %+v", cfg.Observability, cfg.AdminAPI)
	}
	if cfg.Raft.SnapshotThreshold == 0 || cfg.Transport.Type != "grpc" {
		t.Errorf("defaults not applied to unset keys: snapshot_threshold %d, transport.type %q", cfg.Raft.SnapshotThreshold, cfg.Transport.Type)
	}
}

func TestInvalidConfigFailsNamingTheKey(t *testing.T) {
	for _, c := range []struct {
		name    string
		section map[string]any
		opts    []forgeext.Option
		key     string
	}{
		{"unknown key", map[string]any{"node_id": 1, "raft": map[string]any{"heartbeat": "1s"}}, nil, "heartbeat"},
		{"bad duration", map[string]any{"node_id": 1, "raft": map[string]any{"heartbeat_interval": "soon"}}, nil,
			`raft.heartbeat_interval: "soon" is not a duration`},
		{"port mapping", map[string]any{"node_id": 1, "bind_port": 7000, "storage": map[string]any{"type": "memory"},
			"peers": []any{map[string]any{"id": 1, "address": "127.0.0.1", "port": 17000}}}, nil, "bind_port: 7000 differs from peers[0].port 17000"},
		{"bad transport", map[string]any{"node_id": 1, "transport": map[string]any{"type": "carrier-pigeon"}}, nil, "transport.type"},
		{"bad node id option", nil, []forgeext.Option{forgeext.WithNodeID("node 1")}, "node_id"},
		{"unknown discovery", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"}, "discovery": map[string]any{"type": "zookeeper"}}, nil, "discovery.type"},
		{"discovery without an admin token", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"}, "discovery": map[string]any{"type": "consul"}}, nil, "admin token"},
		{"kubernetes without service_name", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"},
			"security":  map[string]any{"tokens": []any{map[string]any{"token": "admintokenadmintoken", "role": "admin"}}},
			"discovery": map[string]any{"type": "kubernetes", "namespace": "default"}}, nil, "discovery.service_name"},
		{"kubernetes as documented, outside a pod", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"},
			"security":  map[string]any{"tokens": []any{map[string]any{"token": "admintokenadmintoken", "role": "admin"}}},
			"discovery": map[string]any{"type": "kubernetes", "namespace": "default", "service_name": "forge-consensus"}}, nil, "discovery.kubeconfig"},
		{"dns without a name", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"},
			"security":  map[string]any{"tokens": []any{map[string]any{"token": "admintokenadmintoken", "role": "admin"}}},
			"discovery": map[string]any{"type": "dns", "bootstrap_expect": 3}}, nil, "discovery.dns_name"},
		{"bad token role", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"}, "security": map[string]any{"tokens": []any{map[string]any{"token": "t", "role": "root"}}}}, nil, "security.tokens[0].role"},
		{"bad app url", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"}, "app_urls": map[string]any{"1": "ftp://x"}}, nil, "app_urls[1]"},
		{"bad admin prefix", map[string]any{"node_id": 1, "storage": map[string]any{"type": "memory"}, "admin_api": map[string]any{"path_prefix": "consensus"}}, nil, "admin_api.path_prefix"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := startWithYAML(t, c.section, c.opts...)
			if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("start error = %v; want an invalid-config error naming %q", err, c.key)
			}
			if strings.Contains(err.Error(), "time.Duration") || strings.Contains(err.Error(), "server.") {
				t.Fatalf("start error names a Go type: %v", err)
			}
		})
	}
}

func TestConfigFromTheAppsYAMLFile(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 3)
	yaml := fmt.Sprintf(`extensions:
  consensus:
    node_id: node-1
    cluster_id: from-file
    bind_port: %d
    peers:
      - {id: 1, address: 127.0.0.1, port: %d}
    raft:
      heartbeat_interval: 25ms
      election_timeout_min: 250ms
    storage:
      type: memory
    api:
      addr: 127.0.0.1:%d
      client_addr: 127.0.0.1:%d
    security:
      tokens:
        - {token: file-token, role: viewer}
`, ports[0], ports[0], ports[1], ports[2])
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	app := forge.NewApp(forge.AppConfig{Name: "file", HTTPAddress: "127.0.0.1:0",
		EnableConfigAutoDiscovery: true, ConfigSearchPaths: []string{dir}, ConfigBaseNames: []string{"config.yaml"},
		EnableEnvConfig: false})
	ext := forgeext.NewExtension(forgeext.WithClusterID("from-code"))
	if err := app.RegisterExtension(ext); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer app.Stop(context.Background())
	cfg := ext.Service().Config()
	if cfg.NodeID.ID() != 1 || cfg.BindPort != ports[0] || cfg.Raft.HeartbeatInterval != 25*time.Millisecond ||
		cfg.Storage.Type != "memory" || len(cfg.Security.Tokens) != 1 || cfg.ClusterID != "from-code" {
		t.Fatalf("configuration from the file: node %s, port %d, heartbeat %v, storage %q, tokens %d, cluster %q",
			cfg.NodeID, cfg.BindPort, cfg.Raft.HeartbeatInterval, cfg.Storage.Type, len(cfg.Security.Tokens), cfg.ClusterID)
	}
}
