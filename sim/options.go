package sim

import "fmt"

// Options are the fully resolved settings of one run. A run is reproducible
// from its Options alone; Draw turns a seed into Options (swarm testing:
// each seed also chooses which faults are on and how hard).
type Options struct {
	Seed     uint64 `json:"seed"`
	Profile  string `json:"profile"`
	Nodes    int    `json:"nodes"`    // initial voters: 3, 5 or 7
	Duration Time   `json:"duration"` // fault phase and workload, virtual ns; then heal and drain
	// HealAt is when faults stop and the liveness phase begins.
	HealAt Time `json:"heal_at"`
	// LivenessTimeouts bounds the liveness phase in election timeouts.
	LivenessTimeouts int `json:"liveness_timeouts"`
	// HealQuorumOnly leaves a random minority of the voters down during
	// the liveness phase: the rest (a quorum core) must recover alone.
	HealQuorumOnly bool `json:"heal_quorum_only,omitempty"`

	TickInterval  Time    `json:"tick_interval"`
	ElectionTick  int     `json:"election_tick"`
	HeartbeatTick int     `json:"heartbeat_tick"`
	PreVote       bool    `json:"pre_vote"`
	CheckQuorum   bool    `json:"check_quorum"`
	LeaseReads    bool    `json:"lease_reads"`
	Drift         float64 `json:"drift"` // max per-node tick-rate drift (0.1 = ±10 %)

	Network NetworkOptions `json:"network"`
	Disk    DiskOptions    `json:"disk"`
	// Storage are the silent storage faults (bit flips, lost and
	// misdirected writes, latent read errors) and the repair of the nodes
	// they damage.
	Storage StorageOptions `json:"storage,omitzero"`
	// ConfChurn are the membership faults aimed at joint configurations
	// (confchurn.go; swarm profile only).
	ConfChurn ConfChurnOptions `json:"conf_churn,omitzero"`

	// Process and cluster faults: rates are events per simulated second
	// for the whole cluster; 0 turns the class off.
	CrashRate      float64 `json:"crash_rate"`
	CrashOnWrite   float64 `json:"crash_on_write"` // share of crashes aimed at a pending write
	RestartMax     Time    `json:"restart_max"`
	PauseRate      float64 `json:"pause_rate"`
	PauseMax       Time    `json:"pause_max"`
	PartitionRate  float64 `json:"partition_rate"`
	PartitionMax   Time    `json:"partition_max"`
	OneWayShare    float64 `json:"one_way_share"`
	FlapShare      float64 `json:"flap_share"`
	ClogRate       float64 `json:"clog_rate"`
	ClogMax        Time    `json:"clog_max"`
	MembershipRate float64 `json:"membership_rate"`
	TransferRate   float64 `json:"transfer_rate"`
	// LeaseRaceRate is the rate of lease races (leaserace.go; lease
	// profile only, drawn from a generator of its own).
	LeaseRaceRate float64 `json:"lease_race_rate,omitempty"`

	// Workload.
	Clients       int     `json:"clients"`
	Keys          int     `json:"keys"`
	ReadShare     float64 `json:"read_share"`
	CASShare      float64 `json:"cas_share"`
	DeleteShare   float64 `json:"delete_share"`
	LogReadShare  float64 `json:"log_read_share"` // reads that go through the log
	ThinkMax      Time    `json:"think_max"`
	ClientTimeout Time    `json:"client_timeout"` // give up on an operation (its outcome stays unknown)
	AttemptTime   Time    `json:"attempt_time"`   // retry an attempt with no answer after this

	// Leader churn (churn.go): windows of adversarial schedules around
	// leader changes, per simulated second, and their longest duration in
	// election timeouts.
	LeaderChurnRate     float64 `json:"leader_churn_rate,omitempty"`
	LeaderChurnTimeouts int     `json:"leader_churn_timeouts,omitempty"`

	// Code knobs (simulator only).
	MaxSizePerMsg     uint64 `json:"max_size_per_msg"`
	MaxInflightMsgs   int    `json:"max_inflight_msgs"`
	SnapshotThreshold uint64 `json:"snapshot_threshold"`
	SnapshotKeep      uint64 `json:"snapshot_keep"`
	// VerifyInterval turns on cross-replica verification every this many
	// applied entries (node.Config.VerifyInterval; 0: off).
	VerifyInterval uint64 `json:"verify_interval,omitempty"`

	// Bugs plants known bugs (only in builds with the simbugs tag).
	Bugs uint64 `json:"bugs,omitempty"`
	// SkipChecks turns checks off by name (see the Check constants): to see
	// what the remaining checks catch of a planted bug.
	SkipChecks []string `json:"skip_checks,omitempty"`
	// Faults, when not nil, replaces the drawn fault schedule (shrink).
	Faults []Fault `json:"faults,omitempty"`
}

// Profiles returns the names of the option profiles Draw knows.
func Profiles() []string { return []string{"swarm", "calm", "lease", "storage"} }

