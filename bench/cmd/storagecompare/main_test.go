//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	pgstore "github.com/forge-consensus/consensus/adapters/postgres"
)

// TestParse reads the result lines of loadgen and commitfloor -drive.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		out  string
		ops  float64
		p99  time.Duration
		errs int
	}{
		{"write proto=wire clients=100 n=50000 errors=3  24666 ops/s  p50 3.33ms  p99 14.5ms  p999 17.9ms\n", 24666, 14500 * time.Microsecond, 3},
		{"commit floor clients=1 conns=1 n=3000 size=128  927 writes/s  p50 910µs  p99 7.6ms  p999 9.9ms\n", 927, 7600 * time.Microsecond, 0},
	} {
		s, err := parse(tc.out)
		if err != nil {
			t.Fatalf("%q: %v", tc.out, err)
		}
		if s.ops != tc.ops || s.p99 != tc.p99 || s.errors != tc.errs || s.p50 <= 0 || s.p999 < s.p99 {
			t.Errorf("%q: got %+v", tc.out, s)
		}
	}
	if _, err := parse("loadgen: no leader"); err == nil {
		t.Error("a line without figures parsed")
	}
}

// TestMedian checks odd and even counts.
func TestMedian(t *testing.T) {
	ops := func(x sample) float64 { return x.ops }
	if m := median([]sample{{ops: 3}, {ops: 1}, {ops: 2}}, ops); m != 2 {
		t.Errorf("median of 3, 1, 2 = %v", m)
	}
	if m := median([]sample{{ops: 4}, {ops: 1}}, ops); m != 2.5 {
		t.Errorf("median of 4, 1 = %v", m)
	}
}

// TestClusterConfig checks the storage section a cluster writes for each
// storage type: a directory per node, or for postgres a schema of its own
// per node (one pgstore accepts) with the DSN left to the environment.
// (That consensusd accepts the whole file, a run of storagecompare shows.)
func TestClusterConfig(t *testing.T) {
	for _, storage := range []string{"wal", "pebble", "bolt", "badger", "postgres"} {
		c := &cluster{storage: storage, transport: "grpc", label: storage, base: 30000, dir: t.TempDir(), size: 128}
		if storage == "postgres" {
			c.pg = &pgSchemas{dsn: "postgres://u:secret@h/db", prefix: schemaPrefix(newRunID(), "postgres+tcp")}
		}
		schemas := map[string]bool{}
		for id := 1; id <= 3; id++ {
			raw := c.config(id)
			if !strings.Contains(raw, "storage:\n  type: "+storage+"\n") {
				t.Errorf("%s, node %d: no storage.type %s:\n%s", storage, id, storage, raw)
			}
			if storage != "postgres" {
				if !strings.Contains(raw, "  path: "+c.dir) {
					t.Errorf("%s, node %d: no storage.path under %s:\n%s", storage, id, c.dir, raw)
				}
				continue
			}
			if !strings.Contains(raw, "    dsn: ${"+envDSN+"}\n") || strings.Contains(raw, "secret") || strings.Contains(raw, "path:") {
				t.Errorf("node %d: the DSN is not left to the environment, or a path is set:\n%s", id, raw)
			}
			schema := c.pg.schema(id)
			if err := pgstore.ValidSchema(schema); err != nil || schemas[schema] || !strings.Contains(raw, "    schema: "+schema+"\n") {
				t.Errorf("node %d: schema %q (%v) not its own:\n%s", id, schema, err, raw)
			}
			schemas[schema] = true
		}
	}
}
