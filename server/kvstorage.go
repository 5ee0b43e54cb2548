package server

import (
	"fmt"
	"io"
	"log/slog"

	badgerstore "github.com/forge-consensus/consensus/adapters/badger"
	boltstore "github.com/forge-consensus/consensus/adapters/bolt"
	"github.com/forge-consensus/consensus/node"
)

// openKVStorage opens the bolt or badger storage cfg names.
func openKVStorage(cfg Config, log *slog.Logger) (node.Storage, io.Closer, error) {
	st := cfg.Storage
	switch st.Type {
	case "bolt":
		s, err := boltstore.Open(boltstore.Options{
			Dir: st.Path, NoSync: !*st.SyncWrites, BatchDelay: st.MaxBatchDelay, BatchBytes: st.MaxBatchSize,
			FreelistType: st.Bolt.FreelistType, Logger: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return s, s, nil
	case "badger":
		s, err := badgerstore.Open(badgerstore.Options{
			Dir: st.Path, NoSync: !*st.SyncWrites, BatchDelay: st.MaxBatchDelay, BatchBytes: st.MaxBatchSize,
			ValueLogFileSize: st.Badger.ValueLogFileSize, ValueThreshold: st.Badger.ValueThreshold,
			MemTableSize: st.Badger.MemTableSize, Logger: log,
		})
		if err != nil {
			return nil, nil, err
		}
		return s, s, nil
	}
	return nil, nil, fmt.Errorf("%w: storage.type: %q is not bolt or badger", ErrInvalidConfig, st.Type)
}

// checkKVStorage validates the storage.bolt and storage.badger keys,
// naming the key at fault.
func checkKVStorage(st StorageConfig) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, key, fmt.Sprintf(format, args...))
	}
	switch st.Bolt.FreelistType {
	case "", boltstore.FreelistArray, boltstore.FreelistMap:
	default:
		return bad("storage.bolt.freelist_type", "%q is not array or map", st.Bolt.FreelistType)
	}
	b := st.Badger
	mem := b.MemTableSize
	if mem == 0 {
		mem = badgerstore.DefaultMemTableSize
	}
	switch {
	case b.ValueLogFileSize != 0 && (b.ValueLogFileSize < 1<<20 || b.ValueLogFileSize >= 2<<30):
		return bad("storage.badger.value_log_file_size", "%d is not between 1 MiB and 2 GiB - 1 (bytes; 0 is the default, 64 MiB)", b.ValueLogFileSize)
	case b.MemTableSize != 0 && b.MemTableSize < 1<<20:
		return bad("storage.badger.mem_table_size", "%d is below 1 MiB (bytes; 0 is the default, 64 MiB)", b.MemTableSize)
	case b.MemTableSize > 1<<30:
		return bad("storage.badger.mem_table_size", "%d is above 1 GiB", b.MemTableSize)
	case b.ValueThreshold < 0 || b.ValueThreshold > badgerstore.DefaultValueThreshold:
		return bad("storage.badger.value_threshold", "%d is not between 0 (the default) and 1 MiB (bytes)", b.ValueThreshold)
	case b.ValueThreshold > mem*15/100:
		return bad("storage.badger.value_threshold", "%d is above 15%% of storage.badger.mem_table_size (%d)", b.ValueThreshold, mem)
	}
	return nil
}
