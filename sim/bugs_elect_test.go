//go:build simbugs

package sim

import (
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// TestElectionBugsCaughtByTheirChecks: the planted election and commit-rule
// bugs are caught by the check that looks for them, not only by a
// consequence (TestPlantedBugsAreCaught accepts any safety verdict): some
// seed within the budget fails by that check, and every seed that fails
// before it fails safety or linearizability. (A follower that commits its
// stale tail while a write is outstanding may apply it before it writes
// the commit index: state machine safety sees that first, on about 4 of
// 100 failing seeds.)
func TestElectionBugsCaughtByTheirChecks(t *testing.T) {
	for _, tc := range []struct {
		bug    core.Bug
		check  string
		budget int
	}{
		{core.BugCommitOldTerm, CheckLeaderCompleteness, 1000},
		{core.BugCommitBeyondVerified, CheckCommitVerified, 1000},
		{core.BugPreVoteRaisesTerm, CheckPreVoteTerm, 1000},
	} {
		t.Run(tc.bug.String(), func(t *testing.T) {
			for seed := uint64(1); seed <= uint64(tc.budget); seed++ {
				o, err := Draw(seed, "swarm")
				if err != nil {
					t.Fatal(err)
				}
				o.Bugs = uint64(tc.bug)
				res := Run(o, Config{SkipLinearizability: true})
				if !res.Verdict.Failed() {
					continue
				}
				if res.Verdict != VerdictSafety && res.Verdict != VerdictLinearizability {
					t.Fatalf("seed %d: %s (%s): %.300s", seed, res.Verdict, res.Check, res.Detail)
				}
				if res.Check != tc.check {
					t.Logf("seed %d: caught by %s first: %.200s", seed, res.Check, res.Detail)
					continue
				}
				t.Logf("seed %d: %s: %.200s", seed, res.Check, res.Detail)
				return
			}
			t.Fatalf("%s not caught within %d seeds", tc.bug, tc.budget)
		})
	}
}
