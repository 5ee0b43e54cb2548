package linearizability

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Helpers building operations: c is the client, [call, ret] the interval.

// get returned v.
func get(c int, k string, v string, call, ret int64) Op {
	return Op{Client: c, Input: Input{Kind: Get, Key: k}, Output: Output{Value: v, Found: true}, Call: call, Return: ret}
}

// miss is a Get that found nothing.
func miss(c int, k string, call, ret int64) Op {
	return Op{Client: c, Input: Input{Kind: Get, Key: k}, Call: call, Return: ret}
}

func put(c int, k, v string, call, ret int64) Op {
	return Op{Client: c, Input: Input{Kind: Put, Key: k, Value: v}, Call: call, Return: ret}
}

func del(c int, k string, found bool, call, ret int64) Op {
	return Op{Client: c, Input: Input{Kind: Delete, Key: k}, Output: Output{Found: found}, Call: call, Return: ret}
}

func cas(c int, k, from, to string, ok bool, call, ret int64) Op {
	return Op{Client: c, Input: Input{Kind: CAS, Key: k, Expected: from, Value: to}, Output: Output{OK: ok}, Call: call, Return: ret}
}

// open makes op's outcome unknown.
func open(op Op) Op {
	op.Open, op.Output, op.Return = true, Output{}, 0
	return op
}

// hist numbers the operations.
func hist(ops ...Op) History {
	for i := range ops {
		ops[i].ID = i
	}
	return History{Ops: ops}
}

// checkBoth checks h with and without prune's reductions, which must agree.
func checkBoth(t *testing.T, h History) Result {
	t.Helper()
	r := Check(h, 0)
	if full := check(h, 0, false); full.Verdict != r.Verdict {
		t.Fatalf("verdict %v with reductions, %v without", r.Verdict, full.Verdict)
	}
	if r.Err != nil {
		t.Fatalf("unexpected error: %v", r.Err)
	}
	return r
}

func TestLinearizable(t *testing.T) {
	cases := []struct {
		name string
		h    History
	}{
		{"empty", hist()},
		{"sequential", hist(
			miss(0, "x", 0, 5),
			put(0, "x", "1", 10, 20),
			get(1, "x", "1", 30, 40),
			put(1, "x", "2", 50, 60),
			get(0, "x", "2", 70, 80),
			cas(0, "x", "1", "3", false, 90, 100),
			cas(1, "x", "2", "3", true, 110, 120),
			get(0, "x", "3", 130, 140),
			del(1, "x", true, 150, 160),
			del(0, "x", false, 170, 180),
			miss(1, "x", 190, 200),
			cas(0, "x", "3", "4", false, 210, 220),
		)},
		{"concurrent put, get sees old value", hist(
			put(0, "x", "1", 0, 10),
			put(0, "x", "2", 20, 40),
			get(1, "x", "1", 25, 35),
		)},
		{"concurrent put, get sees new value", hist(
			put(0, "x", "1", 0, 10),
			put(0, "x", "2", 20, 40),
			get(1, "x", "2", 25, 35),
		)},
		{"touching intervals are concurrent", hist(
			put(0, "x", "1", 0, 10),
			miss(1, "x", 10, 20),
		)},
		{"open put seen later", hist(
			put(0, "x", "1", 0, 10),
			open(put(1, "x", "2", 20, 0)),
			get(0, "x", "1", 30, 40),
			get(0, "x", "2", 100, 110),
			get(2, "x", "2", 120, 130),
		)},
		{"open put never seen", hist(
			put(0, "x", "1", 0, 10),
			open(put(1, "x", "2", 20, 0)),
			get(0, "x", "1", 30, 40),
			get(2, "x", "1", 100, 110),
		)},
		{"open put seen, then overwritten", hist(
			open(put(1, "x", "2", 0, 0)),
			get(0, "x", "2", 30, 40),
			put(0, "x", "3", 50, 60),
			get(0, "x", "3", 70, 80),
		)},
		{"open delete took effect", hist(
			put(0, "x", "1", 0, 10),
			open(del(1, "x", false, 20, 0)),
			miss(0, "x", 30, 40),
		)},
		{"open cas took effect", hist(
			put(0, "x", "1", 0, 10),
			open(cas(1, "x", "1", "2", false, 20, 0)),
			get(0, "x", "2", 30, 40),
		)},
		{"open put enables open cas", hist(
			put(0, "x", "a", 0, 1),
			open(put(1, "x", "b", 2, 0)),
			open(cas(2, "x", "b", "c", false, 3, 0)),
			get(0, "x", "c", 10, 11),
		)},
		{"open writes chain in any order", hist(
			put(0, "x", "a", 0, 1),
			open(cas(1, "x", "b", "c", false, 2, 0)),
			open(put(2, "x", "b", 3, 0)),
			get(0, "x", "c", 10, 11),
		)},
		{"open put explains a failed cas", hist(
			put(0, "x", "a", 0, 1),
			open(put(1, "x", "b", 2, 0)),
			cas(0, "x", "a", "q", false, 3, 4),
		)},
		{"open put never happened, before a later put", hist(
			put(0, "x", "a", 0, 1),
			open(put(1, "x", "b", 2, 0)),
			cas(0, "x", "c", "q", false, 3, 4),
			get(0, "x", "a", 5, 6),
			put(2, "x", "c", 10, 20),
			get(0, "x", "c", 30, 31),
		)},
		{"open get dropped", hist(
			put(0, "x", "1", 0, 10),
			open(miss(1, "x", 5, 0)),
			get(0, "x", "1", 30, 40),
		)},
		{"keys are independent", hist(
			put(0, "x", "1", 0, 10),
			put(1, "y", "1", 0, 10),
			get(0, "y", "1", 20, 30),
			get(1, "x", "1", 20, 30),
		)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := checkBoth(t, tc.h); r.Verdict != Ok {
				t.Fatalf("verdict %v, want ok\n%s", r.Verdict, dump(tc.h))
			}
		})
	}
}

