//go:build simbugs

package sim

import (
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// TestPlantedBugsAreCaught proves the simulator finds classic Raft bugs:
// with each one planted, some seed within the stated budget fails a check
// of the expected kind. (Unplanted, the same seeds pass: TestSwarm.)
func TestPlantedBugsAreCaught(t *testing.T) {
	tests := []struct {
		bug     core.Bug
		profile string
		budget  int       // seeds tried
		want    []Verdict // acceptable verdicts
	}{
		{core.BugVoteNotPersisted, "swarm", 200, []Verdict{VerdictSafety, VerdictLinearizability}},
		// BugCommitOldTerm needs Figure 8's exact history, which random
		// search rarely builds: TestScenarioFigure8 scripts it.
		{core.BugKeepVoteOnNewTerm, "swarm", 200, []Verdict{VerdictSafety, VerdictLinearizability, VerdictLiveness}},
		{core.BugApplyUncommitted, "swarm", 200, []Verdict{VerdictSafety, VerdictLinearizability}},
		{core.BugReadLocal, "swarm", 200, []Verdict{VerdictLinearizability}},
		{core.BugAckBeforeDurable, "swarm", 200, []Verdict{VerdictSafety, VerdictLinearizability}},
	}
	for _, tc := range tests {
		t.Run(tc.bug.String(), func(t *testing.T) {
			for seed := uint64(1); seed <= uint64(tc.budget); seed++ {
				o, err := Draw(seed, tc.profile)
				if err != nil {
					t.Fatal(err)
				}
				o.Bugs = uint64(tc.bug)
				res := Run(o, Config{})
				if !res.Verdict.Failed() {
					continue
				}
				for _, v := range tc.want {
					if res.Verdict == v {
						t.Logf("caught at seed %d (%d seeds): %s: %s: %.200s", seed, seed, res.Verdict, res.Check, res.Detail)
						return
					}
				}
				t.Fatalf("seed %d failed unexpectedly: %s: %s: %.300s", seed, res.Verdict, res.Check, res.Detail)
			}
			t.Fatalf("%s not caught within %d seeds", tc.bug, tc.budget)
		})
	}
}
