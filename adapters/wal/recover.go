package wal

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
)

// segFile is a segment file to read: the whole file (limit < 0, at Open) or
// its first limit bytes (Load, which reads what the committer wrote).
type segFile struct {
	seq   uint64
	name  string
	limit int64
}

// repair is what Open must change on disk after a successful replay.
type repair struct {
	cutSeg           string // segment whose torn tail is zeroed
	cutFrom, cutTo   int64
	dropSeg          string // a segment of an interrupted rotation, removed
	cutWhy, dropWhy  string
	lastSeg          *segment
	unreferencedSnap []string
}

// replayed is the outcome of reading the log.
type replayed struct {
	st      logState
	entries []core.Entry // when kept
	// tail counts the entries at the end of entries read from the segment
	// being scanned: their data aliases its buffer.
	tail int
	// alloc is the capacity entries was allocated with, from the entry
	// counts the segments' records claim.
	alloc  int
	segs   []*segment
	repair repair
}

// scanned is one segment read and applied.
type scanned struct {
	hdr       segHeader
	headerCRC uint32
	data      []byte
	end       int    // end of the valid records (before any seal)
	chain     uint32 // chain value at end
	sealed    bool
	sealSeq   uint64
	sealCRC   uint32
	sealEnd   int
	records   int
	bad       badKind // first bad record at end, if any (badZero: clean end)
	badOff    int     // where that bad record (or the clean end) is
	// incomplete is how many bytes of valid records of a write without
	// its end precede badOff: a torn write, cut off from end.
	incomplete int
	badEnd     int
	badWhy     string
}

// corruptf returns an error wrapping ErrCorrupt naming a file and offset.
func (s *Storage) corruptf(name string, off int64, format string, args ...any) error {
	return fmt.Errorf("wal: %s at offset %d: %w: %s", filepath.Join(s.opts.Dir, name), off, ErrCorrupt, fmt.Sprintf(format, args...))
}

// readLog reads and verifies the segments in order, applying every record
// to a logState (and to a list of entries when keep). At Open (open true)
// the last segment is read whole and its tail classified; Load reads only
// what was written and accepts nothing doubtful.
//
// The segments are read first, so that the entry slice is allocated once,
// of the size their records claim: appending millions of entries to a
// growing slice would copy them over and over. Entry data aliases the
// segment buffers (one allocation per segment).
func (s *Storage) readLog(files []segFile, keep, open bool) (*replayed, error) {
	out := &replayed{}
	datas := make([][]byte, len(files))
	hint := 0
	for i, sf := range files {
		data, err := s.readSeg(sf)
		if err != nil {
			return nil, err
		}
		datas[i] = data
		hint += entryCount(data)
	}
	if keep {
		out.entries = make([]core.Entry, 0, hint)
		out.alloc = hint
	}
	var prev *scanned
	for i, sf := range files {
		data := datas[i]
		datas[i] = nil // collectable once no entry aliases it
		out.tail = 0
		sc, err := s.scan(sf, data, i == 0, prev, out, keep)
		if err != nil {
			return nil, err
		}
		if keep && sc.end < len(data)/2 {
			// Mostly preallocated zeros (the active segment): copy the
			// entries out rather than keep the whole buffer alive.
			compactTail(out)
		}
		last := i == len(files)-1
		seg := &segment{seq: sf.seq, name: sf.name, size: int64(len(data)), used: int64(sc.end), chain: sc.chain, headerCRC: sc.headerCRC}
		if sc.sealed {
			seg.used = int64(sc.sealEnd)
			if last {
				return nil, s.corruptf(sf.name, int64(sc.end), "sealed, naming segment %s, which is missing", segName(sc.sealSeq))
			}
			if files[i+1].seq != sc.sealSeq {
				return nil, s.corruptf(sf.name, int64(sc.end), "seal names segment %d, but the next file is segment %d", sc.sealSeq, files[i+1].seq)
			}
			out.segs = append(out.segs, seg)
			prev = sc
			continue
		}
		if !open {
			if sc.bad != badZero || sc.end != len(data) || !last {
				return nil, s.corruptf(sf.name, int64(sc.end), "%s", orWhy(sc.badWhy, "segment not sealed"))
			}
			out.segs = append(out.segs, seg)
			break
		}
		if !last {
			// Only the segment before the last may lack its seal: a
			// rotation interrupted before the seal was durable, when the
			// last segment holds nothing but its state record.
			if i != len(files)-2 || !s.interruptedRotation(files[i+1], sc) {
				return nil, s.corruptf(sf.name, int64(sc.end), "segment not sealed (%s) but followed by %s", orWhy(sc.badWhy, "no seal"), files[i+1].name)
			}
			out.repair.dropSeg = files[i+1].name
			out.repair.dropWhy = "rotation interrupted before the seal of " + sf.name + " was durable"
		}
		cutTo, err := s.classifyTail(sf.name, data, sc)
		if err != nil {
			return nil, err
		}
		if cutTo > sc.end {
			out.repair.cutSeg, out.repair.cutFrom, out.repair.cutTo = sf.name, int64(sc.end), int64(cutTo)
			out.repair.cutWhy = orWhy(sc.badWhy, "junk after the end of the log")
		}
		out.segs = append(out.segs, seg)
		out.repair.lastSeg = seg
		break
	}
	if err := out.st.check(); err != nil {
		last := files[len(files)-1].name
		return nil, fmt.Errorf("wal: %s: %w: %v", filepath.Join(s.opts.Dir, last), ErrCorrupt, err)
	}
	if len(out.entries) < out.alloc/2 {
		// Most of the allocation went to entries compacted or truncated
		// away during the replay (or claimed by records it never reached).
		out.entries = slices.Clone(out.entries)
	}
	return out, nil
}

