package pgstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// chunkSize is the size of the snapshot_chunks rows a snapshot's data is
// cut into.
const chunkSize = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc is the CRC-32C of b.
func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// rowSum is the CRC-32C of a row: its table's name, then its integer
// columns (8 bytes big-endian each), then its bytea columns (each preceded
// by its length).
func rowSum(table string, ints []int64, blobs ...[]byte) int64 {
	b := make([]byte, 0, len(table)+1+8*len(ints)+64)
	b = append(b, table...)
	b = append(b, 0)
	for _, v := range ints {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	h := crc32.Update(0, castagnoli, b)
	for _, blob := range blobs {
		h = crc32.Update(h, castagnoli, binary.BigEndian.AppendUint64(nil, uint64(len(blob))))
		h = crc32.Update(h, castagnoli, blob)
	}
	return int64(h)
}

// mismatch describes a row whose checksum does not match.
func mismatch(row string, stored int64) error {
	return fmt.Errorf("%s: checksum mismatch (stored %#x): the row is damaged", row, stored)
}

// metaRow is the row of the meta table.
type metaRow struct {
	ID       int64
	Version  int64
	Identity []byte
	Owner    []byte
	CRC      int64
}

func (r *metaRow) sum() int64 {
	return rowSum("meta", []int64{r.ID, r.Version}, r.Identity, r.Owner)
}

func (r *metaRow) check() error {
	if r.sum() != r.CRC {
		return mismatch(fmt.Sprintf("meta[%d]", r.ID), r.CRC)
	}
	return nil
}

// hardStateRow is the row of the hard_state table.
type hardStateRow struct {
	ID     int64
	Term   int64
	Vote   int64
	Commit int64
	CRC    int64
}

func (r *hardStateRow) sum() int64 {
	return rowSum("hard_state", []int64{r.ID, r.Term, r.Vote, r.Commit})
}

func (r *hardStateRow) check() error {
	if r.sum() != r.CRC {
		return mismatch(fmt.Sprintf("hard_state[%d]", r.ID), r.CRC)
	}
	return nil
}

// snapshotRow is the row of the snapshot table.
type snapshotRow struct {
	ID      int64
	Idx     int64
	Term    int64
	Meta    []byte
	Size    int64
	Chunks  int64
	DataCRC int64
	CRC     int64
}

func (r *snapshotRow) sum() int64 {
	return rowSum("snapshot", []int64{r.ID, r.Idx, r.Term, r.Size, r.Chunks, r.DataCRC}, r.Meta)
}

func (r *snapshotRow) check() error {
	if r.sum() != r.CRC {
		return mismatch(fmt.Sprintf("snapshot[%d]", r.ID), r.CRC)
	}
	return nil
}

// chunkRow is a row of the snapshot_chunks table.
type chunkRow struct {
	N    int64
	Idx  int64
	Term int64
	Data []byte
	CRC  int64
}

func (r *chunkRow) sum() int64 {
	return rowSum("snapshot_chunks", []int64{r.N, r.Idx, r.Term}, r.Data)
}

func (r *chunkRow) check() error {
	if r.sum() != r.CRC {
		return mismatch(fmt.Sprintf("snapshot_chunks[%d]", r.N), r.CRC)
	}
	return nil
}

// entryRow is a row of the entries table.
type entryRow struct {
	Idx  int64
	Term int64
	Type int64
	Data []byte
	CRC  int64
}

func (r *entryRow) sum() int64 {
	return rowSum("entries", []int64{r.Idx, r.Term, r.Type}, r.Data)
}

func (r *entryRow) check() error {
	if r.sum() != r.CRC {
		return mismatch(fmt.Sprintf("entries[%d]", uint64(r.Idx)), r.CRC)
	}
	return nil
}
