package sim

import (
	"reflect"
	"testing"
)

// TestDrawLeaderChurnIndependent: leader churn and small messages are drawn
// from generators of their own: with the windows taken out, the rest of
// the fault schedule is the same; churn is on in about half the faulty
// seeds, never in calm ones, and small messages appear on about 4 seeds in
// 10, never on a slow network.
func TestDrawLeaderChurnIndependent(t *testing.T) {
	on, small, windows := 0, 0, 0
	for seed := uint64(1); seed <= 300; seed++ {
		o, err := Draw(seed, "swarm")
		if err != nil {
			t.Fatal(err)
		}
		if o.LeaderChurnRate > 0 {
			on++
		}
		if o.MaxSizePerMsg <= 1024 && o.MaxInflightMsgs <= 8 {
			small++
			if o.Network.DelayMean > 20*Millisecond {
				t.Fatalf("seed %d: small messages (%d bytes, %d in flight) on a slow network (%v mean delay)",
					seed, o.MaxSizePerMsg, o.MaxInflightMsgs, o.Network.DelayMean)
			}
		}
		with := drawFaults(&o)
		off := o
		off.LeaderChurnRate = 0
		without := drawFaults(&off)
		var kept []Fault
		churns := 0
		for _, f := range with {
			if f.Kind == FaultLeaderChurn {
				churns++
				continue
			}
			kept = append(kept, f)
		}
		if !reflect.DeepEqual(kept, without) {
			t.Fatalf("seed %d: leader churn changed the rest of the schedule", seed)
		}
		if o.LeaderChurnRate == 0 && churns > 0 {
			t.Fatalf("seed %d: %d churn windows with churn off", seed, churns)
		}
		windows += churns
		c, err := Draw(seed, "calm")
		if err != nil {
			t.Fatal(err)
		}
		if c.LeaderChurnRate != 0 {
			t.Fatalf("seed %d: leader churn in the calm profile", seed)
		}
	}
	if on < 110 || on > 190 {
		t.Errorf("leader churn on in %d of 300 seeds, want about 150", on)
	}
	if windows < on {
		t.Errorf("%d churn windows over %d seeds with churn on", windows, on)
	}
	if small < 80 || small > 160 {
		t.Errorf("small messages on %d of 300 seeds, want about 120", small)
	}
}

// TestLeaderChurnCutsLeaders: in a run with leader-churn windows, new
// leaders are cut off, leaders take over holding an older term's
// uncommitted tail, pre-vote rounds happen cut off from a quorum, and
// committed entries are verified under other nodes' commit indexes; the
// run (no planted bug) passes.
func TestLeaderChurnCutsLeaders(t *testing.T) {
	var sum Counters
	for seed := uint64(1); seed <= 3; seed++ {
		o, err := Draw(seed, "swarm")
		if err != nil {
			t.Fatal(err)
		}
		o.LeaderChurnRate, o.LeaderChurnTimeouts, o.PreVote = 0.15, 15, true
		o.Faults = nil
		res := Run(o, Config{})
		if res.Verdict != VerdictPass {
			t.Fatalf("seed %d: %s (%s): %s", seed, res.Verdict, res.Check, res.Detail)
		}
		sum.Add(&res.Counters)
	}
	t.Logf("churns %d, cutoffs %d, old-term tails %d, long truncations %d, pre-vote rounds %d (isolated %d), commits verified %d",
		sum.LeaderChurns, sum.ChurnCutoffs, sum.LeaderOldTermTail, sum.LongTruncations, sum.PreVoteRounds, sum.PreVoteIsolated, sum.CommitsVerified)
	if sum.LeaderChurns == 0 || sum.ChurnCutoffs == 0 || sum.LeaderOldTermTail == 0 ||
		sum.PreVoteRounds == 0 || sum.PreVoteIsolated == 0 || sum.CommitsVerified == 0 {
		t.Errorf("a leader-churn situation was never reached: %+v", sum)
	}
}
