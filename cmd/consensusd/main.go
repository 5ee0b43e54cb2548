// Command consensusd runs one Forge Consensus node with the replicated
// key-value store and its HTTP API, or a whole local cluster.
//
//	consensusd -config node1.yaml        run one node
//	consensusd local-cluster [-dir DIR] [-nodes 3] [-port 7001] [-transport grpc]
//	                                     write configs for a loopback cluster
//	                                     under DIR and run one process per node
//	consensusd recover -config node2.yaml -new-id 4
//	                                     bring back a node whose storage is
//	                                     damaged, under a new ID (package recovery)
//
// The HTTP API (see package server): PUT/GET/DELETE /kv/{key}, GET /status.
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
	"syscall"

	"github.com/forge-consensus/consensus/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "local-cluster" {
		return localCluster(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "recover" {
		return recoverCmd(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("consensusd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "node configuration file (YAML)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "consensusd: -config is required (or: consensusd local-cluster, consensusd recover)")
		fs.Usage()
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "consensusd: -log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg, err := server.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd: %s: %v\n", *path, err)
		return 2
	}
	s, err := server.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd: %v\n", err)
		damagedHint(stderr, *path, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- s.Serve() }()
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		if err != nil {
			log.Error("http api failed", "err", err)
		}
	case <-s.Runner().Done():
		log.Error("node stopped", "err", s.Runner().Err())
	}
	if err := s.Close(); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("close", "err", err)
		return 1
	}
	return 0
}
