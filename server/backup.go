package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	badgerstore "github.com/forge-consensus/consensus/adapters/badger"
	boltstore "github.com/forge-consensus/consensus/adapters/bolt"
	"github.com/forge-consensus/consensus/adapters/encrypt"
	pebblestore "github.com/forge-consensus/consensus/adapters/pebble"
	pgstore "github.com/forge-consensus/consensus/adapters/postgres"
	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/backup"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
)

// backupBarrierKey is the key of the linearizable read a backup starts
// with (any key does: only the read's position in the log matters).
const backupBarrierKey = "consensus/backup"

// Backup prepares a backup file (package backup) of this node's state
// (admin.Backuper, GET /consensus/snapshot/download). It holds every write
// committed anywhere in the cluster before the call: a linearizable read
// (ReadIndex, through the leader when this node follows) waits until the
// node has applied the leader's commit index, then the node takes a fresh
// snapshot, durable before it is read back. The snapshot's data is read
// from storage and held in memory once while it is streamed (as when a
// follower is sent a snapshot).
func (s *Server) Backup(ctx context.Context) (*admin.Backup, error) {
	q := kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: backupBarrierKey})
	if _, err := s.run.Read(ctx, node.ReadLinearizable, q); err != nil {
		return nil, fmt.Errorf("backup: wait for the commit index: %w", s.clusterError(err))
	}
	idx, err := s.run.TakeSnapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: snapshot: %w", s.clusterError(err))
	}
	var meta core.SnapshotMeta
	var data []byte
	// A snapshot newer than idx may be taken meanwhile and not be durable
	// yet when it is read: try again, briefly.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = s.run.Do(ctx, func(n *node.Node) {
			snap := n.Core().Snapshot()
			if snap.IsEmpty() {
				err = errors.New("no snapshot")
				return
			}
			meta = snap.Meta
			data = snap.Data
			if data == nil {
				ss, ok := s.logSize.Storage.(node.SnapshotStore)
				if !ok {
					err = errors.New("the storage holds the snapshot's data nowhere")
					return
				}
				data, err = ss.SnapshotData(meta)
			}
		})
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: read snapshot back: %w", err)
	}
	if meta.Index < idx {
		return nil, fmt.Errorf("backup: the stored snapshot is at %d, below the %d taken", meta.Index, idx)
	}
	h := &backup.Header{
		ClusterID: s.cfg.ClusterID, Node: s.cfg.NodeID.ID(), NodeName: string(s.cfg.NodeID),
		Index: meta.Index, Term: meta.Term,
		Voters: slices.Clone(meta.Config.Voters), Learners: slices.Clone(meta.Config.Learners),
		Created: time.Now().UTC().Truncate(time.Second), DataLength: int64(len(data)),
	}
	for _, m := range s.dir.all() {
		h.Members = append(h.Members, backup.Member{ID: m.ID, Name: m.Name, Address: m.Address, Port: m.Port})
	}
	size, err := h.Size()
	if err != nil {
		return nil, err
	}
	s.log.Info("backup prepared", "index", meta.Index, "term", meta.Term, "bytes", size)
	return &admin.Backup{
		ClusterID: s.cfg.ClusterID, Node: h.Node, Index: meta.Index, Term: meta.Term, Size: size,
		WriteTo: func(w io.Writer) error {
			_, err := backup.Write(w, h, bytes.NewReader(data))
			return err
		},
	}, nil
}

// ErrNotEmpty is wrapped by the errors of RestoreBackup and MigrateStorage
// for a target storage that already holds data.
var ErrNotEmpty = errors.New("storage not empty")

// RestoreResult is what RestoreBackup wrote.
type RestoreResult struct {
	// Index and Term are the snapshot's, the new node's first state.
	Index, Term uint64
	// Voters are the new cluster's voters (cfg's peers).
	Voters []uint64
	// Keys is the number of keys restored; StateHash the key-value
	// store's state hash (equal on every node restored from one backup).
	Keys      int
	StateHash uint64
}

