package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/forge-consensus/consensus/recovery"
	"github.com/forge-consensus/consensus/server"
)

// Exit statuses of consensusd recover.
const (
	exitRecoverFailed  = 1 // an error: unreachable cluster, I/O, a node that did not catch up
	exitUsage          = 2
	exitRecoverRefused = 3 // refused as unsafe; nothing was changed by the refusing step
)

const recoverUsage = `usage: consensusd recover -config FILE -new-id N [flags]

Brings back a node whose storage refuses to start (damaged), under a new ID:
  1 checks that its storage is damaged, absent or empty (or -force)
  2 finds the leader through the other members' admin APIs and checks that
    the old node is inactive, that the others keep a quorum without it, and
    that N was never a member
  3 removes the old ID from the cluster
  4 moves the data directory aside to <path>.damaged-<UTC time> (never deleted)
  5 rewrites FILE for node N with join: true (the old file kept as FILE.bak-<UTC time>)
  6 adds node N as a learner at the node's address
  7 starts the node, which catches up from the leader
  8 promotes node N to voter once its log is within -max-lag entries of the
    leader's commit index
Then it stops the node (start it as usual with -config FILE), or keeps it
running with -serve. Run it again after an interruption: it completes the
job; once done, it does nothing.

Exit status: 0 done (or nothing to do), 1 failed, 2 usage error, 3 refused as
unsafe (nothing changed by the refusing step).

flags:
`

// recoverCmd is "consensusd recover".
func recoverCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consensusd recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, recoverUsage)
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "the damaged node's configuration file (rewritten for the new ID)")
	newID := fs.String("new-id", "", "the node's new ID: one no member of the cluster ever had")
	force := fs.Bool("force", false, "replace the node even if its storage opens cleanly")
	endpoints := fs.String("endpoints", "", "comma-separated admin API base URLs of other members "+
		"(default: the config's peers at their api_port); the token is sent to these only")
	token := fs.String("token", "", "admin bearer token (default $CONSENSUSCTL_TOKEN, else the config's first admin token)")
	maxLag := fs.Uint64("max-lag", recovery.DefaultMaxLag, "promote once the new node is within this many entries "+
		"of the leader's commit index")
	timeout := fs.Duration("catch-up-timeout", recovery.DefaultCatchUpTimeout, "how long to wait for the new node to catch up")
	serve := fs.Bool("serve", false, "keep the recovered node running afterwards (until SIGTERM)")
	level := fs.String("log-level", "warn", "the recovered node's log level while it runs: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *path == "" || *newID == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "consensusd recover: -config and -new-id are required, and nothing else")
		fs.Usage()
		return exitUsage
	}
	id, err := server.ParseNodeID(*newID)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd recover: -new-id: %v\n", err)
		return exitUsage
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "consensusd recover: -log-level: %v\n", err)
		return exitUsage
	}
	if *token == "" {
		*token = os.Getenv("CONSENSUSCTL_TOKEN")
	}
	var eps []string
	for _, e := range strings.Split(*endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := recovery.Run(ctx, recovery.Options{
		ConfigPath: *path, NewID: id, NewName: strings.TrimSpace(*newID), Force: *force, Endpoints: eps, Token: *token,
		MaxLag: *maxLag, CatchUpTimeout: *timeout, KeepRunning: *serve,
		Out: stdout, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "consensusd recover: %v\n", err)
		if errors.Is(err, recovery.ErrRefused) {
			return exitRecoverRefused
		}
		return exitRecoverFailed
	}
	s := res.Server
	if s == nil {
		return 0
	}
	fmt.Fprintf(stdout, "serving as node %s until SIGTERM\n", strings.TrimSpace(*newID))
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-s.Runner().Done():
		log.Error("node stopped", "err", s.Runner().Err())
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			log.Error("close", "err", err)
			return exitRecoverFailed
		}
	case <-time.After(30 * time.Second):
		log.Error("close timed out")
		return exitRecoverFailed
	}
	return 0
}

// damagedHint tells an operator what to do about a node whose storage
// refused to start.
func damagedHint(stderr io.Writer, path string, err error) {
	if server.IsCorrupt(err) {
		fmt.Fprintf(stderr, "consensusd: the node's storage is damaged; it must not rejoin under its ID. "+
			"Bring it back under a new one:\n  consensusd recover -config %s -new-id <an ID no member ever had>\n", path)
	}
}
