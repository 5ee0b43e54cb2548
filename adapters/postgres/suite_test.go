package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/forge-consensus/consensus/adapters/storagetest"
)

// EnvDSN names the environment variable holding the DSN of the database
// the tests use (.ci/run starts a server and sets it).
const EnvDSN = "CONSENSUS_TEST_POSTGRES_DSN"

// testDSN returns the test database's DSN once a connection to it works.
// Without one the test skips, saying why; under CI (CI=true) it fails.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	why := ""
	if dsn == "" {
		why = EnvDSN + " is not set"
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			why = fmt.Sprintf("no PostgreSQL server reachable at %s: %v", EnvDSN, err)
		} else {
			_ = c.Close(ctx)
		}
	}
	if why == "" {
		return dsn
	}
	msg := why + " (a PostgreSQL database the tests may create schemas in, e.g. " +
		"postgres://user:password@127.0.0.1:5432/db?sslmode=disable; .ci/run installs and starts one)"
	if os.Getenv("CI") == "true" {
		t.Fatal("under CI the PostgreSQL tests must run: " + msg)
	}
	t.Skip("skipping the PostgreSQL tests: " + msg)
	return ""
}

// exec runs sql on a connection of its own.
func exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// schemaOf maps a test's directory to the schema standing for it: the
// suite runs unchanged, and the crash test's child process (given the
// same directory) opens the same schema.
func schemaOf(dir string) string {
	h := fnv.New64a()
	h.Write([]byte(dir))
	return fmt.Sprintf("ctest_%016x", h.Sum64())
}

