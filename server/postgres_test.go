package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	pgstore "github.com/forge-consensus/consensus/adapters/postgres"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// envPostgresDSN names the environment variable with the test database's
// DSN (.ci/run starts PostgreSQL and sets it).
const envPostgresDSN = "CONSENSUS_TEST_POSTGRES_DSN"

// postgresDSN returns the test database's DSN once it answers; without
// one the test skips, saying why, and fails under CI (CI=true).
func postgresDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(envPostgresDSN)
	why := ""
	if dsn == "" {
		why = envPostgresDSN + " is not set"
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			why = fmt.Sprintf("no PostgreSQL server reachable at %s: %v", envPostgresDSN, err)
		} else {
			_ = c.Close(ctx)
		}
	}
	if why == "" {
		return dsn
	}
	msg := why + " (a PostgreSQL database the tests may create schemas in; .ci/run installs and starts one)"
	if os.Getenv("CI") == "true" {
		t.Fatal("under CI the PostgreSQL tests must run: " + msg)
	}
	t.Skip("skipping the PostgreSQL tests: " + msg)
	return ""
}

// TestClusterOnPostgres runs a three-node cluster on storage.type postgres
// (the DSN given as ${VAR}), each node in a schema of its own, writes,
// restarts every node and writes again: the log came back from
// PostgreSQL.
func TestClusterOnPostgres(t *testing.T) {
	dsn := postgresDSN(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cluster := "pgtest-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	t.Cleanup(func() {
		for i := 1; i <= 3; i++ {
			schema := pgstore.SchemaName(cluster, fmt.Sprint(i))
			if _, err := admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
				t.Error(err)
			}
		}
	})

	ports := servertest.FreePorts(t, 9)
	var peers strings.Builder
	for i := range 3 {
		fmt.Fprintf(&peers, "  - {id: %d, address: 127.0.0.1, port: %d, api_port: %d, client_port: %d}\n", i+1, ports[3*i], ports[3*i+1], ports[3*i+2])
	}
	cfgs := make([]server.Config, 3)
	for i := range 3 {
		raw := fmt.Sprintf(`node_id: %d
cluster_id: %s
bind_port: %d
peers:
%sraft:
  heartbeat_interval: 20ms
  election_timeout_min: 200ms
transport:
  type: tcp
storage:
  type: postgres
  postgres:
    dsn: ${%s}
    pool_size: 3
api:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
`, i+1, cluster, ports[3*i], peers.String(), envPostgresDSN, ports[3*i+1], ports[3*i+2])
		cfgs[i], err = server.ParseConfig([]byte(raw), os.Getenv)
		if err != nil {
			t.Fatal(err)
		}
	}
	start := func() []*server.Server {
		t.Helper()
		srvs := make([]*server.Server, 3)
		for i := range 3 {
			s, err := server.New(cfgs[i], slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("node %d: %v", i+1, err)
			}
			t.Cleanup(func() { s.Close() })
			go s.Serve()
			srvs[i] = s
		}
		return srvs
	}
	srvs := start()
	lead := servertest.Leader(t, srvs)
	for i := range 30 {
		if _, err := lead.Runner().Propose(ctx, setCmd("k", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	commit := lead.Runner().Status().Commit

	// One schema per node, each holding its log.
	for i := 1; i <= 3; i++ {
		schema := pgstore.SchemaName(cluster, fmt.Sprint(i))
		var n int64
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "entries"}.Sanitize()).Scan(&n); err != nil {
			t.Fatalf("node %d's schema %s: %v", i, schema, err)
		}
		eventually(t, fmt.Sprintf("node %d's schema holds the log", i), func() bool {
			err := admin.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "entries"}.Sanitize()).Scan(&n)
			return err == nil && uint64(n) >= commit
		})
	}

	for _, s := range srvs {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	srvs = start()
	lead = servertest.Leader(t, srvs)
	if _, err := lead.Runner().Propose(ctx, setCmd("after", "restart")); err != nil {
		t.Fatal(err)
	}
	for _, s := range srvs {
		eventually(t, "every node applies past the old commit index", func() bool {
			return s.Runner().Status().Applied > commit
		})
	}
	// The damage check of consensusd recover sees a clean store.
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := server.CheckStorage(cfgs[0], nil); err != nil {
		t.Fatalf("CheckStorage: %v", err)
	}
}

// TestPostgresStorageConfig: the storage.postgres keys, validated with
// errors naming the key and never quoting the DSN's password.
func TestPostgresStorageConfig(t *testing.T) {
	const pgYAML = `
node_id: 1
cluster_id: prod
bind_port: 7001
peers:
  - {id: 1, address: 127.0.0.1, port: 7001}
storage:
  type: postgres
  postgres:
    dsn: ${DSN}
    pool_size: 8
`
	good := map[string]string{"DSN": "postgres://app:s3cret-pw@db.internal:5432/raft"}
	c, err := server.ParseConfig([]byte(pgYAML), func(k string) string { return good[k] })
	if err != nil {
		t.Fatal(err)
	}
	if pc := c.Storage.Postgres; c.Storage.Type != "postgres" || pc.DSN != good["DSN"] || pc.PoolSize != 8 || pc.Schema != "" {
		t.Fatalf("storage %+v", c.Storage)
	}
	if got, want := pgstore.SchemaName("prod", "1"), "consensus_prod_1_"; !strings.HasPrefix(got, want) || pgstore.ValidSchema(got) != nil {
		t.Fatalf("SchemaName(prod, 1) = %q", got)
	}
	for _, tc := range []struct {
		edit, to, dsn, key string
	}{
		{"    pool_size: 8", "    pool_size: -1", "", "storage.postgres.pool_size"},
		{"    pool_size: 8", "    pool_size: 1000", "", "storage.postgres.pool_size"},
		{"    pool_size: 8", "    schema: Bad-Name", "", "storage.postgres.schema"},
		{"    pool_size: 8", "    schema: pg_catalog", "", "storage.postgres.schema"},
		{"    pool_size: 8", "    schema: x; DROP TABLE y", "", "storage.postgres.schema"},
		{"    pool_size: 8", "  sync_writes: false", "", "storage.sync_writes"},
		{"", "", "-", "storage.postgres.dsn"}, // empty
		{"", "", "postgres://app:s3cret-pw@db.internal:notaport/raft", "storage.postgres.dsn"},
		{"", "", "host=db user=app password=s3cret-pw port=notaport", "storage.postgres.dsn"},
	} {
		raw := strings.Replace(pgYAML, tc.edit, tc.to, 1)
		e := map[string]string{"DSN": good["DSN"]}
		if tc.dsn == "-" {
			e["DSN"] = ""
		} else if tc.dsn != "" {
			e["DSN"] = tc.dsn
		}
		_, err := server.ParseConfig([]byte(raw), func(k string) string { return e[k] })
		if !errors.Is(err, server.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q / dsn %q: error %v does not name %s", tc.to, tc.dsn, err, tc.key)
			continue
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%q / dsn %q: the error quotes the password: %v", tc.to, tc.dsn, err)
		}
	}
}
