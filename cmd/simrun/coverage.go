package main

import (
	"fmt"
	"io"
	"slices"

	"github.com/forge-consensus/consensus/sim"
)

// coverageClass is one row of the coverage table: an interesting state,
// the profiles whose fuzz runs must reach it (a run that reaches it 0
// times warns), and how to read its count from a run's counters. A new
// class is one entry in coverageClasses.
type coverageClass struct {
	name     string
	profiles []string
	count    func(c *sim.Counters) uint64
}

// Profiles that must reach a class.
var (
	faulty      = []string{"swarm", "lease", "storage"}
	pausing     = []string{"swarm", "storage"} // lease runs never pause a node
	swarmOnly   = []string{"swarm"}            // membership churn aimed at joint configurations
	leaseOnly   = []string{"lease"}
	storageOnly = []string{"storage"}
)

// coverageClasses lists the classes of the coverage table, in print order.
// The calm profile reaches none by design and never warns.
var coverageClasses = []coverageClass{
	// Elections and leadership.
	{"leader changes", faulty, func(c *sim.Counters) uint64 { return c.LeaderChanges }},
	{"elections with competing candidates", faulty, func(c *sim.Counters) uint64 { return c.Reached.CompetingCandidates }},
	{"split votes (terms without a leader)", faulty, func(c *sim.Counters) uint64 { return c.SplitVotes }},
	{"new leader with uncommitted old-term entries", faulty, func(c *sim.Counters) uint64 { return c.Reached.OldTermTail }},
	{"old-term tail committed by that leader", faulty, func(c *sim.Counters) uint64 { return c.Reached.OldTermCommitted }},
	{"new leader with entries past its own commit", faulty, func(c *sim.Counters) uint64 { return c.LeaderOldTermTail }},
	{"leader-churn windows", faulty, func(c *sim.Counters) uint64 { return c.LeaderChurns }},
	{"leaders cut off or crashed in leader churn", faulty, func(c *sim.Counters) uint64 { return c.ChurnCutoffs }},
	{"pre-vote rounds", faulty, func(c *sim.Counters) uint64 { return c.PreVoteRounds }},
	{"pre-vote rounds cut off from a quorum", faulty, func(c *sim.Counters) uint64 { return c.PreVoteIsolated }},
	{"partitions", faulty, func(c *sim.Counters) uint64 { return c.Partitions }},
	{"leader isolated by a partition", faulty, func(c *sim.Counters) uint64 { return c.LeaderIsolated }},
	{"leadership transfers requested", faulty, func(c *sim.Counters) uint64 { return c.Transfers }},
	{"leadership transfers completed", faulty, func(c *sim.Counters) uint64 { return c.Reached.TransfersCompleted }},
	// Membership.
	{"membership changes proposed", faulty, func(c *sim.Counters) uint64 { return c.MembershipChanges }},
	{"joint configurations entered", faulty, func(c *sim.Counters) uint64 { return c.Reached.JointEntered }},
	{"joint configurations left", faulty, func(c *sim.Counters) uint64 { return c.Reached.JointLeft }},
	{"joint configurations under partition", faulty, func(c *sim.Counters) uint64 { return c.Reached.JointPartitioned }},
	{"joint configurations left under partition", faulty, func(c *sim.Counters) uint64 { return c.Reached.JointLeftPartitioned }},
	{"joint-change entries applied", swarmOnly, func(c *sim.Counters) uint64 { return c.JointEntered }},
	{"leave-joint entries applied", swarmOnly, func(c *sim.Counters) uint64 { return c.JointLeft }},
	{"joint entered or left under a fault", swarmOnly, func(c *sim.Counters) uint64 { return c.JointUnderFault }},
	{"voters replaced through a joint configuration", swarmOnly, func(c *sim.Counters) uint64 { return c.VoterReplacements }},
	{"conf changes proposed while one was pending", swarmOnly, func(c *sim.Counters) uint64 { return c.ConfChangesWhilePending }},
	{"crashes right after applying a conf change", swarmOnly, func(c *sim.Counters) uint64 { return c.CrashesAfterConfApply }},
	// Logs and snapshots.
	{"append commits past verified, over stale tail", faulty, func(c *sim.Counters) uint64 { return c.Reached.StaleTailCommit }},
	{"committed entries verified under another commit", faulty, func(c *sim.Counters) uint64 { return c.CommitsVerified }},
	{"log truncations", faulty, func(c *sim.Counters) uint64 { return c.Truncations }},
	{"truncations of long tails (>= 10 entries)", faulty, func(c *sim.Counters) uint64 { return c.Reached.LongTruncations }},
	{"truncations of 4 or more entries", faulty, func(c *sim.Counters) uint64 { return c.LongTruncations }},
	{"snapshots installed", faulty, func(c *sim.Counters) uint64 { return c.SnapshotsInstalled }},
	{"snapshots sent to a conflicting tail", faulty, func(c *sim.Counters) uint64 { return c.Reached.SnapshotSentConflict }},
	{"snapshots installed over a conflicting tail", faulty, func(c *sim.Counters) uint64 { return c.Reached.SnapshotOverConflict }},
	// Crashes at each persistence step.
	{"crash-on-write faults that hit a write", faulty, func(c *sim.Counters) uint64 { return c.CrashDuringWrite }},
	{"crashes writing entries", faulty, func(c *sim.Counters) uint64 { return c.Reached.CrashEntries }},
	{"crashes overwriting a log suffix", faulty, func(c *sim.Counters) uint64 { return c.Reached.CrashOverwrite }},
	{"crashes writing only a hard state", faulty, func(c *sim.Counters) uint64 { return c.Reached.CrashHardState }},
	{"crashes installing a snapshot", faulty, func(c *sim.Counters) uint64 { return c.Reached.CrashSnapshot }},
	{"crashes during a compaction", faulty, func(c *sim.Counters) uint64 { return c.Reached.CrashCompaction }},
	{"crashes losing unsynced writes", faulty, func(c *sim.Counters) uint64 { return c.Reached.CrashUnsynced }},
	{"torn writes", faulty, func(c *sim.Counters) uint64 { return c.DiskTorn }},
	{"process pauses", pausing, func(c *sim.Counters) uint64 { return c.Pauses }},
	// Clients and reads.
	{"retries deduplicated", faulty, func(c *sim.Counters) uint64 { return c.Deduplicated }},
	{"reads by ReadIndex", faulty, func(c *sim.Counters) uint64 { return c.Reached.ReadsIndex }},
	{"reads through the log", faulty, func(c *sim.Counters) uint64 { return c.Reached.ReadsLog }},
	{"reads on the lease", leaseOnly, func(c *sim.Counters) uint64 { return c.Reached.ReadsLease }},
	{"lease reads across a transfer", leaseOnly, func(c *sim.Counters) uint64 { return c.Reached.LeaseReadsTransfer }},
	{"lease reads across a leader change", leaseOnly, func(c *sim.Counters) uint64 { return c.Reached.LeaseReadsLeaderChange }},
	{"lease reads answered behind a higher term", leaseOnly, func(c *sim.Counters) uint64 { return c.Reached.LeaseReadsStaleTerm }},
	{"lease races", leaseOnly, func(c *sim.Counters) uint64 { return c.LeaseRaces }},
	{"lease reads asked", leaseOnly, func(c *sim.Counters) uint64 { return c.LeaseReadsAsked }},
	{"lease reads asked during a transfer", leaseOnly, func(c *sim.Counters) uint64 { return c.LeaseReadsInTransfer }},
	{"lease reads asked of a deposed leader", leaseOnly, func(c *sim.Counters) uint64 { return c.LeaseReadsDeposed }},
	{"lease reads answered on the lease", leaseOnly, func(c *sim.Counters) uint64 { return c.LeaseReadsAnswered }},
	{"lease reads fallen back to ReadIndex", leaseOnly, func(c *sim.Counters) uint64 { return c.LeaseReadsReplaced }},
	// Silent storage faults and their outcomes.
	{"storage faults (disks damaged)", faulty, func(c *sim.Counters) uint64 { return c.StorageFaults }},
	{"bit flips", storageOnly, func(c *sim.Counters) uint64 { return c.DiskFlips }},
	{"latent read errors", storageOnly, func(c *sim.Counters) uint64 { return c.DiskUnreadable }},
	{"lost writes", storageOnly, func(c *sim.Counters) uint64 { return c.DiskLostWrites }},
	{"misdirected writes", storageOnly, func(c *sim.Counters) uint64 { return c.DiskMisdirected }},
	{"damaged storage refused (fail-stop)", faulty, func(c *sim.Counters) uint64 { return c.StorageRefusals }},
	{"damaged nodes recovered intact", storageOnly, func(c *sim.Counters) uint64 { return c.StorageRecoveries }},
	{"refusing nodes repaired", storageOnly, func(c *sim.Counters) uint64 { return c.StorageRepairs }},
}

