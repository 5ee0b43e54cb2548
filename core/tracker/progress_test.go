package tracker

import "testing"

// newReplicate returns a progress in StateReplicate with the given match,
// room for size messages and maxBytes bytes in flight.
func newReplicate(match uint64, size int, maxBytes uint64) *Progress {
	p := NewProgress(match+1, size, maxBytes, false)
	p.Match = match
	p.BecomeReplicate()
	return p
}

func TestStateString(t *testing.T) {
	for _, tt := range []struct {
		s    State
		want string
	}{
		{StateProbe, "StateProbe"},
		{StateReplicate, "StateReplicate"},
		{StateSnapshot, "StateSnapshot"},
		{9, "State(9)"},
	} {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(tt.s), got, tt.want)
		}
	}
	var zero State
	if zero != StateProbe {
		t.Error("the zero State is not StateProbe")
	}
}

func TestNewProgress(t *testing.T) {
	p := NewProgress(11, 4, 100, true)
	if p.Match != 0 || p.Next != 11 || p.State != StateProbe || p.PendingSnapshot != 0 ||
		p.RecentActive || p.MsgAppProbesPaused || !p.IsLearner || p.Inflights == nil {
		t.Fatalf("NewProgress(11, 4, 100, true) = %+v", *p)
	}
	if p.Inflights.size != 4 || p.Inflights.maxBytes != 100 || p.Inflights.buffer != nil {
		t.Errorf("Inflights = %+v", *p.Inflights)
	}
	if NewProgress(1, 1, 0, false).IsLearner {
		t.Error("IsLearner set for a voter")
	}
	mustPanic(t, "NewProgress with maxInflight 0", func() { NewProgress(1, 0, 0, false) })
}

func TestBecomeProbe(t *testing.T) {
	for i, tt := range []struct {
		p        *Progress
		wantNext uint64
	}{
		{&Progress{State: StateProbe, Match: 1, Next: 5, MsgAppProbesPaused: true}, 2},
		{&Progress{State: StateReplicate, Match: 3, Next: 9}, 4},
		{&Progress{State: StateSnapshot, Match: 1, Next: 11, PendingSnapshot: 10}, 11},
		{&Progress{State: StateSnapshot, Match: 15, Next: 11, PendingSnapshot: 10}, 16},
		{&Progress{State: StateSnapshot, Match: 10, Next: 11, PendingSnapshot: 10}, 11},
		{&Progress{State: StateSnapshot, Match: 0, Next: 1, PendingSnapshot: 0}, 1},
	} {
		tt.p.Inflights = NewInflights(4, 0)
		tt.p.Inflights.Add(100, 7)
		match := tt.p.Match
		tt.p.BecomeProbe()
		p := tt.p
		if p.State != StateProbe || p.Next != tt.wantNext || p.Match != match ||
			p.PendingSnapshot != 0 || p.MsgAppProbesPaused || p.Inflights.Count() != 0 || p.Inflights.Bytes() != 0 {
			t.Errorf("#%d: after BecomeProbe: %+v (want Next %d)", i, *p, tt.wantNext)
		}
	}
}

func TestBecomeReplicate(t *testing.T) {
	for i, p := range []*Progress{
		{State: StateProbe, Match: 1, Next: 5, MsgAppProbesPaused: true},
		{State: StateSnapshot, Match: 4, Next: 11, PendingSnapshot: 10},
		{State: StateReplicate, Match: 4, Next: 11},
	} {
		p.Inflights = NewInflights(4, 0)
		p.Inflights.Add(100, 7)
		p.BecomeReplicate()
		if p.State != StateReplicate || p.Next != p.Match+1 || p.PendingSnapshot != 0 ||
			p.MsgAppProbesPaused || p.Inflights.Count() != 0 || p.Inflights.Bytes() != 0 {
			t.Errorf("#%d: after BecomeReplicate: %+v", i, *p)
		}
	}
}

func TestBecomeSnapshot(t *testing.T) {
	for i, p := range []*Progress{
		{State: StateProbe, Match: 1, Next: 5, MsgAppProbesPaused: true},
		{State: StateReplicate, Match: 4, Next: 11},
		{State: StateSnapshot, Match: 4, Next: 9, PendingSnapshot: 8},
	} {
		p.Inflights = NewInflights(4, 0)
		p.Inflights.Add(100, 7)
		match := p.Match
		p.BecomeSnapshot(20)
		if p.State != StateSnapshot || p.PendingSnapshot != 20 || p.Next != 21 || p.Match != match ||
			p.MsgAppProbesPaused || p.Inflights.Count() != 0 || p.Inflights.Bytes() != 0 {
			t.Errorf("#%d: after BecomeSnapshot(20): %+v", i, *p)
		}
		if !p.IsPaused() {
			t.Errorf("#%d: not paused in StateSnapshot", i)
		}
	}
}

