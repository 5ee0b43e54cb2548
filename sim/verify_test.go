package sim

import "testing"

// TestVerificationWithoutFalseAlarms: runs with cross-replica verification
// on (every drawn seed has it) pass, so no node raised an alarm (an alarm
// fails the run: CheckVerification), and the verification did run: nodes
// saw their state hashes confirmed by the majority's verdicts.
func TestVerificationWithoutFalseAlarms(t *testing.T) {
	var confirmed uint64
	for seed := uint64(1); seed <= 20; seed++ {
		o, err := Draw(seed, "swarm")
		if err != nil {
			t.Fatal(err)
		}
		if o.VerifyInterval == 0 {
			t.Fatalf("seed %d: verification off", seed)
		}
		res := Run(o, Config{SkipLinearizability: true})
		if res.Verdict.Failed() {
			t.Fatalf("seed %d: %s: %s: %s", seed, res.Verdict, res.Check, res.Detail)
		}
		confirmed += res.Counters.VerifyConfirmed
	}
	if confirmed == 0 {
		t.Fatal("no checkpoint was ever confirmed: verification did not run")
	}
	t.Logf("%d checkpoints confirmed over 20 seeds", confirmed)
}
