package kvlog

import (
	"testing"

	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/core"
)

// TestMetaRoundTrip: the meta record decodes to what was encoded, and any
// flipped byte fails its checksum.
func TestMetaRoundTrip(t *testing.T) {
	for _, st := range []state{
		{},
		{seq: 7, hasEntries: true, first: 3, last: 9, lastTerm: 2, hs: core.HardState{Term: 2, Vote: 1, Commit: 8}},
		{seq: 9, hs: core.HardState{Term: 3, Vote: 2, Commit: 20}, hasSnap: true,
			ref: snapfile.Ref{Meta: core.SnapshotMeta{Index: 20, Term: 3, Config: core.ConfState{Voters: []uint64{1, 2, 3}}}, File: "snap-20-3.snap", CRC: 5, Size: 11}},
	} {
		v, err := encodeMeta(&st)
		if err != nil {
			t.Fatal(err)
		}
		body, err := unseal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMeta(body)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != st.String() || got.ref.File != st.ref.File || !got.ref.Equal(&st.ref) {
			t.Fatalf("decoded %s (%+v), want %s (%+v)", got.String(), got.ref, st.String(), st.ref)
		}
		for i := range v {
			w := append([]byte(nil), v...)
			w[i] ^= 0x10
			if _, err := unseal(w); err == nil {
				t.Fatalf("byte %d flipped: checksum still matches", i)
			}
		}
	}
}

// TestCollectGarbage: garbage spans are trimmed by the live log, deleted
// at most garbagePerCommit keys per commit, and never inside the log.
func TestCollectGarbage(t *testing.T) {
	s := &Storage{garbage: []span{{1, 600}, {700, 710}}}
	st := &state{hasEntries: true, first: 590, last: 705}
	var deleted []uint64
	for range 3 {
		w := &Write{}
		s.collectGarbage(w, st)
		if len(w.Deletes) > garbagePerCommit {
			t.Fatalf("%d deletes in one commit", len(w.Deletes))
		}
		for _, k := range w.Deletes {
			deleted = append(deleted, uint64(k[8])|uint64(k[7])<<8)
		}
	}
	if len(s.garbage) != 0 {
		t.Fatalf("garbage left: %v", s.garbage)
	}
	want := 589 + 5 // 1..589 and 706..710
	if len(deleted) != want {
		t.Fatalf("%d keys deleted, want %d", len(deleted), want)
	}
	for _, i := range deleted {
		if i >= st.first && i <= st.last {
			t.Fatalf("deleted live entry %d", i)
		}
	}
}
