package sim

import (
	"reflect"
	"testing"
)

// TestConfChurnIndependent: the membership faults are drawn from streams
// of their own: a swarm seed's other options and faults are what they are
// with the membership faults turned off, which the other profiles never
// draw.
func TestConfChurnIndependent(t *testing.T) {
	on := [3]int{}
	for seed := uint64(0); seed < 300; seed++ {
		o, err := Draw(seed, "swarm")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"lease", "storage", "calm"} {
			q, err := Draw(seed, p)
			if err != nil {
				t.Fatal(err)
			}
			if q.ConfChurn != (ConfChurnOptions{}) {
				t.Fatalf("seed %d: profile %s draws membership faults %+v", seed, p, q.ConfChurn)
			}
		}
		cc := o.ConfChurn
		for i, r := range []float64{cc.ReplaceRate, cc.RaceRate, cc.CrashAfterApplyRate} {
			if r > 0 {
				on[i]++
			}
		}
		off := o
		off.ConfChurn = ConfChurnOptions{}
		with, without := drawFaults(&o), drawFaults(&off)
		var kept []Fault
		n := [faultKindEnd]int{}
		for _, f := range with {
			n[f.Kind]++
			switch f.Kind {
			case FaultReplaceVoter, FaultConfRace, FaultCrashAfterConfApply:
			default:
				kept = append(kept, f)
			}
		}
		if !reflect.DeepEqual(kept, without) {
			t.Fatalf("seed %d: membership faults changed the rest of the schedule", seed)
		}
		if (n[FaultReplaceVoter] > 0) != (cc.ReplaceRate > 0) && cc.ReplaceRate > 0.1 {
			t.Errorf("seed %d: replace rate %v, %d faults", seed, cc.ReplaceRate, n[FaultReplaceVoter])
		}
	}
	for i, k := range on {
		if k < 100 || k > 200 {
			t.Errorf("membership fault kind %d on in %d of 300 swarm seeds, want about 150", i, k)
		}
	}
}

// TestConfChurnReached: over a few swarm seeds the membership faults enter
// and leave joint configurations, some under faults, replace voters, race
// a second change against a pending one, and crash nodes right after they
// apply a change; every seed passes.
func TestConfChurnReached(t *testing.T) {
	var sum Counters
	for seed := uint64(1); seed <= 12; seed++ {
		o, err := Draw(seed, "swarm")
		if err != nil {
			t.Fatal(err)
		}
		res := Run(o, Config{SkipLinearizability: true})
		if res.Verdict.Failed() {
			t.Fatalf("seed %d: %s: %s: %s", seed, res.Verdict, res.Check, res.Detail)
		}
		sum.Add(&res.Counters)
	}
	for name, n := range map[string]uint64{
		"joint entered": sum.JointEntered, "joint left": sum.JointLeft, "joint under fault": sum.JointUnderFault,
		"voter replacements": sum.VoterReplacements, "changes while pending": sum.ConfChangesWhilePending,
		"crashes after conf apply": sum.CrashesAfterConfApply,
	} {
		if n == 0 {
			t.Errorf("never reached over seeds 1-12: %s", name)
		}
	}
	t.Logf("%+v", sum)
}
