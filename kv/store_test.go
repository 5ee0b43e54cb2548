package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSetGetDelete(t *testing.T) {
	s := New(Config{})
	r := mustApply(t, s, 1, cmdGet("a", 0, 0))
	if !resultEqual(r, Result{OK: true}) {
		t.Fatalf("Get absent = %+v", r)
	}
	r = mustApply(t, s, 2, cmdSet("a", "1", 0, 0))
	if !resultEqual(r, Result{OK: true}) {
		t.Fatalf("Set new = %+v", r)
	}
	r = mustApply(t, s, 3, cmdSet("a", "2", 0, 0))
	if !resultEqual(r, Result{Value: []byte("1"), Found: true, OK: true}) {
		t.Fatalf("Set existing = %+v, want previous value", r)
	}
	r = mustApply(t, s, 4, cmdGet("a", 0, 0))
	if !resultEqual(r, Result{Value: []byte("2"), Found: true, OK: true}) {
		t.Fatalf("Get = %+v", r)
	}
	mustApply(t, s, 5, cmdSet("empty", "", 0, 0))
	wantValue(t, s, "empty", "", true)
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
	r = mustApply(t, s, 6, cmdDel("a", 0, 0))
	if !resultEqual(r, Result{Value: []byte("2"), Found: true, OK: true}) {
		t.Fatalf("Delete existing = %+v", r)
	}
	wantValue(t, s, "a", "", false)
	r = mustApply(t, s, 7, cmdDel("a", 0, 0))
	if !resultEqual(r, Result{OK: true}) {
		t.Fatalf("Delete absent = %+v", r)
	}
	if s.Len() != 1 || s.Applied() != 7 {
		t.Fatalf("Len = %d, Applied = %d; want 1, 7", s.Len(), s.Applied())
	}
	checkInvariants(t, s)
}

func TestCAS(t *testing.T) {
	s := New(Config{})
	r := mustApply(t, s, 1, cmdCAS("k", "", "v", 0, 0))
	if !resultEqual(r, Result{}) {
		t.Fatalf("CAS on absent key = %+v, want not OK, not found", r)
	}
	wantValue(t, s, "k", "", false) // CAS on an absent key does not create it
	mustApply(t, s, 2, cmdSet("k", "old", 0, 0))
	r = mustApply(t, s, 3, cmdCAS("k", "wrong", "new", 0, 0))
	if !resultEqual(r, Result{Value: []byte("old"), Found: true}) {
		t.Fatalf("CAS mismatch = %+v, want current value, not OK", r)
	}
	wantValue(t, s, "k", "old", true)
	r = mustApply(t, s, 4, cmdCAS("k", "old", "new", 0, 0))
	if !resultEqual(r, Result{Value: []byte("old"), Found: true, OK: true}) {
		t.Fatalf("CAS match = %+v", r)
	}
	wantValue(t, s, "k", "new", true)
	// An empty Expected matches an empty value, and only an empty one.
	mustApply(t, s, 5, cmdSet("e", "", 0, 0))
	if r := mustApply(t, s, 6, cmdCAS("e", "", "x", 0, 0)); !r.OK {
		t.Fatalf("CAS empty==empty = %+v", r)
	}
	if r := mustApply(t, s, 7, cmdCAS("e", "", "y", 0, 0)); r.OK || string(r.Value) != "x" {
		t.Fatalf("CAS empty vs \"x\" = %+v", r)
	}
	checkInvariants(t, s)
}

// TestCreate: OpCreate sets an absent key and reports success; on a
// present key it changes nothing and returns the current value; a retry in
// the same session is answered from the session (not applied again); a
// Create with an expected value is refused.
func TestCreate(t *testing.T) {
	s := New(Config{})
	create := func(key, value string, client, seq uint64) []byte {
		return EncodeCommand(Command{Op: OpCreate, Key: key, Value: []byte(value), ClientID: client, Seq: seq})
	}
	if r := mustApply(t, s, 1, create("k", "first", 1, 1)); !resultEqual(r, Result{OK: true}) {
		t.Fatalf("create on an absent key = %+v", r)
	}
	wantValue(t, s, "k", "first", true)
	if r := mustApply(t, s, 2, create("k", "second", 2, 1)); !resultEqual(r, Result{Value: []byte("first"), Found: true}) {
		t.Fatalf("create on a present key = %+v", r)
	}
	wantValue(t, s, "k", "first", true)
	if r := mustApply(t, s, 3, create("k", "first", 1, 1)); !r.Deduplicated || !r.OK {
		t.Fatalf("retried create = %+v, want the first answer, deduplicated", r)
	}
	bad := EncodeCommand(Command{Op: OpCreate, Key: "x", Value: []byte("v"), Expected: []byte("e")})
	if r := mustApply(t, s, 4, bad); r.Status != StatusBadCommand {
		t.Fatalf("create with an expected value = %+v", r)
	}
	wantValue(t, s, "x", "", false)
	if OpCreate.String() != "Create" {
		t.Fatalf("OpCreate.String() = %q", OpCreate.String())
	}
	checkInvariants(t, s)
}

