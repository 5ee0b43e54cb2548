package encrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/forge-consensus/consensus/core"
)

// Record layout (see the package documentation).
const (
	entryMagic  = 0xEC // first byte of an encrypted entry's data
	snapMagic   = 0xED // first byte of an encrypted snapshot's data
	nonceSize   = 12
	tagSize     = 16
	entryHeader = 1 + 4 + nonceSize // magic, key ID, nonce
	fileIDSize  = 16
	snapHeader  = 1 + 4 + fileIDSize // magic, key ID, file ID
	frameHeader = 1 + 4 + nonceSize  // kind, sealed length, nonce
	frameChunk  = 1
	frameEnd    = 2
	// ChunkSize is the most plaintext one snapshot chunk seals.
	ChunkSize = 64 << 10
)

// Labels that start every record's authenticated data, so that a record
// of one kind never authenticates as another.
const (
	adEntry = "fc-enc entry\x00"
	adChunk = "fc-enc snapshot chunk\x00"
	adEnd   = "fc-enc snapshot end\x00"
)

// keyring holds the AEADs of a data directory's data keys, one per
// configured key, and the nonce source of the active one.
type keyring struct {
	active KeyID
	aeads  map[KeyID]cipher.AEAD

	// next returns the epoch of this process's nonces, durably recorded
	// before its first use (see Storage.epochOnce).
	epoch func() (uint32, error)
	ctr   atomic.Uint64
}

// newKeyring derives the data key of each key for the directory's salt:
// HMAC-SHA256(key, label || salt).
func newKeyring(active Key, old []Key, salt []byte) (*keyring, error) {
	kr := &keyring{active: active.id, aeads: map[KeyID]cipher.AEAD{}}
	for _, k := range append([]Key{active}, old...) {
		m := hmac.New(sha256.New, k.key[:])
		m.Write([]byte(labelDataKey))
		m.Write(salt)
		blk, err := aes.NewCipher(m.Sum(nil))
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		a, err := cipher.NewGCM(blk)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		kr.aeads[k.id] = a
	}
	return kr, nil
}

// nonce returns a nonce never returned before under this directory's data
// keys: the process's epoch (32 bits) then a counter (64 bits).
func (kr *keyring) nonce(dst []byte) error {
	ep, err := kr.epoch()
	if err != nil {
		return err
	}
	c := kr.ctr.Add(1)
	if c == math.MaxUint64 {
		return errors.New("encrypt: nonce counter exhausted; restart the node")
	}
	binary.BigEndian.PutUint32(dst[0:4], ep)
	binary.BigEndian.PutUint64(dst[4:12], c)
	return nil
}

// sealEntry returns the encrypted data of e.
func (kr *keyring) sealEntry(e *core.Entry) ([]byte, error) {
	return kr.sealEntryInto(make([]byte, 0, entryHeader+len(e.Data)+tagSize), e)
}

// sealEntryInto appends the encrypted data of e to buf, which must have
// room for it (entryHeader+len(e.Data)+tagSize), and returns the result.
func (kr *keyring) sealEntryInto(buf []byte, e *core.Entry) ([]byte, error) {
	out := buf[:entryHeader]
	out[0] = entryMagic
	copy(out[1:5], kr.active[:])
	if err := kr.nonce(out[5:entryHeader]); err != nil {
		return nil, err
	}
	ad := entryAD(e.Index, e.Term, e.Type, kr.active)
	return kr.aeads[kr.active].Seal(out, out[5:entryHeader], e.Data, ad[:]), nil
}

func entryAD(index, term uint64, typ core.EntryType, id KeyID) [len(adEntry) + 8 + 8 + 1 + 4]byte {
	var ad [len(adEntry) + 8 + 8 + 1 + 4]byte
	n := copy(ad[:], adEntry)
	binary.BigEndian.PutUint64(ad[n:], index)
	binary.BigEndian.PutUint64(ad[n+8:], term)
	ad[n+16] = byte(typ)
	copy(ad[n+17:], id[:])
	return ad
}

// entryKeyID returns the key ID an entry's stored data names.
func entryKeyID(data []byte) (KeyID, error) {
	if len(data) < entryHeader+tagSize || data[0] != entryMagic {
		return KeyID{}, fmt.Errorf("%w: not an encrypted entry (%d bytes)", ErrCorrupt, len(data))
	}
	return KeyID(data[1:5]), nil
}

