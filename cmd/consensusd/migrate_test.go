package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/server/servertest"
)

// envPostgresDSN names the environment variable with the test database's
// DSN (.ci/run starts PostgreSQL and sets it).
const envPostgresDSN = "CONSENSUS_TEST_POSTGRES_DSN"

// migPostgres returns the test database's DSN once it answers, or "" and
// why not. Under CI (CI=true) a missing database fails the test.
func migPostgres(t *testing.T) (dsn, why string) {
	t.Helper()
	dsn = os.Getenv(envPostgresDSN)
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
		return dsn, ""
	}
	why += " (a PostgreSQL database the tests may create schemas in; .ci/run installs and starts one)"
	if os.Getenv("CI") == "true" {
		t.Fatal("under CI the PostgreSQL tests must run: " + why)
	}
	return "", why
}

// migKeys is the number of keys each source node holds; a snapshot every
// 20 entries leaves a snapshot and a log after it.
const migKeys = 45

func migKey(i int) string   { return fmt.Sprintf("MXSECRET%02d", i) }
func migValue(i int) string { return fmt.Sprintf("MXVALUE%d", i) }

// migWantHash is the state hash of a store holding the keys written.
func migWantHash() string {
	want := kv.New(kv.Config{})
	for i := range migKeys {
		want.Apply(uint64(i+1), kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: migKey(i), Value: []byte(migValue(i))}))
	}
	return fmt.Sprintf("%016x", want.Hash())
}

// migStore is one storage of the node: a type, a directory (storage.path)
// or postgres schema, and an encryption key (none: plain).
type migStore struct {
	typ, path, schema, key string
}

func (s migStore) String() string {
	name := s.typ
	if s.key != "" {
		name = "encrypted-" + name + "-key" + s.key[:2]
	}
	return name
}

// migNode writes configuration files of one node (fixed cluster, ID and
// ports) over any storage.
type migNode struct {
	t       *testing.T
	dir     string
	cluster string
	ports   []int
	n       int
}

func newMigNode(t *testing.T, dir string) *migNode {
	b := make([]byte, 4)
	rand.Read(b)
	return &migNode{t: t, dir: dir, cluster: "mig-" + hex.EncodeToString(b), ports: servertest.FreePorts(t, 3)}
}

// config writes a configuration file of the node over s and returns its path.
func (m *migNode) config(s migStore) string {
	m.t.Helper()
	var st strings.Builder
	fmt.Fprintf(&st, "storage:\n  type: %s\n", s.typ)
	if s.path != "" {
		fmt.Fprintf(&st, "  path: %s\n", s.path)
	}
	if s.typ == "postgres" {
		fmt.Fprintf(&st, "  postgres:\n    dsn: ${%s}\n    schema: %s\n    pool_size: 2\n", envPostgresDSN, s.schema)
	}
	sec := ""
	if s.key != "" {
		sec = "security:\n  enable_encryption: true\n  encryption_key: " + s.key + "\n"
	}
	raw := fmt.Sprintf(`cluster_id: %s
node_id: 1
bind_port: %d
peers:
  - {id: 1, address: 127.0.0.1, port: %d, api_port: %d, client_port: %d}
raft:
  heartbeat_interval: 20ms
  election_timeout_min: 200ms
  snapshot_threshold: 20
  trailing_logs: 5
transport:
  type: tcp
%sapi:
  addr: 127.0.0.1:%d
  client_addr: 127.0.0.1:%d
%s`, m.cluster, m.ports[0], m.ports[0], m.ports[1], m.ports[2], st.String(), m.ports[1], m.ports[2], sec)
	m.n++
	p := filepath.Join(m.dir, fmt.Sprintf("node-%02d-%s.yaml", m.n, s))
	if err := os.WriteFile(p, []byte(raw), 0o600); err != nil {
		m.t.Fatal(err)
	}
	return p
}

