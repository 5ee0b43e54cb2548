package harness

import (
	"os"
	"strings"
	"syscall"
)

// reexecEnv marks a process that ReexecWithMadvFree already re-executed.
const reexecEnv = "RAFTBENCH_REEXEC"

// ReexecWithMadvFree re-executes the running program with
// GODEBUG=madvdontneed=0 added, unless GODEBUG already sets madvdontneed
// (set GODEBUG=madvdontneed=1 to opt out) or this process is the
// re-executed one. It returns only if it did not re-execute.
//
// Why: the Go runtime hands freed heap memory back to the kernel with
// MADV_DONTNEED, and the next run touching that memory again takes a page
// fault per 4 KiB page. On the VM these numbers were taken on, a fault
// costs some 10-20 µs, and a 200,000-entry run took from 0 to 30,000 of
// them depending on when the scavenger had last run, which moved results
// by up to 4x. With MADV_FREE the pages stay mapped while the machine has
// memory to spare, so after one warm-up run neither implementation pays
// for faults. This is the same for both implementations.
func ReexecWithMadvFree() {
	godebug := os.Getenv("GODEBUG")
	if os.Getenv(reexecEnv) != "" || strings.Contains(godebug, "madvdontneed") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	godebug += "madvdontneed=0"
	env := append(os.Environ(), "GODEBUG="+godebug, reexecEnv+"=1")
	_ = syscall.Exec(exe, os.Args, env) // returns only on failure
}
