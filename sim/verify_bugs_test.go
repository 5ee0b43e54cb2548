//go:build simbugs

package sim

import (
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// TestDivergentApplyIsCaught: with one node's state machine silently
// misapplying one write (core.BugDivergentApply), random search finds a
// failing seed. With every check on, the convergence check or the nodes'
// own cross-replica verification alarm sees it; without the convergence
// check, the alarm does. (Measured: both catch it at seed 1; without the
// convergence check, 941 of seeds 1-1000 fail on the alarm, 5 on
// liveness, 54 pass.)
func TestDivergentApplyIsCaught(t *testing.T) {
	tests := []struct {
		name   string
		skip   []string
		budget int
		checks []string // the checks that may catch it
	}{
		{"all-checks", nil, 200, []string{CheckConvergence, CheckVerification}},
		{"without-convergence", []string{CheckConvergence}, 1000, []string{CheckVerification}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= uint64(tc.budget); seed++ {
				o, err := Draw(seed, "swarm")
				if err != nil {
					t.Fatal(err)
				}
				o.Bugs = uint64(core.BugDivergentApply)
				o.SkipChecks = tc.skip
				res := Run(o, Config{SkipLinearizability: true})
				if !res.Verdict.Failed() {
					continue
				}
				if res.Verdict != VerdictSafety || !slices.Contains(tc.checks, res.Check) {
					t.Fatalf("seed %d failed unexpectedly: %s: %s: %.300s", seed, res.Verdict, res.Check, res.Detail)
				}
				t.Logf("caught at seed %d: %s: %s: %.200s", seed, res.Verdict, res.Check, res.Detail)
				return
			}
			t.Fatalf("not caught within %d seeds", tc.budget)
		})
	}
}