func TestApplyBadCommand(t *testing.T) {
	s := New(Config{})
	mustApply(t, s, 1, cmdSet("a", "1", 1, 1))
	before := mustSnapshot(t, s)
	hash := s.Hash()
	bad := [][]byte{
		nil,
		{1},
		{9, 9, 9},
		EncodeCommand(Command{Op: 42, Key: "a", ClientID: 1, Seq: 2}),
		EncodeCommand(Command{Op: OpDelete, Key: "a", Value: []byte("x"), ClientID: 1, Seq: 2}),
		append(cmdDel("a", 1, 2), 0),
	}
	for i, b := range bad {
		idx := uint64(2 + i)
		r := mustApply(t, s, idx, b)
		if !resultEqual(r, Result{Status: StatusBadCommand}) {
			t.Fatalf("bad command %d: %+v", i, r)
		}
		if s.Applied() != idx {
			t.Fatalf("bad command %d: Applied = %d, want %d", i, s.Applied(), idx)
		}
	}
	wantValue(t, s, "a", "1", true)
	if s.Hash() != hash {
		t.Fatal("a bad command changed the hash")
	}
	after := mustSnapshot(t, s)
	// Only the applied index may differ: compare the restored states.
	s1, s2 := New(Config{}), New(Config{})
	if err := s1.Restore(before); err != nil {
		t.Fatal(err)
	}
	if err := s2.Restore(after); err != nil {
		t.Fatal(err)
	}
	if s1.Hash() != s2.Hash() || s1.Sessions() != s2.Sessions() {
		t.Fatal("a bad command changed the state")
	}
	// The session was not advanced: seq 2 still applies.
	if r := mustApply(t, s, 100, cmdDel("a", 1, 2)); r.Deduplicated || !r.Found {
		t.Fatalf("seq 2 after bad commands = %+v", r)
	}
}

func TestApplyDoesNotRetainCommand(t *testing.T) {
	s := New(Config{})
	cmd := cmdSet("key", "value", 3, 1)
	mustApply(t, s, 1, cmd)
	for i := range cmd {
		cmd[i] = 'X'
	}
	wantValue(t, s, "key", "value", true)
	checkInvariants(t, s)
	// The cached result survives too.
	r := mustApply(t, s, 2, cmdSet("key", "value", 3, 1))
	if !r.Deduplicated || r.Found {
		t.Fatalf("retry = %+v", r)
	}
}