// RestoreBackup seeds cfg's storage, which must be empty, with a backup's
// state, for a node of a new cluster: the backup's snapshot at its index
// and term, its membership replaced by cfg's peers (every one a voter) and
// its membership directory emptied (the new cluster's addresses are its
// peers'). Every founding node of the new cluster is restored from the
// same backup with the same peers: they then hold the same snapshot, elect
// a leader and serve exactly the backed-up state. data must be the verified
// data of a backup file (backup.Read).
func RestoreBackup(cfg Config, h backup.Header, data []byte, log *slog.Logger) (RestoreResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res RestoreResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if cfg.Join {
		return res, fmt.Errorf("%w: join: true: a restored node founds the new cluster; set join: false and list "+
			"every founding node in peers", ErrInvalidConfig)
	}
	for _, p := range cfg.Peers {
		res.Voters = append(res.Voters, p.ID.ID())
	}
	if !slices.Contains(res.Voters, cfg.NodeID.ID()) {
		return res, fmt.Errorf("%w: peers: node_id %s is not among them: list every founding node of the new "+
			"cluster, this one included", ErrInvalidConfig, cfg.NodeID)
	}
	slices.Sort(res.Voters)
	if h.Index == 0 || h.Term == 0 {
		return res, fmt.Errorf("restore: the backup is at index %d, term %d: nothing to restore", h.Index, h.Term)
	}
	if int64(len(data)) != h.DataLength {
		return res, fmt.Errorf("restore: %d bytes of data, the header says %d", len(data), h.DataLength)
	}
	ms, err := decodeMachineSnapshot(data)
	if err != nil {
		return res, fmt.Errorf("restore: the backup's snapshot: %w", err)
	}
	store := newStore()
	if err := store.Restore(ms.store); err != nil {
		return res, fmt.Errorf("restore: the backup's key-value store: %w", err)
	}
	res.Keys, res.StateHash = store.Len(), store.Hash()
	// The same snapshot, with an empty directory: the new cluster's
	// members are its configured peers.
	m := &machine{kv: newStore(), dir: newDirectory(nil)}
	if ms.app != nil {
		m.app = rawApp(ms.app)
	}
	hdr, err := m.header()
	if err != nil {
		return res, err
	}
	snapData := append(hdr, ms.store...)
	if err := checkEmptyStorage(cfg); err != nil {
		return res, err
	}
	st, closer, err := openNodeStorage(cfg, log)
	if err != nil {
		return res, fmt.Errorf("restore: storage %s: %w", cfg.Storage.Path, err)
	}
	defer func() {
		if closer != nil {
			closer.Close()
		}
	}()
	if p, err := st.Load(); err != nil {
		return res, fmt.Errorf("restore: storage %s: %w", cfg.Storage.Path, err)
	} else if !p.IsEmpty() {
		return res, fmt.Errorf("restore: %w: storage %s holds state", ErrNotEmpty, cfg.Storage.Path)
	}
	snap := &core.Snapshot{Meta: core.SnapshotMeta{Index: h.Index, Term: h.Term,
		Config: core.ConfState{Voters: res.Voters}}, Data: snapData}
	hs := core.HardState{Term: h.Term, Commit: h.Index}
	if err := save(st, &node.Update{Snapshot: snap, HardState: hs, Sync: true}); err != nil {
		return res, fmt.Errorf("restore: write storage %s: %w", cfg.Storage.Path, err)
	}
	if closer != nil {
		err, closer = closer.Close(), nil
		if err != nil {
			return res, fmt.Errorf("restore: close storage %s: %w", cfg.Storage.Path, err)
		}
	}
	// Read it back as the node will.
	st, closer, err = openNodeStorage(cfg, log)
	if err != nil {
		return res, fmt.Errorf("restore: reopen storage %s: %w", cfg.Storage.Path, err)
	}
	p, err := st.Load()
	if err != nil {
		return res, fmt.Errorf("restore: read back storage %s: %w", cfg.Storage.Path, err)
	}
	if p.Snapshot.IsEmpty() || p.Snapshot.Meta.Index != h.Index || p.Snapshot.Meta.Term != h.Term ||
		!bytes.Equal(p.Snapshot.Data, snapData) || p.HardState != hs {
		return res, fmt.Errorf("restore: storage %s reads back something else than was written", cfg.Storage.Path)
	}
	res.Index, res.Term = h.Index, h.Term
	return res, nil
}