// Draw resolves the options of a seed under a profile: "swarm" (the
// default: every fault class on with some probability and a drawn
// intensity), "calm" (no faults: a baseline), "lease" (swarm with lease
// reads, bounded drift and no pauses), "storage" (swarm with silent
// storage faults always on).
//
// Silent storage faults are drawn from a generator of their own, after
// everything else: a seed's other choices are the same whether they are
// on or off.
func Draw(seed uint64, profile string) (Options, error) {
	r := NewRand(seed, "options")
	o := Options{
		Seed: seed, Profile: profile,
		Nodes:            []int{3, 5, 5, 7}[r.Intn(4)],
		Duration:         60 * Second,
		LivenessTimeouts: 40,
		TickInterval:     int64(r.Range(20, 50)) * Millisecond,
		ElectionTick:     int(r.Range(10, 20)),
		HeartbeatTick:    int(r.Range(1, 3)),
		PreVote:          r.Chance(0.7),
		CheckQuorum:      r.Chance(0.7),
		Clients:          int(r.Range(1, 8)),
		Keys:             int(r.Range(8, 16)),
		ReadShare:        0.2 + 0.4*r.Float64(),
		CASShare:         0.3 * r.Float64(),
		DeleteShare:      0.15 * r.Float64(),
		LogReadShare:     0.3 * r.Float64(),
		ThinkMax:         r.Range(0, 50) * Millisecond,
		ClientTimeout:    5 * Second,
		AttemptTime:      r.Range(300, 1000) * Millisecond,
		Network: NetworkOptions{
			DelayMin:  r.Range(0, 5) * Millisecond,
			DelayMean: r.Range(1, 20) * Millisecond,
			QueueCap:  int(r.Range(2, 64)),
		},
		Disk: DiskOptions{
			WriteMean: r.Range(50, 2000) * Microsecond,
			SyncMean:  r.Range(100, 5000) * Microsecond,
		},
		RestartMax:        r.Range(1, 2000) * Millisecond,
		PauseMax:          r.Range(100, 5000) * Millisecond,
		PartitionMax:      r.Range(100, 5000) * Millisecond,
		ClogMax:           r.Range(10, 3000) * Millisecond,
		MaxSizePerMsg:     uint64(r.Range(64, 64<<10)),
		MaxInflightMsgs:   int(r.Range(1, 256)),
		SnapshotThreshold: uint64(r.Range(20, 500)),
		SnapshotKeep:      uint64(r.Range(0, 50)),
	}
	if o.HeartbeatTick >= o.ElectionTick {
		o.HeartbeatTick = 1
	}
	switch profile {
	case "calm":
	case "swarm", "lease", "storage":
		on := func(p float64) bool { return r.Chance(p) }
		if on(0.5) {
			o.Network.DropRate = 0.3 * r.Float64()
		}
		if on(0.5) {
			o.Network.DupRate = 0.5 * r.Float64()
		}
		if on(0.3) {
			o.Network.DelayMean = r.Range(20, 100) * Millisecond
		}
		o.Network.Encode = on(0.2)
		if on(0.5) {
			o.Disk.StallRate = 0.01 * r.Float64()
			o.Disk.StallMean = r.Range(10, 500) * Millisecond
		}
		if on(0.2) {
			o.Disk.WriteErrorRate = 0.002 * r.Float64()
			o.Disk.ReadErrorRate = 0.2 * r.Float64()
		}
		o.Disk.TornRate = r.Float64()
		if on(0.6) {
			o.CrashRate = 0.05 + 0.5*r.Float64()
			o.CrashOnWrite = r.Float64()
		}
		if on(0.3) && profile != "lease" {
			o.PauseRate = 0.05 + 0.3*r.Float64()
		}
		if on(0.6) {
			o.PartitionRate = 0.05 + 0.5*r.Float64()
			o.OneWayShare = r.Float64()
			o.FlapShare = 0.3 * r.Float64()
		}
		if on(0.3) {
			o.ClogRate = 0.05 + 0.3*r.Float64()
		}
		if on(0.4) {
			o.MembershipRate = 0.02 + 0.2*r.Float64()
		}
		if on(0.4) {
			o.TransferRate = 0.02 + 0.2*r.Float64()
		}
		if on(0.3) {
			o.Drift = 0.1 * r.Float64()
		}
		if profile == "lease" {
			o.CheckQuorum, o.LeaseReads, o.PauseRate = true, true, 0
			o.Drift = min(o.Drift, 0.02)
			o.LeaseRaceRate = drawLeaseRaceRate(NewRand(seed, "lease-race"))
		}
	default:
		return Options{}, fmt.Errorf("sim: unknown profile %q (known: swarm, calm, lease, storage)", profile)
	}
	if profile != "calm" {
		o.HealQuorumOnly = r.Chance(0.5)
		o.Storage = drawStorage(NewRand(seed, "storage"), o.Nodes, profile == "storage")
	}
	if profile == "swarm" {
		o.ConfChurn = drawConfChurn(NewRand(seed, "confchurn"))
	}
	// Drawn last, so that the draws above are what they were before.
	o.VerifyInterval = uint64(r.Range(8, 128))
	// Leader churn and small messages: a generator of their own.
	drawLeaderChurn(&o, NewRand(seed, "leader-churn"))
	// A link holds at most QueueCap messages in flight, so it carries
	// QueueCap per delay. A link that cannot carry a few times the
	// heartbeats is no network: heartbeats and their answers fill it for
	// good, and a forwarded request finds it full every time, healed or
	// not (swarm seed 42874: 2 messages per 99 ms against a heartbeat every
	// 40 ms). Such a cap is raised to four heartbeat intervals' worth.
	if hb := int64(o.HeartbeatTick) * o.TickInterval; hb > 0 {
		o.Network.QueueCap = max(o.Network.QueueCap, int(4*int64(o.Network.DelayMean)/hb)+2)
	}
	// Faults for the whole duration; the liveness phase follows it.
	o.HealAt = o.Duration
	return o, o.Validate()
}

