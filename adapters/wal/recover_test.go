package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// writeRaw appends records to the active segment without any check, as a
// buggy or malicious writer would.
func (s *Storage) writeRaw(recs []rec) error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	act := s.segs[len(s.segs)-1]
	chain := act.chain
	s.buf = s.buf[:0]
	for _, rc := range recs {
		var start int
		s.buf, start = beginRecord(s.buf)
		s.buf = append(s.buf, rc.p...)
		s.buf, chain = endRecord(s.buf, start, rc.t, uint32(act.used), chain)
	}
	return s.flush(act, chain, s.st)
}

// fill writes entries 1..n (term 1, commit n) and returns what was stored.
func fill(t *testing.T, o Options, n uint64) core.Persisted {
	t.Helper()
	s := openT(t, o)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(1, n/2, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: n / 2}})
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(n/2+1, n, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: n}})
	p := storagetest.MustLoad(t, s)
	storagetest.MustClose(t, s)
	return p
}

// lastSeg returns the path of the last segment and the end of its records.
func lastSeg(t *testing.T, o Options) (string, int64) {
	t.Helper()
	s := openT(t, o)
	defer storagetest.MustClose(t, s)
	g := s.segs[len(s.segs)-1]
	return filepath.Join(o.Dir, g.name), g.used
}

// recordOffsets returns the offsets of the records of a segment file.
func recordOffsets(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, chain, err := decodeHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for off := headerSize; ; {
		r, kind, end, _ := readRecord(data, off, chain)
		if kind != badNone {
			return offs
		}
		offs = append(offs, off)
		off, chain = end, r.chain
	}
}

func editFile(t *testing.T, path string, edit func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o640); err != nil {
		t.Fatal(err)
	}
}

func wantCorrupt(t *testing.T, err error, subs ...string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v does not wrap ErrCorrupt", err)
	}
	if !contains(err, subs...) {
		t.Fatalf("error %q does not name %q", err, subs)
	}
	t.Logf("refused: %v", err)
}

func reopenLoad(t *testing.T, o Options) core.Persisted {
	t.Helper()
	s := openT(t, o)
	defer storagetest.MustClose(t, s)
	return storagetest.MustLoad(t, s)
}

// Rule: a bad record at the very end of the last segment that runs into
// never-written sectors is a torn write: cut off with a WARN naming the file
// and offset, and everything acknowledged before it is kept.
func TestRecoverTornWrite(t *testing.T) {
	big := func(i uint64) []core.Entry {
		e := storagetest.NamedEntries(i, i, 1)
		e[0].Data = []byte(strings.Repeat("x", 3000))
		return e
	}
	for _, tc := range []struct {
		name string
		tear func(rec []byte) []byte // what of the unacknowledged record reached the disk
	}{
		{"first sector only", func(r []byte) []byte { clear(r[sectorSize:]); return r }},
		{"first sector lost", func(r []byte) []byte { clear(r[:sectorSize]); return r }},
		{"whole record, a middle sector lost", func(r []byte) []byte { return r }},
		{"frame only", func(r []byte) []byte { clear(r[frameSize:]); return r }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOpts(dir)
			want := fill(t, o, 10)
			path, used := lastSeg(t, o)
			// The record the next Save would have written.
			b, start := beginRecord(nil)
			b = appendEntries(b, big(11))
			b, _ = endRecord(b, start, recEntries, uint32(used), 0)
			torn := tc.tear(b)
			editFile(t, path, func(d []byte) []byte { copy(d[used:], torn); return d })
			if tc.name == "whole record, a middle sector lost" {
				sec := (int(used)/sectorSize + 2) * sectorSize
				editFile(t, path, func(d []byte) []byte { clear(d[sec : sec+sectorSize]); return d })
			}
			var logs logBuffer
			o.Logger = logs.logger()
			if d := storagetest.DiffPersisted(reopenLoad(t, o), want); d != "" {
				t.Fatal(d)
			}
			if !strings.Contains(logs.String(), "torn write") || !strings.Contains(logs.String(), path) {
				t.Fatalf("no WARN naming %s: %s", path, logs.String())
			}
			// The tail was zeroed: the store appends after it and reopens.
			s := openT(t, testOpts(dir))
			storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(11, 12, 1)})
			storagetest.MustClose(t, s)
			if p := reopenLoad(t, testOpts(dir)); len(p.Entries) != 12 {
				t.Fatalf("after the cut: %s", storagetest.Span(p.Entries))
			}
		})
	}
}