// rawApp is an application's state as a snapshot holds it, carried over
// unchanged into a restored snapshot.
type rawApp []byte

func (a rawApp) Apply(uint64, []byte) any  { return nil }
func (a rawApp) Snapshot() ([]byte, error) { return a, nil }
func (a rawApp) Restore(data []byte) error { return nil }

// save writes u to st and waits until it is durable.
func save(st node.Storage, u *node.Update) error {
	done := make(chan error, 1)
	st.Save(u, func(err error) { done <- err })
	return <-done
}

// checkEmptyStorage refuses a storage that holds anything: a storage path
// that is not empty, a postgres schema that holds any table (its
// storage.path, where an encrypted one keeps its marker file, must be
// empty too if set); and memory storage (nothing to seed: it keeps
// nothing across a restart).
func checkEmptyStorage(cfg Config) error {
	switch cfg.Storage.Type {
	case "memory":
		return fmt.Errorf("%w: storage.type: memory keeps nothing across a restart; use a durable storage",
			ErrInvalidConfig)
	case "postgres":
		schema := cfg.Storage.Postgres.schemaFor(cfg)
		_, tables, err := pgstore.SchemaTables(cfg.Storage.Postgres.DSN, schema)
		if err != nil {
			return fmt.Errorf("postgres schema %s: %w", schema, err)
		}
		if len(tables) > 0 {
			return fmt.Errorf("%w: postgres schema %s holds %d tables (%s): it must be empty or absent "+
				"(if it is a leftover: DROP SCHEMA %s CASCADE)", ErrNotEmpty, schema, len(tables),
				strings.Join(tables, ", "), schema)
		}
		if cfg.Storage.Path == "" {
			return nil
		}
	}
	ents, err := os.ReadDir(cfg.Storage.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage.path %s: %w", cfg.Storage.Path, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("%w: storage.path %s holds %d entries (%s...): it must be empty or absent",
			ErrNotEmpty, cfg.Storage.Path, len(ents), ents[0].Name())
	}
	return nil
}

// ErrRunning is wrapped by the error of MigrateStorage for a node that
// seems to be running.
var ErrRunning = errors.New("the node is running")

// checkStopped refuses a node whose raft or API address is taken, most
// likely by the node itself: the wal storage takes no lock, and a copy of
// a running node's storage would mix moments.
func checkStopped(cfg Config) error {
	for _, a := range []struct{ key, addr string }{
		{"bind_port", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort))},
		{"api.addr", cfg.API.Addr},
	} {
		ln, err := net.Listen("tcp", a.addr)
		if err != nil {
			return fmt.Errorf("%w: its %s %s is in use (%v); stop it first", ErrRunning, a.key, a.addr, err)
		}
		ln.Close()
	}
	return nil
}

// MigrateResult is what MigrateStorage copied and verified.
type MigrateResult struct {
	HardState core.HardState
	// SnapshotIndex is the stored snapshot's index (0: none); Entries the
	// number of log entries after it.
	SnapshotIndex uint64
	Entries       int
	// StateHash is the key-value store's state hash after applying the
	// log up to the commit index, equal in both storages.
	StateHash uint64
}

// migrateBatch is the number of log entries written per storage write.
const migrateBatch = 1024