// Validate checks that the options describe a runnable simulation.
func (o *Options) Validate() error {
	bad := func(f string, args ...any) error { return fmt.Errorf("sim: invalid options: "+f, args...) }
	switch {
	case o.Nodes < 1 || o.Nodes > 9:
		return bad("nodes %d not in 1..9", o.Nodes)
	case o.Duration <= 0 || o.HealAt < 0 || o.HealAt > o.Duration:
		return bad("duration %d, heal at %d", o.Duration, o.HealAt)
	case o.TickInterval <= 0:
		return bad("tick interval %d", o.TickInterval)
	case o.ElectionTick <= o.HeartbeatTick || o.HeartbeatTick <= 0:
		return bad("election tick %d, heartbeat tick %d", o.ElectionTick, o.HeartbeatTick)
	case o.LeaseReads && !o.CheckQuorum:
		return bad("lease reads need check quorum")
	case o.Clients < 0 || (o.Clients > 0 && o.Keys <= 0):
		return bad("clients %d, keys %d", o.Clients, o.Keys)
	case o.Drift < 0 || o.Drift >= 0.5:
		return bad("drift %v", o.Drift)
	case o.LivenessTimeouts <= 0:
		return bad("liveness timeouts %d", o.LivenessTimeouts)
	case o.Storage.MaxDamaged < 0 || o.Storage.FlipRate < 0 || o.Storage.LostWriteRate < 0 ||
		o.Storage.MisdirectRate < 0 || o.Storage.LatentRate < 0 || o.Storage.CrashAfterMax < 0 || o.Storage.RepairMax < 0:
		return bad("storage %+v", o.Storage)
	case o.ConfChurn.ReplaceRate < 0 || o.ConfChurn.RaceRate < 0 || o.ConfChurn.CrashAfterApplyRate < 0:
		return bad("conf churn %+v", o.ConfChurn)
	case o.LeaderChurnRate < 0 || o.LeaderChurnTimeouts < 0:
		return bad("leader churn rate %v, %d election timeouts", o.LeaderChurnRate, o.LeaderChurnTimeouts)
	}
	for _, name := range o.SkipChecks {
		switch name {
		case CheckElectionSafety, CheckLogMatching, CheckLeaderCompleteness, CheckStateMachineSafety,
			CheckMonotonic, CheckDurability, CheckPersistBeforeSend, CheckConvergence, CheckVerification,
			CheckAppliedDurable, CheckRestartBelowApplied,
			CheckCommitQuorum, CheckSingleConfChange,
			CheckLeaseRead,
			CheckCommitVerified, CheckPreVoteTerm:
		default:
			return bad("unknown check %q in skip_checks", name)
		}
	}
	return nil
}

// drawStorage draws the silent storage faults of a seed from their own
// generator r: on with probability 0.3 (always with always), each class on
// with probability 0.6 (flips at least), on at most a minority of the
// initial voters. Every value is drawn whether or not its class is on.
func drawStorage(r *Rand, nodes int, always bool) StorageOptions {
	on := r.Chance(0.3)
	s := StorageOptions{
		FlipRate:      0.02 + 0.3*r.Float64(),
		LostWriteRate: 0.02 + 0.2*r.Float64(),
		MisdirectRate: 0.02 + 0.2*r.Float64(),
		LatentRate:    0.02 + 0.2*r.Float64(),
		CrashAfter:    r.Float64(),
		CrashAfterMax: r.Range(Millisecond, 500*Millisecond),
		MaxDamaged:    1 + r.Intn(max(1, (nodes-1)/2)),
		RepairShare:   r.Float64(),
		RepairMax:     r.Range(100*Millisecond, 5*Second),
	}
	classes := [4]bool{r.Chance(0.6), r.Chance(0.6), r.Chance(0.6), r.Chance(0.6)}
	if !(on || always) || nodes < 3 {
		return StorageOptions{}
	}
	if !classes[0] && !classes[1] && !classes[2] && !classes[3] {
		classes[0] = true
	}
	for i, f := range []*float64{&s.FlipRate, &s.LostWriteRate, &s.MisdirectRate, &s.LatentRate} {
		if !classes[i] {
			*f = 0
		}
	}
	return s
}