// Rule: a flipped byte in a complete record is not a torn write, even at the
// very end; nor is a bad record followed by a valid one.
func TestRecoverFlippedRecord(t *testing.T) {
	for _, which := range []string{"last", "first", "middle"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			o := testOpts(dir)
			fill(t, o, 10)
			path, _ := lastSeg(t, o)
			offs := recordOffsets(t, path)
			off := map[string]int{"last": offs[len(offs)-1], "first": offs[0], "middle": offs[len(offs)/2]}[which]
			editFile(t, path, func(d []byte) []byte { d[off+frameSize+2] ^= 0x40; return d })
			_, err := Open(o)
			wantCorrupt(t, err, path, "offset")
		})
	}
	t.Run("length", func(t *testing.T) {
		dir := t.TempDir()
		o := testOpts(dir)
		fill(t, o, 10)
		path, _ := lastSeg(t, o)
		offs := recordOffsets(t, path)
		off := offs[len(offs)-1]
		editFile(t, path, func(d []byte) []byte { d[off+1] ^= 0x01; return d })
		_, err := Open(o)
		wantCorrupt(t, err, path, "frame check")
	})
}

// Rule: indexes that leave a gap, overlap or go back without a truncation
// record, terms that decrease, and a hard state the log cannot back are
// refused.
func TestRecoverInconsistentRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		recs []rec
		want string
	}{
		{"gap", []rec{{recEntries, appendEntries(nil, storagetest.NamedEntries(12, 12, 1))}}, "next index is 11"},
		{"overlap", []rec{{recEntries, appendEntries(nil, storagetest.NamedEntries(9, 12, 1))}}, "next index is 11"},
		{"term regression", []rec{{recEntries, appendEntries(nil, storagetest.NamedEntries(11, 11, 0))}}, "term 0 below"},
		{"commit beyond the log", []rec{{recHardState, appendHS(nil, core.HardState{Term: 1, Commit: 11})}}, "commit index 11"},
		{"term below the log's", []rec{
			{recEntries, appendEntries(nil, storagetest.NamedEntries(11, 11, 3))},
			{recHardState, appendHS(nil, core.HardState{Term: 2, Commit: 11})},
		}, "term 2 is below"},
		{"truncation beyond the log", []rec{{recTruncate, []byte{20}}}, "truncation at 20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOpts(dir)
			fill(t, o, 10)
			s := openT(t, o)
			if err := s.writeRaw(tc.recs); err != nil {
				t.Fatal(err)
			}
			storagetest.MustClose(t, s)
			_, err := Open(o)
			wantCorrupt(t, err, dir, tc.want)
		})
	}
}

// rotated writes enough for several segments and returns the model.
func rotated(t *testing.T, o Options) core.Persisted {
	t.Helper()
	s := openT(t, o)
	for i := uint64(0); i < 150; i++ {
		storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(i*10+1, i*10+10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 10}})
	}
	p := storagetest.MustLoad(t, s)
	if s.Stats().Rotations < 3 {
		t.Fatalf("%d rotations", s.Stats().Rotations)
	}
	storagetest.MustClose(t, s)
	return p
}

