package kv

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestHashOrderIndependent(t *testing.T) {
	var cmds [][]byte
	for i := 0; i < 200; i++ {
		cmds = append(cmds, cmdSet(fmt.Sprint("key", i), fmt.Sprint("value", i*i), 0, 0))
	}
	a := New(Config{})
	for i, c := range cmds {
		mustApply(t, a, uint64(i+1), c)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 5; trial++ {
		b := New(Config{})
		perm := rng.Perm(len(cmds))
		for i, p := range perm {
			mustApply(t, b, uint64(i+1), cmds[p])
		}
		if a.Hash() != b.Hash() {
			t.Fatalf("trial %d: hashes differ for the same state", trial)
		}
	}
	checkInvariants(t, a)
}

func TestHashTracksChanges(t *testing.T) {
	s := New(Config{})
	if s.Hash() != 0 {
		t.Fatalf("empty store hash %#x", s.Hash())
	}
	mustApply(t, s, 1, cmdSet("k", "v", 0, 0))
	h1 := s.Hash()
	if h1 == 0 {
		t.Fatal("hash unchanged by a Set")
	}
	mustApply(t, s, 2, cmdSet("k", "w", 0, 0))
	if s.Hash() == h1 {
		t.Fatal("hash unchanged by an overwrite")
	}
	mustApply(t, s, 3, cmdSet("k", "v", 0, 0))
	if s.Hash() != h1 {
		t.Fatal("hash differs after writing back the same value")
	}
	mustApply(t, s, 4, cmdGet("k", 0, 0))
	mustApply(t, s, 5, cmdCAS("k", "x", "y", 0, 0))
	if s.Hash() != h1 {
		t.Fatal("hash changed by a read or a failed CAS")
	}
	mustApply(t, s, 6, cmdDel("k", 0, 0))
	if s.Hash() != 0 {
		t.Fatalf("hash after deleting everything = %#x, want 0", s.Hash())
	}
	// Sessions are part of the hashed state.
	mustApply(t, s, 7, cmdGet("k", 1, 1))
	if s.Hash() == 0 {
		t.Fatal("hash unchanged by a new session")
	}
	checkInvariants(t, s)
}

func TestHashSeparatesFields(t *testing.T) {
	pairs := [][2][2]string{
		{{"ab", "c"}, {"a", "bc"}},
		{{"", "x"}, {"x", ""}},
		{{"k", "12345678"}, {"k", "123456789"}},
		{{"k", "\x00"}, {"k", ""}},
	}
	for _, p := range pairs {
		h1 := dataHash([]byte(p[0][0]), []byte(p[0][1]))
		h2 := dataHash([]byte(p[1][0]), []byte(p[1][1]))
		if h1 == h2 {
			t.Errorf("%q and %q hash equal", p[0], p[1])
		}
	}
	base := session{id: 1, lastSeq: 2, index: 3, result: Result{Value: []byte("v"), OK: true}}
	variants := []session{
		{id: 2, lastSeq: 2, index: 3, result: Result{Value: []byte("v"), OK: true}},
		{id: 1, lastSeq: 3, index: 3, result: Result{Value: []byte("v"), OK: true}},
		{id: 1, lastSeq: 2, index: 4, result: Result{Value: []byte("v"), OK: true}},
		{id: 1, lastSeq: 2, index: 3, result: Result{Value: []byte("w"), OK: true}},
		{id: 1, lastSeq: 2, index: 3, result: Result{Value: []byte("v"), OK: true, Found: true}},
	}
	for i := range variants {
		if sessionHash(&variants[i]) == sessionHash(&base) {
			t.Errorf("session variant %d hashes like the base", i)
		}
	}
}

func TestHashPreservedByRestore(t *testing.T) {
	s := buildWithSessions(t)
	r := New(Config{})
	if err := r.Restore(mustSnapshot(t, s)); err != nil {
		t.Fatal(err)
	}
	if r.Hash() != s.Hash() {
		t.Fatal("Restore changed the hash")
	}
}