// openEntry returns the plaintext data of the stored entry e. A stored
// entry whose key is not configured is an ErrKey error, one that does not
// authenticate an ErrCorrupt one.
func (kr *keyring) openEntry(e *core.Entry) ([]byte, KeyID, error) {
	id, err := entryKeyID(e.Data)
	if err != nil {
		return nil, id, fmt.Errorf("entry %d: %w", e.Index, err)
	}
	a, ok := kr.aeads[id]
	if !ok {
		return nil, id, fmt.Errorf("%w: entry %d (term %d) is encrypted with key %s, which is not configured", ErrMissingKey, e.Index, e.Term, id)
	}
	ad := entryAD(e.Index, e.Term, e.Type, id)
	pt, err := a.Open(nil, e.Data[5:entryHeader], e.Data[entryHeader:], ad[:])
	if err != nil {
		return nil, id, fmt.Errorf("%w: entry %d (term %d, key %s) does not authenticate: damaged, moved from another index or term, or forged",
			ErrCorrupt, e.Index, e.Term, id)
	}
	if len(pt) == 0 {
		pt = nil // as the backends load empty data
	}
	return pt, id, nil
}

// snapSealer encrypts a snapshot's data as a stream: a header, chunks of
// at most ChunkSize plaintext bytes each sealed on its own, and an end
// frame that binds the chunk count and the snapshot's index and term.
type snapSealer struct {
	kr     *keyring
	id     KeyID
	fileID [fileIDSize]byte
	buf    []byte // plaintext not yet sealed
	chunks uint64
	total  uint64
}

func newSnapSealer(kr *keyring) (*snapSealer, []byte) {
	s := &snapSealer{kr: kr, id: kr.active, buf: make([]byte, 0, ChunkSize)}
	rand.Read(s.fileID[:]) // never fails (crypto/rand)
	hdr := make([]byte, snapHeader)
	hdr[0] = snapMagic
	copy(hdr[1:5], s.id[:])
	copy(hdr[5:], s.fileID[:])
	return s, hdr
}

// write adds plaintext and returns the frames it completed, appended to dst.
func (s *snapSealer) write(dst, p []byte) ([]byte, error) {
	for len(p) > 0 {
		k := min(len(p), ChunkSize-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) == ChunkSize {
			var err error
			if dst, err = s.flush(dst); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
}

// flush seals the buffered plaintext as a chunk.
func (s *snapSealer) flush(dst []byte) ([]byte, error) {
	ad := chunkAD(s.fileID, s.chunks)
	dst, err := s.frame(dst, frameChunk, s.buf, ad[:])
	if err != nil {
		return dst, err
	}
	s.chunks++
	s.total += uint64(len(s.buf))
	s.buf = s.buf[:0]
	return dst, nil
}

// finish seals what is buffered and the end frame for meta.
func (s *snapSealer) finish(dst []byte, index, term uint64) ([]byte, error) {
	var err error
	if len(s.buf) > 0 {
		if dst, err = s.flush(dst); err != nil {
			return dst, err
		}
	}
	var total [8]byte
	binary.BigEndian.PutUint64(total[:], s.total)
	ad := endAD(s.fileID, index, term, s.chunks)
	return s.frame(dst, frameEnd, total[:], ad[:])
}

func (s *snapSealer) frame(dst []byte, kind byte, pt, ad []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	dst[start] = kind
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(pt)+tagSize))
	nonce := dst[start+5 : start+frameHeader]
	if err := s.kr.nonce(nonce); err != nil {
		return dst[:start], err
	}
	return s.kr.aeads[s.id].Seal(dst, nonce, pt, ad), nil
}

func chunkAD(fileID [fileIDSize]byte, n uint64) [len(adChunk) + fileIDSize + 8]byte {
	var ad [len(adChunk) + fileIDSize + 8]byte
	k := copy(ad[:], adChunk)
	k += copy(ad[k:], fileID[:])
	binary.BigEndian.PutUint64(ad[k:], n)
	return ad
}