// Rule: a missing segment, first, middle or last, and a bad segment header
// are refused; so is a snapshot file that does not match its reference.
func TestRecoverMissingSegments(t *testing.T) {
	for _, which := range []string{"first", "middle", "last"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			o := rotOpts(dir)
			rotated(t, o)
			segs := listDir(t, dir, segSuffix)
			victim := map[string]string{"first": segs[0], "middle": segs[len(segs)/2], "last": segs[len(segs)-1]}[which]
			if err := os.Remove(filepath.Join(dir, victim)); err != nil {
				t.Fatal(err)
			}
			_, err := Open(o)
			wantCorrupt(t, err, "missing")
		})
	}
	t.Run("header", func(t *testing.T) {
		dir := t.TempDir()
		o := rotOpts(dir)
		rotated(t, o)
		segs := listDir(t, dir, segSuffix)
		path := filepath.Join(dir, segs[1])
		editFile(t, path, func(d []byte) []byte { d[40] ^= 1; return d })
		_, err := Open(o)
		wantCorrupt(t, err, path, "bad segment header")
	})
	t.Run("segment of another history", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		rotated(t, rotOpts(dir))
		s := openT(t, rotOpts(other))
		storagetest.MustSave(t, s, &node.Update{HardState: core.HardState{Term: 5, Vote: 2}})
		storagetest.MustClose(t, s)
		rotated(t, rotOpts(other)) // same IDs and entries, another chain
		name := listDir(t, dir, segSuffix)[2]
		b, err := os.ReadFile(filepath.Join(other, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err = Open(rotOpts(dir))
		wantCorrupt(t, err, name)
	})
	t.Run("snapshot file", func(t *testing.T) {
		dir := t.TempDir()
		o := testOpts(dir)
		fill(t, o, 10)
		s := openT(t, o)
		storagetest.MustSave(t, s, &node.Update{LocalSnapshot: storagetest.SnapshotWith(8, 1, "eight"), CompactTo: 8})
		storagetest.MustClose(t, s)
		path := filepath.Join(dir, "snap-8-1.snap")
		editFile(t, path, func(d []byte) []byte { d[37] ^= 1; return d })
		_, err := Open(o)
		wantCorrupt(t, err, path)
	})
}

// Rule: recovery removes only what it proved redundant: left-over
// temporary files, and the last segment of a rotation interrupted before
// the previous one's seal was durable (it holds only its state record).
func TestRecoverInterruptedRotation(t *testing.T) {
	for _, seal := range []string{"absent"} {
		t.Run(seal, func(t *testing.T) {
			dir := t.TempDir()
			o := testOpts(dir)
			o.SegmentSize = minSegmentSize
			s := openT(t, o)
			// Fill until a rotation leaves the new segment empty.
			var i uint64
			for s.Stats().Rotations == 0 {
				i++
				storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(i, i, 1), HardState: core.HardState{Term: 1, Commit: i}})
			}
			// The entry that caused the rotation went into the new segment;
			// rebuild that state: drop it by reopening an earlier copy.
			storagetest.MustClose(t, s)
			want := func() core.Persisted {
				s := openT(t, o)
				defer storagetest.MustClose(t, s)
				return storagetest.MustLoad(t, s)
			}()
			segs := listDir(t, dir, segSuffix)
			prev := filepath.Join(dir, segs[len(segs)-2])
			offs := recordOffsets(t, prev)
			sealOff := offs[len(offs)-1]
			last := filepath.Join(dir, segs[len(segs)-1])
			// Make the last segment hold only its state record.
			lo := recordOffsets(t, last)
			if len(lo) > 1 {
				editFile(t, last, func(d []byte) []byte { clear(d[lo[1]:]); return d })
				want.Entries = want.Entries[:len(want.Entries)-1]
				want.HardState.Commit--
			}
			editFile(t, prev, func(d []byte) []byte {
				if seal == "absent" {
					clear(d[sealOff:])
				} else {
					clear(d[sealOff+frameSize:])
				}
				return d
			})
			var logs logBuffer
			o.Logger = logs.logger()
			if d := storagetest.DiffPersisted(reopenLoad(t, o), want); d != "" {
				t.Fatal(d)
			}
			if _, err := os.Stat(last); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("segment of the interrupted rotation still there: %v", err)
			}
			if !strings.Contains(logs.String(), "interrupted") {
				t.Fatalf("no warning: %s", logs.String())
			}
		})
	}
	t.Run("not only a state record", func(t *testing.T) {
		dir := t.TempDir()
		o := rotOpts(dir)
		rotated(t, o)
		segs := listDir(t, dir, segSuffix)
		prev := filepath.Join(dir, segs[len(segs)-2])
		offs := recordOffsets(t, prev)
		editFile(t, prev, func(d []byte) []byte { clear(d[offs[len(offs)-1]:]); return d })
		_, err := Open(o)
		wantCorrupt(t, err, prev, "not sealed")
	})
	t.Run("temporary files", func(t *testing.T) {
		dir := t.TempDir()
		o := testOpts(dir)
		want := fill(t, o, 10)
		for _, name := range []string{segName(9) + tmpSuffix, "snap-3-1.snap.tmp"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o640); err != nil {
				t.Fatal(err)
			}
		}
		if d := storagetest.DiffPersisted(reopenLoad(t, o), want); d != "" {
			t.Fatal(d)
		}
		if n := len(listDir(t, dir, tmpSuffix)); n != 0 {
			t.Fatalf("%d temporary files left", n)
		}
	})
}

