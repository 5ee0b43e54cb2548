//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	badgerstore "github.com/forge-consensus/consensus/adapters/badger"
	boltstore "github.com/forge-consensus/consensus/adapters/bolt"
	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	pgstore "github.com/forge-consensus/consensus/adapters/postgres"
	walstore "github.com/forge-consensus/consensus/adapters/wal"
	"github.com/forge-consensus/consensus/node"
)

// store is a node.Storage that can be closed.
type store interface {
	node.Storage
	io.Closer
}

// opener opens the store of one file-based type in dir.
type opener func(dir string) (store, error)

// fileTypes are the storage types that keep their store in a directory,
// by storage.type name; each opens with its defaults, fsync on.
var fileTypes = map[string]opener{
	"wal": func(dir string) (store, error) {
		return walstore.Open(walstore.Options{Dir: dir, ClusterID: 1, NodeID: 1, Logger: slog.New(slog.DiscardHandler)})
	},
	"pebble": func(dir string) (store, error) {
		return pebblestore.Open(pebblestore.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	},
	"bolt": func(dir string) (store, error) {
		return boltstore.Open(boltstore.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	},
	"badger": func(dir string) (store, error) {
		return badgerstore.Open(badgerstore.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	},
}

// envDSN names the environment variable holding the DSN of the
// PostgreSQL database the postgres type uses (as in the tests).
const envDSN = "CONSENSUS_TEST_POSTGRES_DSN"

// backend is one storage type as measured: where its stores live and how
// to open, size and remove one. A store's location is a directory, or a
// schema for postgres.
type backend interface {
	// loc returns the location of the store called name (letters, digits
	// and _).
	loc(name string) string
	open(loc string) (store, error)
	// exists reports whether a store is at loc.
	exists(loc string) bool
	// used returns the bytes the store at loc takes.
	used(loc string) (int64, error)
	remove(loc string) error
}

// fileBackend is a storage type whose stores are directories under dir.
type fileBackend struct {
	dir    string
	opener opener
}

func (f fileBackend) loc(name string) string { return filepath.Join(f.dir, name) }

func (f fileBackend) open(loc string) (store, error) { return f.opener(loc) }

func (f fileBackend) exists(loc string) bool {
	_, err := os.Stat(loc)
	return err == nil
}

func (f fileBackend) used(loc string) (int64, error) { return diskUsed(loc), nil }

func (f fileBackend) remove(loc string) error { return os.RemoveAll(loc) }

// diskUsed is the space the files under dir take on disk (allocated
// blocks, so preallocated files count as far as they are allocated).
func diskUsed(dir string) int64 {
	var used int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				used += st.Blocks * 512
			}
		}
		return nil
	})
	return used
}

// pgBackend is the postgres storage type: each store a schema of the
// database at dsn. admin is a connection of its own, for sizes, counters
// and dropping schemas.
type pgBackend struct {
	dsn   string
	admin *pgx.Conn
}

// pgTimeout bounds each administrative query.
const pgTimeout = 30 * time.Second

func newPGBackend(dsn string) (*pgBackend, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", envDSN, err)
	}
	return &pgBackend{dsn: dsn, admin: c}, nil
}

func (p *pgBackend) close() { _ = p.admin.Close(context.Background()) }

func (p *pgBackend) loc(name string) string { return "storagebench_" + name }

// open opens the schema loc, its connections named loc (application_name)
// so that settle can tell when they are gone.
func (p *pgBackend) open(loc string) (store, error) {
	dsn, err := withParam(p.dsn, "application_name", loc)
	if err != nil {
		return nil, err
	}
	return pgstore.Open(pgstore.Options{DSN: dsn, Schema: loc, Identity: "storagebench"})
}

// withParam adds key=value to a DSN in either form (URL or key=value).
func withParam(dsn, key, value string) (string, error) {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("the DSN does not parse as a URL")
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " " + key + "=" + value, nil
}

func (p *pgBackend) query(sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	var n int64
	if err := p.admin.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", sql, err)
	}
	return n, nil
}

func (p *pgBackend) exists(loc string) bool {
	n, err := p.query("SELECT count(*) FROM pg_namespace WHERE nspname = $1", loc)
	return err == nil && n > 0
}

// used is the total size (heap, indexes, TOAST) of the schema's tables:
// PostgreSQL's write-ahead log is not counted.
func (p *pgBackend) used(loc string) (int64, error) {
	return p.query(`SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r'`, loc)
}

func (p *pgBackend) remove(loc string) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	_, err := p.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{loc}.Sanitize()+" CASCADE")
	return err
}

// removeAll drops every schema whose name starts with prefix.
func (p *pgBackend) removeAll(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	rows, err := p.admin.Query(ctx, "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix)
	if err != nil {
		return fmt.Errorf("list schemas %s*: %w", prefix, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list schemas %s*: %w", prefix, err)
	}
	for _, n := range names {
		if err := p.remove(n); err != nil {
			return fmt.Errorf("drop schema %s: %w", n, err)
		}
	}
	return nil
}

// walSyncs returns the server's count of WAL flushes (pg_stat_wal.wal_sync:
// fsync or fdatasync calls on WAL files, every process of the server).
func (p *pgBackend) walSyncs() (int64, error) {
	return p.query("SELECT wal_sync FROM pg_stat_wal")
}

// settle waits until no connection named loc is left: a server process
// reports its pending statistics before it leaves pg_stat_activity, so
// pg_stat_wal then counts the WAL flushes of a closed store.
func (p *pgBackend) settle(loc string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := p.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", loc)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections of %s still open 10 s after Close", n, loc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
