package wal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// FuzzDecodeRecord feeds arbitrary bytes to the record reader and the
// payload decoders: they must never panic, and a record they accept must
// re-encode to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	add := func(t recType, p []byte) {
		b, start := beginRecord(nil)
		b = append(b, p...)
		b, _ = endRecord(b, start, t, 0, 0)
		f.Add(b)
	}
	add(recEntries, appendEntries(nil, storagetest.NamedEntries(1, 3, 2)))
	add(recHardState, appendHS(nil, core.HardState{Term: 3, Vote: 1, Commit: 2}))
	add(recTruncate, []byte{5})
	add(recSeal, appendSeal(nil, 2, 0xdeadbeef))
	sr, _ := appendSnapRec(nil, snapLocal, 3, &refFixture)
	add(recSnapshot, sr)
	st, _ := appendState(nil, &openState{hs: core.HardState{Term: 1}, snap: &refFixture, holeFirst: 2, next: 9, lastTerm: 1, termKnown: true})
	add(recState, st)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if n := entryCount(data); n < 0 || n > len(data)/3 {
			t.Fatalf("entryCount of %d bytes = %d", len(data), n)
		}
		r, kind, end, _ := readRecord(data, 0, 0)
		if kind != badNone {
			standaloneValid(data, 0)
			for _, typ := range []recType{recState, recEntries, recHardState, recSnapshot, recTruncate, recSeal, 0, 99} {
				_ = decodePayload(typ, data)
			}
			return
		}
		if end > len(data) || end != r.size {
			t.Fatalf("record end %d of %d bytes", end, len(data))
		}
		if err := decodePayload(r.typ, r.payload); err != nil {
			return
		}
		b, start := beginRecord(nil)
		b = append(b, r.payload...)
		b, _ = endRecord(b, start, r.typ, r.batchStart, 0)
		if !bytes.Equal(b, data[:end]) {
			t.Fatalf("accepted record does not re-encode to its bytes")
		}
		if r.typ == recEntries {
			es, _ := decodeEntries(r.payload)
			if !bytes.Equal(appendEntries(nil, es), r.payload) {
				t.Fatalf("entries payload does not re-encode")
			}
		}
	})
}

// FuzzRecover opens a directory built from a valid store with fuzz-chosen
// byte changes (offset, xor mask, truncation of the last segment): Open
// must never panic or hang, and must either refuse with an error or give a
// store whose Load succeeds with a consistent state (contiguous log after
// the snapshot, hard state backed by it).
func FuzzRecover(f *testing.F) {
	base := f.TempDir()
	s, err := Open(rotOpts(base))
	if err != nil {
		f.Fatal(err)
	}
	for i := uint64(0); i < 12; i++ {
		done := make(chan error, 1)
		s.Save(&node.Update{Entries: storagetest.NamedEntries(i*5+1, i*5+5, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i * 5}}, func(err error) { done <- err })
		if err := <-done; err != nil {
			f.Fatal(err)
		}
	}
	done := make(chan error, 1)
	s.Save(&node.Update{LocalSnapshot: storagetest.SnapshotWith(20, 1, "twenty"), CompactTo: 15}, func(err error) { done <- err })
	if err := <-done; err != nil {
		f.Fatal(err)
	}
	s.Close()
	des, _ := os.ReadDir(base)
	files := map[string][]byte{}
	var names []string
	for _, de := range des {
		b, _ := os.ReadFile(filepath.Join(base, de.Name()))
		files[de.Name()] = b
		names = append(names, de.Name())
	}
	f.Add(uint8(0), uint32(100), uint8(1), uint32(0))
	f.Add(uint8(1), uint32(300), uint8(0x80), uint32(0))
	f.Add(uint8(0), uint32(0), uint8(0), uint32(1000))
	f.Fuzz(func(t *testing.T, which uint8, off uint32, mask uint8, cut uint32) {
		dir := t.TempDir()
		name := names[int(which)%len(names)]
		for nm, data := range files {
			c := data
			if nm == name {
				c = append([]byte(nil), data...)
				if len(c) > 0 {
					c[int(off)%len(c)] ^= mask
				}
				if cut > 0 && int(cut) < len(c) {
					c = c[:len(c)-int(cut)]
				}
			}
			if err := os.WriteFile(filepath.Join(dir, nm), c, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(rotOpts(dir))
		if err != nil {
			return
		}
		defer s.Close()
		p, err := s.Load()
		if err != nil {
			t.Fatalf("Open succeeded, Load failed: %v", err)
		}
		next := uint64(1)
		if p.Snapshot != nil {
			next = p.Snapshot.Meta.Index + 1
		}
		for i, e := range p.Entries {
			if i > 0 && e.Index != p.Entries[i-1].Index+1 {
				t.Fatalf("log not contiguous at %d", e.Index)
			}
		}
		if n := len(p.Entries); n > 0 {
			if p.Entries[0].Index > next {
				t.Fatalf("log starts at %d after snapshot ending at %d", p.Entries[0].Index, next-1)
			}
			next = max(next, p.Entries[n-1].Index+1)
		}
		if p.HardState.Commit >= next {
			t.Fatalf("commit %d beyond the log (next %d)", p.HardState.Commit, next)
		}
	})
}
