// Command forge-app is an example Forge (github.com/xraph/forge) app made
// highly available with the consensus extension (package forgeext): a
// small users API whose state lives in the cluster's replicated key-value
// store.
//
// Run a three-node cluster in one process, on loopback:
//
//	go run ./examples/forge-app -local-cluster
//
// or one node per process (three terminals, same fixed port layout):
//
//	go run ./examples/forge-app -node 1
//	go run ./examples/forge-app -node 2
//	go run ./examples/forge-app -node 3
//
// Node N serves its app (the users API under /api and the admin API under
// /consensus) on 127.0.0.1:8080+N, talks Raft on 127.0.0.1:7000+N, and
// serves the consensus HTTP API on 7100+N and the client protocol on
// 7200+N. See README.md for a walk-through with curl.
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
	"path/filepath"
	"syscall"
	"time"
)

// clusterSize is the number of nodes in the example's cluster.
const clusterSize = 3

// Timeouts of starting and stopping the nodes.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
)

// AdminTokenEnv names the environment variable holding the admin API's
// bearer token.
const AdminTokenEnv = "CONSENSUS_ADMIN_TOKEN"

// options are the command line's settings.
type options struct {
	node         int
	local        bool
	dataDir      string
	appPortBase  int
	raftPortBase int
	verbose      bool
}

// parseFlags parses the command line.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("forge-app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.node, "node", 0, fmt.Sprintf("run node `N` (1..%d) of the cluster in this process", clusterSize))
	fs.BoolVar(&o.local, "local-cluster", false, "run all three nodes in this process")
	fs.StringVar(&o.dataDir, "data", "", "data directory `DIR`; node N keeps its data in DIR/node-N "+
		"(default: a temporary directory removed on exit with -local-cluster, "+
		filepath.Join(os.TempDir(), "forge-app-data")+" with -node)")
	fs.IntVar(&o.appPortBase, "app-port-base", 8080, "node N serves its app on port `BASE`+N")
	fs.IntVar(&o.raftPortBase, "raft-port-base", 7000,
		"node N talks Raft on port `BASE`+N, serves the consensus API on BASE+100+N and the client protocol on BASE+200+N")
	fs.BoolVar(&o.verbose, "v", false, "log at debug level")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: forge-app -local-cluster | -node N [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	switch {
	case fs.NArg() > 0:
		return options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case o.local && o.node != 0:
		return options{}, errors.New("-local-cluster and -node exclude each other")
	case !o.local && (o.node < 1 || o.node > clusterSize):
		return options{}, fmt.Errorf("-node must be 1..%d (or use -local-cluster), got %d", clusterSize, o.node)
	case o.appPortBase < 0 || o.appPortBase+clusterSize > 65535:
		return options{}, fmt.Errorf("-app-port-base %d leaves the port range", o.appPortBase)
	case o.raftPortBase < 0 || o.raftPortBase+200+clusterSize > 65535:
		return options{}, fmt.Errorf("-raft-port-base %d leaves the port range", o.raftPortBase)
	}
	return o, nil
}

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		slog.Error("forge-app failed", "err", err)
		os.Exit(1)
	}
}

// run parses the command line, starts the nodes it asks for and serves
// until SIGINT or SIGTERM, then stops them.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	// The consensus extension logs to slog.Default().
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ids := []int{o.node}
	if o.local {
		ids = []int{1, 2, 3}
	}
	dataDir := o.dataDir
	switch {
	case dataDir != "":
	case o.local:
		tmp, err := os.MkdirTemp("", "forge-app-*")
		if err != nil {
			return fmt.Errorf("create a temporary data directory: %w", err)
		}
		defer func() {
			if err := os.RemoveAll(tmp); err != nil {
				log.Error("remove the temporary data directory", "dir", tmp, "err", err)
			}
		}()
		dataDir = tmp
	default:
		// A fixed directory, so that a node restarted without -data finds
		// its state again (a Raft node must not forget its votes and log).
		dataDir = filepath.Join(os.TempDir(), "forge-app-data")
	}
	log.Info("data directory", "dir", dataDir)

	cc := ClusterConfig{Host: "127.0.0.1", DataDir: dataDir, AdminToken: getenv(AdminTokenEnv), Logger: log}
	for id := 1; id <= clusterSize; id++ {
		cc.Nodes = append(cc.Nodes, DefaultPorts(o.appPortBase, o.raftPortBase, id))
	}

	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	nodes, err := StartNodes(startCtx, cc, ids)
	cancel()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	for _, n := range nodes {
		fmt.Fprintf(stdout, "node %d: app %s (/api/users, /consensus), consensus API %s\n",
			n.ID(), n.URL(), n.ConsensusURL())
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")

	<-ctx.Done()
	stop() // a second signal now kills the process at once
	log.Info("stopping")
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := nodes.Stop(stopCtx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	log.Info("stopped")
	return nil
}
