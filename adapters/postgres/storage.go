package pgstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/forge-consensus/consensus/adapters/internal/groupcommit"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// ErrCorrupt is wrapped by the errors of Open and Load when a stored row
// is damaged: its checksum does not match, or the rows do not fit together.
var ErrCorrupt = errors.New("corrupt data")

// ErrClosed is wrapped by the errors of operations on a closed Storage.
var ErrClosed = errors.New("storage closed")

// ErrNotOwner is wrapped by the error of a write that found the schema
// opened by another process since this one opened it.
var ErrNotOwner = errors.New("schema opened by another process")

// Defaults of Options.
const (
	DefaultPoolSize     = 4
	DefaultWriteTimeout = 30 * time.Second
	defaultBatchBytes   = 4 << 20
	// formatVersion is the version of the layout written in meta.
	formatVersion = 1
	// readTimeout bounds Open and Load, which read the whole log.
	readTimeout = 10 * time.Minute
)

// Options configures a Storage.
type Options struct {
	// DSN is the PostgreSQL connection string (URL or key=value form, as
	// pgx parses it). Required. It may hold a password: it is never
	// logged, nor put in an error.
	DSN string
	// Schema is the schema holding the node's tables, created if missing.
	// Required: see SchemaName. It must be a plain lowercase identifier
	// (a-z, 0-9, _; at most 63 bytes, not starting with a digit or "pg_").
	Schema string
	// Identity names the node the schema belongs to (e.g. cluster and
	// node name). It is written at creation; Open refuses a schema created
	// with another non-empty identity.
	Identity string
	// PoolSize is the most connections the store opens (0: 4). Writes use
	// one at a time; Load and Open use another.
	PoolSize int
	// WriteTimeout bounds one write transaction, COMMIT included (0:
	// 30s). A transaction that times out fails (fail-stop).
	WriteTimeout time.Duration
	// BatchDelay is how long the committer waits, once a Save is queued,
	// for more Saves to merge into the same transaction. 0 commits as soon
	// as the committer is free, merging what was queued meanwhile.
	BatchDelay time.Duration
	// BatchBytes stops merging Saves into a transaction once it reaches
	// this many bytes (estimated). 0 means 4 MiB.
	BatchBytes int
	// Logger receives warnings. Nil discards them.
	Logger *slog.Logger
}

// Storage is a durable node.Storage kept in a PostgreSQL schema. Its
// methods may be called from any goroutine.
type Storage struct {
	opts   Options
	log    *slog.Logger
	pool   *pgxpool.Pool
	schema string // quoted
	owner  []byte // this process's owner token

	queue   *groupcommit.Queue[request]
	stopped chan struct{}

	mu     sync.Mutex
	failed error // the first write failure: every later write fails

	closeOnce sync.Once
	closeErr  error

	// Owned by the committer goroutine (and by Open before it starts).
	state logState
}

// request is one queued Save.
type request struct {
	u    *node.Update
	done func(error)
}

// logState is what the committer knows of the stored state, to check and
// apply updates as node.MemoryStorage does.
type logState struct {
	hasSnap     bool
	snapIndex   uint64
	hasEntries  bool
	first, last uint64
}

// schemaPattern is what a schema name may be.
var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchema returns an error saying why name is not a schema name this
// package accepts, or nil.
func ValidSchema(name string) error {
	switch {
	case name == "":
		return errors.New("empty schema name")
	case !schemaPattern.MatchString(name):
		return fmt.Errorf("schema name %q is not 1 to 63 of a-z, 0-9 and _, starting with a letter or _", name)
	case strings.HasPrefix(name, "pg_"):
		return fmt.Errorf("schema name %q starts with pg_, which PostgreSQL reserves", name)
	case name == "public" || name == "information_schema":
		return fmt.Errorf("schema name %q is PostgreSQL's own", name)
	}
	return nil
}