func orWhy(why, dflt string) string {
	if why == "" {
		return dflt
	}
	return why
}

// hugeBuffer is the size from which a segment's read buffer is advised to
// use huge pages.
const hugeBuffer = 8 << 20

func (s *Storage) readSeg(sf segFile) ([]byte, error) {
	path := filepath.Join(s.opts.Dir, sf.name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("wal: read segment: %w", err)
	}
	defer f.Close()
	size := sf.limit
	if size < 0 {
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("wal: read segment: %w", err)
		}
		size = fi.Size()
	}
	data := make([]byte, size)
	if size >= hugeBuffer {
		adviseHuge(data)
	}
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	return data, nil
}

// scan checks a segment's header and link to the previous segment, and
// reads and applies its records up to the first bad one or its seal.
func (s *Storage) scan(sf segFile, data []byte, first bool, prev *scanned, out *replayed, keep bool) (*scanned, error) {
	sc := &scanned{data: data}
	h, hc, err := decodeHeader(data)
	if err != nil {
		return nil, s.corruptf(sf.name, 0, "bad segment header: %v", err)
	}
	sc.hdr, sc.headerCRC = h, hc
	switch {
	case h.cluster != s.opts.ClusterID || h.node != s.opts.NodeID:
		return nil, s.corruptf(sf.name, 0, "foreign segment: cluster %d node %d, this store is cluster %d node %d",
			h.cluster, h.node, s.opts.ClusterID, s.opts.NodeID)
	case h.seq != sf.seq:
		return nil, s.corruptf(sf.name, 0, "file name says segment %d, header says %d", sf.seq, h.seq)
	}
	if prev != nil {
		switch {
		case prev.sealCRC != hc:
			return nil, s.corruptf(sf.name, 0, "header checksum %08x, the previous segment's seal names %08x", hc, prev.sealCRC)
		case h.prevChain != prev.chain:
			return nil, s.corruptf(sf.name, 0, "continues chain %08x, the previous segment ends at %08x", h.prevChain, prev.chain)
		}
	}
	// From format version 2 every write ends with a write-end record; the
	// records of a write wait in pending until it comes, and are applied
	// only then. A write without its end is a write a power cut tore (at a
	// record boundary its missing part reads as zeros, like the end of the
	// log): none of it was acknowledged, and none of it is applied.
	// Segment state and seal records are writes of their own, whole when
	// they are valid.
	whole := h.version < 2
	type pendingRecord struct {
		off int
		r   rawRecord
	}
	var pending []pendingRecord
	pendOff, pendChain := 0, uint32(0) // where the pending write starts
	off, chain := headerSize, hc
	for {
		r, kind, end, why := readRecord(data, off, chain)
		if kind != badNone {
			sc.end, sc.chain, sc.bad, sc.badEnd, sc.badWhy = off, chain, kind, end, why
			if kind == badZero {
				sc.badWhy = ""
			}
			break
		}
		switch {
		case r.typ == recWriteEnd && whole:
			// A version 1 segment this version went on writing: its
			// records stand alone, as they always did.
		case r.typ == recWriteEnd:
			if len(pending) == 0 || int(r.batchStart) != pendOff {
				return nil, s.corruptf(sf.name, int64(off), "write end of the write at offset %d, with no record of that write before it", r.batchStart)
			}
			for _, p := range pending {
				if err := s.apply(sf, h, p.off, sc.records, p.r, first, out, keep); err != nil {
					return nil, err
				}
				sc.records++
			}
			pending = pending[:0]
		case whole || r.typ == recState || r.typ == recSeal:
			if len(pending) > 0 {
				return nil, s.corruptf(sf.name, int64(off), "%s record after the write at offset %d, which has no end", r.typ, pendOff)
			}
			if err := s.apply(sf, h, off, sc.records, r, first, out, keep); err != nil {
				return nil, err
			}
			sc.records++
		default:
			if len(pending) == 0 {
				pendOff, pendChain = off, chain
				if int(r.batchStart) != off {
					return nil, s.corruptf(sf.name, int64(off), "%s record of the write at offset %d starts a write", r.typ, r.batchStart)
				}
			} else if int(r.batchStart) != pendOff {
				return nil, s.corruptf(sf.name, int64(off), "%s record of the write at offset %d within the write at offset %d, which has no end",
					r.typ, r.batchStart, pendOff)
			}
			pending = append(pending, pendingRecord{off, r})
		}
		if r.typ == recSeal {
			sc.end, sc.chain, sc.sealed, sc.sealEnd = off, chain, true, end
			sc.sealSeq, sc.sealCRC, _ = decodeSeal(r.payload)
			break
		}
		off, chain = end, r.chain
	}
	if len(pending) > 0 {
		// The log ends within a write: the torn write's records are cut
		// off with the tail (classifyTail), from where the write starts.
		// The damage itself, if any, is judged where it is.
		sc.incomplete = sc.end - pendOff
		sc.badOff = sc.end
		sc.end, sc.chain = pendOff, pendChain
		if sc.bad == badZero && sc.badWhy == "" {
			sc.badWhy = fmt.Sprintf("the write at offset %d has no end (torn)", pendOff)
		}
	} else {
		sc.badOff = sc.end
	}
	if sc.records == 0 {
		return nil, s.corruptf(sf.name, int64(headerSize), "no state record after the header (%s)", orWhy(sc.badWhy, "empty segment"))
	}
	return sc, nil
}

