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
