package main

import "syscall"

// childAttr ties a local-cluster node to this process: the kernel sends
// the node SIGTERM when the local-cluster process dies, however it dies
// (kill -9 included), so no node outlives it holding its ports.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
