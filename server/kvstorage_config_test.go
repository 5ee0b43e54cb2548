package server

import (
	"errors"
	"strings"
	"testing"
)

// TestKVStorageConfig: storage.type bolt and badger and their keys, parsed
// and validated with errors naming the key.
func TestKVStorageConfig(t *testing.T) {
	parse := func(yaml string) (Config, error) {
		return ParseConfig([]byte("node_id: 1\nstorage:\n  path: /tmp/x\n"+yaml), func(string) string { return "" })
	}
	c, err := parse("  type: bolt\n  bolt: {freelist_type: map}\n")
	if err != nil || c.Storage.Type != "bolt" || c.Storage.Bolt.FreelistType != "map" {
		t.Fatalf("bolt: %+v %v", c.Storage, err)
	}
	c, err = parse("  type: badger\n  badger: {value_log_file_size: 16777216, value_threshold: 4096, mem_table_size: 8388608}\n")
	if b := c.Storage.Badger; err != nil || c.Storage.Type != "badger" || b.ValueLogFileSize != 16<<20 || b.ValueThreshold != 4096 || b.MemTableSize != 8<<20 {
		t.Fatalf("badger: %+v %v", c.Storage, err)
	}
	for yaml, key := range map[string]string{
		"  type: bolt\n  bolt: {freelist_type: list}\n":                                "storage.bolt.freelist_type",
		"  type: badger\n  badger: {value_log_file_size: 1000}\n":                      "storage.badger.value_log_file_size",
		"  type: badger\n  badger: {value_log_file_size: 4294967296}\n":                "storage.badger.value_log_file_size",
		"  type: badger\n  badger: {value_threshold: -1}\n":                            "storage.badger.value_threshold",
		"  type: badger\n  badger: {value_threshold: 2097152}\n":                       "storage.badger.value_threshold",
		"  type: badger\n  badger: {mem_table_size: 1048576, value_threshold: 500000}": "storage.badger.value_threshold",
		"  type: badger\n  badger: {mem_table_size: 1000}\n":                           "storage.badger.mem_table_size",
		"  type: badger\n  badger: {no_such_key: 1}\n":                                 "storage.badger",
		"  type: lmdb\n": "storage.type",
	} {
		_, err := parse(yaml)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v does not name %s", yaml, err, key)
		}
		if err != nil && !strings.Contains(yaml, "no_such_key") && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: error %v is not ErrInvalidConfig", yaml, err)
		}
	}
	for _, typ := range []string{"bolt", "badger"} {
		_, err := ParseConfig([]byte("node_id: 1\nstorage: {type: "+typ+"}\n"), func(string) string { return "" })
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "storage.path") {
			t.Errorf("%s without a path: %v", typ, err)
		}
	}
}