// MigrateStorage copies a stopped node's storage (a node whose raft or API
// address is in use is refused as running), as from describes it (its
// storage.* and security.*encryption* keys), to the storage to describes
// (likewise), which must be empty: an absent or empty directory, an absent
// or empty postgres schema. It copies the hard state, the snapshot and the
// log after it. Then it verifies the copy: it reads both again, compares
// them exactly, and compares the state hashes reached by applying each log
// to its snapshot up to the commit index. Any storage type the server
// opens works, both ways, encrypted or not on either side, with the same
// key or another: the source is decrypted with from's keys and the target
// encrypted with to's. from and to must name the same cluster_id and
// node_id: a migration moves a node's storage, it does not change whose
// it is (RestoreBackup founds a new cluster).
//
// The source is only read, never changed: pebble, bolt and badger through
// a read-only open of their database, a postgres schema through
// pgstore.Read (no ownership taken: nothing written), an encrypted
// directory only if its marker file lists from's keys, a directory only
// if it exists. The target is read back the same way. A wrong or
// missing source key is refused (an ErrInvalidConfig error naming the
// key) before the target is created.
func MigrateStorage(from, to Config, log *slog.Logger) (MigrateResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res MigrateResult
	if from.Storage.Type == "memory" {
		return res, fmt.Errorf("%w: storage.type: memory holds nothing once the node stopped", ErrInvalidConfig)
	}
	if err := to.Validate(); err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	// The keys (and key files) of both sides, before anything is opened.
	if _, err := encryptionOptions(from); err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	if _, err := encryptionOptions(to); err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	switch {
	case from.ClusterID != to.ClusterID:
		return res, fmt.Errorf("%w: target: cluster_id %q is not the source's %q: a migration keeps the node's identity "+
			"(consensusd restore founds a new cluster)", ErrInvalidConfig, to.ClusterID, from.ClusterID)
	case from.NodeID != to.NodeID:
		return res, fmt.Errorf("%w: target: node_id %q is not the source's %q: a migration keeps the node's identity",
			ErrInvalidConfig, to.NodeID, from.NodeID)
	case sameStorage(from, to):
		return res, fmt.Errorf("%w: the target is the source (%s %s)", ErrInvalidConfig, to.Storage.Type, storageName(to))
	}
	if err := checkStopped(from); err != nil {
		return res, err
	}
	if err := checkSource(from); err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	if err := checkEmptyStorage(to); err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	src, err := loadStorage(from, log)
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	if src.IsEmpty() {
		return res, fmt.Errorf("source: storage %s %s holds nothing", from.Storage.Type, storageName(from))
	}
	if err := writeStorage(to, src, log); err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	// Verify: both read back, compared exactly, and the same state.
	src, err = loadStorage(from, log)
	if err != nil {
		return res, fmt.Errorf("source: read again: %w", err)
	}
	dst, err := loadStorage(to, log)
	if err != nil {
		return res, fmt.Errorf("target: read back: %w", err)
	}
	if err := samePersisted(src, dst); err != nil {
		return res, fmt.Errorf("verify: the target differs from the source: %w", err)
	}
	hs, err := stateHash(src)
	if err != nil {
		return res, fmt.Errorf("verify: source: %w", err)
	}
	hd, err := stateHash(dst)
	if err != nil {
		return res, fmt.Errorf("verify: target: %w", err)
	}
	if hs != hd {
		return res, fmt.Errorf("verify: state hash %016x in the source, %016x in the target", hs, hd)
	}
	res.HardState, res.StateHash = src.HardState, hs
	if !src.Snapshot.IsEmpty() {
		res.SnapshotIndex = src.Snapshot.Meta.Index
	}
	res.Entries = len(logAfterSnapshot(src))
	return res, nil
}

// sameStorage reports whether a and b name the same storage: the same
// directory, or the same postgres schema through the same DSN.
func sameStorage(a, b Config) bool {
	if a.Storage.Type == "postgres" || b.Storage.Type == "postgres" {
		return a.Storage.Type == b.Storage.Type && a.Storage.Postgres.DSN == b.Storage.Postgres.DSN &&
			a.Storage.Postgres.schemaFor(a) == b.Storage.Postgres.schemaFor(b)
	}
	return filepath.Clean(a.Storage.Path) == filepath.Clean(b.Storage.Path)
}