func TestSentEntries(t *testing.T) {
	for i, tt := range []struct {
		state              State
		n                  int
		lastIndex, bytes   uint64
		wantNext           uint64
		wantPaused         bool
		wantCount          int
		wantInflightsBytes uint64
	}{
		{StateReplicate, 3, 8, 30, 9, false, 1, 30},
		{StateReplicate, 1, 5, 0, 6, false, 1, 0},
		{StateReplicate, 0, 4, 0, 5, false, 0, 0}, // empty append: nothing in flight
		{StateProbe, 3, 8, 30, 5, true, 0, 0},
		{StateProbe, 0, 4, 0, 5, true, 0, 0}, // empty probe also pauses
		{StateSnapshot, 3, 8, 30, 5, false, 0, 0},
	} {
		p := &Progress{State: tt.state, Match: 4, Next: 5, Inflights: NewInflights(4, 0)}
		p.SentEntries(tt.n, tt.lastIndex, tt.bytes)
		if p.Next != tt.wantNext || p.MsgAppProbesPaused != tt.wantPaused || p.Match != 4 ||
			p.Inflights.Count() != tt.wantCount || p.Inflights.Bytes() != tt.wantInflightsBytes {
			t.Errorf("#%d: after SentEntries(%d, %d, %d) in %v: %+v, inflight %d/%d",
				i, tt.n, tt.lastIndex, tt.bytes, tt.state, *p, p.Inflights.Count(), p.Inflights.Bytes())
		}
	}
}

func TestProbePauseUnpause(t *testing.T) {
	p := NewProgress(5, 4, 0, false)
	if p.IsPaused() {
		t.Fatal("fresh probe is paused")
	}
	p.SentEntries(2, 6, 10)
	if !p.IsPaused() || p.Next != 5 {
		t.Fatalf("after sending a probe: paused %t, Next %d; want true, 5", p.IsPaused(), p.Next)
	}
	// A heartbeat response unpauses by clearing the flag directly.
	p.MsgAppProbesPaused = false
	if p.IsPaused() {
		t.Fatal("still paused after the flag was cleared")
	}
	p.SentEntries(0, 4, 0)
	if !p.IsPaused() {
		t.Fatal("empty probe did not pause")
	}
	// An append response that acknowledges nothing new still unpauses.
	if p.MaybeUpdate(0) {
		t.Error("MaybeUpdate(0) reported progress")
	}
	if p.IsPaused() {
		t.Fatal("still paused after an append response")
	}
	p.SentEntries(1, 5, 1)
	// A rejection unpauses too.
	if !p.MaybeDecrTo(4, 2) || p.IsPaused() || p.Next != 3 {
		t.Fatalf("after rejection: %v", p)
	}
}

func TestMaybeUpdate(t *testing.T) {
	for i, tt := range []struct {
		state       State
		match, next uint64
		n           uint64
		wantOK      bool
		wantMatch   uint64
		wantNext    uint64
	}{
		{StateProbe, 3, 5, 2, false, 3, 5}, // stale
		{StateProbe, 3, 5, 3, false, 3, 5}, // same as Match
		{StateProbe, 3, 5, 4, true, 4, 5},  // Match advances, Next stays
		{StateProbe, 3, 5, 7, true, 7, 8},  // both advance
		{StateProbe, 0, 1, 0, false, 0, 1}, // nothing at all
		{StateReplicate, 3, 10, 5, true, 5, 10},
		{StateReplicate, 3, 10, 12, true, 12, 13},
		{StateReplicate, 6, 10, 5, false, 6, 10},
		{StateSnapshot, 3, 11, 10, true, 10, 11},
		{StateSnapshot, 3, 11, 12, true, 12, 13},
	} {
		p := &Progress{State: tt.state, Match: tt.match, Next: tt.next, MsgAppProbesPaused: true, Inflights: NewInflights(8, 0)}
		ok := p.MaybeUpdate(tt.n)
		if ok != tt.wantOK || p.Match != tt.wantMatch || p.Next != tt.wantNext || p.MsgAppProbesPaused {
			t.Errorf("#%d: MaybeUpdate(%d) = %t, %+v; want %t, Match %d, Next %d",
				i, tt.n, ok, *p, tt.wantOK, tt.wantMatch, tt.wantNext)
		}
	}
}

