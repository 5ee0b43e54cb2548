package sim

import (
	"encoding/json"
	"flag"
	"fmt"
	"testing"
)

var seedsFlag = flag.Int("sim.seeds", 60, "seeds per profile in TestSwarm")

// runSeeds runs seeds [from, from+n) under profile and fails the test on
// any failure, with a one-line reproduction.
func runSeeds(t *testing.T, profile string, from, n int) Counters {
	t.Helper()
	var total Counters
	for seed := uint64(from); seed < uint64(from+n); seed++ {
		o, err := Draw(seed, profile)
		if err != nil {
			t.Fatal(err)
		}
		res := Run(o, Config{})
		if res.Verdict.Failed() {
			t.Fatalf("seed %d (%s): %s: %s: %s\nreproduce: go run ./cmd/simrun run -seed %d -profile %s -v",
				seed, profile, res.Verdict, res.Check, res.Detail, seed, profile)
		}
		if res.Verdict == VerdictInconclusive {
			t.Errorf("seed %d (%s): linearizability check inconclusive", seed, profile)
		}
		total.Add(&res.Counters)
	}
	return total
}

// TestCalm: without faults every run passes and clients get answers.
func TestCalm(t *testing.T) {
	c := runSeeds(t, "calm", 1, 10)
	if c.ClientOK == 0 || c.ClientOps == 0 {
		t.Fatalf("no client operation completed: %+v", c)
	}
	if c.Crashes != 0 || c.Partitions != 0 {
		t.Fatalf("faults in the calm profile: %+v", c)
	}
}

// TestSwarm: every seed of the swarm and lease profiles passes, and the
// runs together reach the situations that matter.
func TestSwarm(t *testing.T) {
	n := *seedsFlag
	if testing.Short() {
		n = 10
	}
	for _, profile := range []string{"swarm", "lease", "storage"} {
		t.Run(profile, func(t *testing.T) {
			c := runSeeds(t, profile, 1000, n)
			t.Logf("%s: %+v", profile, c)
			if n < 50 {
				return
			}
			if profile == "storage" {
				for name, v := range map[string]uint64{
					"bit flips": c.DiskFlips, "unreadable records": c.DiskUnreadable, "lost writes": c.DiskLostWrites,
					"misdirected writes": c.DiskMisdirected, "refusals": c.StorageRefusals,
					"recoveries": c.StorageRecoveries, "repairs": c.StorageRepairs,
				} {
					if v == 0 {
						t.Errorf("%d seeds never reached %s", n, name)
					}
				}
				return
			}
			for name, v := range map[string]uint64{
				"leader changes": c.LeaderChanges, "crashes": c.Crashes, "partitions": c.Partitions,
				"truncations": c.Truncations, "snapshots installed": c.SnapshotsInstalled,
				"retries": c.Retries, "membership changes": c.MembershipChanges,
			} {
				if v == 0 {
					t.Errorf("%d seeds never reached %s", n, name)
				}
			}
		})
	}
}

// TestDeterminism: the same options give the same trace, event for event;
// another seed gives another.
func TestDeterminism(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		o, err := Draw(seed, "swarm")
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Trace: TraceOptions{KeepHashes: true}, SkipLinearizability: true}
		a, b := Run(o, cfg), Run(o, cfg)
		if a.EventHash != b.EventHash || a.Events != b.Events {
			ha, hb := a.Trace.Hashes(), b.Trace.Hashes()
			i := 0
			for i < len(ha) && i < len(hb) && ha[i] == hb[i] {
				i++
			}
			t.Fatalf("seed %d: runs diverge at event %d of %d/%d", seed, i, a.Events, b.Events)
		}
		o2, _ := Draw(seed+1000, "swarm")
		if c := Run(o2, cfg); c.EventHash == a.EventHash {
			t.Fatalf("seeds %d and %d gave the same trace", seed, seed+1000)
		}
	}
}

// TestOptionsJSON: resolved options survive a JSON round trip, so a
// bundle's repro.json reproduces the run.
func TestOptionsJSON(t *testing.T) {
	o, err := Draw(7, "swarm")
	if err != nil {
		t.Fatal(err)
	}
	a := Run(o, Config{SkipLinearizability: true})
	o.Faults = a.Faults
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var o2 Options
	if err := json.Unmarshal(b, &o2); err != nil {
		t.Fatal(err)
	}
	if c := Run(o2, Config{SkipLinearizability: true}); c.EventHash != a.EventHash {
		t.Fatalf("options from JSON ran differently: %x vs %x", c.EventHash, a.EventHash)
	}
}

// TestDrawValidates: every profile draws valid options.
func TestDrawValidates(t *testing.T) {
	for _, p := range Profiles() {
		for seed := uint64(0); seed < 200; seed++ {
			o, err := Draw(seed, p)
			if err != nil {
				t.Fatalf("Draw(%d, %s): %v", seed, p, err)
			}
			if p == "lease" && (!o.LeaseReads || !o.CheckQuorum || o.PauseRate != 0) {
				t.Fatalf("lease profile options %+v", o)
			}
		}
	}
	if _, err := Draw(1, "nope"); err == nil {
		t.Fatal("unknown profile accepted")
	}
	bad := Options{Nodes: 3}
	if err := bad.Validate(); err == nil {
		t.Fatal("invalid options accepted")
	}
}

func ExampleRun() {
	o, _ := Draw(42, "calm")
	res := Run(o, Config{})
	fmt.Println(res.Verdict)
	// Output: pass
}
