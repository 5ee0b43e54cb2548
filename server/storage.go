package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	pgstore "github.com/forge-consensus/consensus/adapters/postgres"
	"github.com/forge-consensus/consensus/adapters/wal"
	"github.com/forge-consensus/consensus/node"
)

// openStorage opens the storage cfg names, as the node will use it. The
// closer is nil for memory storage.
func openStorage(cfg Config, log *slog.Logger) (node.Storage, io.Closer, error) {
	switch cfg.Storage.Type {
	case "memory":
		return node.NewMemoryStorage(), nil, nil
	case "wal":
		ws, err := wal.Open(wal.Options{
			Dir: cfg.Storage.Path, ClusterID: cfg.ClusterHash(), NodeID: cfg.NodeID.ID(),
			SegmentSize: cfg.Storage.SegmentSize, MaxBatchDelay: cfg.Storage.MaxBatchDelay,
			MaxBatchBytes: cfg.Storage.MaxBatchSize, NoSync: !*cfg.Storage.SyncWrites, Logger: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return ws, ws, nil
	case "pebble":
		ps, err := pebblestore.Open(pebblestore.Options{
			Dir: cfg.Storage.Path, NoSync: !*cfg.Storage.SyncWrites,
			BatchDelay: cfg.Storage.MaxBatchDelay, Logger: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return ps, ps, nil
	case "postgres":
		pc := cfg.Storage.Postgres
		ps, err := pgstore.Open(pgstore.Options{
			DSN: pc.DSN, Schema: pc.schemaFor(cfg), Identity: cfg.ClusterID + "/" + string(cfg.NodeID),
			PoolSize: pc.PoolSize, BatchDelay: cfg.Storage.MaxBatchDelay, Logger: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return ps, ps, nil
	case "bolt", "badger":
		return openKVStorage(cfg, log)
	}
	return nil, nil, fmt.Errorf("%w: storage.type: %q is not wal, pebble, bolt, badger, postgres or memory", ErrInvalidConfig, cfg.Storage.Type)
}

// schemaFor returns the schema of the node of cfg: storage.postgres.schema,
// or the one derived from cluster_id and node_id.
func (pc PostgresConfig) schemaFor(cfg Config) string {
	if pc.Schema != "" {
		return pc.Schema
	}
	return pgstore.SchemaName(cfg.ClusterID, string(cfg.NodeID))
}

// validate checks the storage.postgres keys (storage.type is postgres).
// Its errors never quote the DSN.
func (pc PostgresConfig) validate(syncWrites bool, bad func(key, format string, args ...any) error) error {
	switch {
	case pc.DSN == "":
		return bad("storage.postgres.dsn", "required for postgres storage (write it as ${VAR} to keep the password out of the file)")
	case pc.PoolSize < 0 || pc.PoolSize > 100:
		return bad("storage.postgres.pool_size", "%d is not between 1 and 100 (0 is the default, %d)", pc.PoolSize, pgstore.DefaultPoolSize)
	case !syncWrites:
		return bad("storage.sync_writes", "off is not supported by postgres storage: every write commits with synchronous_commit on")
	}
	if err := pgstore.CheckDSN(pc.DSN); err != nil {
		return bad("storage.postgres.dsn", "%v", err)
	}
	if pc.Schema != "" {
		if err := pgstore.ValidSchema(pc.Schema); err != nil {
			return bad("storage.postgres.schema", "%v", err)
		}
	}
	return nil
}

// StorageName names the storage of cfg in messages: its directory, or its
// schema for postgres (never the DSN).
func StorageName(cfg Config) string { return storageName(cfg) }

// storageName is StorageName.
func storageName(cfg Config) string {
	if cfg.Storage.Type == "postgres" {
		return "postgres schema " + cfg.Storage.Postgres.schemaFor(cfg)
	}
	return cfg.Storage.Path
}

// CheckStorage opens the node's storage as New does, which reads back and
// verifies everything it holds (and, encrypted, decrypts it), and closes it again; it starts nothing
// else. It returns nil if the storage opens cleanly. An error for which
// IsCorrupt holds means the storage refused its data: the node must not
// start with it (see consensusd recover). Like New, it creates an absent
// data directory.
func CheckStorage(cfg Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, c, err := openNodeStorage(cfg, log)
	if err != nil {
		return fmt.Errorf("storage %s: %w", storageName(cfg), err)
	}
	if cfg.Security.EnableEncryption {
		// The backend verified its files; decrypting verifies the records.
		if _, err := st.Load(); err != nil {
			if c != nil {
				c.Close()
			}
			return fmt.Errorf("storage %s: %w", cfg.Storage.Path, keyError("security.encryption_old_keys", err))
		}
	}
	if c != nil {
		if err := c.Close(); err != nil {
			return fmt.Errorf("storage %s: close: %w", storageName(cfg), err)
		}
	}
	return nil
}

// IsCorrupt reports whether err says that stored data is damaged: it wraps
// pebblestore.ErrCorrupt, wal.ErrCorrupt or pgstore.ErrCorrupt, or another storage's corruption error, which is
// recognised by its message (it says "corrupt"). Matching the message
// keeps this package independent of every storage adapter; a false match
// is harmless where it is used, since replacing a node under a new ID is
// safe whatever the state of its storage.
func IsCorrupt(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, pebblestore.ErrCorrupt) || errors.Is(err, wal.ErrCorrupt) || errors.Is(err, pgstore.ErrCorrupt) {
		return true
	}
	return strings.Contains(strings.ToLower(err.Error()), "corrupt")
}