// checkSource refuses, before anything is opened, a source that opening
// would change: a storage directory that does not exist (the backends
// would create it), an encrypted one without a marker file (encryption
// would write a new one).
func checkSource(cfg Config) error {
	if cfg.Storage.Type != "postgres" {
		if _, err := os.Stat(cfg.Storage.Path); err != nil {
			return fmt.Errorf("%w: storage.path %s: %w", ErrInvalidConfig, cfg.Storage.Path, err)
		}
	}
	if !cfg.Security.EnableEncryption || cfg.Storage.Path == "" {
		return nil // a postgres source without storage.path: encryptionOptions refuses it
	}
	_, ok, err := encrypt.MarkerKeys(cfg.Storage.Path)
	if err != nil {
		return fmt.Errorf("storage.path %s: %w", cfg.Storage.Path, err)
	}
	if !ok {
		return fmt.Errorf("%w: security.enable_encryption: on, but storage.path %s has no %s file: the source is not "+
			"encrypted (turn security.enable_encryption off in its configuration) or this is not its directory; "+
			"nothing was read or written", ErrInvalidConfig, cfg.Storage.Path, encrypt.MarkerName)
	}
	return nil
}

// loadStorage reads cfg's storage without changing it (openReadOnly),
// decrypting it with cfg's keys if it is encrypted.
func loadStorage(cfg Config, log *slog.Logger) (core.Persisted, error) {
	st, closer, err := openNodeStorageWith(cfg, log, openReadOnly)
	if err != nil {
		return core.Persisted{}, fmt.Errorf("storage %s %s: %w", cfg.Storage.Type, storageName(cfg), err)
	}
	p, err := st.Load()
	if closer != nil {
		if cerr := closer.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return core.Persisted{}, fmt.Errorf("storage %s %s: %w", cfg.Storage.Type, storageName(cfg),
			keyError("security.encryption_old_keys", err))
	}
	return p, nil
}

// openReadOnly opens cfg's storage for reading only: pebble, bolt and
// badger through a read-only open of their database, postgres through
// pgstore.Read (a read-only transaction; the schema is not taken over),
// each read at once and served by a storage that refuses every write.
// Nothing of theirs is changed or created. The wal is opened as the node
// opens it: it writes nothing when opened and loaded (a torn tail left by
// a crash is cut, as a node start would).
func openReadOnly(cfg Config, log *slog.Logger) (node.Storage, io.Closer, error) {
	var p core.Persisted
	var err error
	st := cfg.Storage
	switch st.Type {
	case "pebble":
		p, err = pebblestore.Read(st.Path, log)
	case "bolt":
		p, err = boltstore.Read(boltstore.Options{Dir: st.Path, FreelistType: st.Bolt.FreelistType, Logger: log})
	case "badger":
		p, err = badgerstore.Read(badgerstore.Options{Dir: st.Path, ValueLogFileSize: st.Badger.ValueLogFileSize,
			ValueThreshold: st.Badger.ValueThreshold, MemTableSize: st.Badger.MemTableSize, Logger: log})
	case "postgres":
		pc := st.Postgres
		p, err = pgstore.Read(pgstore.Options{DSN: pc.DSN, Schema: pc.schemaFor(cfg), Identity: cfg.ClusterID + "/" + string(cfg.NodeID)})
	default:
		return openStorage(cfg, log)
	}
	if err != nil {
		return nil, nil, err
	}
	return readOnlyStorage{p}, nil, nil
}

// readOnlyStorage serves a storage's state read beforehand; it refuses
// every write.
type readOnlyStorage struct{ p core.Persisted }

func (r readOnlyStorage) Load() (core.Persisted, error) { return r.p, nil }

func (r readOnlyStorage) Save(u *node.Update, done func(error)) {
	if u.LocalSnapshotFile != nil {
		u.LocalSnapshotFile.Abort()
	}
	done(errors.New("storage opened read-only"))
}

// logAfterSnapshot returns p's entries after its snapshot.
func logAfterSnapshot(p core.Persisted) []core.Entry {
	var after uint64
	if !p.Snapshot.IsEmpty() {
		after = p.Snapshot.Meta.Index
	}
	i := 0
	for i < len(p.Entries) && p.Entries[i].Index <= after {
		i++
	}
	return p.Entries[i:]
}

