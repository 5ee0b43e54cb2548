package main

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/server"
)

// Exit codes of consensusd (documented in docs/operations.md and in -h).
const (
	// exitOK: stopped by a signal, cleanly.
	exitOK = 0
	// exitFailure: any other failure (a port in use, the HTTP API failed).
	exitFailure = 1
	// exitConfig: bad flags or configuration.
	exitConfig = 2
	// exitStorageIO: a storage write, fsync or read failed (including a
	// disk that filled up under Pebble's write-ahead log): the node stopped
	// rather than acknowledge what it could not make durable. Fix the disk
	// and start it again; nothing it acknowledged is lost.
	exitStorageIO = 3
	// exitCorrupt: the stored state is damaged and the node refused to
	// start with it.
	exitCorrupt = 4
)

// exitCodesHelp is the exit-code part of consensusd -h.
const exitCodesHelp = `Exit codes:
  0  stopped by SIGINT or SIGTERM
  1  other failure (a port in use, the HTTP API failed)
  2  bad flags or configuration
  3  storage I/O failure (a write, fsync or read failed): the node stopped
     without acknowledging anything it could not make durable
  4  damaged storage refused at start
A full disk is not a failure: the node refuses writes (HTTP 507) and keeps
serving reads until space returns (see storage.min_free_space).
`

// startExitCode is the exit code for a node that failed to start.
func startExitCode(err error) int {
	switch {
	case errors.Is(err, server.ErrInvalidConfig):
		return exitConfig
	case server.IsCorrupt(err):
		return exitCorrupt
	case errors.Is(err, node.ErrStorage), isIOError(err):
		return exitStorageIO
	}
	return exitFailure
}

// stopExitCode is the exit code for a node that stopped by itself.
func stopExitCode(err error) int {
	switch {
	case server.IsCorrupt(err):
		return exitCorrupt
	case errors.Is(err, node.ErrStorage), isIOError(err):
		return exitStorageIO
	}
	return exitFailure
}

// isIOError reports whether err is a file system error.
func isIOError(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}