// SchemaName derives the schema of the node named nodeName of cluster
// clusterID: "consensus_" + the cluster ID and node name reduced to
// lowercase letters, digits and _, + 8 hex digits of a hash of the exact
// pair, so that two pairs that read alike never share a schema. It is cut
// to 63 bytes (PostgreSQL's limit) before the hash.
func SchemaName(clusterID, nodeName string) string {
	clean := func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToLower(s) {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	h := fnv.New32a()
	h.Write([]byte(clusterID))
	h.Write([]byte{0})
	h.Write([]byte(nodeName))
	suffix := fmt.Sprintf("_%08x", h.Sum32())
	base := "consensus_" + clean(clusterID) + "_" + clean(nodeName)
	if len(base) > 63-len(suffix) {
		base = base[:63-len(suffix)]
	}
	return base + suffix
}

// Open connects to the database, creates the schema and its tables if
// missing, takes the schema over (see the package documentation,
// Ownership) and reads back and verifies everything stored: a damaged row
// fails Open with an error wrapping ErrCorrupt that names it. Nothing
// stored is changed before that check passes.
func Open(o Options) (*Storage, error) {
	if o.DSN == "" {
		return nil, errors.New("postgres storage: Options.DSN is empty")
	}
	if err := ValidSchema(o.Schema); err != nil {
		return nil, fmt.Errorf("postgres storage: Options.Schema: %w", err)
	}
	switch {
	case o.PoolSize < 0:
		return nil, fmt.Errorf("postgres storage: negative Options.PoolSize %d", o.PoolSize)
	case o.WriteTimeout < 0:
		return nil, fmt.Errorf("postgres storage: negative Options.WriteTimeout %v", o.WriteTimeout)
	case o.BatchDelay < 0:
		return nil, fmt.Errorf("postgres storage: negative Options.BatchDelay %v", o.BatchDelay)
	case o.BatchBytes < 0:
		return nil, fmt.Errorf("postgres storage: negative Options.BatchBytes %d", o.BatchBytes)
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = defaultBatchBytes
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		// pgx's parse errors redact the password; say no more than that
		// the DSN does not parse.
		return nil, fmt.Errorf("postgres storage: the DSN does not parse: %w", redact(err, o.DSN))
	}
	cfg.MaxConns = int32(o.PoolSize)
	cfg.MinConns = 0
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	// Every session starts with synchronous_commit on; every write
	// transaction sets it again (SET LOCAL), whatever the DSN says.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "consensus"
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres storage: connect: %w", redact(err, o.DSN))
	}
	s := &Storage{
		opts:    o,
		log:     logger,
		pool:    pool,
		schema:  pgx.Identifier{o.Schema}.Sanitize(),
		queue:   groupcommit.New[request](o.BatchDelay, o.BatchBytes),
		stopped: make(chan struct{}),
	}
	s.owner = make([]byte, 16)
	if _, err := rand.Read(s.owner); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres storage: owner token: %w", err)
	}
	p, err := s.open(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.state = stateOf(&p)
	go s.run()
	return s, nil
}

// CheckDSN returns an error saying why dsn is not a connection string pgx
// parses, without its password, or nil.
func CheckDSN(dsn string) error {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return fmt.Errorf("the DSN does not parse: %w", redact(err, dsn))
	}
	return nil
}

// redact removes the DSN's password from err's message, in case a driver
// error quotes the DSN.
func redact(err error, dsn string) error {
	cfg, perr := pgx.ParseConfig(dsn)
	if perr != nil || cfg.Password == "" || !strings.Contains(err.Error(), cfg.Password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), cfg.Password, "xxxxx"))
}

// table returns the quoted name of a table of the schema.
func (s *Storage) table(name string) string { return s.schema + "." + name }