func TestQuery(t *testing.T) {
	s := New(Config{})
	mustApply(t, s, 1, cmdSet("k", "v", 1, 1))
	snap := mustSnapshot(t, s)

	v, err := s.Query(cmdGet("k", 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := v.(Result)
	if !ok || !resultEqual(r, Result{Value: []byte("v"), Found: true, OK: true}) {
		t.Fatalf("Query = %#v", v)
	}
	r.Value[0] = 'Z' // the caller owns the value
	wantValue(t, s, "k", "v", true)

	v, err = s.Query(cmdGet("absent", 0, 0))
	if err != nil || !resultEqual(v.(Result), Result{OK: true}) {
		t.Fatalf("Query absent = %#v, %v", v, err)
	}
	// A Query with a session is not tracked.
	if _, err := s.Query(cmdGet("k", 1, 5)); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]byte{cmdSet("k", "x", 0, 0), cmdDel("k", 0, 0), cmdCAS("k", "v", "x", 0, 0)} {
		if _, err := s.Query(c); !errors.Is(err, ErrNotReadOnly) {
			t.Fatalf("Query of a write: %v, want ErrNotReadOnly", err)
		}
	}
	if _, err := s.Query([]byte{1, 2}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("Query of garbage: %v, want ErrInvalidCommand", err)
	}
	if !bytes.Equal(mustSnapshot(t, s), snap) {
		t.Fatal("Query changed the state")
	}
	// The local Get returns a copy as well.
	g, _ := s.Get("k")
	g[0] = 'Z'
	wantValue(t, s, "k", "v", true)
}

func TestExactlyOnceInterleaved(t *testing.T) {
	const a, b = 100, 200
	s := New(Config{})
	first := mustApply(t, s, 1, cmdSet("x", "1", a, 1))
	mustApply(t, s, 2, cmdSet("x", "2", b, 1))
	hash := s.Hash()
	retry := mustApply(t, s, 3, cmdSet("x", "1", a, 1))
	want := first
	want.Deduplicated = true
	if !resultEqual(retry, want) {
		t.Fatalf("retry = %+v, want the first result %+v deduplicated", retry, first)
	}
	wantValue(t, s, "x", "2", true)
	if s.Deduplicated() != 1 {
		t.Fatalf("Deduplicated() = %d, want 1", s.Deduplicated())
	}
	if s.Hash() != hash {
		t.Fatal("a deduplicated retry changed the state hash")
	}
	if seq, idx, ok := s.Session(a); !ok || seq != 1 || idx != 1 {
		t.Fatalf("session of a = %d, %d, %v; want 1, 1 (the retry does not touch it)", seq, idx, ok)
	}
	// The next command of a applies normally.
	r := mustApply(t, s, 4, cmdSet("x", "3", a, 2))
	if r.Deduplicated || string(r.Value) != "2" {
		t.Fatalf("seq 2 = %+v", r)
	}
	// Seq may skip.
	r = mustApply(t, s, 5, cmdSet("x", "4", a, 10))
	if r.Deduplicated || string(r.Value) != "3" {
		t.Fatalf("seq 10 = %+v", r)
	}
	checkInvariants(t, s)
}

func TestDeduplicatedResultOfEveryOp(t *testing.T) {
	s := New(Config{})
	mustApply(t, s, 1, cmdSet("k", "v0", 0, 0))
	cmds := [][]byte{
		cmdGet("k", 1, 1),
		cmdSet("k", "v1", 1, 2),
		cmdCAS("k", "nope", "v2", 1, 3),
		cmdCAS("k", "v1", "v3", 1, 4),
		cmdDel("k", 1, 5),
	}
	idx := uint64(2)
	for i, c := range cmds {
		first := mustApply(t, s, idx, c)
		idx++
		// Change the key so a re-execution would give another result.
		mustApply(t, s, idx, cmdSet("k", fmt.Sprint("other", i), 0, 0))
		idx++
		retry := mustApply(t, s, idx, c)
		idx++
		first.Deduplicated = true
		if !resultEqual(retry, first) {
			t.Fatalf("cmd %d: retry = %+v, want %+v", i, retry, first)
		}
		wantValue(t, s, "k", fmt.Sprint("other", i), true)
	}
	if s.Deduplicated() != uint64(len(cmds)) {
		t.Fatalf("Deduplicated() = %d", s.Deduplicated())
	}
	checkInvariants(t, s)
}

func TestStaleSeq(t *testing.T) {
	s := New(Config{})
	mustApply(t, s, 1, cmdSet("k", "a", 5, 3))
	hash := s.Hash()
	r := mustApply(t, s, 2, cmdSet("k", "b", 5, 2))
	if !resultEqual(r, Result{Status: StatusStaleSeq}) {
		t.Fatalf("stale seq = %+v", r)
	}
	wantValue(t, s, "k", "a", true)
	if s.Hash() != hash || s.Deduplicated() != 0 {
		t.Fatal("a stale command changed the state")
	}
	if seq, idx, _ := s.Session(5); seq != 3 || idx != 1 {
		t.Fatalf("session = %d@%d, want 3@1", seq, idx)
	}
}

func TestSeqZeroIsNotDeduplicated(t *testing.T) {
	s := New(Config{})
	mustApply(t, s, 1, cmdSet("k", "v", 9, 0))
	r := mustApply(t, s, 2, cmdSet("k", "v", 9, 0))
	if r.Deduplicated || !r.Found {
		t.Fatalf("second seq-0 Set = %+v, want applied again", r)
	}
	if s.Sessions() != 0 {
		t.Fatalf("Sessions() = %d, want 0", s.Sessions())
	}
}

func TestSessionEvictionOrder(t *testing.T) {
	s := New(Config{MaxSessions: 3})
	mustApply(t, s, 1, cmdSet("a", "1", 10, 1))
	mustApply(t, s, 2, cmdSet("b", "1", 20, 1))
	mustApply(t, s, 3, cmdSet("c", "1", 30, 1))
	mustApply(t, s, 4, cmdSet("a", "2", 10, 2)) // 10 is now the newest
	mustApply(t, s, 5, cmdSet("d", "1", 40, 1)) // evicts 20 (index 2)
	if got := sessionIDs(s); !slices.Equal(got, []uint64{10, 30, 40}) {
		t.Fatalf("sessions after eviction = %v, want [10 30 40]", got)
	}
	checkInvariants(t, s)
	// Client 20 lost exactly-once: its retry is applied again.
	r := mustApply(t, s, 6, cmdSet("b", "1", 20, 1))
	if r.Deduplicated || !r.Found {
		t.Fatalf("retry of an evicted client = %+v, want re-applied", r)
	}
	if got := sessionIDs(s); !slices.Equal(got, []uint64{10, 20, 40}) { // 30 (index 3) went
		t.Fatalf("sessions = %v, want [10 20 40]", got)
	}
	// A stale or deduplicated command does not refresh the session.
	mustApply(t, s, 7, cmdSet("a", "2", 10, 2)) // dedup, 10 stays at index 4
	mustApply(t, s, 8, cmdSet("e", "1", 50, 1)) // evicts 10
	if got := sessionIDs(s); !slices.Equal(got, []uint64{20, 40, 50}) {
		t.Fatalf("sessions = %v, want [20 40 50]", got)
	}
	checkInvariants(t, s)
}

func TestSessionEvictionTieBreak(t *testing.T) {
	// Equal indexes do not happen with a well-behaved host, but the order
	// is still defined: lower ClientID first.
	s := New(Config{MaxSessions: 2})
	mustApply(t, s, 7, cmdSet("a", "1", 9, 1))
	mustApply(t, s, 7, cmdSet("b", "1", 4, 1))
	mustApply(t, s, 8, cmdSet("c", "1", 6, 1))
	if got := sessionIDs(s); !slices.Equal(got, []uint64{6, 9}) {
		t.Fatalf("sessions = %v, want [6 9]", got)
	}
}

func TestManySessionsEvictionMatchesModel(t *testing.T) {
	const max = 16
	s := New(Config{MaxSessions: max})
	type ms struct{ index, id uint64 }
	model := map[uint64]ms{}
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := map[uint64]uint64{}
	for idx := uint64(1); idx <= 3000; idx++ {
		id := rng.Uint64N(40)
		if _, ok := model[id]; !ok {
			seqs[id] = 0 // an evicted client starts over
		}
		seqs[id]++
		mustApply(t, s, idx, cmdSet("k", "v", id, seqs[id]))
		if _, ok := model[id]; !ok && len(model) == max {
			var victim ms
			first := true
			for _, m := range model {
				if first || m.index < victim.index || (m.index == victim.index && m.id < victim.id) {
					victim, first = m, false
				}
			}
			delete(model, victim.id)
		}
		model[id] = ms{idx, id}
		var want []uint64
		for id := range model {
			want = append(want, id)
		}
		slices.Sort(want)
		if got := sessionIDs(s); !slices.Equal(got, want) {
			t.Fatalf("index %d: sessions %v, model %v", idx, got, want)
		}
	}
	checkInvariants(t, s)
}

// modelStore is a straightforward reference implementation.
type modelStore struct {
	data     map[string]string
	sessions map[uint64]modelSession
}

type modelSession struct {
	seq    uint64
	result Result
}

func (m *modelStore) apply(c Command) Result {
	if c.Seq > 0 {
		if sess, ok := m.sessions[c.ClientID]; ok {
			if c.Seq == sess.seq {
				r := sess.result
				r.Deduplicated = true
				return r
			}
			if c.Seq < sess.seq {
				return Result{Status: StatusStaleSeq}
			}
		}
	}
	old, found := m.data[c.Key]
	var oldVal []byte
	if found && old != "" {
		oldVal = []byte(old)
	}
	var r Result
	switch c.Op {
	case OpGet:
		r = Result{Value: oldVal, Found: found, OK: true}
	case OpSet:
		m.data[c.Key] = string(c.Value)
		r = Result{Value: oldVal, Found: found, OK: true}
	case OpDelete:
		delete(m.data, c.Key)
		r = Result{Value: oldVal, Found: found, OK: true}
	case OpCreate:
		if found {
			r = Result{Value: oldVal, Found: true}
		} else {
			m.data[c.Key] = string(c.Value)
			r = Result{OK: true}
		}
	case OpCAS:
		switch {
		case !found:
			r = Result{}
		case old != string(c.Expected):
			r = Result{Value: oldVal, Found: true}
		default:
			m.data[c.Key] = string(c.Value)
			r = Result{Value: oldVal, Found: true, OK: true}
		}
	}
	if c.Seq > 0 {
		m.sessions[c.ClientID] = modelSession{c.Seq, r}
	}
	return r
}

func randomCommand(rng *rand.Rand, seqs map[uint64]uint64) Command {
	keys := []string{"", "a", "b", "c", "dd", "eee"}
	vals := []string{"", "1", "2", "long value"}
	c := Command{Op: Op(1 + rng.IntN(5)), Key: keys[rng.IntN(len(keys))]}
	switch c.Op {
	case OpSet, OpCreate:
		c.Value = []byte(vals[rng.IntN(len(vals))])
	case OpCAS:
		c.Value = []byte(vals[rng.IntN(len(vals))])
		c.Expected = []byte(vals[rng.IntN(len(vals))])
	}
	if rng.IntN(4) > 0 {
		c.ClientID = uint64(1 + rng.IntN(5))
		switch rng.IntN(10) {
		case 0: // retry
		case 1: // stale
			if seqs[c.ClientID] > 1 {
				c.Seq = seqs[c.ClientID] - 1
				return c
			}
		default:
			seqs[c.ClientID]++
		}
		c.Seq = seqs[c.ClientID]
	}
	return c
}

func TestRandomAgainstModel(t *testing.T) {
	for _, share := range []bool{false, true} {
		t.Run(fmt.Sprint("share=", share), func(t *testing.T) { randomAgainstModel(t, share) })
	}
}

// randomAgainstModel applies random commands to a store and a model. With
// share the store also takes snapshots at random, which become its base.
func randomAgainstModel(t *testing.T, share bool) {
	for seed := uint64(0); seed < 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		s := New(Config{ShareSnapshots: share})
		chunkSize := 1 + int(seed%3)*20 // a record per chunk, or a few
		s.chunkSize = chunkSize
		m := &modelStore{data: map[string]string{}, sessions: map[uint64]modelSession{}}
		seqs := map[uint64]uint64{}
		for idx := uint64(1); idx <= 500; idx++ {
			c := randomCommand(rng, seqs)
			got := mustApply(t, s, idx, EncodeCommand(c))
			want := m.apply(c)
			if !resultEqual(got, want) {
				t.Fatalf("seed %d index %d %+v: got %+v, model %+v", seed, idx, c, got, want)
			}
			if share && rng.IntN(8) == 0 {
				// The store's base from now on, contiguous or streamed.
				if rng.IntN(2) == 0 {
					mustSnapshot(t, s)
				} else if err := s.WriteSnapshot(io.Discard); err != nil {
					t.Fatal(err)
				}
			}
			if idx%50 == 0 {
				checkInvariants(t, s)
				if s.Len() != len(m.data) {
					t.Fatalf("seed %d: Len %d, model %d", seed, s.Len(), len(m.data))
				}
				for k, v := range m.data {
					wantValue(t, s, k, v, true)
				}
				// Restore into a fresh store and continue on it.
				fresh := New(Config{ShareSnapshots: share})
				fresh.chunkSize = chunkSize
				if err := fresh.Restore(mustSnapshot(t, s)); err != nil {
					t.Fatal(err)
				}
				if fresh.Hash() != s.Hash() {
					t.Fatalf("seed %d: hash changed by Restore", seed)
				}
				s = fresh
			}
		}
	}
}
