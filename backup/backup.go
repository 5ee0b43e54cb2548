// Package backup is the format of a cluster backup file: a consistent
// snapshot of a node's state machine, as "consensusctl snapshot save"
// downloads it and "consensusd restore" seeds a new cluster from it.
//
// A backup file is, in order:
//
//	magic     8 bytes, "FCBACKUP"
//	version   1 byte, FormatVersion
//	hlen      4 bytes, big-endian: the length of the header
//	header    hlen bytes of JSON (Header): cluster ID, node, index, term,
//	          membership, creation time and the data's length
//	data      Header.DataLength bytes: the state machine's snapshot, as
//	          the server's state machine writes it (its membership
//	          directory, the application's state and the key-value store)
//	checksum  32 bytes: the SHA-256 of every byte before it
//
// Read checks all of it while streaming the data to its caller, who must
// not use the data before Read returned without an error: a damaged file
// (a flipped byte, a truncation) is told apart from a foreign one (not a
// backup at all), and the error names what is wrong.
package backup

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Magic starts every backup file.
const Magic = "FCBACKUP"

// FormatVersion is the version of the format this package writes and
// reads.
const FormatVersion byte = 1

// maxHeaderBytes bounds the JSON header a reader accepts.
const maxHeaderBytes = 1 << 20

// Errors of Read; each error of Read wraps one of them.
var (
	// ErrForeign means the file is not a backup of this format: wrong
	// magic, or a format version this package does not read.
	ErrForeign = errors.New("not a consensus backup file")
	// ErrDamaged means the file is a backup but damaged: truncated, a
	// header that does not decode, or a checksum that does not match.
	ErrDamaged = errors.New("backup file damaged")
)

