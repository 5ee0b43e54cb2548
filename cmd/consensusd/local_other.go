//go:build !linux

package main

import "syscall"

// childAttr puts a local-cluster node in this process's process group, so
// a signal to the group (Ctrl-C in a terminal) reaches every node. Only
// Linux can also stop the nodes when the parent is killed outright.
func childAttr() *syscall.SysProcAttr { return nil }