// dropSchema deletes schema and everything in it.
func dropSchema(t testing.TB, dsn, schema string) {
	exec(t, dsn, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
}

// backendFor describes this package to the storage conformance suite,
// against the database of dsn.
func backendFor(dsn string) storagetest.Backend {
	return storagetest.Backend{
		Name: "postgres",
		Open: func(t testing.TB, dir string) (storagetest.Store, error) {
			schema := schemaOf(dir)
			t.Cleanup(func() { dropSchema(t, dsn, schema) })
			return Open(Options{DSN: dsn, Schema: schema})
		},
		IsCorrupt: func(err error) bool { return errors.Is(err, ErrCorrupt) },
		Kind:      func(rel string) string { return rel[:strings.IndexByte(rel, '[')] + " row" },
		Damage:    &rowDamager{dsn: dsn},
	}
}

// TestStorage runs the storage conformance suite against a real server:
// update kinds, a model, SIGKILL crashes of a process writing through the
// store, and the corruption campaign, here over rows: a byte of a stored
// row (any column, key included) is flipped through SQL, and the reopened
// store must refuse the schema naming the row, or hold everything
// acknowledged.
func TestStorage(t *testing.T) { storagetest.Run(t, backendFor(testDSN(t))) }

// column is a column of a table, in the order its bytes are counted.
type column struct {
	name  string
	bytea bool
}

// tableColumns lists each table's columns; the first is the key.
var tableColumns = map[string][]column{
	"meta":            {{"id", false}, {"version", false}, {"identity", true}, {"owner", true}, {"crc", false}},
	"hard_state":      {{"id", false}, {"term", false}, {"vote", false}, {"commit_index", false}, {"crc", false}},
	"snapshot":        {{"id", false}, {"idx", false}, {"term", false}, {"meta", true}, {"size", false}, {"chunks", false}, {"data_crc", false}, {"crc", false}},
	"snapshot_chunks": {{"n", false}, {"idx", false}, {"term", false}, {"data", true}, {"crc", false}},
	"entries":         {{"idx", false}, {"term", false}, {"type", false}, {"data", true}, {"crc", false}},
}

var tableOrder = []string{"meta", "hard_state", "snapshot", "snapshot_chunks", "entries"}

// rowDamager damages the rows of a store's schema for the corruption
// campaign. A row's bytes are its columns in order: a bigint is 8 bytes
// (big-endian), a bytea its bytes. It keeps one connection for the whole
// campaign (connecting costs more than a trial).
type rowDamager struct {
	dsn string
	c   *pgx.Conn
}

func (d *rowDamager) conn(t testing.TB) (*pgx.Conn, context.Context, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	if d.c == nil || d.c.IsClosed() {
		c, err := pgx.Connect(ctx, d.dsn)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		d.c = c
		t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	return d.c, ctx, cancel
}

// rowLen is the SQL expression of the size of a row of table.
func rowLen(table string) string {
	n, parts := 0, []string{}
	for _, c := range tableColumns[table] {
		if c.bytea {
			parts = append(parts, "octet_length("+c.name+")")
		} else {
			n += 8
		}
	}
	return strings.Join(append([]string{strconv.Itoa(n)}, parts...), " + ")
}

// Units lists every row of the schema of dir.
func (d *rowDamager) Units(t testing.TB, dir string) []storagetest.Unit {
	c, ctx, done := d.conn(t)
	defer done()
	schema := pgx.Identifier{schemaOf(dir)}.Sanitize()
	var out []storagetest.Unit
	for _, table := range tableOrder {
		key := tableColumns[table][0].name
		rows, err := c.Query(ctx, fmt.Sprintf("SELECT %s, %s FROM %s.%s ORDER BY %s", key, rowLen(table), schema, table, key))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, size int64
			if err := rows.Scan(&k, &size); err != nil {
				t.Fatal(err)
			}
			out = append(out, storagetest.Unit{Name: fmt.Sprintf("%s[%d]", table, uint64(k)), Size: size})
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Flip xors the byte at off of the row named name with mask, through SQL.
// A flip in the key that would collide with another row's key (which
// PostgreSQL refuses) flips the key's top byte instead. The undo function
// deletes the damaged row and inserts it again as it was.
func (d *rowDamager) Flip(t testing.TB, dir, name string, off int64, mask byte) (also []string, undo func()) {
	c, ctx, done := d.conn(t)
	defer done()
	table, keyText, _ := strings.Cut(strings.TrimSuffix(name, "]"), "[")
	ukey, err := strconv.ParseUint(keyText, 10, 64)
	if err != nil {
		t.Fatalf("unit %q: %v", name, err)
	}
	key := int64(ukey)
	cols := tableColumns[table]
	qt := pgx.Identifier{schemaOf(dir)}.Sanitize() + "." + table
	where := " WHERE " + cols[0].name + " = $3"
	rows, err := c.Query(ctx, "SELECT * FROM "+qt+" WHERE "+cols[0].name+" = $1", key)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	newKey := key
	undo = func() {
		c, ctx, done := d.conn(t)
		defer done()
		marks := make([]string, len(orig))
		for i := range marks {
			marks[i] = "$" + strconv.Itoa(i+1)
		}
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "DELETE FROM "+qt+" WHERE "+cols[0].name+" = $1", newKey); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+qt+" VALUES ("+strings.Join(marks, ", ")+")", orig...)
			return err
		})
		if err != nil {
			t.Fatalf("repair %s: %v", name, err)
		}
	}
	var lens []int64
	for _, col := range cols {
		if !col.bytea {
			lens = append(lens, 8)
			continue
		}
		var n int64
		if err := c.QueryRow(ctx, "SELECT octet_length("+col.name+") FROM "+qt+" WHERE "+cols[0].name+" = $1", key).Scan(&n); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lens = append(lens, n)
	}
	for i, col := range cols {
		if off >= lens[i] {
			off -= lens[i]
			continue
		}
		if col.bytea {
			if _, err := c.Exec(ctx, "UPDATE "+qt+" SET "+col.name+" = set_byte("+col.name+", $1, get_byte("+col.name+", $1) # $2)"+where, off, int(mask), key); err != nil {
				t.Fatalf("flip %s byte %d of %s: %v", name, off, col.name, err)
			}
			return nil, undo
		}
		x := int64(uint64(mask) << (8 * (7 - off)))
		_, err := c.Exec(ctx, "UPDATE "+qt+" SET "+col.name+" = "+col.name+" # $1 WHERE "+cols[0].name+" = $2", x, key)
		var pe *pgconn.PgError
		if i == 0 && errors.As(err, &pe) && pe.Code == "23505" {
			x = int64(uint64(mask) << 56)
			_, err = c.Exec(ctx, "UPDATE "+qt+" SET "+col.name+" = "+col.name+" # $1 WHERE "+cols[0].name+" = $2", x, key)
		}
		if err != nil {
			t.Fatalf("flip %s byte %d of %s: %v", name, off, col.name, err)
		}
		if i == 0 {
			newKey = key ^ x
			return []string{fmt.Sprintf("%s[%d]", table, uint64(newKey)), fmt.Sprintf("%s[%d]", table, newKey)}, undo
		}
		return nil, undo
	}
	t.Fatalf("offset past the end of %s", name)
	return nil, nil
}
