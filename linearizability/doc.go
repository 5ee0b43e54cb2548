// Package linearizability records histories of client operations against a
// replicated key-value store and checks them for linearizability with
// porcupine (github.com/anishathalye/porcupine).
//
// A test records each client operation with a Recorder: Invoke when the
// client sends it, Return when the client receives a definite answer, Fail
// when the outcome is unknown (the request timed out, the client gave up,
// the client or server crashed). Times are whatever clock the caller uses —
// the simulator's virtual nanoseconds — and are only compared with each
// other.
//
// Check decides whether the recorded History is linearizable with respect to
// a sequential key-value store supporting Get, Put, Delete and
// compare-and-swap (CAS). The history is partitioned by key: operations on
// different keys never constrain each other, so each key is checked on its
// own, which keeps the search small.
//
// # Operations with an unknown outcome
//
// An operation whose outcome is unknown may have taken effect at any moment
// after it was invoked — including after the client stopped waiting — or
// never. Check models this by giving every open operation a return time
// after every recorded time (the history's horizon): the checker may then
// linearize it anywhere after its call, and linearizing it after every other
// operation is the same as its never having happened. An open Put or Delete
// takes effect where it is linearized; an open CAS swaps there if the value
// matches and otherwise does nothing; neither can be illegal. An open Get
// constrains nothing and is left out of the check (it still appears, greyed,
// on the HTML timeline).
//
// Open writes make the search expensive: with k of them pending on a key,
// the checker may try all 2^k subsets of them before each later operation,
// and must try them all to prove a history illegal. Check therefore first
// leaves out open writes that nothing in the history could depend on, and
// gives others an earlier return time where that provably cannot change the
// verdict (see Check). When the exact search still runs long, a relaxed
// check, in which open writes may take effect any number of times, often
// proves the history illegal quickly (Result.Relaxed).
//
// # Time-outs
//
// Linearizability checking is NP-hard in general, so Check takes a wall-clock
// time-out. A check that runs out of time reports Inconclusive, never Ok. A
// time-out is the only source of non-determinism: with no time-out (or one
// that is not reached) the verdict depends only on the history.
//
// # Visualisation
//
// Result.WriteHTML writes porcupine's interactive HTML timeline of the
// checked history: one row per client, the longest linearizations found and,
// for an illegal history, where they break down. The history's annotations
// (leader changes, partitions, crashes) are drawn on their own rows.
package linearizability