// fill starts the node on cfg, writes the keys and stops it.
func migFill(t *testing.T, cfg string) {
	t.Helper()
	srvs := bkStartNodes(t, []string{cfg})
	lead := servertest.Leader(t, srvs)
	for i := range migKeys {
		bkPut(t, lead, migKey(i), migValue(i))
	}
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
}

// migServes starts the node on cfg, reads every key, and stops it.
func migServes(t *testing.T, cfg string) {
	t.Helper()
	srvs := bkStartNodes(t, []string{cfg})
	lead := servertest.Leader(t, srvs)
	for i := range migKeys {
		if v, ok := bkGet(t, lead, migKey(i)); !ok || v != migValue(i) {
			t.Errorf("%s: %s = %q, %v; want %q", filepath.Base(cfg), migKey(i), v, ok, migValue(i))
		}
	}
	if err := srvs[0].Close(); err != nil {
		t.Fatal(err)
	}
}

// migrate runs consensusd migrate-storage -config from -to-config to and
// returns the state hash it printed.
func migrate(t *testing.T, from, to string) string {
	t.Helper()
	code, out, stderr := bkRunD("migrate-storage", "-config", from, "-to-config", to)
	if code != exitOK {
		t.Fatalf("migrate %s -> %s: exit %d:\n%s%s", filepath.Base(from), filepath.Base(to), code, out, stderr)
	}
	_, after, ok := strings.Cut(out, "state hash ")
	if !ok {
		t.Fatalf("no state hash in %q", out)
	}
	if !strings.Contains(out, "snapshot at ") || strings.Contains(out, "snapshot at 0,") {
		t.Errorf("the source held no snapshot: %s", out)
	}
	return strings.Fields(after)[0]
}

// pgSchemas makes unique schema names for the test and drops them at its
// end.
type pgSchemas struct {
	t      *testing.T
	dsn    string
	prefix string
	names  []string
}

func newPgSchemas(t *testing.T, dsn string) *pgSchemas {
	b := make([]byte, 4)
	rand.Read(b)
	p := &pgSchemas{t: t, dsn: dsn, prefix: "migtest_" + hex.EncodeToString(b)}
	t.Cleanup(func() {
		for _, s := range p.names {
			p.exec("DROP SCHEMA IF EXISTS " + pgx.Identifier{s}.Sanitize() + " CASCADE")
		}
	})
	return p
}

func (p *pgSchemas) name(what string) string {
	s := p.prefix + "_" + what
	p.names = append(p.names, s)
	return s
}

func (p *pgSchemas) conn() (*pgx.Conn, context.Context, func()) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		cancel()
		p.t.Fatal(err)
	}
	return c, ctx, func() { c.Close(context.Background()); cancel() }
}

func (p *pgSchemas) exec(sql string) {
	p.t.Helper()
	c, ctx, done := p.conn()
	defer done()
	if _, err := c.Exec(ctx, sql); err != nil {
		p.t.Errorf("%s: %v", sql, err)
	}
}

// rows returns every row of every table of schema as text (bytea columns
// as their raw bytes).
func (p *pgSchemas) rows(schema string) [][]byte {
	p.t.Helper()
	c, ctx, done := p.conn()
	defer done()
	tr, err := c.Query(ctx, "SELECT tablename::text FROM pg_tables WHERE schemaname = $1", schema)
	if err != nil {
		p.t.Fatal(err)
	}
	tables, err := pgx.CollectRows(tr, pgx.RowTo[string])
	if err != nil || len(tables) == 0 {
		p.t.Fatalf("tables of %s: %v, %v", schema, tables, err)
	}
	var out [][]byte
	for _, tb := range tables {
		rs, err := c.Query(ctx, "SELECT * FROM "+pgx.Identifier{schema, tb}.Sanitize())
		if err != nil {
			p.t.Fatal(err)
		}
		for rs.Next() {
			vals, err := rs.Values()
			if err != nil {
				p.t.Fatal(err)
			}
			var row []byte
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					row = append(row, b...)
				} else {
					row = append(row, fmt.Sprint(v)...)
				}
				row = append(row, '|')
			}
			out = append(out, row)
		}
		if err := rs.Err(); err != nil {
			p.t.Fatal(err)
		}
	}
	return out
}