func endAD(fileID [fileIDSize]byte, index, term, chunks uint64) [len(adEnd) + fileIDSize + 24]byte {
	var ad [len(adEnd) + fileIDSize + 24]byte
	k := copy(ad[:], adEnd)
	k += copy(ad[k:], fileID[:])
	binary.BigEndian.PutUint64(ad[k:], index)
	binary.BigEndian.PutUint64(ad[k+8:], term)
	binary.BigEndian.PutUint64(ad[k+16:], chunks)
	return ad
}

// sealSnapshot returns data encrypted as the snapshot at index and term.
func (kr *keyring) sealSnapshot(data []byte, index, term uint64) ([]byte, error) {
	s, out := newSnapSealer(kr)
	out = slicesGrow(out, len(data)+(len(data)/ChunkSize+2)*(frameHeader+tagSize)+8)
	out, err := s.write(out, data)
	if err != nil {
		return nil, err
	}
	return s.finish(out, index, term)
}

func slicesGrow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		return nb
	}
	return b
}

// snapKeyID returns the key ID a stored snapshot's data names.
func snapKeyID(data []byte) (KeyID, error) {
	if len(data) < snapHeader || data[0] != snapMagic {
		return KeyID{}, fmt.Errorf("%w: not an encrypted snapshot (%d bytes)", ErrCorrupt, len(data))
	}
	return KeyID(data[1:5]), nil
}

// openSnapshot returns the plaintext of a stored snapshot's data, which
// must have been sealed for index and term.
func (kr *keyring) openSnapshot(data []byte, index, term uint64) ([]byte, KeyID, error) {
	id, err := snapKeyID(data)
	if err != nil {
		return nil, id, fmt.Errorf("snapshot at %d: %w", index, err)
	}
	a, ok := kr.aeads[id]
	if !ok {
		return nil, id, fmt.Errorf("%w: the snapshot at index %d (term %d) is encrypted with key %s, which is not configured", ErrMissingKey, index, term, id)
	}
	bad := func(what string) error {
		return fmt.Errorf("%w: snapshot at index %d (term %d, key %s): %s: damaged, moved from another snapshot, or forged",
			ErrCorrupt, index, term, id, what)
	}
	fileID := [fileIDSize]byte(data[5:snapHeader])
	b := data[snapHeader:]
	out := make([]byte, 0, len(b))
	var chunks uint64
	for {
		if len(b) < frameHeader {
			return nil, id, bad(fmt.Sprintf("frame %d truncated", chunks))
		}
		kind, n := b[0], binary.BigEndian.Uint32(b[1:5])
		if n < tagSize || n > ChunkSize+tagSize || uint64(len(b)-frameHeader) < uint64(n) {
			return nil, id, bad(fmt.Sprintf("frame %d has a bad length %d", chunks, n))
		}
		nonce, sealed := b[5:frameHeader], b[frameHeader:frameHeader+int(n)]
		b = b[frameHeader+int(n):]
		switch kind {
		case frameChunk:
			ad := chunkAD(fileID, chunks)
			var err error
			if out, err = a.Open(out, nonce, sealed, ad[:]); err != nil {
				return nil, id, bad(fmt.Sprintf("chunk %d does not authenticate", chunks))
			}
			chunks++
		case frameEnd:
			ad := endAD(fileID, index, term, chunks)
			pt, err := a.Open(nil, nonce, sealed, ad[:])
			switch {
			case err != nil:
				return nil, id, bad("the end frame does not authenticate")
			case len(pt) != 8 || binary.BigEndian.Uint64(pt) != uint64(len(out)):
				return nil, id, bad("the end frame's length does not match")
			case len(b) != 0:
				return nil, id, bad(fmt.Sprintf("%d bytes after the end frame", len(b)))
			}
			return out, id, nil
		default:
			return nil, id, bad(fmt.Sprintf("frame %d has an unknown kind %d", chunks, kind))
		}
	}
}

// epochSource returns the epoch function of a keyring: the first call runs
// start, which durably records and returns the epoch; later calls return
// it (or its error).
func epochSource(start func() (uint32, error)) func() (uint32, error) {
	var once sync.Once
	var ep uint32
	var err error
	return func() (uint32, error) {
		once.Do(func() { ep, err = start() })
		return ep, err
	}
}
