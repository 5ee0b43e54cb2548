// Package storagebench holds the benchmark that compares the durable
// storage backends (adapters/wal, adapters/pebble, adapters/bolt,
// adapters/badger) in one run: appends per second at several batch sizes,
// recovery time and disk bytes per entry. It has no code of its own; see
// bench_test.go and docs/measured.md.
package storagebench
