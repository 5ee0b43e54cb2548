// Package metrics exports the Prometheus metrics of one consensus node.
//
// The node's owner implements [Source], whose Snapshot is read at scrape
// time for every gauge, and calls the event recorders
// ([Metrics.ObserveOperation], [Metrics.LeaderElected],
// [Metrics.SnapshotTaken]) as things happen, which feed the counters and
// histograms. [New] registers everything on the *prometheus.Registry it is
// given (or on a fresh one); the package keeps no global state and never
// touches prometheus.DefaultRegisterer. [Metrics.Handler] serves the
// registry over HTTP:
//
//	m, err := metrics.New(prometheus.NewRegistry(), node, metrics.Options{})
//	if err != nil { ... }
//	http.Handle("/metrics", m.Handler())
//
// Every metric carries the constant label node_id: the decimal State.NodeID
// that New reads from the Source once.
//
// # Metrics
//
// Cluster and role, gauges read from the Source:
//
//	forge_consensus_cluster_size            gauge    voters and learners known, including this node
//	forge_consensus_cluster_healthy_nodes   gauge    of those, how many were recently active
//	forge_consensus_is_leader               gauge    1 if this node is the leader, else 0
//	forge_consensus_has_quorum              gauge    1 if this node believes the cluster has a quorum, else 0
//	forge_consensus_term                    gauge    current Raft term
//
// Log and state machine, gauges read from the Source:
//
//	forge_consensus_commit_index            gauge    highest log index known to be committed
//	forge_consensus_last_applied            gauge    highest log index applied to the state machine
//	forge_consensus_log_entries             gauge    log entries since the last snapshot
//	forge_consensus_log_size                gauge    bytes of the stored entries not yet compacted, encoded (see below)
//
// forge_consensus_log_size counts each entry still in the stored log (not
// yet compacted into a snapshot) at its encoded size: its data, plus its
// term, index and data length as varints and its type as one byte, the
// wire protocol's encoding of an entry. It does not depend on the storage
// type, nor count a storage's own framing.
//
// Client operations, from ObserveOperation:
//
//	forge_consensus_operations_total{op}              counter    operations completed, failed or not
//	forge_consensus_operations_failed_total{op}             counter    operations completed with an error
//	forge_consensus_operation_duration_seconds{op}    histogram  operation latency; buckets 100µs to 10s
//	forge_consensus_operations_per_second                gauge      operations completed per second, last 10s
//
// forge_consensus_operations_per_second is computed by the node itself, at
// scrape time, from a ring of ten per-second buckets: the operations
// observed in the current second and the nine before it, divided by 10. It
// therefore reads low during the first 10 seconds after start and drops to 0
// ten seconds after the last operation. It exists for consumers without
// PromQL; in Prometheus, prefer rate(forge_consensus_operations_total[...]).
// The clock is Options.Now (time.Now by default).
//
// Elections and snapshots, from LeaderElected and SnapshotTaken:
//
//	forge_consensus_leader_elections_total             counter    elections this node saw complete
//	forge_consensus_leader_election_duration_seconds   histogram  how long the cluster was leaderless, as seen here; buckets 10ms to 60s
//	forge_consensus_snapshots_total                    counter    snapshots taken
//	forge_consensus_snapshot_duration_seconds          histogram  snapshot duration; buckets 1ms to 300s
//
// Cross-replica verification, from CorruptionDetected:
//
//	forge_consensus_corruption_detected_total          counter    divergence alarms raised: a replica's state hash differed from the majority's
//
// Peers, gauges read from State.Peers, exported only while this node is the
// leader (a follower exports no series for them):
//
//	forge_consensus_peer_replication_lag{peer}   gauge    commit index minus the peer's match index, floored at 0
//	forge_consensus_peer_active{peer}            gauge    1 if the peer was recently active, else 0
//
// Transport, read from the cumulative State.TransportErrors map:
//
//	forge_consensus_transport_errors_total{kind}   counter   transport errors by kind ("send", "receive", "rejected", ...)
//
// The histograms are classic cumulative Prometheus histograms (with _bucket,
// _sum and _count series). The op, peer and kind label values come from the
// owner, so each should come from a small, fixed set. An example Grafana
// dashboard using these metrics is in examples/grafana/consensus-dashboard.json.
package metrics