// writeStorage writes p into cfg's empty storage: the snapshot with the
// first entries, the rest of the log in batches, then the hard state.
func writeStorage(cfg Config, p core.Persisted, log *slog.Logger) error {
	st, closer, err := openNodeStorage(cfg, log)
	if err != nil {
		return fmt.Errorf("storage %s %s: %w", cfg.Storage.Type, cfg.Storage.Path, err)
	}
	defer func() {
		if closer != nil {
			closer.Close()
		}
	}()
	if q, err := st.Load(); err != nil {
		return fmt.Errorf("storage %s: %w", cfg.Storage.Path, err)
	} else if !q.IsEmpty() {
		return fmt.Errorf("%w: storage %s holds state", ErrNotEmpty, cfg.Storage.Path)
	}
	ents := logAfterSnapshot(p)
	u := &node.Update{Sync: true}
	if !p.Snapshot.IsEmpty() {
		u.Snapshot = p.Snapshot
	}
	for first := true; first || len(ents) > 0; first = false {
		k := min(len(ents), migrateBatch)
		u.Entries, ents = ents[:k], ents[k:]
		if len(ents) == 0 {
			u.HardState = p.HardState
		}
		if !u.IsEmpty() {
			if err := save(st, u); err != nil {
				return fmt.Errorf("write storage %s: %w", cfg.Storage.Path, err)
			}
		}
		u = &node.Update{Sync: true}
	}
	if closer != nil {
		err, closer = closer.Close(), nil
		if err != nil {
			return fmt.Errorf("close storage %s: %w", cfg.Storage.Path, err)
		}
	}
	return nil
}

// samePersisted compares two storages' contents: hard state, snapshot
// (metadata and data) and the log after the snapshot.
func samePersisted(a, b core.Persisted) error {
	if a.HardState != b.HardState {
		return fmt.Errorf("hard state %+v, %+v", a.HardState, b.HardState)
	}
	if a.Snapshot.IsEmpty() != b.Snapshot.IsEmpty() {
		return errors.New("a snapshot in one only")
	}
	if !a.Snapshot.IsEmpty() {
		sa, sb := a.Snapshot, b.Snapshot
		if sa.Meta.Index != sb.Meta.Index || sa.Meta.Term != sb.Meta.Term ||
			!sameConf(sa.Meta.Config, sb.Meta.Config) {
			return fmt.Errorf("snapshot %+v, %+v", sa.Meta, sb.Meta)
		}
		if sha256.Sum256(sa.Data) != sha256.Sum256(sb.Data) {
			return fmt.Errorf("snapshot data at %d: %d and %d bytes, different", sa.Meta.Index, len(sa.Data), len(sb.Data))
		}
	}
	ea, eb := logAfterSnapshot(a), logAfterSnapshot(b)
	if len(ea) != len(eb) {
		return fmt.Errorf("%d and %d log entries", len(ea), len(eb))
	}
	for i := range ea {
		x, y := ea[i], eb[i]
		if x.Index != y.Index || x.Term != y.Term || x.Type != y.Type || !bytes.Equal(x.Data, y.Data) {
			return fmt.Errorf("log entry %d differs", x.Index)
		}
	}
	return nil
}

func sameConf(a, b core.ConfState) bool {
	return slices.Equal(a.Voters, b.Voters) && slices.Equal(a.Learners, b.Learners) &&
		slices.Equal(a.VotersOutgoing, b.VotersOutgoing) && slices.Equal(a.LearnersNext, b.LearnersNext) &&
		a.AutoLeave == b.AutoLeave
}

// stateHash is the key-value store's state hash after restoring p's
// snapshot and applying its log's key-value commands up to the commit
// index.
func stateHash(p core.Persisted) (uint64, error) {
	store := newStore()
	if !p.Snapshot.IsEmpty() {
		ms, err := decodeMachineSnapshot(p.Snapshot.Data)
		if err != nil {
			return 0, fmt.Errorf("snapshot: %w", err)
		}
		if err := store.Restore(ms.store); err != nil {
			return 0, fmt.Errorf("snapshot: %w", err)
		}
	}
	for _, e := range logAfterSnapshot(p) {
		if e.Index > p.HardState.Commit {
			break
		}
		cmd, ok := node.EntryCommand(e)
		if !ok || len(cmd) == 0 || cmd[0] == appCommandTag {
			continue
		}
		store.Apply(e.Index, cmd)
	}
	return store.Hash(), nil
}
