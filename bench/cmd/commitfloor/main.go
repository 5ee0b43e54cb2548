//go:build linux

// Command commitfloor measures the fastest a 3-replica commit can be on
// this machine: the floor under any Raft implementation here, ours
// included.
//
// It starts three replica processes on loopback and, in a fourth process,
// the clients, the same shape as a cluster of consensusd with loadgen
// beside it. The clients share one connection to replica 1, the "leader"
// (as loadgen's clients share one client.Client), each with one write
// outstanding; every write is a request with an ID and a fixed-size value,
// pipelined on the connection, and is answered with its ID once committed.
//
// The leader takes every write queued so far as one batch, sends it to
// both followers over plain TCP and appends it to its own file with
// fdatasync, in parallel. Each follower appends the batch with fdatasync
// and acknowledges it. A batch is committed once two of the three replicas
// have it on disk, and then every write in it is answered. The leader
// appends one batch at a time; the next batch, everything that queued
// meanwhile (group commit), starts as soon as its previous append ends,
// while followers may still be writing.
//
// There is no protocol beyond that: no terms, no log matching, no state
// machine, no checksums, no encoding but length prefixes and IDs. Whatever
// it measures is the disk, the loopback network and the scheduler on this
// machine; a real implementation can only be slower.
//
// With -apply the replicas also do what any replicated key-value store
// must: the leader encodes each write as a key-value command (a Set of
// one of 1,000 keys, in a client session, as loadgen writes them) and
// every replica applies every command to a kv.Store configured as
// consensusd's; the leader applies a batch before answering it, a
// follower after acknowledging it. That is the floor of any replicated
// key-value store here, ours included, rather than of the log alone.
//
//	go run ./cmd/commitfloor -clients 1 -n 3000       # replicas and clients
//	commitfloor -serve -port 7601 &                   # replicas only, until killed
//	commitfloor -drive -port 7601 -clients 100 -n 50000   # clients only
//
// The client process prints one line:
//
//	commit floor clients=100 conns=1 n=50000 size=128  37976 writes/s  p50 2.31ms  p99 12.1ms  p999 15ms
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

func main() {
	var (
		replica = flag.Int("replica", 0, "internal: run as replica 1, 2 or 3")
		serve   = flag.Bool("serve", false, "run the three replicas until interrupted (no clients)")
		drive   = flag.Bool("drive", false, "run the clients only, against replicas started with -serve")
		base    = flag.Int("port", 7601, "first of three loopback ports")
		dir     = flag.String("dir", "", "directory for the replicas' files (default: a temporary one)")
		clients = flag.Int("clients", 1, "concurrent clients, each with one write outstanding")
		conns   = flag.Int("conns", 1, "connections the clients share, pipelining their writes")
		n       = flag.Int("n", 3000, "writes to time")
		warmup  = flag.Int("warmup", 2000, "writes before timing starts")
		size    = flag.Int("size", 128, "bytes per write")
		apply   = flag.Bool("apply", false, "replicas apply every write to a key-value store (kv.Store, as consensusd's)"+
			": the floor of any replicated key-value store, not only of the log")
	)
	flag.Parse()
	cfg := loadConfig{addr: addr(*base, 1), clients: *clients, conns: *conns, n: *n, warmup: *warmup, size: *size}
	var err error
	switch {
	case *replica != 0:
		err = runReplica(*replica, *base, *dir, *apply)
	case *drive:
		var res result
		if res, err = runClients(cfg); err == nil {
			fmt.Println(res)
		}
	case *serve:
		err = serveUntilSignal(*base, *dir, *apply)
	default:
		err = runAll(*base, *dir, *apply, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "commitfloor:", err)
		os.Exit(1)
	}
}

func addr(base, i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i-1) }

// replicas is three running replica processes.
type replicas struct {
	procs   []*exec.Cmd
	cleanup func()
}

// startReplicas starts the three replica processes (followers first: the
// leader dials them) and waits until each listens.
func startReplicas(base int, dir string, apply bool) (*replicas, error) {
	rs := &replicas{cleanup: func() {}}
	if dir == "" {
		d, err := os.MkdirTemp("", "commitfloor")
		if err != nil {
			return nil, err
		}
		rs.cleanup = func() { os.RemoveAll(d) }
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		rs.stop()
		return nil, err
	}
	for _, i := range []int{3, 2, 1} {
		p := exec.Command(self, "-replica", fmt.Sprint(i), "-port", fmt.Sprint(base), "-dir", dir, fmt.Sprintf("-apply=%v", apply))
		p.Stderr = os.Stderr
		if err := p.Start(); err != nil {
			rs.stop()
			return nil, err
		}
		rs.procs = append(rs.procs, p)
		if err := waitListening(addr(base, i)); err != nil {
			rs.stop()
			return nil, err
		}
	}
	return rs, nil
}

// stop kills the replicas, the leader first (followers exit quietly on its
// EOF), and removes a temporary directory.
func (rs *replicas) stop() {
	procs := slices.Clone(rs.procs)
	slices.Reverse(procs)
	for _, p := range procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	rs.cleanup()
}

// runAll starts the replicas, runs the clients in a child process and
// prints what it prints.
func runAll(base int, dir string, apply bool, cfg loadConfig) error {
	rs, err := startReplicas(base, dir, apply)
	if err != nil {
		return err
	}
	defer rs.stop()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	c := exec.Command(self, "-drive", "-port", fmt.Sprint(base), "-clients", fmt.Sprint(cfg.clients),
		"-conns", fmt.Sprint(cfg.conns), "-n", fmt.Sprint(cfg.n), "-warmup", fmt.Sprint(cfg.warmup),
		"-size", fmt.Sprint(cfg.size))
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("client process: %w", err)
	}
	return nil
}

// serveUntilSignal runs the replicas until SIGINT or SIGTERM.
func serveUntilSignal(base int, dir string, apply bool) error {
	rs, err := startReplicas(base, dir, apply)
	if err != nil {
		return err
	}
	defer rs.stop()
	fmt.Printf("commit floor replicas listening, leader at %s\n", addr(base, 1))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	exited := make(chan error, len(rs.procs)) // each replica's Wait
	for _, p := range rs.procs {
		go func() { exited <- p.Wait() }()
	}
	err = nil
	waiting := len(rs.procs)
	select {
	case <-sig:
	case err = <-exited:
		err = errors.Join(errors.New("a replica exited"), err)
		waiting--
	}
	for _, p := range slices.Backward(rs.procs) {
		_ = p.Process.Kill()
	}
	for ; waiting > 0; waiting-- {
		<-exited
	}
	rs.procs = nil // waited for
	return err
}

func waitListening(a string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := dialTCP(a)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica at %s did not start: %w", a, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