func TestMaybeUpdateFreesInflights(t *testing.T) {
	p := newReplicate(5, 4, 0)
	p.SentEntries(2, 7, 20)
	p.SentEntries(3, 10, 30)
	p.SentEntries(1, 11, 10)
	p.SentEntries(4, 15, 40)
	if !p.IsPaused() || p.Next != 16 {
		t.Fatalf("after 4 appends: paused %t, Next %d; want true, 16", p.IsPaused(), p.Next)
	}
	for _, tt := range []struct {
		ack       uint64
		wantCount int
		wantBytes uint64
	}{
		{6, 4, 100}, // inside the first message: frees nothing
		{7, 3, 80},  // frees the first
		{5, 3, 80},  // stale ack
		{11, 1, 40}, // frees two
		{15, 0, 0},  // frees the last
		{20, 0, 0},  // beyond everything
	} {
		p.MaybeUpdate(tt.ack)
		if p.Inflights.Count() != tt.wantCount || p.Inflights.Bytes() != tt.wantBytes {
			t.Errorf("after ack %d: inflight %d/%d bytes, want %d/%d",
				tt.ack, p.Inflights.Count(), p.Inflights.Bytes(), tt.wantCount, tt.wantBytes)
		}
		if p.IsPaused() != (tt.wantCount == 4) {
			t.Errorf("after ack %d: IsPaused = %t", tt.ack, p.IsPaused())
		}
	}
	if p.Match != 20 || p.Next != 21 {
		t.Errorf("Match, Next = %d, %d; want 20, 21", p.Match, p.Next)
	}
}

func TestMaybeDecrTo(t *testing.T) {
	for i, tt := range []struct {
		state               State
		match, next         uint64
		rejected, matchHint uint64
		wantOK              bool
		wantNext            uint64
	}{
		// StateReplicate: stale when rejected <= Match.
		{StateReplicate, 5, 10, 5, 5, false, 10},
		{StateReplicate, 5, 10, 4, 4, false, 10},
		{StateReplicate, 5, 10, 9, 9, true, 6},
		{StateReplicate, 5, 10, 6, 2, true, 6}, // the hint is not used
		{StateReplicate, 0, 10, 7, 0, true, 1},
		// StateProbe: stale unless rejected == Next-1.
		{StateProbe, 0, 10, 8, 8, false, 10},
		{StateProbe, 0, 10, 10, 8, false, 10},
		{StateProbe, 0, 10, 9, 9, true, 9},  // hint no help: one step back
		{StateProbe, 0, 10, 9, 20, true, 9}, // hint beyond rejected is ignored
		{StateProbe, 0, 10, 9, 4, true, 5},  // jump to the hint
		{StateProbe, 0, 10, 9, 0, true, 1},  // empty follower log
		{StateProbe, 3, 10, 9, 0, true, 4},  // never below Match+1
		{StateProbe, 3, 10, 9, 3, true, 4},
		{StateProbe, 3, 10, 9, 6, true, 7},
		{StateProbe, 0, 1, 0, 0, true, 1},           // rejecting index 0 cannot go lower
		{StateProbe, 2, 10, 9, ^uint64(0), true, 9}, // absurd hint: no overflow
		// StateSnapshot: always stale.
		{StateSnapshot, 3, 11, 10, 5, false, 11},
	} {
		p := &Progress{State: tt.state, Match: tt.match, Next: tt.next, MsgAppProbesPaused: true, Inflights: NewInflights(8, 0)}
		if tt.state == StateSnapshot {
			p.PendingSnapshot = 10
		}
		before := *p
		ok := p.MaybeDecrTo(tt.rejected, tt.matchHint)
		if ok != tt.wantOK || p.Next != tt.wantNext || p.Match != tt.match {
			t.Errorf("#%d: MaybeDecrTo(%d, %d) in %v = %t, Next %d; want %t, Next %d",
				i, tt.rejected, tt.matchHint, tt.state, ok, p.Next, tt.wantOK, tt.wantNext)
		}
		switch {
		case !ok && *p != before:
			t.Errorf("#%d: stale rejection changed %+v to %+v", i, before, *p)
		case ok && tt.state == StateProbe && p.MsgAppProbesPaused:
			t.Errorf("#%d: probe still paused after a rejection", i)
		}
	}
}

func TestIsPaused(t *testing.T) {
	for i, tt := range []struct {
		state  State
		paused bool
		full   bool
		want   bool
	}{
		{StateProbe, false, false, false},
		{StateProbe, true, false, true},
		{StateProbe, false, true, false},
		{StateReplicate, false, false, false},
		{StateReplicate, true, false, false},
		{StateReplicate, false, true, true},
		{StateSnapshot, false, false, true},
		{StateSnapshot, true, true, true},
	} {
		p := &Progress{State: tt.state, MsgAppProbesPaused: tt.paused, Inflights: NewInflights(1, 0)}
		if tt.full {
			p.Inflights.Add(1, 1)
		}
		if got := p.IsPaused(); got != tt.want {
			t.Errorf("#%d: IsPaused() = %t, want %t", i, got, tt.want)
		}
	}
}

