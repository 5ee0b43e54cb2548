package main

import "github.com/forge-consensus/consensus/sim"

// Exit codes of simrun (see the package documentation).
const (
	exitPass            = 0
	exitError           = 1
	exitSafety          = 2
	exitLinearizability = 3
	exitLiveness        = 4
	exitPanic           = 5
	exitNonDeterminism  = 6
	// exitAppliedDurable is the safety failure of the checks
	// applied-durable (a node applied a membership change above its
	// durable commit index) and restart-below-applied (a node restarted
	// below a membership change it had applied).
	exitAppliedDurable = 7
)

// verdictExit maps a run's verdict to its exit code. Inconclusive is not a
// failure: it exits 0.
func verdictExit(v sim.Verdict) int {
	switch v {
	case sim.VerdictPass, sim.VerdictInconclusive:
		return exitPass
	case sim.VerdictSafety:
		return exitSafety
	case sim.VerdictLinearizability:
		return exitLinearizability
	case sim.VerdictLiveness:
		return exitLiveness
	case sim.VerdictPanic:
		return exitPanic
	case sim.VerdictNonDeterminism:
		return exitNonDeterminism
	}
	return exitError
}

// resultExit maps a run's verdict and failed check to its exit code: the
// verdict's, except that the safety checks applied-durable and
// restart-below-applied have their own.
func resultExit(v sim.Verdict, check string) int {
	if v == sim.VerdictSafety && (check == sim.CheckAppliedDurable || check == sim.CheckRestartBelowApplied) {
		return exitAppliedDurable
	}
	return verdictExit(v)
}

// severity ranks exit codes: pass < error < liveness < linearizability <
// safety < applied-durable < panic < non-determinism. A found failure
// outranks an internal error, so a failed bundle write does not hide what
// the run found.
func severity(code int) int {
	switch code {
	case exitPass:
		return 0
	case exitError:
		return 1
	case exitLiveness:
		return 2
	case exitLinearizability:
		return 3
	case exitSafety:
		return 4
	case exitAppliedDurable:
		return 5
	case exitPanic:
		return 6
	case exitNonDeterminism:
		return 7
	}
	return 1
}

// worstExit returns the more severe of two exit codes.
func worstExit(a, b int) int {
	if severity(b) > severity(a) {
		return b
	}
	return a
}
