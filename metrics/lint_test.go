package metrics

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// exposition returns the handler's text exposition with every metric
// populated (a failed operation, an election, a snapshot, peers).
func exposition(t *testing.T) []byte {
	t.Helper()
	m, _, _ := newTestMetrics(t, leaderState())
	m.ObserveOperation("apply", time.Millisecond, nil)
	m.ObserveOperation("apply", time.Millisecond, errors.New("boom"))
	m.LeaderElected(300 * time.Millisecond)
	m.SnapshotTaken(2 * time.Second)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMetricNamesPassLint: every name passes Prometheus's metric linter
// (client_golang's promlint, the linter promtool uses): counters end in
// _total, units are base units and not abbreviated.
func TestMetricNamesPassLint(t *testing.T) {
	problems, err := promlint.New(bytes.NewReader(exposition(t))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestPromtoolCheckMetrics runs `promtool check metrics` (Debian's
// prometheus package) on the exposition. Under CI promtool must be there.
func TestPromtoolCheckMetrics(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found under CI: .ci/run installs Debian's prometheus package")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