// apply applies one record read at off of segment sf.
func (s *Storage) apply(sf segFile, h segHeader, off int, k int, r rawRecord, first bool, out *replayed, keep bool) error {
	bad := func(format string, args ...any) error {
		return s.corruptf(sf.name, int64(off), "%s record: %s", r.typ, fmt.Sprintf(format, args...))
	}
	var ents []core.Entry
	if r.typ == recEntries {
		// Decoded once, straight into the replay's entry slice.
		start := len(out.entries)
		var err error
		out.entries, err = appendDecodedEntries(out.entries, r.payload)
		if err != nil {
			clear(out.entries[start:])
			out.entries = out.entries[:start]
			return bad("%v", err)
		}
		ents = out.entries[start:]
	} else if err := decodePayload(r.typ, r.payload); err != nil {
		return bad("%v", err)
	}
	if (k == 0) != (r.typ == recState) {
		return bad("a segment starts with its state record, and only there")
	}
	st := &out.st
	switch r.typ {
	case recState:
		o, _ := decodeState(r.payload)
		if o.next != h.first {
			return bad("next index %d, the header says %d", o.next, h.first)
		}
		if first {
			ns, err := fromOpening(&o)
			if err != nil {
				return bad("%v", err)
			}
			*st = ns
			return nil
		}
		if err := st.sameOpening(&o); err != nil {
			return bad("%v", err)
		}
	case recEntries:
		if err := st.appendEntries(sf.seq, ents); err != nil {
			return bad("%v", err)
		}
		if keep {
			out.tail += len(ents)
		} else {
			// Only the state is wanted: the slice is scratch space.
			out.entries = out.entries[:len(out.entries)-len(ents)]
		}
	case recHardState:
		st.hs, _ = decodeHS(r.payload)
	case recSnapshot:
		kind, c, ref, _ := decodeSnapRec(r.payload)
		if kind == snapReplace {
			st.applySnapshot(ref)
			// Reuse the allocation; drop the data references.
			clear(out.entries)
			out.entries, out.tail = out.entries[:0], 0
		} else {
			if c > ref.Meta.Index {
				return bad("compaction to %d beyond the snapshot index %d", c, ref.Meta.Index)
			}
			st.applyLocal(ref, c)
			k := 0
			for k < len(out.entries) && out.entries[k].Index <= c {
				k++
			}
			clear(out.entries[:k]) // the slice's array outlives them
			out.entries = out.entries[k:]
			out.tail = min(out.tail, len(out.entries))
		}
	case recTruncate:
		i, _ := decodeTruncate(r.payload)
		if err := st.truncate(i); err != nil {
			return bad("%v", err)
		}
		k := len(out.entries)
		for k > 0 && out.entries[k-1].Index >= i {
			k--
		}
		out.tail = max(0, out.tail-(len(out.entries)-k))
		clear(out.entries[k:])
		out.entries = out.entries[:k]
	case recSeal:
	}
	return nil
}