func TestNotLinearizable(t *testing.T) {
	cases := []struct {
		name string
		h    History
	}{
		{"stale read after a completed put", hist(
			put(0, "x", "1", 0, 10),
			put(0, "x", "2", 20, 30),
			get(1, "x", "1", 40, 50),
		)},
		{"read of a value never written", hist(
			put(0, "x", "1", 0, 10),
			get(1, "x", "7", 20, 30),
		)},
		{"two sequential cas from the same value both succeed", hist(
			put(0, "x", "a", 0, 10),
			cas(0, "x", "a", "b", true, 20, 30),
			cas(1, "x", "a", "c", true, 40, 50),
		)},
		{"delete finds an absent key", hist(
			del(0, "x", true, 0, 10),
		)},
		{"delete misses a present key", hist(
			put(0, "x", "1", 0, 10),
			del(1, "x", false, 20, 30),
		)},
		{"get misses a present key", hist(
			put(0, "x", "1", 0, 10),
			miss(1, "x", 20, 30),
		)},
		{"cas fails on a match", hist(
			put(0, "x", "a", 0, 10),
			cas(1, "x", "a", "b", false, 20, 30),
		)},
		{"read before the write was invoked", hist(
			get(1, "x", "1", 0, 10),
			put(0, "x", "1", 20, 30),
		)},
		{"open put takes effect twice", hist(
			put(0, "x", "1", 0, 10),
			open(put(1, "x", "2", 20, 0)),
			get(0, "x", "2", 30, 40),
			put(0, "x", "3", 50, 60),
			get(0, "x", "2", 70, 80),
		)},
		{"open put seen before its call", hist(
			get(0, "x", "2", 0, 10),
			open(put(1, "x", "2", 20, 0)),
		)},
		{"open cas cannot match", hist(
			put(0, "x", "1", 0, 10),
			open(cas(1, "x", "9", "2", false, 20, 0)),
			get(0, "x", "2", 30, 40),
		)},
		{"one bad key among good ones", hist(
			put(0, "x", "1", 0, 10),
			put(1, "y", "1", 0, 10),
			get(0, "y", "1", 20, 30),
			get(1, "x", "0", 20, 30),
		)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := checkBoth(t, tc.h); r.Verdict != Illegal {
				t.Fatalf("verdict %v, want illegal\n%s", r.Verdict, dump(tc.h))
			}
		})
	}
}