func rotOpts(dir string) Options {
	o := testOpts(dir)
	o.SegmentSize = minSegmentSize
	return o
}

// Rule: a write's records are applied only with its write-end record. A
// power cut that tears the last write at a record boundary leaves zeros
// that read like the end of the log; without the end record none of that
// write applies. Before format version 2 the truncation record of a
// conflicting suffix applied alone, removing acknowledged entries while
// the entries replacing them and the hard state were lost.
func TestRecoverWriteWithoutItsEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		keep int // records of the last write that reached the disk
	}{
		{"truncation only", 1},
		{"truncation and entries", 2},
		{"everything but the write end", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOpts(dir)
			want := fill(t, o, 10)
			path, used := lastSeg(t, o)
			s := openT(t, o)
			// A new leader's entries overwrite 8..10: truncation record,
			// entries, hard state, write end, in one write.
			storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(8, 9, 2),
				HardState: core.HardState{Term: 2, Vote: 2, Commit: 7}})
			storagetest.MustClose(t, s)
			var last []int
			for _, off := range recordOffsets(t, path) {
				if off >= int(used) {
					last = append(last, off)
				}
			}
			if len(last) < 4 {
				t.Fatalf("the conflicting write has %d records, want truncation, entries, hard state, write end", len(last))
			}
			keep := tc.keep
			if keep < 0 {
				keep = len(last) - 1
			}
			end := last[len(last)-1] + writeEndSize
			editFile(t, path, func(d []byte) []byte { clear(d[last[keep]:end]); return d })
			var logs logBuffer
			o.Logger = logs.logger()
			if d := storagetest.DiffPersisted(reopenLoad(t, o), want); d != "" {
				t.Fatalf("a write without its end applied (in part): %s", d)
			}
			if !strings.Contains(logs.String(), "has no end") {
				t.Fatalf("no WARN of the torn write: %s", logs.String())
			}
			// The tail was zeroed: the store appends after it and reopens.
			s = openT(t, testOpts(dir))
			storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(11, 12, 1)})
			storagetest.MustClose(t, s)
			if p := reopenLoad(t, testOpts(dir)); len(p.Entries) != 12 {
				t.Fatalf("after the cut: %s", storagetest.Span(p.Entries))
			}
		})
	}
}

// downgrade rewrites a segment file as format version 1 wrote it: the
// same records, re-chained, without write-end records.
func downgrade(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, chain, err := decodeHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	h.version = 1
	out, nc := h.encode()
	for off := headerSize; ; {
		r, kind, end, _ := readRecord(data, off, chain)
		if kind != badNone {
			break
		}
		if r.typ != recWriteEnd {
			var start int
			out, start = beginRecord(out)
			out = append(out, r.payload...)
			out, nc = endRecord(out, start, r.typ, r.batchStart, nc)
		}
		off, chain = end, r.chain
	}
	if len(out) > len(data) {
		t.Fatal("the downgraded segment is longer")
	}
	copy(data, out)
	clear(data[len(out):])
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// A store written by format version 1 (no write-end records) opens, and
// this version goes on writing to its last segment.
func TestOpenFormatVersion1(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(dir)
	want := fill(t, o, 10)
	path, _ := lastSeg(t, o)
	downgrade(t, path)
	if d := storagetest.DiffPersisted(reopenLoad(t, o), want); d != "" {
		t.Fatal(d)
	}
	s := openT(t, o)
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.NamedEntries(11, 12, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 12}})
	storagetest.MustClose(t, s)
	if p := reopenLoad(t, o); len(p.Entries) != 12 || p.HardState.Commit != 12 {
		t.Fatalf("after writing to a version 1 segment: %s, %+v", storagetest.Span(p.Entries), p.HardState)
	}
}