// ddl creates the schema and its tables if missing.
func (s *Storage) ddl() []string {
	return []string{
		"CREATE SCHEMA IF NOT EXISTS " + s.schema,
		"CREATE TABLE IF NOT EXISTS " + s.table("meta") + " (id bigint PRIMARY KEY, version bigint NOT NULL, identity bytea NOT NULL, owner bytea NOT NULL, crc bigint NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + s.table("hard_state") + " (id bigint PRIMARY KEY, term bigint NOT NULL, vote bigint NOT NULL, commit_index bigint NOT NULL, crc bigint NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + s.table("snapshot") + " (id bigint PRIMARY KEY, idx bigint NOT NULL, term bigint NOT NULL, meta bytea NOT NULL, size bigint NOT NULL, chunks bigint NOT NULL, data_crc bigint NOT NULL, crc bigint NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + s.table("snapshot_chunks") + " (n bigint PRIMARY KEY, idx bigint NOT NULL, term bigint NOT NULL, data bytea NOT NULL, crc bigint NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + s.table("entries") + " (idx bigint PRIMARY KEY, term bigint NOT NULL, type bigint NOT NULL, data bytea NOT NULL, crc bigint NOT NULL)",
	}
}

// open creates what is missing, locks the meta row (waiting for a previous
// owner's transaction to end), verifies everything and, if it all checks
// out, writes this process's owner token.
func (s *Storage) open(ctx context.Context) (core.Persisted, error) {
	var p core.Persisted
	// The schema and tables first, in a transaction of their own, so that
	// the state is read in one that locks the meta row from its start.
	exists := false
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", s.opts.Schema).Scan(&exists); err != nil {
		return p, fmt.Errorf("postgres storage: schema %s: %w", s.schema, err)
	}
	if !exists || !s.tablesExist(ctx) {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			for _, q := range s.ddl() {
				if _, err := tx.Exec(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return p, fmt.Errorf("postgres storage: create schema %s: %w", s.schema, err)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// FOR UPDATE waits for a write of a previous owner (a killed
		// process's transaction) to end: nothing commits after this
		// transaction reads.
		rows, err := tx.Query(ctx, "SELECT id, version, identity, owner, crc FROM "+s.table("meta")+" FOR UPDATE")
		if err != nil {
			return err
		}
		metas, err := pgx.CollectRows(rows, pgx.RowToStructByPos[metaRow])
		if err != nil {
			return fmt.Errorf("read meta: %w", err)
		}
		var m *metaRow
		for i := range metas {
			if err := metas[i].check(); err != nil {
				return s.corrupt(err)
			}
			m = &metas[i]
		}
		if len(metas) > 1 {
			return s.corrupt(fmt.Errorf("meta[%d]: a second meta row", metas[1].ID))
		}
		if m != nil {
			if m.Version != formatVersion {
				return fmt.Errorf("format version %d in meta[1], this build reads version %d", m.Version, formatVersion)
			}
			if id := string(m.Identity); s.opts.Identity != "" && id != "" && id != s.opts.Identity {
				return fmt.Errorf("the schema belongs to %q, not to %q: two nodes must not share a schema", id, s.opts.Identity)
			}
		}
		p, err = s.read(ctx, tx)
		if err != nil {
			return err
		}
		if m == nil {
			if !p.HardState.IsEmpty() || p.Snapshot != nil || len(p.Entries) > 0 {
				return s.corrupt(errors.New("meta[1]: the meta row is missing from a schema that holds a log"))
			}
			nm := metaRow{ID: 1, Version: formatVersion, Identity: []byte(s.opts.Identity), Owner: s.owner}
			nm.CRC = nm.sum()
			_, err = tx.Exec(ctx, "INSERT INTO "+s.table("meta")+" (id, version, identity, owner, crc) VALUES ($1, $2, $3, $4, $5)",
				nm.ID, nm.Version, nm.Identity, nm.Owner, nm.CRC)
			return err
		}
		nm := *m
		nm.Owner = s.owner
		nm.CRC = nm.sum()
		_, err = tx.Exec(ctx, "UPDATE "+s.table("meta")+" SET owner = $1, crc = $2 WHERE id = 1", nm.Owner, nm.CRC)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return p, err
		}
		return p, fmt.Errorf("postgres storage: open schema %s: %w", s.schema, err)
	}
	if s.serverFsyncOff(ctx) {
		s.log.Warn("postgres storage: the server runs with fsync off: acknowledged writes may be lost if its machine fails", "schema", s.opts.Schema)
	}
	return p, nil
}

// tablesExist reports whether the schema has the meta table (created last
// but one; a schema with it has had the whole DDL transaction).
func (s *Storage) tablesExist(ctx context.Context) bool {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1", s.opts.Schema).Scan(&n)
	return err == nil && n == 5
}

// serverFsyncOff reports whether the server says fsync is off.
func (s *Storage) serverFsyncOff(ctx context.Context) bool {
	var v string
	if err := s.pool.QueryRow(ctx, "SHOW fsync").Scan(&v); err != nil {
		return false
	}
	return v == "off"
}

// corrupt wraps a description of damage as a corruption of this schema.
func (s *Storage) corrupt(err error) error {
	return fmt.Errorf("postgres storage: schema %s: %w: %w", s.schema, ErrCorrupt, err)
}

// Load returns what is stored: the hard state, the snapshot (nil if none)
// and every stored log entry in index order (entries at or below the
// snapshot index may be among them), read in one transaction. It verifies
// every row's checksum and that the rows fit together, and fails with an
// error wrapping ErrCorrupt, naming the row, on any mismatch. It reflects
// the Saves whose done has been called.
func (s *Storage) Load() (core.Persisted, error) {
	select {
	case <-s.stopped:
		return core.Persisted{}, fmt.Errorf("postgres storage: load: %w", ErrClosed)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	var p core.Persisted
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		p, err = s.read(ctx, tx)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return core.Persisted{}, err
		}
		return core.Persisted{}, fmt.Errorf("postgres storage: load schema %s: %w", s.schema, err)
	}
	return p, nil
}

// read reads and verifies everything stored but the meta row.
func (s *Storage) read(ctx context.Context, tx pgx.Tx) (core.Persisted, error) {
	var p core.Persisted
	rows, err := tx.Query(ctx, "SELECT id, term, vote, commit_index, crc FROM "+s.table("hard_state"))
	if err != nil {
		return p, err
	}
	hss, err := pgx.CollectRows(rows, pgx.RowToStructByPos[hardStateRow])
	if err != nil {
		return p, fmt.Errorf("read hard_state: %w", err)
	}
	for _, h := range hss {
		if err := h.check(); err != nil {
			return p, s.corrupt(err)
		}
	}
	if len(hss) > 1 {
		return p, s.corrupt(fmt.Errorf("hard_state[%d]: a second hard state row", hss[1].ID))
	}
	if len(hss) == 1 {
		h := hss[0]
		p.HardState = core.HardState{Term: uint64(h.Term), Vote: uint64(h.Vote), Commit: uint64(h.Commit)}
	}

	snap, err := s.readSnapshot(ctx, tx)
	if err != nil {
		return p, err
	}
	p.Snapshot = snap

	rows, err = tx.Query(ctx, "SELECT idx, term, type, data, crc FROM "+s.table("entries")+" ORDER BY idx")
	if err != nil {
		return p, err
	}
	ers, err := pgx.CollectRows(rows, pgx.RowToStructByPos[entryRow])
	if err != nil {
		return p, fmt.Errorf("read entries: %w", err)
	}
	// Every checksum first: a damaged key moves its row, and the row must
	// be named as damaged rather than the gap it leaves.
	for i := range ers {
		if err := ers[i].check(); err != nil {
			return p, s.corrupt(err)
		}
	}
	if len(ers) > 0 {
		p.Entries = make([]core.Entry, len(ers))
	}
	for i, r := range ers {
		if i > 0 && r.Idx != ers[i-1].Idx+1 {
			return p, s.corrupt(fmt.Errorf("entries[%d]: the log has a gap: the previous entry is entries[%d]", uint64(r.Idx), uint64(ers[i-1].Idx)))
		}
		if r.Type < 0 || r.Type > 255 {
			return p, s.corrupt(fmt.Errorf("entries[%d]: entry type %d", uint64(r.Idx), r.Type))
		}
		p.Entries[i] = core.Entry{Index: uint64(r.Idx), Term: uint64(r.Term), Type: core.EntryType(r.Type), Data: r.Data}
	}
	if snap != nil && len(p.Entries) > 0 && p.Entries[0].Index > snap.Meta.Index+1 {
		return p, s.corrupt(fmt.Errorf("entries[%d]: the log starts after a gap: the snapshot is at %d", p.Entries[0].Index, snap.Meta.Index))
	}
	if snap == nil && len(p.Entries) > 0 && p.Entries[0].Index != 1 {
		return p, s.corrupt(fmt.Errorf("entries[%d]: the log starts at %d with no snapshot", p.Entries[0].Index, p.Entries[0].Index))
	}
	return p, nil
}

// readSnapshot reads and verifies the snapshot row and its chunks.
func (s *Storage) readSnapshot(ctx context.Context, tx pgx.Tx) (*core.Snapshot, error) {
	rows, err := tx.Query(ctx, "SELECT id, idx, term, meta, size, chunks, data_crc, crc FROM "+s.table("snapshot"))
	if err != nil {
		return nil, err
	}
	srs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[snapshotRow])
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	for _, r := range srs {
		if err := r.check(); err != nil {
			return nil, s.corrupt(err)
		}
	}
	rows, err = tx.Query(ctx, "SELECT n, idx, term, data, crc FROM "+s.table("snapshot_chunks")+" ORDER BY n")
	if err != nil {
		return nil, err
	}
	crs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[chunkRow])
	if err != nil {
		return nil, fmt.Errorf("read snapshot_chunks: %w", err)
	}
	for _, c := range crs {
		if err := c.check(); err != nil {
			return nil, s.corrupt(err)
		}
	}
	if len(srs) > 1 {
		return nil, s.corrupt(fmt.Errorf("snapshot[%d]: a second snapshot row", srs[1].ID))
	}
	if len(srs) == 0 {
		if len(crs) > 0 {
			return nil, s.corrupt(fmt.Errorf("snapshot_chunks[%d]: a chunk without a snapshot row (snapshot[1] missing)", crs[0].N))
		}
		return nil, nil
	}
	r := srs[0]
	var meta core.SnapshotMeta
	if err := meta.UnmarshalBinary(r.Meta); err != nil {
		return nil, s.corrupt(fmt.Errorf("snapshot[1]: metadata: %v", err))
	}
	if meta.Index != uint64(r.Idx) || meta.Term != uint64(r.Term) {
		return nil, s.corrupt(fmt.Errorf("snapshot[1]: metadata of %d/%d in a row of %d/%d", meta.Index, meta.Term, uint64(r.Idx), uint64(r.Term)))
	}
	if int64(len(crs)) != r.Chunks {
		return nil, s.corrupt(fmt.Errorf("snapshot[1]: %d chunks, snapshot_chunks holds %d", r.Chunks, len(crs)))
	}
	data := make([]byte, 0, min(max(r.Size, 0), int64(len(crs))*chunkSize))
	for i, c := range crs {
		if c.N != int64(i) {
			return nil, s.corrupt(fmt.Errorf("snapshot_chunks[%d]: chunk %d is missing", c.N, i))
		}
		if c.Idx != r.Idx || c.Term != r.Term {
			return nil, s.corrupt(fmt.Errorf("snapshot_chunks[%d]: a chunk of snapshot %d/%d, the snapshot is %d/%d", c.N, uint64(c.Idx), uint64(c.Term), uint64(r.Idx), uint64(r.Term)))
		}
		data = append(data, c.Data...)
	}
	if int64(len(data)) != r.Size || int64(crc(data)) != r.DataCRC {
		return nil, s.corrupt(fmt.Errorf("snapshot[1]: the data in snapshot_chunks (%d bytes) does not match its size (%d) and checksum", len(data), r.Size))
	}
	snap := &core.Snapshot{Meta: meta}
	if len(data) > 0 {
		snap.Data = data
	}
	return snap, nil
}

