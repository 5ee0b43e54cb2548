// Package storagebench holds the benchmark that compares the file-based
// durable storage backends (adapters/wal, adapters/pebble, adapters/bolt,
// adapters/badger) in one run: appends per second at several batch sizes,
// recovery time and disk bytes per entry. It has no code of its own; see
// bench_test.go. The full table, postgres, fsyncs per second and Save
// latencies included, is printed by bench/cmd/storagebench; its figures
// are in docs/measured.md.
package storagebench
