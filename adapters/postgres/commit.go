package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// run is the committer goroutine: it writes queued Saves, group by group,
// one transaction a group, and calls their done callbacks in order once
// the transaction committed (or failed), until Close and an empty queue.
func (s *Storage) run() {
	defer close(s.stopped)
	for {
		group, ok := s.queue.Next()
		if !ok {
			return
		}
		errs := s.commit(group)
		for i, r := range group {
			r.done(errs[i])
		}
	}
}

// apply returns the log state after u, or the error for which u is
// rejected (and writes nothing), as node.MemoryStorage checks it.
func (st logState) apply(u *node.Update) (logState, error) {
	n := st
	if u.Snapshot != nil {
		n.hasSnap, n.snapIndex, n.hasEntries = true, u.Snapshot.Meta.Index, false
	}
	if u.LocalSnapshot != nil {
		n.hasSnap, n.snapIndex = true, u.LocalSnapshot.Meta.Index
		if n.hasEntries {
			switch {
			case u.CompactTo >= n.last:
				n.hasEntries = false
			case u.CompactTo >= n.first:
				n.first = u.CompactTo + 1
			}
		}
	}
	if len(u.Entries) > 0 {
		first := u.Entries[0].Index
		next := uint64(1)
		switch {
		case n.hasEntries:
			next = n.last + 1
		case n.hasSnap:
			next = n.snapIndex + 1
		}
		if first == 0 || first > next {
			return st, fmt.Errorf("postgres storage: entries from index %d leave a gap (next index is %d)", first, next)
		}
		for i, e := range u.Entries {
			if e.Index != first+uint64(i) {
				return st, fmt.Errorf("postgres storage: entries not consecutive: %d after %d", e.Index, u.Entries[i-1].Index)
			}
		}
		if !n.hasEntries || first <= n.first {
			n.first = first
		}
		n.hasEntries, n.last = true, u.Entries[len(u.Entries)-1].Index
	}
	return n, nil
}

// stmt is one queued statement of a write transaction.
type stmt struct {
	sql  string
	args []any
}

// ownerCheck fails the transaction (division by zero) unless this
// process still owns the schema, and locks the meta row until the
// transaction ends: a later Open waits for it, and a transaction that
// waited for a later Open finds the owner changed.
const ownerCheck = "SELECT 1 / count(*) FROM (SELECT 1 FROM %s WHERE id = 1 AND owner = $1 FOR UPDATE) AS owned"

// commit writes a group of Saves as one transaction and returns the error
// of each (nil for those written).
func (s *Storage) commit(group []request) []error {
	errs := make([]error, len(group))
	if err := s.failure(); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("postgres storage: an earlier write failed: %w", err)
		}
		return errs
	}
	st := s.state
	// dbMax bounds the indexes of the rows the entries table holds (0: it
	// holds none), to skip deletes that cannot delete anything.
	var dbMax uint64
	if st.hasEntries {
		dbMax = st.last
	}
	var (
		stmts   []stmt
		buf     []core.Entry // entries to insert once every delete is queued
		snap    *core.Snapshot
		hs      *core.HardState
		applied []int
	)
	for i, r := range group {
		u := r.u
		next, err := st.apply(u)
		if err != nil {
			errs[i] = err
			continue
		}
		if u.Snapshot != nil {
			snap, buf = u.Snapshot, buf[:0]
			if dbMax > 0 {
				stmts = append(stmts, stmt{sql: "DELETE FROM " + s.table("entries")})
				dbMax = 0
			}
		}
		if u.LocalSnapshot != nil {
			snap = u.LocalSnapshot
			to := u.CompactTo
			buf = slices.DeleteFunc(buf, func(e core.Entry) bool { return e.Index <= to })
			if dbMax > 0 {
				stmts = append(stmts, stmt{sql: "DELETE FROM " + s.table("entries") + " WHERE idx <= $1", args: []any{int64(to)}})
			}
		}
		if len(u.Entries) > 0 {
			first := u.Entries[0].Index
			buf = slices.DeleteFunc(buf, func(e core.Entry) bool { return e.Index >= first })
			if dbMax >= first {
				stmts = append(stmts, stmt{sql: "DELETE FROM " + s.table("entries") + " WHERE idx >= $1", args: []any{int64(first)}})
				dbMax = first - 1
			}
			buf = append(buf, u.Entries...)
		}
		if !u.HardState.IsEmpty() {
			h := u.HardState
			hs = &h
		}
		st = next
		applied = append(applied, i)
	}
	if snap != nil {
		stmts = append(stmts, s.snapshotStmts(snap)...)
	}
	if len(buf) > 0 {
		stmts = append(stmts, s.entryStmt(buf))
	}
	if hs != nil {
		r := hardStateRow{ID: 1, Term: int64(hs.Term), Vote: int64(hs.Vote), Commit: int64(hs.Commit)}
		r.CRC = r.sum()
		stmts = append(stmts, stmt{
			sql: "INSERT INTO " + s.table("hard_state") + " (id, term, vote, commit_index, crc) VALUES ($1, $2, $3, $4, $5) " +
				"ON CONFLICT (id) DO UPDATE SET term = EXCLUDED.term, vote = EXCLUDED.vote, commit_index = EXCLUDED.commit_index, crc = EXCLUDED.crc",
			args: []any{r.ID, r.Term, r.Vote, r.Commit, r.CRC},
		})
	}
	if len(stmts) == 0 {
		s.state = st
		return errs
	}
	if err := s.write(stmts); err != nil {
		s.setFailed(err)
		s.log.Error("postgres storage: write failed; failing this and every later write", "schema", s.opts.Schema, "err", err)
		for _, i := range applied {
			errs[i] = err
		}
		return errs
	}
	s.state = st
	return errs
}

