package sim

import "sort"

// FaultKind is a class of scheduled fault.
type FaultKind uint8

// Scheduled fault kinds. Network loss, duplication and delay, disk latency
// and errors are drawn as the run goes (from their own generators); these
// are the discrete decisions that shrink can remove.
const (
	FaultCrash FaultKind = iota + 1
	FaultCrashOnWrite
	FaultPause
	FaultPartition
	FaultClog
	FaultMembership
	FaultTransfer
	// Silent storage faults (storage.go). Dur, when not 0, crashes the
	// damaged node that long after the damage.
	FaultFlip
	FaultLostWrite
	FaultMisdirect
	FaultLatent
	// Membership faults (confchurn.go, swarm profile): replace a voter
	// through a joint configuration (Dur, when not 0, crashes the outgoing
	// voter that long as the change is proposed); propose a second change
	// while one is pending; crash a node for Dur right after it next
	// applies a membership change.
	FaultReplaceVoter
	FaultConfRace
	FaultCrashAfterConfApply
	// FaultLeaseRace is a lease race (leaserace.go; lease profile only):
	// Shape is the mode, Dur how long the leader stays cut off.
	FaultLeaseRace
	// FaultLeaderChurn opens a leader-churn window of Dur (churn.go).
	FaultLeaderChurn
	faultKindEnd
)

var faultKindNames = [...]string{
	FaultCrash: "crash", FaultCrashOnWrite: "crash-on-write", FaultPause: "pause",
	FaultPartition: "partition", FaultClog: "clog", FaultMembership: "membership",
	FaultTransfer: "transfer", FaultFlip: "bit-flip", FaultLostWrite: "lost-write",
	FaultMisdirect: "misdirected-write", FaultLatent: "latent-read-error",
	FaultReplaceVoter: "replace-voter", FaultConfRace: "conf-race", FaultCrashAfterConfApply: "crash-after-conf-apply",
	FaultLeaseRace:   "lease-race",
	FaultLeaderChurn: "leader-churn",
}

// String names the kind.
func (k FaultKind) String() string {
	if k > 0 && k < faultKindEnd {
		return faultKindNames[k]
	}
	return "fault?"
}

// MarshalText names the kind in JSON.
func (k FaultKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind name.
func (k *FaultKind) UnmarshalText(b []byte) error {
	for i := FaultKind(1); i < faultKindEnd; i++ {
		if faultKindNames[i] == string(b) {
			*k = i
			return nil
		}
	}
	return &unknownNameError{what: "fault kind", name: string(b)}
}

type unknownNameError struct{ what, name string }

func (e *unknownNameError) Error() string { return "sim: unknown " + e.what + " " + e.name }

// Partition shapes.
const (
	ShapeIsolateOne = iota
	ShapeIsolateLeader
	ShapeSplit
	ShapeMinority
	ShapeBridge
	shapeEnd
)

// Fault is one scheduled fault decision. Which node, link or group it hits
// is resolved when it fires, from R, against the cluster as it is then
// (so "isolate the leader" isolates whoever leads).
type Fault struct {
	At     Time      `json:"at"`
	Kind   FaultKind `json:"kind"`
	Dur    Time      `json:"dur,omitempty"`
	Shape  int       `json:"shape,omitempty"`
	OneWay bool      `json:"one_way,omitempty"`
	Flap   bool      `json:"flap,omitempty"`
	R      uint64    `json:"r"`
}

// drawFaults draws the fault schedule of a run from its own generator:
// each class is a Poisson process over the fault phase.
func drawFaults(o *Options) []Fault {
	r := NewRand(o.Seed, "faults")
	var fs []Fault
	poisson := func(rate float64, mk func(at Time) Fault) {
		if rate <= 0 {
			return
		}
		mean := Time(float64(Second) / rate)
		for at := r.Exp(mean); at < o.HealAt; at += r.Exp(mean) {
			fs = append(fs, mk(at))
		}
	}
	poisson(o.CrashRate, func(at Time) Fault {
		k := FaultCrash
		if r.Chance(o.CrashOnWrite) {
			k = FaultCrashOnWrite
		}
		return Fault{At: at, Kind: k, Dur: r.Range(Millisecond, max(o.RestartMax, Millisecond)), R: r.Uint64()}
	})
	poisson(o.PauseRate, func(at Time) Fault {
		return Fault{At: at, Kind: FaultPause, Dur: r.Range(Millisecond, max(o.PauseMax, Millisecond)), R: r.Uint64()}
	})
	poisson(o.PartitionRate, func(at Time) Fault {
		return Fault{At: at, Kind: FaultPartition, Dur: r.Range(100*Millisecond, max(o.PartitionMax, 100*Millisecond)),
			Shape: r.Intn(shapeEnd), OneWay: r.Chance(o.OneWayShare), Flap: r.Chance(o.FlapShare), R: r.Uint64()}
	})
	poisson(o.ClogRate, func(at Time) Fault {
		return Fault{At: at, Kind: FaultClog, Dur: r.Range(Millisecond, max(o.ClogMax, Millisecond)), R: r.Uint64()}
	})
	poisson(o.MembershipRate, func(at Time) Fault { return Fault{At: at, Kind: FaultMembership, R: r.Uint64()} })
	poisson(o.TransferRate, func(at Time) Fault { return Fault{At: at, Kind: FaultTransfer, R: r.Uint64()} })
	// Storage faults last: the classes before draw the same with them on
	// or off.
	st := &o.Storage
	storage := func(k FaultKind) func(at Time) Fault {
		return func(at Time) Fault {
			f := Fault{At: at, Kind: k, R: r.Uint64()}
			if r.Chance(st.CrashAfter) {
				f.Dur = r.Range(Millisecond, max(st.CrashAfterMax, Millisecond))
			}
			return f
		}
	}
	poisson(st.FlipRate, storage(FaultFlip))
	poisson(st.LostWriteRate, storage(FaultLostWrite))
	poisson(st.MisdirectRate, storage(FaultMisdirect))
	poisson(st.LatentRate, storage(FaultLatent))
	// Membership faults from generators of their own.
	fs = drawConfChurnFaults(o, fs)
	// Lease races come from a generator of their own.
	fs = append(fs, drawLeaseRaces(o)...)
	// Leader churn from a generator of its own.
	fs = append(fs, drawChurnFaults(o)...)
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].At < fs[j].At })
	return fs
}
