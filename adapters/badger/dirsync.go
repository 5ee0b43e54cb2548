package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
	"github.com/forge-consensus/consensus/adapters/internal/kvlog"
)

// Badger creates its files (memtable WALs, value-log files, tables) through
// ristretto's z.OpenMmapFile, which preallocates a new file and then skips
// its directory fsync (it tests the size after setting it), and Badger
// syncs the directory only when it opens, after a compaction and when it
// closes. A power cut can therefore lose:
//
//   - the directory entry of a memtable WAL created when the memtable
//     filled up, with the commits Badger wrote (and msynced) into it: the
//     committer fsyncs the directory before it acknowledges a commit after
//     which the directory lists other files (dirSyncer);
//   - the size of a memtable WAL or value-log file created when Badger
//     opened and never written: an empty .mem or .vlog file, which Badger
//     refuses ("Create a new file"); it holds nothing, and repairCut
//     removes it;
//   - the directory entry of a table flushed from a memtable, after the
//     MANIFEST entry naming it was fsynced: Badger then refuses ("file does
//     not exist for table N"). The unlink of the flushed memtable's WAL
//     came after the MANIFEST entry and is lost too, so its data is still
//     there: repairCut appends to the MANIFEST the deletion of each level-0
//     table it names and the directory lacks, and Badger replays the WAL
//     again. The guard file (package kvlog) still checks afterwards that
//     nothing acknowledged is missing.

// repairCut repairs in the database directory dir what a power cut leaves
// of Badger's unsynced file creations (see above). Read-only, it changes
// nothing and returns an error wrapping kvlog.ErrNeedsRecovery if there is
// something to repair.
func repairCut(dir string, readOnly bool, log *slog.Logger) error {
	mems, err := filepath.Glob(filepath.Join(dir, "*.mem"))
	if err != nil {
		return fmt.Errorf("list the memtable WALs of %s: %w", dir, err)
	}
	vlogs, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		return fmt.Errorf("list the value-log files of %s: %w", dir, err)
	}
	var empty []string
	for _, p := range append(mems, vlogs...) {
		if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
			empty = append(empty, p)
		}
	}
	missing, err := missingTables(dir)
	if err != nil {
		return err
	}
	if len(empty) == 0 && len(missing) == 0 {
		return nil
	}
	if readOnly {
		return fmt.Errorf("badger database %s: %w: empty memtable WAL or value-log files %v, level-0 tables missing %v (files created but not synced before a crash)",
			dir, kvlog.ErrNeedsRecovery, empty, missing)
	}
	for _, p := range empty {
		log.Warn("badger storage: removing an empty file (created, never written, its size not synced before a crash)", "file", p)
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove the empty %s: %w", p, err)
		}
	}
	if len(missing) > 0 {
		log.Warn("badger storage: the MANIFEST names level-0 tables whose files are gone (flushed, the directory not synced before a crash); dropping them from the MANIFEST: their memtable WALs are replayed again",
			"dir", dir, "tables", missing)
		if err := dropTables(dir, missing); err != nil {
			return err
		}
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// missingTables returns the IDs of the level-0 tables the MANIFEST in dir
// names whose files are absent. Tables of deeper levels come from
// compactions, which sync the directory before the MANIFEST: a missing
// one is damage, left for Badger to refuse.
func missingTables(dir string) (ids []uint64, err error) {
	path := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("badger manifest %s: %w", path, err)
	}
	defer f.Close()
	m, _, err := replayManifest(f, dir)
	if err != nil {
		return nil, err
	}
	for id, tm := range m.Tables {
		if tm.Level != 0 {
			continue
		}
		if _, err := os.Stat(table.NewFilename(id, dir)); errors.Is(err, os.ErrNotExist) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// replayManifest reads the MANIFEST f of the database in dir, its damage
// (or a panic reading it) an error wrapping kvlog.ErrCorrupt.
func replayManifest(f *os.File, dir string) (m badger.Manifest, truncOffset int64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			msg, _, _ := strings.Cut(fmt.Sprint(r), "\n")
			err = fmt.Errorf("badger manifest %s: %w: reading it panicked: %s", f.Name(), kvlog.ErrCorrupt, msg)
		}
	}()
	m, truncOffset, err = badger.ReplayManifestFile(f, 0, badger.DefaultOptions(dir))
	if err != nil {
		return m, 0, fmt.Errorf("badger manifest %s: %w: %w", f.Name(), kvlog.ErrCorrupt, err)
	}
	return m, truncOffset, nil
}

// dropTables appends to the MANIFEST in dir one change set deleting the
// tables ids, as Badger writes it (length and CRC-32C, big-endian, then
// the protobuf ManifestChangeSet), after cutting a torn last change set
// off as Badger would, and fsyncs it.
func dropTables(dir string, ids []uint64) error {
	path := filepath.Join(dir, badger.ManifestFilename)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("badger manifest %s: %w", path, err)
	}
	defer f.Close()
	_, off, err := replayManifest(f, dir)
	if err != nil {
		return err
	}
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("badger manifest %s: %w", path, err)
	}
	rec := binary.BigEndian.AppendUint32(nil, 0)
	rec = binary.BigEndian.AppendUint32(rec, 0)
	set := deleteChangeSet(ids)
	binary.BigEndian.PutUint32(rec[0:4], uint32(len(set)))
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(set, crc32.MakeTable(crc32.Castagnoli)))
	rec = append(rec, set...)
	if _, err := f.WriteAt(rec, off); err != nil {
		return fmt.Errorf("badger manifest %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("badger manifest %s: fsync: %w", path, err)
	}
	return nil
}

// deleteChangeSet encodes a pb.ManifestChangeSet deleting the tables ids:
// field 1 (changes), each a ManifestChange with field 1 (Id) and field 2
// (Op) = 1 (DELETE).
func deleteChangeSet(ids []uint64) []byte {
	var set []byte
	for _, id := range ids {
		ch := binary.AppendUvarint([]byte{0x08}, id) // field 1, varint
		ch = append(ch, 0x10, 1)                     // field 2, varint: DELETE
		set = append(set, 0x0a)                      // field 1, length-delimited
		set = binary.AppendUvarint(set, uint64(len(ch)))
		set = append(set, ch...)
	}
	return set
}

// dirSyncer fsyncs the database directory when the files in it are not
// those it last synced: a memtable WAL or value-log file Badger created
// during a commit holds that commit, and must be listed after a power cut.
type dirSyncer struct {
	dir   string
	mu    sync.Mutex
	names []string // as of the last sync
}

// sync fsyncs the directory if its names changed since the last sync.
func (d *dirSyncer) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	des, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", d.dir, err)
	}
	names := make([]string, 0, len(des))
	for _, de := range des {
		names = append(names, de.Name())
	}
	if slices.Equal(names, d.names) {
		return nil
	}
	if err := durable.SyncDir(d.dir); err != nil {
		return fmt.Errorf("sync %s: %w", d.dir, err)
	}
	d.names = names
	return nil
}