// snapshotStmts replaces the stored snapshot with snap.
func (s *Storage) snapshotStmts(snap *core.Snapshot) []stmt {
	meta, _ := snap.Meta.MarshalBinary() // infallible: core's encoder does not fail
	data := snap.Data
	idx, term := int64(snap.Meta.Index), int64(snap.Meta.Term)
	var ns, idxs, terms, crcs []int64
	var chunks [][]byte
	for n := int64(0); len(data) > 0; n++ {
		c := chunkRow{N: n, Idx: idx, Term: term, Data: data[:min(len(data), chunkSize)]}
		data = data[len(c.Data):]
		ns, idxs, terms, chunks, crcs = append(ns, n), append(idxs, idx), append(terms, term), append(chunks, c.Data), append(crcs, c.sum())
	}
	r := snapshotRow{ID: 1, Idx: idx, Term: term, Meta: meta, Size: int64(len(snap.Data)), Chunks: int64(len(ns)), DataCRC: int64(crc(snap.Data))}
	r.CRC = r.sum()
	out := []stmt{
		{sql: "DELETE FROM " + s.table("snapshot_chunks")},
		{sql: "DELETE FROM " + s.table("snapshot")},
		{sql: "INSERT INTO " + s.table("snapshot") + " (id, idx, term, meta, size, chunks, data_crc, crc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			args: []any{r.ID, r.Idx, r.Term, r.Meta, r.Size, r.Chunks, r.DataCRC, r.CRC}},
	}
	if len(ns) > 0 {
		out = append(out, stmt{
			sql:  "INSERT INTO " + s.table("snapshot_chunks") + " (n, idx, term, data, crc) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bigint[])",
			args: []any{ns, idxs, terms, chunks, crcs},
		})
	}
	return out
}

// entryStmt inserts es, in one statement.
func (s *Storage) entryStmt(es []core.Entry) stmt {
	idxs, terms, types, crcs := make([]int64, len(es)), make([]int64, len(es)), make([]int64, len(es)), make([]int64, len(es))
	data := make([][]byte, len(es))
	for i, e := range es {
		r := entryRow{Idx: int64(e.Index), Term: int64(e.Term), Type: int64(e.Type), Data: e.Data}
		if r.Data == nil {
			r.Data = []byte{} // NOT NULL
		}
		idxs[i], terms[i], types[i], data[i], crcs[i] = r.Idx, r.Term, r.Type, r.Data, r.sum()
	}
	return stmt{
		sql:  "INSERT INTO " + s.table("entries") + " (idx, term, type, data, crc) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bigint[])",
		args: []any{idxs, terms, types, data, crcs},
	}
}

// write runs stmts in one transaction with synchronous_commit on, after
// the owner check, pipelined in one round trip, then commits. It returns
// nil only once COMMIT returned success.
func (s *Storage) write(stmts []stmt) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres storage: begin: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue("SET LOCAL synchronous_commit TO on")
	b.Queue(fmt.Sprintf(ownerCheck, s.table("meta")), s.owner)
	for _, st := range stmts {
		b.Queue(st.sql, st.args...)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		rbErr := tx.Rollback(ctx)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "22012" {
			return fmt.Errorf("postgres storage: schema %s: %w (ownership lost)", s.schema, ErrNotOwner)
		}
		if rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			return fmt.Errorf("postgres storage: write: %w (rollback: %v)", err, rbErr)
		}
		return fmt.Errorf("postgres storage: write: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		// The outcome of a COMMIT that failed in transit is unknown: the
		// update is not acknowledged, and the store stops.
		return fmt.Errorf("postgres storage: commit: %w", err)
	}
	return nil
}