// interruptedRotation reports whether next, the last segment, holds only
// the state record of a rotation that prev (not sealed) did not complete.
func (s *Storage) interruptedRotation(next segFile, prev *scanned) bool {
	data, err := s.readSeg(next)
	if err != nil {
		return false
	}
	h, hc, err := decodeHeader(data)
	if err != nil || h.seq != next.seq || h.prevChain != prev.chain || h.cluster != s.opts.ClusterID || h.node != s.opts.NodeID {
		return false
	}
	r, kind, end, _ := readRecord(data, headerSize, hc)
	if kind != badNone || r.typ != recState {
		return false
	}
	for o := end; o+frameSize <= len(data); o += 8 {
		if binary.LittleEndian.Uint64(data[o:]) == 0 {
			continue
		}
		if ok, _ := standaloneValid(data, o); ok {
			return false
		}
	}
	return true
}

// classifyTail decides what follows the valid records of the last segment
// (see the package documentation): it returns the offset up to which the
// tail is to be zeroed (sc.end when nothing is), or an error wrapping
// ErrCorrupt.
func (s *Storage) classifyTail(name string, data []byte, sc *scanned) (int, error) {
	p := sc.end
	if sc.bad == badChain {
		return 0, s.corruptf(name, int64(p), "%s", sc.badWhy)
	}
	lastNonZero := -1
	for o := p; o < len(data); o += 8 {
		if o+8 <= len(data) && binary.LittleEndian.Uint64(data[o:]) == 0 {
			continue
		}
		lastNonZero = min(o+8, len(data)) - 1
		if o == p {
			continue
		}
		if ok, bs := standaloneValid(data, o); ok && int(bs) > p {
			return 0, s.corruptf(name, int64(p), "%s, yet a record written later follows at offset %d",
				orWhy(sc.badWhy, "the log ends"), o)
		}
	}
	if lastNonZero < p {
		return p, nil // clean end
	}
	if sc.bad == badZero {
		return lastNonZero + 1, nil
	}
	// A damaged record at the very end: torn if it runs into a sector
	// that was never written (or past the end of the file). (Valid records
	// of its write may precede it, from p: they go with it.)
	b := sc.badOff
	end := sc.badEnd
	if sc.bad == badFrame {
		end = b + frameSize
	}
	torn := end > len(data)
	for sec := b / sectorSize * sectorSize; !torn && sec < min(end, len(data)); sec += sectorSize {
		lo, hi := max(b, sec), min(end, sec+sectorSize, len(data))
		torn = lo < hi && allZero(data[lo:hi])
	}
	if !torn {
		return 0, s.corruptf(name, int64(b), "%s in a complete record: not a torn write", sc.badWhy)
	}
	return lastNonZero + 1, nil
}

// verifySnapshot reads and checks the snapshot file st refers to.
func (s *Storage) verifySnapshot(st *logState) (*core.Snapshot, error) {
	if st.snap == nil {
		return nil, nil
	}
	data, err := snapfile.Read(s.opts.Dir, st.snap)
	if err != nil {
		return nil, fmt.Errorf("wal: snapshot: %w: %w", ErrCorrupt, err)
	}
	snap := &core.Snapshot{Meta: st.snap.Meta}
	snap.Meta.Config = st.snap.Meta.Config.Clone()
	if len(data) > 0 {
		snap.Data = data
	}
	return snap, nil
}

// compactTail copies the data of the entries read from the last scanned
// segment into one buffer of their size.
func compactTail(out *replayed) {
	es := out.entries[len(out.entries)-out.tail:]
	n := 0
	for i := range es {
		n += len(es[i].Data)
	}
	buf := make([]byte, 0, n)
	for i := range es {
		if es[i].Data != nil {
			start := len(buf)
			buf = append(buf, es[i].Data...)
			es[i].Data = buf[start:len(buf):len(buf)]
		}
	}
}
