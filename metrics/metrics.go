package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	namespace = "forge"
	subsystem = "consensus"

	// rateWindowSeconds is the length of the sliding window behind
	// forge_consensus_operations_per_second, in whole seconds.
	rateWindowSeconds = 10
)

// Histogram bucket upper bounds, in seconds.
var (
	// operationBuckets spans 100µs to 10s.
	operationBuckets = []float64{
		0.0001, 0.00025, 0.0005,
		0.001, 0.0025, 0.005,
		0.01, 0.025, 0.05,
		0.1, 0.25, 0.5,
		1, 2.5, 5, 10,
	}
	// electionBuckets spans 10ms (a fast election) to 60s (a cluster that
	// could not elect a leader for a long time).
	electionBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// snapshotBuckets spans 1ms to 5 minutes.
	snapshotBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300}
)

// Source is what the metrics read at scrape time. It is implemented by the
// node's owner and must be safe for concurrent use: Snapshot is called once
// per scrape, from the scraping goroutine, and once by New.
type Source interface {
	// Snapshot returns the node's current state.
	Snapshot() State
}

// State is a point-in-time view of one consensus node, as returned by
// Source.Snapshot.
type State struct {
	// NodeID is this node's ID. It is read once, by New, and becomes the
	// node_id constant label of every metric unless NodeName is set.
	NodeID uint64
	// NodeName is this node's name; when set, it is the node_id label.
	NodeName string
	// Term is the current Raft term.
	Term uint64
	// Leader is the ID of the leader this node knows of, 0 if none.
	Leader uint64
	// IsLeader reports whether this node is the leader.
	IsLeader bool
	// HasQuorum reports whether this node believes the cluster has a
	// quorum of active voters.
	HasQuorum bool
	// ClusterSize is the number of voters and learners known, including
	// this node.
	ClusterSize int
	// HealthyNodes is how many of ClusterSize were recently active.
	HealthyNodes int
	// CommitIndex is the highest log index known to be committed.
	CommitIndex uint64
	// LastApplied is the highest log index applied to the state machine.
	LastApplied uint64
	// LogEntries is the number of entries in the log since the last
	// snapshot.
	LogEntries uint64
	// LogBytes is the size in bytes of the entries in the stored log not
	// yet compacted into a snapshot, each at its encoded size: its data,
	// and its term, index and data length (varints) and type (a byte).
	LogBytes uint64
	// Peers lists the other members of the cluster (excluding this node).
	// It is only meaningful, and only exported, while IsLeader is true.
	Peers []PeerState
	// TransportErrors holds cumulative transport error counts by kind
	// ("send", "receive", "rejected", ...). It may be nil. Counts must never
	// decrease for a given kind, because they are exported as a counter.
	TransportErrors map[string]uint64
}

// PeerState is the leader's view of one peer.
type PeerState struct {
	// ID is the peer's node ID.
	ID uint64
	// Name is the peer's name; when set, it is the peer label (else the
	// ID).
	Name string
	// MatchIndex is the highest log index known to be replicated on the peer.
	MatchIndex uint64
	// Active reports whether the peer was recently heard from.
	Active bool
}

// Options tunes New. The zero value is ready to use.
type Options struct {
	// Now returns the current time. It drives
	// forge_consensus_operations_per_second. nil means time.Now.
	Now func() time.Time
	// Logger receives errors that the HTTP handler hits while serving a
	// scrape. nil means slog.Default().
	Logger *slog.Logger
}

// Metrics exports the Prometheus metrics of one consensus node. Gauges are
// read from a Source at scrape time; counters and histograms are fed by the
// event recorders (ObserveOperation, LeaderElected, SnapshotTaken). All
// methods are safe for concurrent use.
type Metrics struct {
	reg    *prometheus.Registry
	now    func() time.Time
	logger *slog.Logger
	c      *collector

	// ops caches each op's series (copy on write): looking a series up by
	// its label value hashes it, on every client operation otherwise.
	ops   atomic.Pointer[map[string]opSeries]
	opsMu sync.Mutex // serializes additions to ops
}

// opSeries are the series of one op that every observation updates.
type opSeries struct {
	total    prometheus.Counter
	duration prometheus.Observer
}

// series returns op's cached series, creating them on first use.
func (m *Metrics) series(op string) opSeries {
	if p := m.ops.Load(); p != nil {
		if s, ok := (*p)[op]; ok {
			return s
		}
	}
	m.opsMu.Lock()
	defer m.opsMu.Unlock()
	var next map[string]opSeries
	if p := m.ops.Load(); p != nil {
		if s, ok := (*p)[op]; ok {
			return s
		}
		next = maps.Clone(*p)
	} else {
		next = map[string]opSeries{}
	}
	s := opSeries{total: m.c.opsTotal.WithLabelValues(op), duration: m.c.opDuration.WithLabelValues(op)}
	next[op] = s
	m.ops.Store(&next)
	return s
}