// Member is a member of the backed-up cluster, as its directory knew it.
type Member struct {
	ID      uint64 `json:"id"`
	Name    string `json:"name,omitempty"`
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// Header describes a backup.
type Header struct {
	// ClusterID is the backed-up cluster's cluster_id.
	ClusterID string `json:"cluster_id"`
	// Node and NodeName are the node that took the snapshot.
	Node     uint64 `json:"node"`
	NodeName string `json:"node_name,omitempty"`
	// Index and Term are the log position the snapshot covers.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// Voters and Learners are the membership at Index (informative: a
	// restore takes the new cluster's membership from its configuration).
	Voters   []uint64 `json:"voters"`
	Learners []uint64 `json:"learners,omitempty"`
	// Members are the members' addresses as the node knew them.
	Members []Member `json:"members,omitempty"`
	// Created is when the backup was taken (UTC).
	Created time.Time `json:"created"`
	// DataLength is the length of the snapshot data that follows.
	DataLength int64 `json:"data_length"`
}

// Prefix returns the bytes of a backup file before its data: magic,
// version, header length and header.
func (h *Header) Prefix() ([]byte, error) {
	if h.DataLength < 0 {
		return nil, fmt.Errorf("backup: negative data length %d", h.DataLength)
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("backup: encode header: %w", err)
	}
	b := make([]byte, 0, len(Magic)+1+4+len(js))
	b = append(b, Magic...)
	b = append(b, FormatVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	return append(b, js...), nil
}

// Size returns the size of the backup file of h.
func (h *Header) Size() (int64, error) {
	p, err := h.Prefix()
	if err != nil {
		return 0, err
	}
	return int64(len(p)) + h.DataLength + sha256.Size, nil
}

// Write writes a backup file to w: h's prefix, exactly h.DataLength bytes
// of data, and the checksum, which it returns (hex).
func Write(w io.Writer, h *Header, data io.Reader) (string, error) {
	p, err := h.Prefix()
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	mw := io.MultiWriter(w, sum)
	if _, err := mw.Write(p); err != nil {
		return "", fmt.Errorf("backup: write header: %w", err)
	}
	n, err := io.Copy(mw, io.LimitReader(data, h.DataLength))
	if err != nil {
		return "", fmt.Errorf("backup: write data: %w", err)
	}
	if n != h.DataLength {
		return "", fmt.Errorf("backup: the data is %d bytes, not the %d the header announces", n, h.DataLength)
	}
	s := sum.Sum(nil)
	if _, err := w.Write(s); err != nil {
		return "", fmt.Errorf("backup: write checksum: %w", err)
	}
	return hex.EncodeToString(s), nil
}

// Info is a verified backup file.
type Info struct {
	Header
	// Size is the file's size in bytes.
	Size int64
	// SHA256 is the file's checksum (hex).
	SHA256 string
}

// counter counts and hashes what is read through it.
type counter struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.h.Write(p[:k])
	c.n += int64(k)
	return k, err
}

// Read reads and verifies a backup file from r, writing its data to data
// (nil: discarded) as it goes. The data is trustworthy only if Read
// returns no error. Errors wrap ErrForeign or ErrDamaged.
func Read(r io.Reader, data io.Writer) (Info, error) {
	if data == nil {
		data = io.Discard
	}
	c := &counter{r: bufio.NewReaderSize(r, 1<<16), h: sha256.New()}
	var fixed [len(Magic) + 1 + 4]byte
	if k, err := io.ReadFull(c, fixed[:len(Magic)]); err != nil {
		if k == 0 {
			return Info{}, fmt.Errorf("%w: the file is empty", ErrForeign)
		}
		return Info{}, fmt.Errorf("%w: %d bytes, too short to be a backup", ErrForeign, k)
	}
	if string(fixed[:len(Magic)]) != Magic {
		return Info{}, fmt.Errorf("%w: it starts with %q, not %q", ErrForeign, fixed[:len(Magic)], Magic)
	}
	if _, err := io.ReadFull(c, fixed[len(Magic):]); err != nil {
		return Info{}, fmt.Errorf("%w: truncated in the header", ErrDamaged)
	}
	if v := fixed[len(Magic)]; v != FormatVersion {
		return Info{}, fmt.Errorf("%w: format version %d (this build reads version %d)", ErrForeign, v, FormatVersion)
	}
	hlen := binary.BigEndian.Uint32(fixed[len(Magic)+1:])
	if hlen == 0 || hlen > maxHeaderBytes {
		return Info{}, fmt.Errorf("%w: header length %d is not between 1 and %d", ErrDamaged, hlen, maxHeaderBytes)
	}
	js := make([]byte, hlen)
	if _, err := io.ReadFull(c, js); err != nil {
		return Info{}, fmt.Errorf("%w: truncated in the header", ErrDamaged)
	}
	var info Info
	if err := json.Unmarshal(js, &info.Header); err != nil {
		return Info{}, fmt.Errorf("%w: the header does not decode: %v", ErrDamaged, err)
	}
	if info.DataLength < 0 {
		return Info{}, fmt.Errorf("%w: negative data length %d in the header", ErrDamaged, info.DataLength)
	}
	n, err := io.Copy(data, io.LimitReader(c, info.DataLength))
	if err != nil {
		return Info{}, fmt.Errorf("backup: copy data: %w", err)
	}
	if n != info.DataLength {
		return Info{}, fmt.Errorf("%w: truncated: the data ends after %d of %d bytes", ErrDamaged, n, info.DataLength)
	}
	want := c.h.Sum(nil)
	var got [sha256.Size]byte
	if k, err := io.ReadFull(c, got[:]); err != nil {
		return Info{}, fmt.Errorf("%w: truncated: %d of the checksum's %d bytes", ErrDamaged, k, sha256.Size)
	}
	if string(got[:]) != string(want) {
		return Info{}, fmt.Errorf("%w: checksum mismatch: the file's SHA-256 is %x, its trailer says %x",
			ErrDamaged, want, got)
	}
	var one [1]byte
	if k, _ := io.ReadFull(c, one[:]); k > 0 {
		rest, _ := io.Copy(io.Discard, c)
		return Info{}, fmt.Errorf("%w: %d bytes after the checksum", ErrDamaged, rest+1)
	}
	info.Size = c.n
	info.SHA256 = hex.EncodeToString(want)
	return info, nil
}
