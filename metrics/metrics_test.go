package metrics

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// fakeSource is a Source whose State tests change between scrapes.
type fakeSource struct {
	mu sync.Mutex
	s  State
}

func (f *fakeSource) Snapshot() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	s.Peers = append([]PeerState(nil), f.s.Peers...)
	if f.s.TransportErrors != nil {
		s.TransportErrors = make(map[string]uint64, len(f.s.TransportErrors))
		for k, v := range f.s.TransportErrors {
			s.TransportErrors[k] = v
		}
	}
	return s
}

func (f *fakeSource) update(fn func(*State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.s)
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func leaderState() State {
	return State{
		NodeID: 1, Term: 7, Leader: 1, IsLeader: true, HasQuorum: true,
		ClusterSize: 3, HealthyNodes: 3,
		CommitIndex: 100, LastApplied: 98,
		LogEntries: 40, LogBytes: 4096,
		Peers: []PeerState{
			{ID: 2, MatchIndex: 90, Active: true},
			{ID: 3, MatchIndex: 105, Active: false}, // ahead of commit: lag floored at 0
		},
		TransportErrors: map[string]uint64{"send": 4, "rejected": 1},
	}
}

// expectedTypes is every metric the package must export, with its type.
var expectedTypes = map[string]dto.MetricType{
	"forge_consensus_cluster_size":                     dto.MetricType_GAUGE,
	"forge_consensus_cluster_healthy_nodes":            dto.MetricType_GAUGE,
	"forge_consensus_is_leader":                        dto.MetricType_GAUGE,
	"forge_consensus_has_quorum":                       dto.MetricType_GAUGE,
	"forge_consensus_term":                             dto.MetricType_GAUGE,
	"forge_consensus_operations_total":                 dto.MetricType_COUNTER,
	"forge_consensus_operations_failed_total":          dto.MetricType_COUNTER,
	"forge_consensus_operations_per_second":            dto.MetricType_GAUGE,
	"forge_consensus_operation_duration_seconds":       dto.MetricType_HISTOGRAM,
	"forge_consensus_leader_elections_total":           dto.MetricType_COUNTER,
	"forge_consensus_leader_election_duration_seconds": dto.MetricType_HISTOGRAM,
	"forge_consensus_commit_index":                     dto.MetricType_GAUGE,
	"forge_consensus_last_applied":                     dto.MetricType_GAUGE,
	"forge_consensus_log_size":                         dto.MetricType_GAUGE,
	"forge_consensus_log_entries":                      dto.MetricType_GAUGE,
	"forge_consensus_snapshots_total":                  dto.MetricType_COUNTER,
	"forge_consensus_snapshot_duration_seconds":        dto.MetricType_HISTOGRAM,
	"forge_consensus_peer_replication_lag":             dto.MetricType_GAUGE,
	"forge_consensus_peer_active":                      dto.MetricType_GAUGE,
	"forge_consensus_transport_errors_total":           dto.MetricType_COUNTER,
	"forge_consensus_corruption_detected_total":        dto.MetricType_COUNTER,
}

func newTestMetrics(t *testing.T, s State) (*Metrics, *fakeSource, *fakeClock) {
	t.Helper()
	src := &fakeSource{s: s}
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m, err := New(prometheus.NewRegistry(), src, Options{Now: clk.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, src, clk
}

// scrape fetches the handler's text exposition and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing exposition: %v", err)
	}
	return mfs
}

func labelsOf(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// find returns the sample of name whose labels include want, or nil.
func find(mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		got := labelsOf(m)
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

// valueOf returns the value of the sample of name with labels want, failing
// the test if it is missing.
func valueOf(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	m := find(mfs, name, want)
	if m == nil {
		t.Fatalf("no sample %s%v", name, want)
	}
	return value(m)
}

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestAllMetricsPresentWithTypesAndNodeID(t *testing.T) {
	m, _, _ := newTestMetrics(t, leaderState())
	m.ObserveOperation("apply", time.Millisecond, nil)
	m.ObserveOperation("apply", time.Millisecond, errors.New("boom"))
	m.LeaderElected(300 * time.Millisecond)
	m.SnapshotTaken(2 * time.Second)

	mfs := scrape(t, m)
	for name, typ := range expectedTypes {
		mf := mfs[name]
		if mf == nil {
			t.Errorf("metric %s missing", name)
			continue
		}
		if mf.GetType() != typ {
			t.Errorf("metric %s has type %v, want %v", name, mf.GetType(), typ)
		}
		if mf.GetHelp() == "" {
			t.Errorf("metric %s has no help", name)
		}
		for _, s := range mf.GetMetric() {
			if got := labelsOf(s)["node_id"]; got != "1" {
				t.Errorf("metric %s sample %v: node_id=%q, want 1", name, labelsOf(s), got)
			}
		}
	}
	for name := range mfs {
		if _, ok := expectedTypes[name]; !ok {
			t.Errorf("unexpected metric %s", name)
		}
	}
}

func TestGaugesFollowSource(t *testing.T) {
	m, src, _ := newTestMetrics(t, leaderState())
	node := map[string]string{"node_id": "1"}

	checks := func(mfs map[string]*dto.MetricFamily, want map[string]float64) {
		t.Helper()
		for name, v := range want {
			if got := valueOf(t, mfs, name, node); !approx(got, v) {
				t.Errorf("%s = %v, want %v", name, got, v)
			}
		}
	}

	checks(scrape(t, m), map[string]float64{
		"forge_consensus_cluster_size":          3,
		"forge_consensus_cluster_healthy_nodes": 3,
		"forge_consensus_is_leader":             1,
		"forge_consensus_has_quorum":            1,
		"forge_consensus_term":                  7,
		"forge_consensus_commit_index":          100,
		"forge_consensus_last_applied":          98,
		"forge_consensus_log_entries":           40,
		"forge_consensus_log_size":              4096,
	})

	src.update(func(s *State) {
		s.Term, s.Leader, s.IsLeader, s.HasQuorum = 8, 2, false, false
		s.ClusterSize, s.HealthyNodes = 5, 2
		s.CommitIndex, s.LastApplied = 150, 149
		s.LogEntries, s.LogBytes = 3, 300
	})
	checks(scrape(t, m), map[string]float64{
		"forge_consensus_cluster_size":          5,
		"forge_consensus_cluster_healthy_nodes": 2,
		"forge_consensus_is_leader":             0,
		"forge_consensus_has_quorum":            0,
		"forge_consensus_term":                  8,
		"forge_consensus_commit_index":          150,
		"forge_consensus_last_applied":          149,
		"forge_consensus_log_entries":           3,
		"forge_consensus_log_size":              300,
	})
}

func TestPeerMetricsOnlyWhileLeader(t *testing.T) {
	m, src, _ := newTestMetrics(t, leaderState())

	mfs := scrape(t, m)
	lag := func(peer string) float64 {
		return valueOf(t, mfs, "forge_consensus_peer_replication_lag", map[string]string{"peer": peer})
	}
	active := func(peer string) float64 {
		return valueOf(t, mfs, "forge_consensus_peer_active", map[string]string{"peer": peer})
	}
	if got := lag("2"); got != 10 {
		t.Errorf("lag of peer 2 = %v, want 10", got)
	}
	if got := lag("3"); got != 0 {
		t.Errorf("lag of peer 3 (match index ahead of commit) = %v, want 0 (floored)", got)
	}
	if got := active("2"); got != 1 {
		t.Errorf("peer 2 active = %v, want 1", got)
	}
	if got := active("3"); got != 0 {
		t.Errorf("peer 3 active = %v, want 0", got)
	}
	if n := len(mfs["forge_consensus_peer_replication_lag"].GetMetric()); n != 2 {
		t.Errorf("%d lag series, want 2", n)
	}

	// Replication progresses: values follow.
	src.update(func(s *State) { s.CommitIndex = 120; s.Peers[0].MatchIndex = 119 })
	mfs = scrape(t, m)
	if got := lag("2"); got != 1 {
		t.Errorf("lag of peer 2 = %v, want 1", got)
	}
	if got := lag("3"); got != 15 {
		t.Errorf("lag of peer 3 = %v, want 15", got)
	}

	// Step down: the per-peer series disappear even though Peers is set.
	src.update(func(s *State) { s.IsLeader = false; s.Leader = 2 })
	mfs = scrape(t, m)
	for _, name := range []string{"forge_consensus_peer_replication_lag", "forge_consensus_peer_active"} {
		if mf := mfs[name]; mf != nil && len(mf.GetMetric()) > 0 {
			t.Errorf("%s exported by a follower: %v", name, mf.GetMetric())
		}
	}

	// Leader again: they come back.
	src.update(func(s *State) { s.IsLeader = true; s.Leader = 1 })
	mfs = scrape(t, m)
	if find(mfs, "forge_consensus_peer_replication_lag", map[string]string{"peer": "2"}) == nil {
		t.Error("lag of peer 2 missing after regaining leadership")
	}
}

func TestDuplicatePeerDoesNotBreakScrape(t *testing.T) {
	s := leaderState()
	s.Peers = append(s.Peers, PeerState{ID: 2, MatchIndex: 1})
	m, _, _ := newTestMetrics(t, s)
	mfs := scrape(t, m)
	if n := len(mfs["forge_consensus_peer_replication_lag"].GetMetric()); n != 2 {
		t.Errorf("%d lag series, want 2", n)
	}
}

func TestTransportErrors(t *testing.T) {
	m, src, _ := newTestMetrics(t, leaderState())
	mfs := scrape(t, m)
	if got := valueOf(t, mfs, "forge_consensus_transport_errors_total", map[string]string{"kind": "send"}); got != 4 {
		t.Errorf("send errors = %v, want 4", got)
	}
	if got := valueOf(t, mfs, "forge_consensus_transport_errors_total", map[string]string{"kind": "rejected"}); got != 1 {
		t.Errorf("rejected errors = %v, want 1", got)
	}

	src.update(func(s *State) { s.TransportErrors["send"] = 9; s.TransportErrors["receive"] = 2 })
	mfs = scrape(t, m)
	for kind, want := range map[string]float64{"send": 9, "receive": 2, "rejected": 1} {
		if got := valueOf(t, mfs, "forge_consensus_transport_errors_total", map[string]string{"kind": kind}); got != want {
			t.Errorf("%s errors = %v, want %v", kind, got, want)
		}
	}

	src.update(func(s *State) { s.TransportErrors = nil })
	mfs = scrape(t, m)
	if mf := mfs["forge_consensus_transport_errors_total"]; mf != nil && len(mf.GetMetric()) > 0 {
		t.Errorf("transport errors exported from a nil map: %v", mf.GetMetric())
	}
}

func TestOperationCountersAndHistogram(t *testing.T) {
	m, _, _ := newTestMetrics(t, leaderState())
	boom := errors.New("boom")
	m.ObserveOperation("apply", 2*time.Millisecond, nil)
	m.ObserveOperation("apply", 20*time.Millisecond, boom)
	m.ObserveOperation("apply", 3*time.Millisecond, nil)
	m.ObserveOperation("read", 500*time.Microsecond, nil)
	m.ObserveOperation("add_node", time.Second, boom)
	m.ObserveOperation("", time.Millisecond, nil)

	mfs := scrape(t, m)
	op := func(o string) map[string]string { return map[string]string{"op": o} }
	for o, want := range map[string]float64{"apply": 3, "read": 1, "add_node": 1, "unknown": 1} {
		if got := valueOf(t, mfs, "forge_consensus_operations_total", op(o)); got != want {
			t.Errorf("operations_total{op=%q} = %v, want %v", o, got, want)
		}
	}
	for o, want := range map[string]float64{"apply": 1, "add_node": 1} {
		if got := valueOf(t, mfs, "forge_consensus_operations_failed_total", op(o)); got != want {
			t.Errorf("operations_failed{op=%q} = %v, want %v", o, got, want)
		}
	}
	if find(mfs, "forge_consensus_operations_failed_total", op("read")) != nil {
		t.Error("operations_failed{op=read} exported without any failure")
	}

	h := find(mfs, "forge_consensus_operation_duration_seconds", op("apply")).GetHistogram()
	if h == nil {
		t.Fatal("no histogram for apply")
	}
	if h.GetSampleCount() != 3 {
		t.Errorf("apply count = %d, want 3", h.GetSampleCount())
	}
	if !approx(h.GetSampleSum(), 0.025) {
		t.Errorf("apply sum = %v, want 0.025", h.GetSampleSum())
	}
	buckets := h.GetBucket()
	if len(buckets) == 0 || buckets[0].GetUpperBound() != 0.0001 {
		t.Fatalf("first bucket %v, want upper bound 0.0001", buckets)
	}
	if last := buckets[len(buckets)-1].GetUpperBound(); last != 10 && !math.IsInf(last, 1) {
		t.Errorf("last finite bucket bound = %v, want 10", last)
	}
	// Cumulative: ≤2.5ms holds 1, ≤5ms holds 2, ≤25ms holds 3.
	for bound, want := range map[float64]uint64{0.001: 0, 0.0025: 1, 0.005: 2, 0.025: 3, 10: 3} {
		found := false
		for _, b := range buckets {
			if b.GetUpperBound() == bound {
				found = true
				if b.GetCumulativeCount() != want {
					t.Errorf("bucket le=%v = %d, want %d", bound, b.GetCumulativeCount(), want)
				}
			}
		}
		if !found {
			t.Errorf("no bucket le=%v", bound)
		}
	}
}

func TestElectionsAndSnapshots(t *testing.T) {
	m, _, _ := newTestMetrics(t, leaderState())
	m.LeaderElected(150 * time.Millisecond)
	m.LeaderElected(450 * time.Millisecond)
	m.SnapshotTaken(2 * time.Second)
	m.SnapshotTaken(-time.Second) // clamped to 0

	mfs := scrape(t, m)
	if got := valueOf(t, mfs, "forge_consensus_leader_elections_total", nil); got != 2 {
		t.Errorf("elections = %v, want 2", got)
	}
	if got := valueOf(t, mfs, "forge_consensus_snapshots_total", nil); got != 2 {
		t.Errorf("snapshots = %v, want 2", got)
	}
	eh := find(mfs, "forge_consensus_leader_election_duration_seconds", nil).GetHistogram()
	if eh.GetSampleCount() != 2 || !approx(eh.GetSampleSum(), 0.6) {
		t.Errorf("election histogram count/sum = %d/%v, want 2/0.6", eh.GetSampleCount(), eh.GetSampleSum())
	}
	sh := find(mfs, "forge_consensus_snapshot_duration_seconds", nil).GetHistogram()
	if sh.GetSampleCount() != 2 || !approx(sh.GetSampleSum(), 2) {
		t.Errorf("snapshot histogram count/sum = %d/%v, want 2/2", sh.GetSampleCount(), sh.GetSampleSum())
	}
}

func TestOperationsPerSecond(t *testing.T) {
	m, _, clk := newTestMetrics(t, leaderState())
	rate := func() float64 {
		t.Helper()
		return valueOf(t, scrape(t, m), "forge_consensus_operations_per_second", nil)
	}
	if got := rate(); got != 0 {
		t.Fatalf("initial rate = %v, want 0", got)
	}

	// 30 operations spread over 3 fake seconds.
	for sec := range 3 {
		for i := range 10 {
			m.ObserveOperation("apply", time.Millisecond, nil)
			if i == 4 {
				clk.Advance(500 * time.Millisecond)
			}
		}
		if sec < 2 {
			clk.Advance(500 * time.Millisecond)
		}
	}
	if got := rate(); !approx(got, 3.0) {
		t.Errorf("rate after 30 ops over 3s = %v, want 3.0", got)
	}

	// 8 seconds later the first second is 10s old and leaves the window.
	clk.Advance(8 * time.Second)
	if got := rate(); !approx(got, 2.0) {
		t.Errorf("rate once the first second left the window = %v, want 2.0", got)
	}

	// After 20 quiet seconds the window is empty.
	clk.Advance(20 * time.Second)
	if got := rate(); got != 0 {
		t.Errorf("rate after 20 quiet seconds = %v, want 0", got)
	}

	// Buckets are reused correctly when the ring wraps.
	for range 5 {
		m.ObserveOperation("read", time.Millisecond, nil)
	}
	if got := rate(); !approx(got, 0.5) {
		t.Errorf("rate after the ring wrapped = %v, want 0.5", got)
	}
}

func TestRateWindowIgnoresStaleEvents(t *testing.T) {
	var w rateWindow
	t0 := time.Unix(1_700_000_000, 0)
	w.add(t0)
	w.add(t0.Add(-10 * time.Second)) // same bucket, older second: dropped
	if got := w.rate(t0); !approx(got, 0.1) {
		t.Errorf("rate = %v, want 0.1", got)
	}
	// Events in the future relative to the scrape clock are not counted.
	w.add(t0.Add(5 * time.Second))
	if got := w.rate(t0); !approx(got, 0.1) {
		t.Errorf("rate = %v, want 0.1", got)
	}
}

func TestDoubleRegistrationFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := &fakeSource{s: leaderState()}
	m1, err := New(reg, src, Options{})
	if err != nil {
		t.Fatalf("first New: %v", err)
	}
	_, err = New(reg, src, Options{})
	if err == nil {
		t.Fatal("second New on the same registry succeeded")
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("error %v does not wrap prometheus.AlreadyRegisteredError", err)
	}
	// The first registration is intact.
	m1.LeaderElected(time.Second)
	if n := countSeries(t, reg, "forge_consensus_leader_elections_total"); n != 1 {
		t.Errorf("after failed re-registration: %d elections series, want 1", n)
	}

	// Another node (another node_id constant label) can share the registry.
	other := &fakeSource{s: State{NodeID: 2}}
	if _, err := New(reg, other, Options{}); err != nil {
		t.Errorf("second node on a shared registry: %v", err)
	}
}

// countSeries gathers reg and returns how many series name has.
func countSeries(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

func TestNewArguments(t *testing.T) {
	if _, err := New(prometheus.NewRegistry(), nil, Options{}); err == nil {
		t.Error("New with a nil Source succeeded")
	}
	m, err := New(nil, &fakeSource{s: leaderState()}, Options{})
	if err != nil {
		t.Fatalf("New with a nil registry: %v", err)
	}
	if m.Registry() == nil {
		t.Fatal("Registry() is nil")
	}
	if n := countSeries(t, m.Registry(), "forge_consensus_term"); n != 1 {
		t.Errorf("%d term series, want 1", n)
	}
}

func TestConcurrentRecordersAndScrapes(t *testing.T) {
	m, src, clk := newTestMetrics(t, leaderState())
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	const workers, perWorker = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			op := "op" + strconv.Itoa(w%3)
			for i := range perWorker {
				var err error
				if i%4 == 0 {
					err = errors.New("x")
				}
				m.ObserveOperation(op, time.Duration(i)*time.Microsecond, err)
				m.LeaderElected(time.Millisecond)
				m.SnapshotTaken(time.Millisecond)
				if i%50 == 0 {
					clk.Advance(time.Second)
					src.update(func(s *State) { s.Term++; s.TransportErrors["send"]++ })
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 10 {
				resp, err := http.Get(srv.URL)
				if err != nil {
					t.Errorf("GET: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()

	mfs := scrape(t, m)
	var total, failed float64
	for _, s := range mfs["forge_consensus_operations_total"].GetMetric() {
		total += value(s)
	}
	for _, s := range mfs["forge_consensus_operations_failed_total"].GetMetric() {
		failed += value(s)
	}
	if total != workers*perWorker {
		t.Errorf("operations_total = %v, want %d", total, workers*perWorker)
	}
	if failed != workers*perWorker/4 {
		t.Errorf("operations_failed = %v, want %d", failed, workers*perWorker/4)
	}
	if got := valueOf(t, mfs, "forge_consensus_leader_elections_total", nil); got != workers*perWorker {
		t.Errorf("elections = %v, want %d", got, workers*perWorker)
	}
	if got := valueOf(t, mfs, "forge_consensus_term", nil); got != 7+workers*perWorker/50 {
		t.Errorf("term = %v, want %d", got, 7+workers*perWorker/50)
	}
}

// gatherAll gathers a fully exercised Metrics, so that every metric
// family, including the vectors, has at least one series.
func gatherAll(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	m, _, _ := newTestMetrics(t, leaderState())
	m.ObserveOperation("apply", time.Millisecond, errors.New("x"))
	m.LeaderElected(time.Second)
	m.SnapshotTaken(time.Second)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	return mfs
}

func TestCorruptionDetected(t *testing.T) {
	m, _, _ := newTestMetrics(t, leaderState())
	if got := valueOf(t, scrape(t, m), "forge_consensus_corruption_detected_total", nil); got != 0 {
		t.Fatalf("corruption_detected_total = %v before any alarm, want 0", got)
	}
	m.CorruptionDetected()
	m.CorruptionDetected()
	if got := valueOf(t, scrape(t, m), "forge_consensus_corruption_detected_total", nil); got != 2 {
		t.Errorf("corruption_detected_total = %v, want 2", got)
	}
}