// stateOf returns the log state of p.
func stateOf(p *core.Persisted) logState {
	var st logState
	if p.Snapshot != nil {
		st.hasSnap, st.snapIndex = true, p.Snapshot.Meta.Index
	}
	if n := len(p.Entries); n > 0 {
		st.hasEntries, st.first, st.last = true, p.Entries[0].Index, p.Entries[n-1].Index
	}
	return st
}

// Save queues u to be written and returns. done is called once, from the
// committer goroutine, after the transaction holding u committed (with
// synchronous_commit on), or with the error that stopped it; after Close it
// is called at once with an error wrapping ErrClosed. Updates are written
// in the order of the Save calls and their done callbacks called in that
// order. u and its slices must stay unchanged until done is called.
func (s *Storage) Save(u *node.Update, done func(error)) {
	if u == nil {
		done(errors.New("postgres storage: save: nil update"))
		return
	}
	if u.LocalSnapshotFile != nil {
		u.LocalSnapshotFile.Abort()
		done(errors.New("postgres storage: save: streamed snapshot files are not supported"))
		return
	}
	if !s.queue.Push(request{u: u, done: done}, updateSize(u)) {
		done(fmt.Errorf("postgres storage: save: %w", ErrClosed))
	}
}

// updateSize estimates the bytes u adds to a transaction.
func updateSize(u *node.Update) int {
	n := 64
	for i := range u.Entries {
		n += 48 + len(u.Entries[i].Data)
	}
	if u.Snapshot != nil {
		n += len(u.Snapshot.Data)
	}
	if u.LocalSnapshot != nil {
		n += len(u.LocalSnapshot.Data)
	}
	return n
}

// Close writes the queued Saves (calling their done callbacks), stops the
// committer and closes the connections. Later Saves fail with ErrClosed.
func (s *Storage) Close() error {
	s.closeOnce.Do(func() {
		s.queue.Close()
		<-s.stopped
		s.pool.Close()
	})
	return s.closeErr
}

// failure returns the first write failure, or nil.
func (s *Storage) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// setFailed records err as the write failure if none is recorded yet.
func (s *Storage) setFailed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = err
	}
}