// New creates the metrics of the node described by src and registers them
// on reg. If reg is nil, New creates a fresh registry (see Registry). New
// calls src.Snapshot once, to learn the node ID used as the node_id
// constant label. It returns an error if src is nil or if registration fails,
// for example because New was already called with the same registry.
func New(reg *prometheus.Registry, src Source, opts Options) (*Metrics, error) {
	if src == nil {
		return nil, errors.New("metrics: new: nil Source")
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	first := src.Snapshot()
	nodeID := first.NodeID
	label := first.NodeName
	if label == "" {
		label = strconv.FormatUint(nodeID, 10)
	}
	c := newCollector(src, label, now)
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("metrics: registering metrics of node %d: %w", nodeID, err)
	}
	return &Metrics{reg: reg, now: now, logger: logger, c: c}, nil
}

// Registry returns the registry the metrics are registered on: the one
// passed to New, or the one New created.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler returns an http.Handler that serves every metric of the registry
// in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slogPrinter{m.logger},
	})
}

// ObserveOperation records one completed client operation (op is e.g.
// "apply", "read", "add_node"; an empty op is recorded as "unknown"), how
// long it took, and whether it failed (err != nil). Every call counts
// towards forge_consensus_operations_total and
// forge_consensus_operations_per_second, failed or not. Each distinct op
// creates new series, so op should come from a small fixed set.
func (m *Metrics) ObserveOperation(op string, d time.Duration, err error) {
	if op == "" {
		op = "unknown"
	}
	s := m.series(op)
	s.total.Inc()
	if err != nil {
		m.c.opsFailed.WithLabelValues(op).Inc()
	}
	s.duration.Observe(seconds(d))
	m.c.window.add(m.now())
}

// LeaderElected records an election this node saw complete; d is how long
// the cluster was leaderless as seen from this node.
func (m *Metrics) LeaderElected(d time.Duration) {
	m.c.elections.Inc()
	m.c.electionDuration.Observe(seconds(d))
}

// SnapshotTaken records a completed snapshot and how long it took.
func (m *Metrics) SnapshotTaken(d time.Duration) {
	m.c.snapshots.Inc()
	m.c.snapshotDuration.Observe(seconds(d))
}

// CorruptionDetected records a divergence alarm: cross-replica
// verification found a replica whose state differs from the majority's.
func (m *Metrics) CorruptionDetected() {
	m.c.corruption.Inc()
}

// seconds converts d to seconds, clamping negative durations to 0 so a
// clock step cannot decrease a histogram's sum.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

// slogPrinter adapts a *slog.Logger to promhttp.Logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.l.Error("metrics: serving scrape", "err", fmt.Sprint(v...))
}

// collector is the single prometheus.Collector behind Metrics, so that
// registration is all-or-nothing.
type collector struct {
	src    Source
	now    func() time.Time
	window rateWindow

	opsTotal         *prometheus.CounterVec
	opsFailed        *prometheus.CounterVec
	opDuration       *prometheus.HistogramVec
	elections        prometheus.Counter
	electionDuration prometheus.Histogram
	snapshots        prometheus.Counter
	snapshotDuration prometheus.Histogram
	corruption       prometheus.Counter

	clusterSize     *prometheus.Desc
	healthyNodes    *prometheus.Desc
	isLeader        *prometheus.Desc
	hasQuorum       *prometheus.Desc
	term            *prometheus.Desc
	commitIndex     *prometheus.Desc
	lastApplied     *prometheus.Desc
	logSize         *prometheus.Desc
	logEntries      *prometheus.Desc
	opsPerSec       *prometheus.Desc
	peerLag         *prometheus.Desc
	peerActive      *prometheus.Desc
	transportErrors *prometheus.Desc
}

