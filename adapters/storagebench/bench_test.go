package storagebench

import (
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	badgerstore "github.com/forge-consensus/consensus/adapters/badger"
	boltstore "github.com/forge-consensus/consensus/adapters/bolt"
	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/adapters/wal"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// backend opens one storage backend in dir, fsync on, defaults otherwise.
type backend struct {
	name string
	open func(dir string) (storagetest.Store, error)
}

var backends = []backend{
	{"wal", func(dir string) (storagetest.Store, error) { return wal.Open(wal.Options{Dir: dir}) }},
	{"pebble", func(dir string) (storagetest.Store, error) { return pebblestore.Open(pebblestore.Options{Dir: dir}) }},
	{"bolt", func(dir string) (storagetest.Store, error) { return boltstore.Open(boltstore.Options{Dir: dir}) }},
	{"badger", func(dir string) (storagetest.Store, error) { return badgerstore.Open(badgerstore.Options{Dir: dir}) }},
}

// entryBytes is the size of each benchmark entry's data.
const entryBytes = 128

// entryData returns 1 MiB of incompressible (pseudo-random) bytes; the
// entry of index i takes the 128 bytes at (i * 128) mod (1 MiB - 128), so
// that consecutive entries differ and engines that compress (Pebble,
// Badger) are not flattered.
func entryData() []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// update returns a synced update appending n entries from index first,
// with data from entryData.
func update(first uint64, n int, data []byte) *node.Update {
	es := make([]core.Entry, n)
	for i := range es {
		index := first + uint64(i)
		off := index * entryBytes % uint64(len(data)-entryBytes)
		es[i] = core.Entry{Index: index, Term: 1, Data: data[off : off+entryBytes : off+entryBytes]}
	}
	return &node.Update{Entries: es, HardState: core.HardState{Term: 1, Vote: 1, Commit: first - 1}, Sync: true}
}

func mustOpen(b *testing.B, be backend, dir string) storagetest.Store {
	b.Helper()
	s, err := be.open(dir)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAppend saves batches of 1, 64 and 1024 entries of 128 bytes,
// fsynced, one at a time (each waits for the previous to complete: the
// latency-bound path of a node with one Save outstanding). The backends
// alternate within each batch size. It reports entries/s.
func BenchmarkAppend(b *testing.B) {
	data := entryData()
	for _, batch := range []int{1, 64, 1024} {
		for _, be := range backends {
			b.Run("batch="+strconv.Itoa(batch)+"/"+be.name, func(b *testing.B) {
				s := mustOpen(b, be, b.TempDir())
				defer storagetest.MustClose(b, s)
				next := uint64(1)
				b.ResetTimer()
				for range b.N {
					if err := storagetest.SaveWait(b, s, update(next, batch, data)); err != nil {
						b.Fatal(err)
					}
					next += uint64(batch)
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// recoveryEntries is the log the recovery benchmark reopens.
const recoveryEntries = 100_000

// BenchmarkRecovery writes 100,000 entries of 128 bytes (in batches of
// 1024), closes the store, and times Open plus Load of the whole log. It
// also reports the disk space the store takes (allocated blocks, which
// counts preallocated files as far as they are allocated) per entry.
func BenchmarkRecovery(b *testing.B) {
	data := entryData()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			dir := b.TempDir()
			s := mustOpen(b, be, dir)
			for next := uint64(1); next <= recoveryEntries; next += 1024 {
				n := min(1024, recoveryEntries-int(next)+1)
				if err := storagetest.SaveWait(b, s, update(next, n, data)); err != nil {
					b.Fatal(err)
				}
			}
			storagetest.MustClose(b, s)
			b.ResetTimer()
			for range b.N {
				s := mustOpen(b, be, dir)
				p, err := s.Load()
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Entries) != recoveryEntries {
					b.Fatalf("loaded %d entries, want %d", len(p.Entries), recoveryEntries)
				}
				b.StopTimer()
				storagetest.MustClose(b, s)
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(diskBytes(b, dir))/recoveryEntries, "disk-B/entry")
		})
	}
}

// diskBytes returns the bytes allocated to the files under dir.
func diskBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
