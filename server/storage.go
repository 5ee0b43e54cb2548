package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
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
	case "bolt", "badger":
		return openKVStorage(cfg, log)
	}
	return nil, nil, fmt.Errorf("%w: storage.type: %q is not wal, pebble, bolt, badger or memory", ErrInvalidConfig, cfg.Storage.Type)
}

// CheckStorage opens the node's storage as New does, which reads back and
// verifies everything it holds, and closes it again; it starts nothing
// else. It returns nil if the storage opens cleanly. An error for which
// IsCorrupt holds means the storage refused its data: the node must not
// start with it (see consensusd recover). Like New, it creates an absent
// data directory.
func CheckStorage(cfg Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, c, err := openStorage(cfg, log)
	if err != nil {
		return fmt.Errorf("storage %s: %w", cfg.Storage.Path, err)
	}
	if c != nil {
		if err := c.Close(); err != nil {
			return fmt.Errorf("storage %s: close: %w", cfg.Storage.Path, err)
		}
	}
	return nil
}

// IsCorrupt reports whether err says that stored data is damaged: it wraps
// pebblestore.ErrCorrupt or wal.ErrCorrupt, or another storage's corruption error, which is
// recognised by its message (it says "corrupt"). Matching the message
// keeps this package independent of every storage adapter; a false match
// is harmless where it is used, since replacing a node under a new ID is
// safe whatever the state of its storage.
func IsCorrupt(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, pebblestore.ErrCorrupt) || errors.Is(err, wal.ErrCorrupt) {
		return true
	}
	return strings.Contains(strings.ToLower(err.Error()), "corrupt")
}
