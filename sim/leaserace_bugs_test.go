//go:build simbugs

package sim

import (
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// TestOneLeaseRaceCatchesLeaseBugs: one lease race, the only scheduled
// fault of a run (loss, delay and disk latency stay as drawn), is enough
// for the lease-read check to catch each lease bug on one of the first
// lease seeds; the unmodified code passes the same runs
// (TestOneLeaseRacePasses).
func TestOneLeaseRaceCatchesLeaseBugs(t *testing.T) {
	for _, tc := range []struct {
		bug  core.Bug
		mode int
	}{
		{core.BugLeaseAfterTransfer, leaseRaceTransfer},
		{core.BugLeaseReadNoCheck, leaseRaceTransfer},
		{core.BugLeaseReadNoCheck, leaseRaceIsolate},
	} {
		caught := false
		for seed := uint64(1); seed <= 10 && !caught; seed++ {
			o, err := Draw(seed, "lease")
			if err != nil {
				t.Fatal(err)
			}
			et := Time(o.ElectionTick) * o.TickInterval
			o.Faults = []Fault{{At: 5 * Second, Kind: FaultLeaseRace, Shape: tc.mode, Dur: 3 * et, R: 1}}
			o.Bugs = uint64(tc.bug)
			res := Run(o, Config{SkipLinearizability: true})
			switch {
			case res.Verdict == VerdictSafety && res.Check == CheckLeaseRead:
				caught = true
				t.Logf("%s, mode %d: seed %d: %s", tc.bug, tc.mode, seed, res.Detail)
			case res.Verdict.Failed():
				t.Fatalf("%s, mode %d: seed %d: %s (%s): %.200s", tc.bug, tc.mode, seed, res.Verdict, res.Check, res.Detail)
			}
		}
		if !caught {
			t.Errorf("%s, mode %d: one lease race caught nothing in seeds 1-10", tc.bug, tc.mode)
		}
	}
}
