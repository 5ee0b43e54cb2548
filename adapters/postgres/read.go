package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/forge-consensus/consensus/core"
)

// ErrNoSchema is wrapped by the error of Read for a schema that does not
// exist or lacks this package's tables.
var ErrNoSchema = errors.New("no such schema")

// connect opens one connection to the database of dsn; errors never quote
// the DSN's password.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres storage: the DSN does not parse: %w", redact(err, dsn))
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "consensus"
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres storage: connect: %w", redact(err, dsn))
	}
	return c, nil
}

// SchemaTables reports whether schema exists in the database of dsn and
// the names of the tables (and other relations: views, sequences, ...) it
// holds, sorted. It reads the catalog only: nothing is created or changed.
// A schema that does not exist, or exists and holds no relation, is empty.
func SchemaTables(dsn, schema string) (exists bool, tables []string, err error) {
	if err := ValidSchema(schema); err != nil {
		return false, nil, fmt.Errorf("postgres storage: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	c, err := connect(ctx, dsn)
	if err != nil {
		return false, nil, err
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return false, nil, fmt.Errorf("postgres storage: schema %s: %w", schema, err)
	}
	if !exists {
		return false, nil, nil
	}
	rows, err := c.Query(ctx, "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "+
		"WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') ORDER BY 1", schema)
	if err != nil {
		return true, nil, fmt.Errorf("postgres storage: schema %s: %w", schema, err)
	}
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return true, nil, fmt.Errorf("postgres storage: schema %s: list tables: %w", schema, err)
	}
	return true, tables, nil
}

// Read reads and verifies everything the schema of o holds, as Open and
// Load do (every row's checksum, the rows fitting together, the format
// version and, if o.Identity is set, the identity), in one read-only
// transaction, and returns it. Unlike Open it creates nothing and does
// not take the schema over: it writes nothing at all, so a process that
// owns the schema is not disturbed (it reads a consistent moment of it).
// A schema that does not exist, or lacks the tables, is an error wrapping
// ErrNoSchema. Only o.DSN, o.Schema and o.Identity are used.
func Read(o Options) (core.Persisted, error) {
	if o.DSN == "" {
		return core.Persisted{}, errors.New("postgres storage: Options.DSN is empty")
	}
	if err := ValidSchema(o.Schema); err != nil {
		return core.Persisted{}, fmt.Errorf("postgres storage: Options.Schema: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	c, err := connect(ctx, o.DSN)
	if err != nil {
		return core.Persisted{}, err
	}
	defer c.Close(context.Background())
	s := &Storage{opts: o, schema: pgx.Identifier{o.Schema}.Sanitize()}
	tableNames := []string{"meta", "hard_state", "snapshot", "snapshot_chunks", "entries"}
	var p core.Persisted
	err = pgx.BeginTxFunc(ctx, c, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2)",
			o.Schema, tableNames).Scan(&n); err != nil {
			return err
		}
		if n != len(tableNames) {
			return fmt.Errorf("%w: schema %s holds %d of the %d tables of this storage", ErrNoSchema, o.Schema, n, len(tableNames))
		}
		rows, err := tx.Query(ctx, "SELECT id, version, identity, owner, crc FROM "+s.table("meta"))
		if err != nil {
			return err
		}
		metas, err := pgx.CollectRows(rows, pgx.RowToStructByPos[metaRow])
		if err != nil {
			return fmt.Errorf("read meta: %w", err)
		}
		for i := range metas {
			if err := metas[i].check(); err != nil {
				return s.corrupt(err)
			}
		}
		if len(metas) > 1 {
			return s.corrupt(fmt.Errorf("meta[%d]: a second meta row", metas[1].ID))
		}
		if p, err = s.read(ctx, tx); err != nil {
			return err
		}
		if len(metas) == 0 {
			if !p.IsEmpty() {
				return s.corrupt(errors.New("meta[1]: the meta row is missing from a schema that holds a log"))
			}
			return nil
		}
		m := metas[0]
		if m.Version != formatVersion {
			return fmt.Errorf("format version %d in meta[1], this build reads version %d", m.Version, formatVersion)
		}
		if id := string(m.Identity); o.Identity != "" && id != "" && id != o.Identity {
			return fmt.Errorf("the schema belongs to %q, not to %q", id, o.Identity)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return core.Persisted{}, err
		}
		return core.Persisted{}, fmt.Errorf("postgres storage: read schema %s: %w", o.Schema, err)
	}
	return p, nil
}
