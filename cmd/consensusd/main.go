// Command consensusd runs one Forge Consensus node with the replicated
// key-value store and its HTTP API, or a whole local cluster.
//
//	consensusd -config node1.yaml        run one node
//	consensusd -config node1.yaml -pprof 127.0.0.1:6060
//	                                     and serve Go's profiles (net/http/pprof)
//	                                     at /debug/pprof/ on that address
//	consensusd local-cluster [-dir DIR] [-nodes 3] [-port 7001] [-transport grpc]
//	                                     write configs for a loopback cluster
//	                                     under DIR and run one process per node
//	consensusd recover -config node2.yaml -new-id 4
//	                                     bring back a node whose storage is
//	                                     damaged, under a new ID (package recovery)
//	consensusd restore -from FILE -config node1.yaml -new-cluster-id ID
//	                                     seed a node of a new cluster from a
//	                                     backup (consensusctl snapshot save)
//	consensusd migrate-storage -config node1.yaml -to-type pebble -to-path DIR
//	                                     copy a stopped node's storage to
//	                                     another type, verified
//	consensusd encryption-status -config node1.yaml
//	                                     list the encryption key IDs the stopped
//	                                     node's stored records still use
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
	"net"
	"net/http"
	"net/http/pprof"
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
	if len(args) > 0 && args[0] == "restore" {
		return restoreCmd(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "migrate-storage" {
		return migrateCmd(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "encryption-status" {
		return encryptionStatusCmd(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("consensusd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "node configuration file (YAML)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	pprofAddr := fs.String("pprof", "", "serve Go's runtime profiles (net/http/pprof) at /debug/pprof/ on this"+
		" address, unauthenticated: keep it on loopback (default: off)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: consensusd -config FILE [-log-level LEVEL] [-pprof ADDR] | consensusd local-cluster [flags]")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), exitCodesHelp)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if *path == "" {
		fmt.Fprintln(stderr, "consensusd: -config is required (or: consensusd local-cluster, consensusd recover, "+
			"consensusd restore, consensusd migrate-storage, consensusd encryption-status)")
		fs.Usage()
		return exitConfig
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "consensusd: -log-level: %v\n", err)
		return exitConfig
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if orphanedLocalNode() {
		log.Warn("not starting: the local-cluster process that started this node has exited")
		return exitOK
	}
	cfg, err := server.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd: %s: %v\n", *path, err)
		return exitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// With discovery.type other than static, find the cluster first: form
	// it (bootstrap_expect) or join it; SIGTERM stops the wait.
	cfg, err = server.Discover(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("shutting down before the node found its cluster")
			return exitOK
		}
		code := startExitCode(err)
		log.Error("node failed to start", "exit_code", code, "dir", cfg.Storage.Path, "err", err)
		return code
	}
	s, err := server.New(cfg, log)
	if err != nil {
		code := startExitCode(err)
		log.Error("node failed to start", "exit_code", code, "dir", cfg.Storage.Path, "err", err)
		damagedHint(stderr, *path, err)
		return code
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "consensusd: -pprof: %v\n", err)
			_ = s.Close()
			return exitConfig
		}
		defer ln.Close()
		go func() { _ = http.Serve(ln, profileMux()) }()
		log.Info("serving runtime profiles", "addr", ln.Addr().String()+"/debug/pprof/")
	}
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
		// The node stopped by itself: a storage failure. One ERROR line
		// says why; closing a failed storage may fail again, quietly.
		err := s.Runner().Err()
		code := stopExitCode(err)
		log.Error("node stopped: storage failure", "exit_code", code, "dir", cfg.Storage.Path, "err", err)
		_ = s.Close()
		return code
	}
	if err := s.Close(); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("close", "err", err)
		return exitFailure
	}
	return exitOK
}

// profileMux serves net/http/pprof's handlers under /debug/pprof/.
func profileMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