// coverage is the coverage of a fuzz run: per class, the number of seeds
// that reached it and the lowest of them (the counts are summed in the
// run's counters).
type coverage struct {
	runs  uint64   // seeds with a result
	seeds []uint64 // per class of coverageClasses
	first []uint64 // per class, the lowest seed that reached it (0: none)
}

// add accounts for the counters of one run of seed.
func (cv *coverage) add(seed uint64, c *sim.Counters) {
	if cv.seeds == nil {
		cv.seeds = make([]uint64, len(coverageClasses))
		cv.first = make([]uint64, len(coverageClasses))
	}
	cv.runs++
	for i := range coverageClasses {
		if coverageClasses[i].count(c) > 0 {
			cv.seeds[i]++
			if cv.first[i] == 0 || seed < cv.first[i] {
				cv.first[i] = seed
			}
		}
	}
}

// writeCoverage writes the coverage table: per class its count summed over
// the seeds, the seeds that reached it, their share of the run's seeds and
// the lowest of them (to replay with simrun run -seed).
func writeCoverage(w io.Writer, cv *coverage, sum *sim.Counters) {
	fmt.Fprintf(w, "coverage (%d seeds)\n", cv.runs)
	fmt.Fprintf(w, "  %-46s %10s %8s %7s %10s\n", "class", "count", "seeds", "share", "first seed")
	for i, k := range coverageClasses {
		var seeds uint64
		first := "-"
		if cv.seeds != nil {
			seeds = cv.seeds[i]
			if cv.first[i] != 0 {
				first = fmt.Sprint(cv.first[i])
			}
		}
		share := 0.0
		if cv.runs > 0 {
			share = 100 * float64(seeds) / float64(cv.runs)
		}
		prec := 1
		if share > 0 && share < 1 {
			prec = 2 // a class reached by 1 seed in 5,000 is not 0.0 %
		}
		fmt.Fprintf(w, "  %-46s %10d %8d %6.*f%% %10s\n", k.name, k.count(sum), seeds, prec, share, first)
	}
}

// coverageWarnings names the classes that profile must reach but that a
// fuzz run with counters c reached 0 times (calm must reach none).
func coverageWarnings(profile string, c sim.Counters) []string {
	var warns []string
	for _, k := range coverageClasses {
		if slices.Contains(k.profiles, profile) && k.count(&c) == 0 {
			warns = append(warns, "never reached: "+k.name)
		}
	}
	return warns
}

// writeReached writes, for one run, the coverage classes it reached with
// their counts, and how many it did not reach.
func writeReached(w io.Writer, c *sim.Counters) {
	fmt.Fprintln(w, "reached")
	missed := 0
	for _, k := range coverageClasses {
		if n := k.count(c); n > 0 {
			fmt.Fprintf(w, "  %-46s %10d\n", k.name, n)
		} else {
			missed++
		}
	}
	fmt.Fprintf(w, "  (%d of %d classes not reached)\n", missed, len(coverageClasses))
}