// TestPrune checks what the reductions do on histories built for them (the
// verdicts are checked against the unreduced check by checkBoth, and the
// reductions against the exhaustive reference by TestAgainstReference).
func TestPrune(t *testing.T) {
	t.Run("unobserved open puts are dropped", func(t *testing.T) {
		ops := []Op{put(0, "x", "init", 0, 10)}
		for i := 0; i < 30; i++ {
			ops = append(ops, open(put(i%4, "x", "v"+string(rune('a'+i)), int64(20+i), 0)))
		}
		for i := 0; i < 20; i++ {
			ops = append(ops, get(i%4, "x", "init", int64(1000+10*i), int64(1005+10*i)))
		}
		// Without the reductions this takes 2^30 steps per read: no
		// checkBoth.
		r := Check(hist(ops...), 10*time.Second)
		if r.Verdict != Ok || r.Dropped != 30 || r.Open != 0 {
			t.Fatalf("got %+v, want ok with 30 dropped", r)
		}
	})
	t.Run("an open put needed by an open cas is kept", func(t *testing.T) {
		r := checkBoth(t, hist(
			put(0, "x", "a", 0, 1),
			open(put(1, "x", "b", 2, 0)),
			open(cas(2, "x", "b", "c", false, 3, 0)),
			get(0, "x", "c", 10, 11),
		))
		if r.Verdict != Ok || r.Dropped != 0 {
			t.Fatalf("got %+v, want ok with nothing dropped", r)
		}
	})
	t.Run("bound uses a put invoked after the open one", func(t *testing.T) {
		// The open put must be linearized after the get at [5, 6]: the
		// put at [0, 1] must not bound it, the one at [10, 20] may.
		h := hist(
			put(0, "x", "a", 0, 1),
			open(put(1, "x", "b", 2, 0)),
			cas(0, "x", "c", "q", false, 3, 4),
			get(0, "x", "a", 5, 6),
			put(2, "x", "c", 10, 20),
			get(0, "x", "c", 30, 31),
		)
		r := checkBoth(t, h)
		if r.Verdict != Ok || r.Bounded != 1 {
			t.Fatalf("got %+v, want ok with one bounded", r)
		}
		c, err := compile(h, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range c.ops {
			if s := op.Input.(*step); s.open && op.Return != 20 {
				t.Fatalf("open put returns at %d, want 20", op.Return)
			}
		}
	})
}

// hardHistory is linearizable but makes the search explore every subset of
// k pending open puts before each of many reads, on several keys.
func hardHistory(keys, k int) History {
	var ops []Op
	for key := 0; key < keys; key++ {
		x := string(rune('a' + key))
		ops = append(ops, put(0, x, "init", 0, 10))
		for i := 0; i < k; i++ {
			ops = append(ops, open(put(i%4, x, x+string(rune('A'+i)), int64(20+i), 0)))
		}
		for i := 0; i < 30; i++ {
			ops = append(ops, get(i%4, x, "init", int64(1000+10*i), int64(1005+10*i)))
		}
		// Each open put is eventually seen, so none can be dropped.
		for i := 0; i < k; i++ {
			ops = append(ops, get(i%4, x, x+string(rune('A'+i)), int64(5000+10*i), int64(5005+10*i)))
		}
	}
	return hist(ops...)
}

func TestTimeoutIsInconclusive(t *testing.T) {
	h := hardHistory(4, 24)
	for _, timeout := range []time.Duration{time.Nanosecond, 20 * time.Millisecond} {
		start := time.Now()
		r := Check(h, timeout)
		if r.Verdict != Inconclusive {
			t.Fatalf("timeout %v: verdict %v, want inconclusive", timeout, r.Verdict)
		}
		if r.Dropped != 0 || r.Open != 4*24 {
			t.Fatalf("timeout %v: dropped %d, open %d: the history is not hard any more", timeout, r.Dropped, r.Open)
		}
		if el := time.Since(start); el > timeout+2*time.Second {
			t.Fatalf("timeout %v: check took %v", timeout, el)
		}
		var buf bytes.Buffer
		if err := r.WriteHTML(&buf); err != nil {
			t.Fatalf("WriteHTML of an inconclusive result: %v", err)
		}
	}
	// A small instance of the same shape finishes, and is linearizable.
	if r := Check(hardHistory(2, 6), 0); r.Verdict != Ok {
		t.Fatalf("small hard history: verdict %v, want ok", r.Verdict)
	}
}

func TestMalformedHistory(t *testing.T) {
	for name, h := range map[string]History{
		"return before call": hist(put(0, "x", "1", 10, 5)),
		"invalid kind":       hist(Op{Input: Input{Kind: 9, Key: "x"}}),
	} {
		r := Check(h, 0)
		if r.Verdict != Inconclusive || !errors.Is(r.Err, ErrInvalidHistory) {
			t.Errorf("%s: got verdict %v, err %v; want inconclusive, ErrInvalidHistory", name, r.Verdict, r.Err)
		}
		if err := r.WriteHTML(&bytes.Buffer{}); err == nil {
			t.Errorf("%s: WriteHTML succeeded", name)
		}
	}
}

func annotated(h History) History {
	h.Annotations = []Annotation{
		{Start: 0, End: 15, Tag: "leader", Text: "leader n1 (term 2)"},
		{Start: 12, End: 25, Tag: "partition", Text: "partition {n1} | {n2 n3}", Details: "n1 isolated"},
		{Start: 18, Tag: "crash", Text: "crash n2"},
		{Start: 20, End: 30, Text: "untagged <note> & more"},
	}
	return h
}

func TestWriteHTML(t *testing.T) {
	h := annotated(hist(
		put(0, "x", "1", 0, 10),
		put(0, "x", "2", 20, 30),
		get(1, "x", "1", 40, 50),
		put(1, "y", "v w", 0, 10),
		open(miss(2, "y", 5, 0)),
		open(put(2, "y", "z", 15, 0)),
	))
	r := Check(h, time.Second)
	if r.Verdict != Illegal {
		t.Fatalf("verdict %v, want illegal", r.Verdict)
	}
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"<html", "</html>",
		"leader n1 (term 2)", "partition {n1} | {n2 n3}", "n1 isolated", "crash n2", // annotations
		"get(x) → 1", "put(x, 2)", `put(y, \"v w\")`, // operations
		"get(y) → ?", // the open get, shown although not checked
	} {
		if !strings.Contains(page, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	// Annotation text is data, not markup: porcupine JSON-encodes it.
	if strings.Contains(page, "untagged <note>") {
		t.Errorf("annotation text is not escaped")
	}
	// Writing twice gives the same page: the result is not changed.
	var again bytes.Buffer
	if err := r.WriteHTML(&again); err != nil || again.String() != page {
		t.Fatalf("second WriteHTML differs (err %v)", err)
	}
	// An ok history renders too.
	if err := Check(annotated(hist(put(0, "x", "1", 0, 10))), 0).WriteHTML(&bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryJSONRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cfg := realistic()
	cfg.ops, cfg.openFrac = 300, 0.1
	good := annotated(genHistory(rng, cfg))
	bad := annotated(hist(
		put(0, "x", "1", 0, 10),
		open(cas(1, "x", "1", "quote\"d", false, 12, 0)),
		get(1, "x", "ü", 40, 50),
	))
	for name, h := range map[string]History{"generated": good, "illegal": bad, "empty": {}} {
		data, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		back, err := LoadHistory(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(back, h) {
			t.Fatalf("%s: round trip changed the history", name)
		}
		if a, b := Check(h, 0).Verdict, Check(back, 0).Verdict; a != b {
			t.Fatalf("%s: verdict %v before, %v after", name, a, b)
		}
	}
	// Kinds are written by name.
	data, _ := json.Marshal(hist(cas(3, "k", "a", "b", true, 1, 2)))
	if !strings.Contains(string(data), `"kind":"cas"`) {
		t.Fatalf("kind not encoded by name: %s", data)
	}
}

func TestLoadHistoryErrors(t *testing.T) {
	for name, text := range map[string]string{
		"not json":           `{"ops": [`,
		"unknown kind":       `{"ops": [{"id": 0, "input": {"kind": "incr", "key": "x"}}]}`,
		"return before call": `{"ops": [{"id": 0, "input": {"kind": "get", "key": "x"}, "call": 5, "return": 1}]}`,
		"duplicate id": `{"ops": [{"id": 1, "input": {"kind": "get", "key": "x"}},
			{"id": 1, "input": {"kind": "get", "key": "x"}}]}`,
	} {
		if _, err := LoadHistory(strings.NewReader(text)); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "linearizability: load history: ") {
			t.Errorf("%s: error lacks context: %v", name, err)
		}
	}
	if _, err := LoadHistory(strings.NewReader(`{"ops": [{"id": 0, "input": {"kind": "get", "key": "x"}, "call": 5, "return": 1}]}`)); !errors.Is(err, ErrInvalidHistory) {
		t.Errorf("invalid history error does not match ErrInvalidHistory: %v", err)
	}
	// An open operation's return time is ignored.
	if _, err := LoadHistory(strings.NewReader(`{"ops": [{"id": 0, "input": {"kind": "put", "key": "x"}, "call": 5, "open": true}]}`)); err != nil {
		t.Errorf("open op: %v", err)
	}
}

func TestRecorder(t *testing.T) {
	r := NewRecorder()
	a := r.Invoke(0, Input{Kind: Put, Key: "x", Value: "1"}, 0)
	b := r.Invoke(1, Input{Kind: Get, Key: "x"}, 5)
	c := r.Invoke(2, Input{Kind: Delete, Key: "x"}, 6)
	d := r.Invoke(3, Input{Kind: CAS, Key: "x", Expected: "1", Value: "2"}, 7)
	if a != 0 || b != 1 || c != 2 || d != 3 || r.Len() != 4 {
		t.Fatalf("ids %d %d %d %d, len %d", a, b, c, d, r.Len())
	}
	r.Return(a, Output{}, 10)
	r.Return(b, Output{Value: "1", Found: true}, 12)
	r.Fail(c)
	r.Fail(c) // failing again is harmless
	r.Annotate(Annotation{Start: 1, Tag: "leader", Text: "n1"})
	h := r.History()
	want := History{
		Ops: []Op{
			{ID: 0, Client: 0, Input: Input{Kind: Put, Key: "x", Value: "1"}, Call: 0, Return: 10},
			{ID: 1, Client: 1, Input: Input{Kind: Get, Key: "x"}, Output: Output{Value: "1", Found: true}, Call: 5, Return: 12},
			{ID: 2, Client: 2, Input: Input{Kind: Delete, Key: "x"}, Call: 6, Open: true},
			{ID: 3, Client: 3, Input: Input{Kind: CAS, Key: "x", Expected: "1", Value: "2"}, Call: 7, Open: true}, // still pending
		},
		Annotations: []Annotation{{Start: 1, Tag: "leader", Text: "n1"}},
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("history\n%+v\nwant\n%+v", h, want)
	}
	// The history is a snapshot.
	r.Return(d, Output{OK: true}, 20)
	if !h.Ops[3].Open {
		t.Fatal("History shares state with the recorder")
	}
	if h2 := r.History(); h2.Ops[3].Open || !h2.Ops[3].Output.OK {
		t.Fatalf("pending op not completed: %+v", h2.Ops[3])
	}
	if v := Check(r.History(), 0).Verdict; v != Ok {
		t.Fatalf("verdict %v", v)
	}

	for name, f := range map[string]func(){
		"return twice":       func() { r.Return(a, Output{}, 30) },
		"return after fail":  func() { r.Return(c, Output{}, 30) },
		"fail after return":  func() { r.Fail(a) },
		"unknown id":         func() { r.Return(99, Output{}, 30) },
		"negative id":        func() { r.Fail(-1) },
		"return before call": func() { r.Return(r.Invoke(0, Input{Kind: Get, Key: "x"}, 50), Output{}, 40) },
		"invalid kind":       func() { r.Invoke(0, Input{Kind: 0, Key: "x"}, 50) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// TestGenerated checks simulated executions of a linearizable store, which
// must be ok, and the same with one read corrupted, which must be illegal.
func TestGenerated(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	n := 30
	if testing.Short() {
		n = 10
	}
	for i := 0; i < n; i++ {
		cfg := realistic()
		cfg.ops = 200 + rng.IntN(1800)
		cfg.keys = 1 + rng.IntN(8)
		cfg.clients = 1 + rng.IntN(6)
		cfg.openFrac = rng.Float64() * 0.2
		if rng.IntN(2) == 0 {
			cfg.casPct, cfg.delPct = 0, 0
		}
		h := genHistory(rng, cfg)
		if r := Check(h, 5*time.Second); r.Verdict != Ok {
			t.Fatalf("history %d (%+v): verdict %v, want ok", i, cfg, r.Verdict)
		}
		for name, corrupt := range map[string]func(*rand.Rand, History) bool{"stale": staleRead, "phantom": phantomRead} {
			bad := History{Ops: append([]Op(nil), h.Ops...)}
			if !corrupt(rng, bad) {
				continue
			}
			// Many take the relaxed check, after a tenth of the time-out.
			if r := Check(bad, time.Second); r.Verdict != Illegal {
				t.Fatalf("history %d (%+v) with a %s read: verdict %v, want illegal", i, cfg, name, r.Verdict)
			}
		}
	}
}

// TestRelaxedProvesIllegal checks that an illegal history too hard for the
// exact search is found illegal by the relaxed check.
func TestRelaxedProvesIllegal(t *testing.T) {
	h := hardHistory(2, 24)
	h.Ops = append(h.Ops, get(0, "a", "never-written", 9000, 9010))
	h = annotated(hist(h.Ops...))
	for _, timeout := range []time.Duration{0, 400 * time.Millisecond} {
		start := time.Now()
		r := Check(h, timeout)
		if r.Verdict != Illegal || !r.Relaxed {
			t.Fatalf("timeout %v: verdict %v, relaxed %v; want illegal from the relaxed check", timeout, r.Verdict, r.Relaxed)
		}
		if el := time.Since(start); el > timeout+2*time.Second {
			t.Fatalf("timeout %v: took %v", timeout, el)
		}
		var buf bytes.Buffer
		if err := r.WriteHTML(&buf); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"leader n1 (term 2)", "get(a) → never-written", "{init}", "may take effect any number of times"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("timeout %v: HTML lacks %q", timeout, want)
			}
		}
	}
	// With a time-out too short for anything, it is inconclusive or
	// illegal, never ok.
	if v := Check(h, time.Nanosecond).Verdict; v == Ok {
		t.Fatalf("1ns: verdict ok")
	}
}

func TestStrings(t *testing.T) {
	for v, s := range map[Verdict]string{Ok: "ok", Illegal: "illegal", Inconclusive: "inconclusive", 7: "Verdict(7)"} {
		if v.String() != s {
			t.Errorf("%d: %q, want %q", uint8(v), v.String(), s)
		}
	}
	for k, s := range map[Kind]string{Get: "get", Put: "put", Delete: "delete", CAS: "cas", 0: "Kind(0)"} {
		if k.String() != s {
			t.Errorf("%d: %q, want %q", uint8(k), k.String(), s)
		}
	}
	if _, err := Kind(0).MarshalText(); err == nil {
		t.Error("invalid kind marshalled")
	}
	for op, s := range map[*Op]string{
		{Input: Input{Kind: Put, Key: "k", Value: "v"}}:                                          "put(k, v)",
		{Input: Input{Kind: CAS, Key: "k", Expected: "a", Value: "b"}, Output: Output{OK: true}}: "cas(k, a→b) → ok",
		{Input: Input{Kind: CAS, Key: "k", Expected: "a", Value: "b"}}:                           "cas(k, a→b) → fail",
		{Input: Input{Kind: Get, Key: "k"}, Output: Output{Value: "v", Found: true}}:             "get(k) → v",
		{Input: Input{Kind: Get, Key: "k"}}:                                                      "get(k) → not found",
		{Input: Input{Kind: Delete, Key: "k"}, Output: Output{Found: true}}:                      "delete(k) → found",
		{Input: Input{Kind: Put, Key: "k", Value: ""}, Open: true}:                               `put(k, "") → ?`,
	} {
		if got := describeOp(*op); got != s {
			t.Errorf("describeOp: %q, want %q", got, s)
		}
	}
}
