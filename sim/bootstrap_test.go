package sim

import (
	"bytes"
	"os"
	"strconv"
	"testing"
)

// bootstrapSeeds is the number of seeds per case (SIM_BOOTSTRAP_SEEDS).
func bootstrapSeeds(t *testing.T) uint64 {
	n := uint64(300)
	if testing.Short() {
		n = 50
	}
	if v := os.Getenv("SIM_BOOTSTRAP_SEEDS"); v != "" {
		var err error
		if n, err = strconv.ParseUint(v, 10, 64); err != nil || n == 0 {
			t.Fatalf("SIM_BOOTSTRAP_SEEDS=%q: want a positive number", v)
		}
	}
	return n
}

// TestBootstrapOneCluster: up to 2*bootstrap_expect-1 nodes that start at random moments, see each
// other through a discovery source that lags, reorders and loses
// answers, over a network that delays, drops and duplicates, and crash
// and restart, form exactly one cluster; with exactly bootstrap_expect
// nodes every one becomes a member, and late nodes join it.
func TestBootstrapOneCluster(t *testing.T) {
	seeds := bootstrapSeeds(t)
	for _, c := range []struct{ nodes, expect, late int }{
		{1, 1, 0}, {3, 3, 0}, {5, 5, 0}, {5, 5, 1}, {3, 3, 2},
		{4, 3, 0}, {5, 3, 0}, {7, 5, 1}, {9, 5, 0}, // more than bootstrap_expect, fewer than twice: safety only
	} {
		var members, joined, rounds, crashes, formed int
		for seed := uint64(1); seed <= seeds; seed++ {
			r := RunBootstrap(BootstrapOptions{Seed: seed, Nodes: c.nodes, Expect: c.expect, Late: c.late})
			if r.Err != nil {
				t.Fatalf("nodes %d, expect %d, late %d: %v\nreplay: RunBootstrap(BootstrapOptions{Seed: %d, Nodes: %d, Expect: %d, Late: %d})\n%s",
					c.nodes, c.expect, c.late, r.Err, seed, c.nodes, c.expect, c.late, r.Trace)
			}
			if len(r.Formed) == 1 {
				formed++
			}
			members += r.Members
			joined += r.Joined
			rounds += r.Rounds
			crashes += r.Crashes
		}
		t.Logf("nodes %d, expect %d, late %d: %d seeds, one cluster formed in %d, %d members (%d joined), %d rounds, %d crashes",
			c.nodes, c.expect, c.late, seeds, formed, members, joined, rounds, crashes)
		if c.nodes == c.expect && formed != int(seeds) {
			t.Fatalf("a cluster formed in only %d of %d seeds", formed, seeds)
		}
	}
}

// TestBootstrapNaiveSplits shows the checks can fail: bootstrapping with
// the first bootstrap_expect candidates found, without promises, forms
// two clusters under the same faults.
func TestBootstrapNaiveSplits(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		if r := RunBootstrap(BootstrapOptions{Seed: seed, Nodes: 5, Expect: 3, Naive: true}); r.Err != nil {
			t.Logf("seed %d: %v", seed, r.Err)
			return
		}
	}
	t.Fatal("the naive strategy never split in 200 seeds: the simulation does not reach the race it should")
}

// TestBootstrapDeterminism: the same options give the same trace bytes.
func TestBootstrapDeterminism(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		o := BootstrapOptions{Seed: seed, Nodes: 5, Expect: 5, Late: 1}
		a, b := RunBootstrap(o), RunBootstrap(o)
		if !bytes.Equal(a.Trace, b.Trace) {
			t.Fatalf("seed %d: two runs differ", seed)
		}
		if len(a.Trace) == 0 {
			t.Fatal("empty trace")
		}
	}
}