// owner returns the owner token of schema's meta row.
func (p *pgSchemas) owner(schema string) []byte {
	p.t.Helper()
	c, ctx, done := p.conn()
	defer done()
	var o []byte
	if err := c.QueryRow(ctx, "SELECT owner FROM "+pgx.Identifier{schema, "meta"}.Sanitize()).Scan(&o); err != nil {
		p.t.Fatal(err)
	}
	return o
}

// dirDigest is every file of dir with its contents, to see that a
// directory was left as it was.
func dirDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		m[path] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMigrateStorageMatrix migrates a stopped node's storage between every
// pair of storage types (wal, pebble, bolt, badger, postgres; postgres
// through CONSENSUS_TEST_POSTGRES_DSN, skipped without it outside CI):
// each source is a node that wrote 45 keys (a snapshot and a log), each
// copy verifies with the state hash of those keys, and a node started on
// each target serves every key. The sources are never changed (a postgres
// source's owner token included: it is not taken over), a target that is
// not empty is refused (a postgres schema holding tables too), and a
// target config of another node is refused.
func TestMigrateStorageMatrix(t *testing.T) {
	dir := t.TempDir()
	dsn, noPG := migPostgres(t)
	var pg *pgSchemas
	if dsn != "" {
		pg = newPgSchemas(t, dsn)
	}
	types := []string{"wal", "pebble", "bolt", "badger", "postgres"}
	m := newMigNode(t, dir)
	store := func(typ, what string) migStore {
		if typ == "postgres" {
			return migStore{typ: typ, schema: pg.name(what)}
		}
		return migStore{typ: typ, path: filepath.Join(dir, what)}
	}
	want := migWantHash()
	sources := map[string]string{}
	for _, typ := range types {
		if typ == "postgres" && pg == nil {
			continue
		}
		cfg := m.config(store(typ, "src_"+typ))
		migFill(t, cfg)
		sources[typ] = cfg
	}
	before := map[string]map[string]string{}
	for _, typ := range types[:4] {
		before[typ] = dirDigest(t, filepath.Join(dir, "src_"+typ))
	}
	var pgOwner []byte
	if pg != nil {
		pgOwner = pg.owner(pg.prefix + "_src_postgres")
	}
	for _, from := range types {
		for _, to := range types {
			if from == to {
				continue
			}
			t.Run(from+"_to_"+to, func(t *testing.T) {
				if (from == "postgres" || to == "postgres") && pg == nil {
					t.Skip("skipping the PostgreSQL pairs: " + noPG)
				}
				target := m.config(store(to, from+"_to_"+to))
				if h := migrate(t, sources[from], target); h != want {
					t.Errorf("state hash %s, want %s (the keys written)", h, want)
				}
				migServes(t, target)
			})
		}
	}
	// The sources are as they were, byte for byte (they are only read;
	// the postgres one was not taken over), and still open with every key.
	for _, typ := range types[:4] {
		if after := dirDigest(t, filepath.Join(dir, "src_"+typ)); !maps(before[typ], after) {
			t.Errorf("the %s source changed during the migrations", typ)
		}
	}
	if pg != nil {
		if o := pg.owner(pg.prefix + "_src_postgres"); !bytes.Equal(o, pgOwner) {
			t.Errorf("the postgres source was taken over: owner %x, was %x", o, pgOwner)
		}
	}

	// Refusals, each writing nothing: a target not empty (exit 3), one
	// of another node or cluster (exit 2).
	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), []byte("x"), 0o600)
	code, _, stderr := bkRunD("migrate-storage", "-config", sources["wal"], "-to-config", m.config(migStore{typ: "bolt", path: full}))
	if code != exitBackupRefused || !strings.Contains(stderr, "must be empty") {
		t.Errorf("non-empty directory: exit %d: %s", code, stderr)
	}
	other := m.config(store("pebble", "other_node"))
	raw, _ := os.ReadFile(other)
	os.WriteFile(other, bytes.Replace(raw, []byte("cluster_id: "+m.cluster), []byte("cluster_id: another"), 1), 0o600)
	code, _, stderr = bkRunD("migrate-storage", "-config", sources["wal"], "-to-config", other)
	if code != exitUsage || !strings.Contains(stderr, "cluster_id") {
		t.Errorf("another cluster's config: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "other_node")); !os.IsNotExist(err) {
		t.Errorf("a refused migration created its target: %v", err)
	}
	if code, _, stderr := bkRunD("migrate-storage", "-config", sources["wal"], "-to-config", other, "-to-type", "bolt"); code != exitUsage {
		t.Errorf("-to-config with -to-type: exit %d: %s", code, stderr)
	}
	if pg == nil {
		t.Log("the postgres refusals are skipped: " + noPG)
		return
	}
	// A postgres schema holding a table is refused, left as it was.
	busy := pg.name("busy")
	pg.exec("CREATE SCHEMA " + busy)
	pg.exec("CREATE TABLE " + busy + ".t (x int)")
	code, _, stderr = bkRunD("migrate-storage", "-config", sources["wal"], "-to-config", m.config(migStore{typ: "postgres", schema: busy}))
	if code != exitBackupRefused || !strings.Contains(stderr, "holds 1 tables (t)") {
		t.Errorf("non-empty schema: exit %d: %s", code, stderr)
	}
	if rows := pg.rows(busy); len(rows) != 0 {
		t.Errorf("the non-empty schema was written: %q", rows)
	}
	// An empty schema (made beforehand, e.g. by a DBA) is a valid target.
	empty := pg.name("empty")
	pg.exec("CREATE SCHEMA " + empty)
	target := m.config(migStore{typ: "postgres", schema: empty})
	if h := migrate(t, sources["bolt"], target); h != want {
		t.Errorf("into an empty schema: state hash %s, want %s", h, want)
	}
	// The shorthand -to-type postgres takes FILE's storage.postgres:
	// the target is then the source's own schema, refused as such.
	code, _, stderr = bkRunD("migrate-storage", "-config", sources["postgres"], "-to-type", "postgres")
	if code != exitUsage || !strings.Contains(stderr, "the target is the source") {
		t.Errorf("postgres onto itself: exit %d: %s", code, stderr)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestMigrateStorageEncryption migrates into and out of encryption at
// rest and to another key, over a chain that passes every storage type:
// plain wal -> pebble encrypted with key A -> plain bolt -> badger
// encrypted with key B -> postgres encrypted with key A (if the test
// database is there) -> plain wal. Each copy verifies with the state hash
// of the keys written, a node started on it serves every key, an encrypted
// copy has its own marker file listing only its key and holds no key or
// value in plaintext (files, or every row of its schema), a plain copy
// holds them decrypted. A wrong or missing key on the source, or
// encryption configured over a plain source, is refused (exit 2) before
// the target is created, and the source is left as it was.
func TestMigrateStorageEncryption(t *testing.T) {
	dir := t.TempDir()
	dsn, noPG := migPostgres(t)
	keyA := hex.EncodeToString(bytes.Repeat([]byte{0xa1}, 32))
	keyB := hex.EncodeToString(bytes.Repeat([]byte{0xb2}, 32))
	keyC := hex.EncodeToString(bytes.Repeat([]byte{0xc3}, 32))
	idOf := func(k string) string {
		key, err := encrypt.ParseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return key.ID().String()
	}
	m := newMigNode(t, dir)
	want := migWantHash()
	secrets := [][]byte{[]byte("MXSECRET"), []byte("MXVALUE")}
	// noPlaintext checks every file of an encrypted directory.
	noPlaintext := func(path string) {
		t.Helper()
		for f, b := range dirDigest(t, path) {
			for _, s := range append(secrets, []byte(keyA), []byte(keyB)) {
				if bytes.Contains([]byte(b), s) {
					t.Errorf("%s holds %q in plaintext", f, s)
				}
			}
		}
	}
	plaintext := func(path string) {
		t.Helper()
		for _, b := range dirDigest(t, path) {
			if bytes.Contains([]byte(b), secrets[1]) {
				return
			}
		}
		t.Errorf("the plain copy %s holds no value in plaintext: was it decrypted?", path)
	}
	marker := func(path, key string) {
		t.Helper()
		keys, ok, err := encrypt.MarkerKeys(path)
		if !ok || err != nil || !slices.Equal(keys, []string{idOf(key)}) {
			t.Errorf("%s: marker keys %v (%v, %v), want only %s", path, keys, ok, err, idOf(key))
		}
	}

	src := migStore{typ: "wal", path: filepath.Join(dir, "wal_plain")}
	srcCfg := m.config(src)
	migFill(t, srcCfg)

	chain := []migStore{
		{typ: "pebble", path: filepath.Join(dir, "pebble_a"), key: keyA},
		{typ: "bolt", path: filepath.Join(dir, "bolt_plain")},
		{typ: "badger", path: filepath.Join(dir, "badger_b"), key: keyB},
	}
	var pg *pgSchemas
	if dsn != "" {
		pg = newPgSchemas(t, dsn)
		chain = append(chain, migStore{typ: "postgres", path: filepath.Join(dir, "pg_a_marker"), schema: pg.name("enc_a"), key: keyA})
	} else {
		t.Log("the encrypted postgres step is skipped: " + noPG)
	}
	chain = append(chain, migStore{typ: "wal", path: filepath.Join(dir, "wal_again")})
	prev, prevCfg := src, srcCfg
	for _, to := range chain {
		toCfg := m.config(to)
		t.Run(prev.String()+"_to_"+to.String(), func(t *testing.T) {
			if h := migrate(t, prevCfg, toCfg); h != want {
				t.Errorf("state hash %s, want %s", h, want)
			}
			switch {
			case to.key != "":
				marker(to.path, to.key)
				if to.typ == "postgres" {
					rows := pg.rows(to.schema)
					if len(rows) < 5 {
						t.Errorf("schema %s: %d rows", to.schema, len(rows))
					}
					for _, r := range rows {
						for _, s := range secrets {
							if bytes.Contains(r, s) {
								t.Errorf("schema %s holds %q in plaintext: row %q", to.schema, s, r)
							}
						}
					}
				} else {
					noPlaintext(to.path)
				}
			default:
				if _, ok, _ := encrypt.MarkerKeys(to.path); ok {
					t.Errorf("the plain copy %s has a marker file", to.path)
				}
				plaintext(to.path)
			}
			migServes(t, toCfg)
		})
		prev, prevCfg = to, toCfg
	}

	// Refusals on the source: nothing created, the source as it was.
	encSrc := chain[0] // pebble with key A (a node ran on it since)
	srcBefore := dirDigest(t, encSrc.path)
	for _, tc := range []struct {
		name string
		from migStore
		want string
	}{
		{"wrong key", migStore{typ: "pebble", path: encSrc.path, key: keyC}, "wrong key"},
		{"missing key", migStore{typ: "pebble", path: encSrc.path}, "is encrypted"},
		{"key on a plain source", migStore{typ: "wal", path: src.path, key: keyA}, "has no " + encrypt.MarkerName},
	} {
		target := filepath.Join(dir, "refused_"+strings.ReplaceAll(tc.name, " ", "_"))
		code, _, stderr := bkRunD("migrate-storage", "-config", m.config(tc.from), "-to-config",
			m.config(migStore{typ: "bolt", path: target, key: keyB}))
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d: %s; want exit %d and %q", tc.name, code, stderr, exitUsage, tc.want)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Errorf("%s: the target %s was created", tc.name, target)
		}
	}
	if !maps(srcBefore, dirDigest(t, encSrc.path)) {
		t.Error("a refused migration changed the encrypted source")
	}
	migServes(t, m.config(encSrc))
}