func newCollector(src Source, nodeID string, now func() time.Time) *collector {
	constLabels := prometheus.Labels{"node_id": nodeID}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, constLabels)
	}
	return &collector{
		src: src,
		now: now,

		opsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "operations_total",
			Help:        "Client operations completed, failed or not, by operation.",
			ConstLabels: constLabels,
		}, []string{"op"}),
		opsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "operations_failed_total",
			Help:        "Client operations that completed with an error, by operation.",
			ConstLabels: constLabels,
		}, []string{"op"}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "operation_duration_seconds",
			Help:        "Duration of client operations, by operation.",
			ConstLabels: constLabels,
			Buckets:     operationBuckets,
		}, []string{"op"}),
		elections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "leader_elections_total",
			Help:        "Leader elections this node saw complete.",
			ConstLabels: constLabels,
		}),
		electionDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "leader_election_duration_seconds",
			Help:        "How long the cluster was leaderless before an election completed, as seen by this node.",
			ConstLabels: constLabels,
			Buckets:     electionBuckets,
		}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "snapshots_total",
			Help:        "Snapshots taken by this node.",
			ConstLabels: constLabels,
		}),
		snapshotDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "snapshot_duration_seconds",
			Help:        "Duration of snapshots taken by this node.",
			ConstLabels: constLabels,
			Buckets:     snapshotBuckets,
		}),
		corruption: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "corruption_detected_total",
			Help:        "Divergence alarms raised by this node's cross-replica verification: a replica's state hash differed from the majority's.",
			ConstLabels: constLabels,
		}),

		clusterSize:     desc("cluster_size", "Voters and learners known to this node, including itself."),
		healthyNodes:    desc("cluster_healthy_nodes", "Cluster members, including this node, that were recently active."),
		isLeader:        desc("is_leader", "1 if this node is the leader, else 0."),
		hasQuorum:       desc("has_quorum", "1 if this node believes the cluster has a quorum, else 0."),
		term:            desc("term", "Current Raft term."),
		commitIndex:     desc("commit_index", "Highest log index known to be committed."),
		lastApplied:     desc("last_applied", "Highest log index applied to the state machine."),
		logSize:         desc("log_size", "Size in bytes of the entries in the stored log not yet compacted into a snapshot, at their encoded size (data, and term, index, type and data length)."),
		logEntries:      desc("log_entries", "Log entries since the last snapshot."),
		opsPerSec:       desc("operations_per_second", fmt.Sprintf("Client operations completed per second over the last %d seconds.", rateWindowSeconds)),
		peerLag:         desc("peer_replication_lag", "Commit index minus the peer's match index, floored at 0. Exported only by the leader.", "peer"),
		peerActive:      desc("peer_active", "1 if the peer was recently active, else 0. Exported only by the leader.", "peer"),
		transportErrors: desc("transport_errors_total", "Transport errors, by kind.", "kind"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	c.opsTotal.Describe(ch)
	c.opsFailed.Describe(ch)
	c.opDuration.Describe(ch)
	c.elections.Describe(ch)
	c.electionDuration.Describe(ch)
	c.snapshots.Describe(ch)
	c.snapshotDuration.Describe(ch)
	c.corruption.Describe(ch)
	for _, d := range []*prometheus.Desc{
		c.clusterSize, c.healthyNodes, c.isLeader, c.hasQuorum, c.term,
		c.commitIndex, c.lastApplied, c.logSize, c.logEntries, c.opsPerSec,
		c.peerLag, c.peerActive, c.transportErrors,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It takes one Snapshot per scrape
// so that all gauges describe the same instant.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.opsTotal.Collect(ch)
	c.opsFailed.Collect(ch)
	c.opDuration.Collect(ch)
	c.elections.Collect(ch)
	c.electionDuration.Collect(ch)
	c.snapshots.Collect(ch)
	c.snapshotDuration.Collect(ch)
	c.corruption.Collect(ch)

	gauge := func(d *prometheus.Desc, v float64, labelValues ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labelValues...)
	}
	s := c.src.Snapshot()
	gauge(c.clusterSize, float64(s.ClusterSize))
	gauge(c.healthyNodes, float64(s.HealthyNodes))
	gauge(c.isLeader, boolToFloat(s.IsLeader))
	gauge(c.hasQuorum, boolToFloat(s.HasQuorum))
	gauge(c.term, float64(s.Term))
	gauge(c.commitIndex, float64(s.CommitIndex))
	gauge(c.lastApplied, float64(s.LastApplied))
	gauge(c.logSize, float64(s.LogBytes))
	gauge(c.logEntries, float64(s.LogEntries))
	gauge(c.opsPerSec, c.window.rate(c.now()))
	if s.IsLeader {
		seen := make(map[uint64]bool, len(s.Peers))
		for _, p := range s.Peers {
			if seen[p.ID] {
				continue // a duplicate series would fail the whole scrape
			}
			seen[p.ID] = true
			peer := p.Name
			if peer == "" {
				peer = strconv.FormatUint(p.ID, 10)
			}
			var lag uint64
			if s.CommitIndex > p.MatchIndex {
				lag = s.CommitIndex - p.MatchIndex
			}
			gauge(c.peerLag, float64(lag), peer)
			gauge(c.peerActive, boolToFloat(p.Active), peer)
		}
	}
	for kind, n := range s.TransportErrors {
		ch <- prometheus.MustNewConstMetric(c.transportErrors, prometheus.CounterValue, float64(n), kind)
	}
}

func boolToFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// rateWindow counts events in a ring of per-second buckets covering the
// last rateWindowSeconds seconds.
type rateWindow struct {
	mu    sync.Mutex
	sec   [rateWindowSeconds]int64 // Unix second each bucket holds
	count [rateWindowSeconds]uint64
}

func bucketIndex(sec int64) int {
	return int(((sec % rateWindowSeconds) + rateWindowSeconds) % rateWindowSeconds)
}

// add records one event at t.
func (w *rateWindow) add(t time.Time) {
	sec := t.Unix()
	i := bucketIndex(sec)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.sec[i] == sec:
	case w.sec[i] < sec:
		w.sec[i], w.count[i] = sec, 0
	default:
		return // older than the window already held in this bucket
	}
	w.count[i]++
}

// rate returns the events per second over the rateWindowSeconds whole
// seconds ending with (and including) the second of now.
func (w *rateWindow) rate(now time.Time) float64 {
	cur := now.Unix()
	var n uint64
	w.mu.Lock()
	for i := range w.sec {
		if w.count[i] > 0 && w.sec[i] <= cur && w.sec[i] > cur-rateWindowSeconds {
			n += w.count[i]
		}
	}
	w.mu.Unlock()
	return float64(n) / rateWindowSeconds
}
