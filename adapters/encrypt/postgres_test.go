package encrypt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	pgstore "github.com/forge-consensus/consensus/adapters/postgres"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
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

// pgSchemaOf maps a test directory (where the marker file lives) to the
// schema holding the backend's rows.
func pgSchemaOf(dir string) string {
	h := fnv.New64a()
	h.Write([]byte(dir))
	return fmt.Sprintf("enctest_%016x", h.Sum64())
}

// pgConn connects to the test database; the test's cleanup closes it.
func pgConn(t *testing.T, dsn string) (*pgx.Conn, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, ctx
}

// openPostgres opens the schema standing for dir; the test's cleanup
// drops it.
func openPostgres(t testing.TB, dsn string) func(dir string) func() (node.Storage, error) {
	return func(dir string) func() (node.Storage, error) {
		schema := pgSchemaOf(dir)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(ctx)
			if _, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
				t.Error(err)
			}
		})
		return func() (node.Storage, error) {
			return pgstore.Open(pgstore.Options{DSN: dsn, Schema: schema, Identity: "enctest"})
		}
	}
}

// TestSuitePostgres runs the suite's update kinds over encrypted
// PostgreSQL storage (the marker file in the test's directory, the rows in
// a schema of their own): every kind of update reads back decrypted as it
// was written, across reopens.
func TestSuitePostgres(t *testing.T) {
	dsn := postgresDSN(t)
	b := encrypted("postgres", openPostgres(t, dsn), func(err error) bool { return errors.Is(err, pgstore.ErrCorrupt) })
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, storagetest.Backend)
	}{
		{"Append", storagetest.Append}, {"Overwrite", storagetest.Overwrite}, {"Compact", storagetest.Compact},
		{"LeaderSnapshot", storagetest.LeaderSnapshot}, {"Gap", storagetest.Gap}, {"Model", storagetest.Model},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

// schemaRows returns every row of every table of schema, each column as
// its raw bytes (bytea) or its text, selected through SQL as an operator
// with database access would see them.
func schemaRows(t *testing.T, c *pgx.Conn, ctx context.Context, schema string) []string {
	t.Helper()
	rows, err := c.Query(ctx, "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) != 5 {
		t.Fatalf("tables of %s: %v, %v", schema, tables, err)
	}
	var out []string
	for _, tb := range tables {
		// Every column cast to bytea's text form and to text: no value
		// may show in either.
		rs, err := c.Query(ctx, "SELECT t::text, convert_to(t::text, 'UTF8') FROM "+pgx.Identifier{schema, tb}.Sanitize()+" t")
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var text string
			var raw []byte
			if err := rs.Scan(&text, &raw); err != nil {
				t.Fatal(err)
			}
			out = append(out, tb+": "+text)
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		rs, err = c.Query(ctx, "SELECT * FROM "+pgx.Identifier{schema, tb}.Sanitize())
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			vals, err := rs.Values()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					out = append(out, tb+" bytea: "+string(b))
				}
			}
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestNoPlaintextPostgres writes known entries and a snapshot through the
// encrypted PostgreSQL storage, then selects every row of every table of
// its schema (as text, and each bytea column's raw bytes): no value
// appears in plaintext, while the same writes without encryption do show
// (the check can fail). The store reads back decrypted.
func TestNoPlaintextPostgres(t *testing.T) {
	dsn := postgresDSN(t)
	c, ctx := pgConn(t, dsn)
	secret := []byte("PGSECRET-value-")
	write := func(s node.Storage) {
		t.Helper()
		var es []core.Entry
		for i := uint64(1); i <= 20; i++ {
			es = append(es, core.Entry{Index: i, Term: 1, Data: append(bytes.Clone(secret), byte('a'+i))})
		}
		storagetest.MustSave(t, s, &node.Update{Entries: es, HardState: core.HardState{Term: 1, Commit: 20}})
		storagetest.MustSave(t, s, &node.Update{Snapshot: &core.Snapshot{
			Meta: core.SnapshotMeta{Index: 30, Term: 2, Config: core.ConfState{Voters: []uint64{1}}},
			Data: bytes.Repeat(secret, 100)}})
		storagetest.MustSave(t, s, &node.Update{Entries: []core.Entry{{Index: 31, Term: 2, Data: append(bytes.Clone(secret), 'z')}}})
	}
	leaks := func(schema string) int {
		n := 0
		for _, r := range schemaRows(t, c, ctx, schema) {
			if strings.Contains(r, string(secret)) || strings.Contains(r, fmt.Sprintf("%x", secret)) {
				n++
			}
		}
		return n
	}

	dir := t.TempDir()
	key := testKey(t, 7)
	s := mustOpen(t, encrypt.Options{Dir: dir, Key: key}, openPostgres(t, dsn)(dir))
	write(s)
	p := storagetest.MustLoad(t, s)
	storagetest.MustClose(t, s)
	if len(p.Entries) != 1 || !bytes.HasPrefix(p.Entries[0].Data, secret) || p.Snapshot == nil ||
		!bytes.Equal(p.Snapshot.Data, bytes.Repeat(secret, 100)) {
		t.Fatalf("read back: %+v", p)
	}
	if n := leaks(pgSchemaOf(dir)); n != 0 {
		t.Errorf("%d rows of the encrypted schema hold a value in plaintext", n)
	}

	plainDir := t.TempDir()
	ps, err := openPostgres(t, dsn)(plainDir)()
	if err != nil {
		t.Fatal(err)
	}
	write(ps)
	storagetest.MustClose(t, ps.(storagetest.Store))
	if n := leaks(pgSchemaOf(plainDir)); n == 0 {
		t.Error("the plain schema shows no value either: the check sees nothing")
	}
}

// TestKeyRefusedPostgres: encrypted PostgreSQL storage opened with another
// key, or without a key its records need (after a rotation), is refused
// with ErrKey before the backend is opened: the schema is not even
// connected to, and no row changes (its owner token included).
func TestKeyRefusedPostgres(t *testing.T) {
	dsn := postgresDSN(t)
	c, ctx := pgConn(t, dsn)
	dir := t.TempDir()
	open := openPostgres(t, dsn)(dir)
	a, b, other := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	s := mustOpen(t, encrypt.Options{Dir: dir, Key: a}, open)
	storagetest.MustSave(t, s, &node.Update{Entries: entries(1, 3, 1, "v"), HardState: core.HardState{Term: 1, Commit: 3}})
	storagetest.MustClose(t, s)
	// Rotate to b: entries 4..6 sealed with b, 1..3 still with a.
	s = mustOpen(t, encrypt.Options{Dir: dir, Key: b, OldKeys: []encrypt.Key{a}}, open)
	storagetest.MustLoad(t, s)
	storagetest.MustSave(t, s, &node.Update{Entries: entries(4, 6, 1, "v")})
	storagetest.MustClose(t, s)

	before := schemaRows(t, c, ctx, pgSchemaOf(dir))
	beforeDir := dirState(t, dir)
	for _, tc := range []struct {
		name string
		opts encrypt.Options
		is   error
		want string
	}{
		{"wrong key", encrypt.Options{Dir: dir, Key: other}, encrypt.ErrKey, "wrong key"},
		{"missing old key", encrypt.Options{Dir: dir, Key: b}, encrypt.ErrMissingKey, a.ID().String()},
	} {
		opened := false
		_, err := encrypt.Open(tc.opts, func() (node.Storage, error) {
			opened = true
			return open()
		})
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, err, tc.is, tc.want)
		}
		if opened {
			t.Errorf("%s: the backend was opened", tc.name)
		}
	}
	if after := schemaRows(t, c, ctx, pgSchemaOf(dir)); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Error("a refused open changed the schema's rows")
	}
	sameDir(t, beforeDir, dirState(t, dir))
	// Plain (encryption off) over the encrypted directory: refused too.
	if err := encrypt.CheckPlain(dir); !errors.Is(err, encrypt.ErrKey) {
		t.Errorf("CheckPlain of the encrypted directory: %v", err)
	}
	// With both keys it opens and reads every entry back.
	s = mustOpen(t, encrypt.Options{Dir: dir, Key: b, OldKeys: []encrypt.Key{a}}, open)
	if p := storagetest.MustLoad(t, s); len(p.Entries) != 6 {
		t.Errorf("with both keys: %d entries", len(p.Entries))
	}
	storagetest.MustClose(t, s)
}