func TestIsPausedByBytes(t *testing.T) {
	p := newReplicate(0, 100, 50)
	p.SentEntries(1, 1, 30)
	if p.IsPaused() {
		t.Fatal("paused at 30 of 50 bytes")
	}
	p.SentEntries(1, 2, 30)
	if !p.IsPaused() {
		t.Fatal("not paused at 60 of 50 bytes")
	}
	p.MaybeUpdate(1)
	if p.IsPaused() {
		t.Fatal("still paused at 30 of 50 bytes")
	}
}

func TestReplicationScenario(t *testing.T) {
	p := NewProgress(11, 3, 0, false) // leader's last index is 10
	// The probe at Next-1 = 10 is rejected; the follower's log ends at 6.
	p.SentEntries(0, 10, 0)
	if !p.IsPaused() {
		t.Fatal("probe not paused")
	}
	if !p.MaybeDecrTo(10, 6) || p.Next != 7 || p.IsPaused() {
		t.Fatalf("after rejection: %v", p)
	}
	// A duplicate of the rejection is stale now.
	if p.MaybeDecrTo(10, 6) {
		t.Fatal("duplicate rejection accepted")
	}
	p.SentEntries(4, 10, 40)
	if !p.MaybeUpdate(10) || p.Match != 10 || p.Next != 11 {
		t.Fatalf("after ack: %v", p)
	}
	p.BecomeReplicate()
	for i := uint64(11); i <= 13; i++ {
		if p.IsPaused() {
			t.Fatalf("paused before sending %d", i)
		}
		p.SentEntries(1, i, 1)
	}
	if !p.IsPaused() || p.Next != 14 {
		t.Fatalf("after pipelining: %v", p)
	}
	// The follower rejects 12's append (preceding index 11): go back.
	if p.MaybeDecrTo(10, 10) {
		t.Fatal("stale rejection accepted in StateReplicate")
	}
	if !p.MaybeDecrTo(11, 10) || p.Next != 11 {
		t.Fatalf("after rejection: %v", p)
	}
	p.BecomeProbe()
	if p.State != StateProbe || p.Next != 11 || p.IsPaused() || p.Inflights.Count() != 0 {
		t.Fatalf("after BecomeProbe: %v", p)
	}
	// The follower is too far behind: send a snapshot at 50.
	p.BecomeSnapshot(50)
	if !p.IsPaused() {
		t.Fatal("not paused while snapshotting")
	}
	p.MaybeUpdate(50)
	p.BecomeProbe()
	if p.Match != 50 || p.Next != 51 || p.PendingSnapshot != 0 {
		t.Fatalf("after snapshot: %v", p)
	}
}

func TestProgressString(t *testing.T) {
	p := newReplicate(5, 2, 0)
	p.SentEntries(2, 7, 20)
	p.SentEntries(1, 8, 5)
	p.RecentActive = true
	if got, want := p.String(), "StateReplicate match=5 next=9 active inflight=2 inflightBytes=25[full]"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	p = NewProgress(3, 4, 0, true)
	p.SentEntries(1, 3, 1)
	if got, want := p.String(), "StateProbe match=0 next=3 learner paused"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	p.BecomeSnapshot(9)
	if got, want := p.String(), "StateSnapshot match=0 next=10 learner pendingSnap=9"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestProgressAllocs(t *testing.T) {
	p := newReplicate(0, 64, 0)
	// Warm up: grow the storage to its full size.
	for i := uint64(1); i <= 64; i++ {
		p.SentEntries(1, i, 10)
	}
	p.MaybeUpdate(64)
	allocs := testing.AllocsPerRun(1000, func() {
		for range 4 {
			if !p.IsPaused() {
				p.SentEntries(2, p.Next+1, 10)
			}
		}
		p.MaybeUpdate(p.Next - 3)
		p.MaybeUpdate(p.Next - 1)
	})
	if allocs != 0 {
		t.Errorf("SentEntries/MaybeUpdate allocate %v times per run after warm-up", allocs)
	}
	q := NewProgress(1, 8, 0, false)
	allocs = testing.AllocsPerRun(1000, func() {
		q.SentEntries(1, q.Next, 1)
		q.MaybeDecrTo(q.Next-1, q.Match)
		q.MaybeUpdate(q.Match + 1)
		_ = q.IsPaused()
	})
	if allocs != 0 {
		t.Errorf("probe path allocates %v times per run", allocs)
	}
}
