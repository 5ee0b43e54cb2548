//go:build simbugs

package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/sim"
)

// TestPlantedBugFoundReplayedShrunk: with a planted bug, fuzz finds a
// failure within 200 seeds and writes a bundle; the bundle replays with the
// same event hash; shrink keeps the failure with no more fault decisions,
// and the shrunk bundle replays too.
func TestPlantedBugFoundReplayedShrunk(t *testing.T) {
	testPlantedBugFoundReplayedShrunk(t, "apply-uncommitted", "swarm")
}

// TestLeaseBugFoundReplayedShrunk: the same for a lease bug, found under
// lease races (a fault kind of the lease profile only), which replay and
// shrink must carry through the bundle.
func TestLeaseBugFoundReplayedShrunk(t *testing.T) {
	testPlantedBugFoundReplayedShrunk(t, "lease-after-transfer", "lease")
}

func testPlantedBugFoundReplayedShrunk(t *testing.T, bug, profile string) {
	bugs, err := sim.ParseBugs(bug)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cfg := fuzzConfig{Seeds: 200, Workers: 2, Profile: profile, StartSeed: 1, Out: t.TempDir(),
		Bugs: bugs, CheckTimeout: 10 * time.Second, MaxFailures: 1}
	code := runFuzz(context.Background(), cfg, &out, &errOut)
	s := out.String()
	if code == exitPass || code == exitError || code == exitNonDeterminism {
		t.Fatalf("fuzz with %s planted: exit %d\n%s\n%s", bug, code, s, errOut.String())
	}
	m := regexp.MustCompile(`bundle: (\S+) \((\d+) fault decisions\)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no bundle in:\n%s", s)
	}
	dir := m[1]
	before, _ := strconv.Atoi(m[2])
	if !strings.Contains(s, "go run -tags simbugs ./cmd/simrun replay "+dir) || !strings.Contains(s, "-bugs "+bug) {
		t.Errorf("reproduction line lacks -tags simbugs or -bugs:\n%s", s)
	}
	b, err := loadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if resultExit(b.Verdict, b.Repro.Check) != code && code != worstExit(code, resultExit(b.Verdict, b.Repro.Check)) {
		t.Errorf("bundle verdict %s, fuzz exit %d", b.Verdict, code)
	}

	// Replay: same verdict, same hash.
	rc, rout, rerr := simrun(t, "replay", dir)
	if rc != resultExit(b.Verdict, b.Repro.Check) || strings.Count(rout, "identical") != 2 {
		t.Fatalf("replay: exit %d, want %d\n%s%s", rc, resultExit(b.Verdict, b.Repro.Check), rout, rerr)
	}

	// Shrink: the same failure with no more fault decisions.
	shrunk := dir + "-small"
	sc, sout, serr := simrun(t, "shrink", dir, "-budget", "30s", "-out", shrunk)
	if sc != resultExit(b.Verdict, b.Repro.Check) {
		t.Fatalf("shrink: exit %d, want %d\n%s%s", sc, resultExit(b.Verdict, b.Repro.Check), sout, serr)
	}
	sb, err := loadBundle(shrunk)
	if err != nil {
		t.Fatal(err)
	}
	after := len(sb.Options.Faults)
	t.Logf("%s: seed %d, %s (%s), fault decisions %d -> %d", bug, b.Repro.Seed, b.Verdict, b.Repro.Check, before, after)
	if after > before {
		t.Errorf("shrink went from %d to %d fault decisions\n%s", before, after, sout)
	}
	if sb.Verdict != b.Verdict || sb.Repro.Check != b.Repro.Check || sb.Repro.Drawn {
		t.Errorf("shrunk bundle: %s (%s) drawn=%v, original %s (%s)", sb.Verdict, sb.Repro.Check, sb.Repro.Drawn, b.Verdict, b.Repro.Check)
	}
	if !strings.Contains(sout, "fault decisions") || !strings.Contains(sout, "replay "+shrunk) {
		t.Errorf("shrink output:\n%s", sout)
	}
	rc, rout, rerr = simrun(t, "replay", shrunk)
	if rc != resultExit(b.Verdict, b.Repro.Check) || strings.Count(rout, "identical") != 2 {
		t.Fatalf("replay of the shrunk bundle: exit %d\n%s%s", rc, rout, rerr)
	}
}

// TestFuzzFindsCommitOldTerm: random search of the default profile finds
// Raft's Figure 8 bug (an older term's entry committed by counting
// replicas) within 1,000 seeds, with no scripted schedule, by a safety
// check; the failure's bundle names a leader-churn window among its
// faults and replays to the same verdict and event hash.
func TestFuzzFindsCommitOldTerm(t *testing.T) {
	const bug = "commit-old-term"
	bugs, err := sim.ParseBugs(bug)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cfg := fuzzConfig{Seeds: 1000, Workers: 2, Profile: "swarm", StartSeed: 1, Out: t.TempDir(),
		Bugs: bugs, CheckTimeout: 10 * time.Second, MaxFailures: 1}
	code := runFuzz(context.Background(), cfg, &out, &errOut)
	s := out.String()
	if code == exitPass || code == exitError || code == exitNonDeterminism {
		t.Fatalf("fuzz with %s planted: exit %d\n%s\n%s", bug, code, s, errOut.String())
	}
	m := regexp.MustCompile(`bundle: (\S+) \(`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no bundle in:\n%s", s)
	}
	b, err := loadBundle(m[1])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: seed %d, %s (%s): %.200s", bug, b.Repro.Seed, b.Verdict, b.Repro.Check, b.Repro.Detail)
	if b.Verdict != sim.VerdictSafety && b.Verdict != sim.VerdictLinearizability {
		t.Errorf("verdict %s (%s), want safety or linearizability", b.Verdict, b.Repro.Check)
	}
	churn := false
	for _, f := range b.Options.Faults {
		churn = churn || f.Kind == sim.FaultLeaderChurn
	}
	if !churn {
		t.Errorf("seed %d failed with no leader-churn window among its %d fault decisions", b.Repro.Seed, len(b.Options.Faults))
	}
	rc, rout, rerr := simrun(t, "replay", m[1])
	if rc != resultExit(b.Verdict, b.Repro.Check) || strings.Count(rout, "identical") != 2 {
		t.Fatalf("replay: exit %d, want %d\n%s%s", rc, resultExit(b.Verdict, b.Repro.Check), rout, rerr)
	}
}
