//go:build linux

// Command commitfloor measures the fastest a 3-replica commit can be on
// this machine: the floor under any Raft implementation here, ours
// included.
//
// It starts three replica processes on loopback. Clients (in this process)
// send fixed-size writes to replica 1, the "leader". The leader takes every
// write queued so far as one batch, sends it to both followers over plain
// TCP and appends it to its own file with fdatasync, in parallel. Each
// follower appends the batch with fdatasync and acknowledges it. A batch is
// committed once two of the three replicas have it on disk, and then every
// client in it is answered. The leader appends one batch at a time; the
// next batch, everything that queued meanwhile (group commit), starts as
// soon as its previous append ends, while followers may still be writing.
//
// There is no protocol beyond that: no terms, no log matching, no state
// machine, no checksums, no encoding but a length prefix. Whatever it
// measures is the disk, the loopback network and the scheduler on this
// machine; a real implementation can only be slower.
//
//	go run ./cmd/commitfloor -clients 1 -n 3000
//	go run ./cmd/commitfloor -clients 100 -n 50000
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

func main() {
	var (
		replica = flag.Int("replica", 0, "internal: run as replica 1, 2 or 3")
		base    = flag.Int("port", 7601, "first of three loopback ports")
		dir     = flag.String("dir", "", "directory for the replicas' files (default: a temporary one)")
		clients = flag.Int("clients", 1, "concurrent clients, each with one write outstanding")
		conns   = flag.Int("conns", 8, "connections the clients share, pipelining their writes")
		n       = flag.Int("n", 3000, "writes to time")
		warmup  = flag.Int("warmup", 2000, "writes before timing starts")
		size    = flag.Int("size", 128, "bytes per write")
	)
	flag.Parse()
	var err error
	if *replica != 0 {
		err = runReplica(*replica, *base, *dir)
	} else {
		err = runLoad(*base, *dir, *clients, *conns, *n, *warmup, *size)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "commitfloor:", err)
		os.Exit(1)
	}
}

func addr(base, i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i-1) }

// runLoad starts the replicas, drives them with the clients and prints the
// throughput and latency.
func runLoad(base int, dir string, clients, conns, n, warmup, size int) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "commitfloor")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		slices.Reverse(procs) // the leader first: followers exit quietly on its EOF
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	// Followers first: the leader dials them.
	for _, i := range []int{3, 2, 1} {
		p := exec.Command(self, "-replica", fmt.Sprint(i), "-port", fmt.Sprint(base), "-dir", dir)
		p.Stderr = os.Stderr
		if err := p.Start(); err != nil {
			return err
		}
		procs = append(procs, p)
		if err := waitListening(addr(base, i)); err != nil {
			return err
		}
	}

	cs := make([]*clientConn, min(conns, clients))
	for i := range cs {
		c, err := dialClientConn(addr(base, 1))
		if err != nil {
			return err
		}
		defer c.nc.Close()
		cs[i] = c
	}
	req := make([]byte, 4+size)
	binary.BigEndian.PutUint32(req, uint32(size))
	run := func(total int) ([]time.Duration, time.Duration, error) {
		lat := make([][]time.Duration, clients)
		errs := make(chan error, clients)
		var next sync.Mutex
		left := total
		start := time.Now()
		var wg sync.WaitGroup
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				done := make(chan error, 1)
				for {
					next.Lock()
					if left == 0 {
						next.Unlock()
						return
					}
					left--
					next.Unlock()
					t := time.Now()
					if err := cs[i%len(cs)].call(req, done); err != nil {
						errs <- err
						return
					}
					lat[i] = append(lat[i], time.Since(t))
				}
			}(i)
		}
		wg.Wait()
		el := time.Since(start)
		close(errs)
		if err := <-errs; err != nil {
			return nil, 0, err
		}
		return slices.Concat(lat...), el, nil
	}
	if warmup > 0 {
		if _, _, err := run(warmup); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lat, el, err := run(n)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("commit floor clients=%d conns=%d n=%d size=%d  %.0f writes/s  p50 %v  p99 %v  p999 %v\n",
		clients, len(cs), n, size, float64(n)/el.Seconds(), q(0.50), q(0.99), q(0.999))
	return nil
}

// clientConn is a connection shared by clients: writes queue into one
// buffer that a writer goroutine sends in one system call, and answers come
// back in order, one byte each.
type clientConn struct {
	nc    net.Conn
	mu    sync.Mutex
	out   []byte
	fifo  []chan error
	wake  chan struct{}
	spare []byte
}

func dialClientConn(a string) (*clientConn, error) {
	nc, err := net.Dial("tcp", a)
	if err != nil {
		return nil, err
	}
	c := &clientConn{nc: nc, wake: make(chan struct{}, 1)}
	go c.writeLoop()
	go c.readLoop()
	return c, nil
}

func (c *clientConn) call(req []byte, done chan error) error {
	c.mu.Lock()
	c.out = append(c.out, req...)
	c.fifo = append(c.fifo, done)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return <-done
}

func (c *clientConn) writeLoop() {
	for range c.wake {
		c.mu.Lock()
		b := c.out
		c.out = c.spare[:0]
		c.mu.Unlock()
		if len(b) > 0 {
			if _, err := c.nc.Write(b); err != nil {
				return
			}
		}
		c.spare = b
	}
}

func (c *clientConn) readLoop() {
	r := bufio.NewReader(c.nc)
	for {
		if _, err := r.ReadByte(); err != nil {
			c.mu.Lock()
			for _, ch := range c.fifo {
				ch <- err
			}
			c.fifo = nil
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		ch := c.fifo[0]
		c.fifo = c.fifo[1:]
		c.mu.Unlock()
		ch <- nil
	}
}

func waitListening(a string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", a)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica at %s did not start: %w", a, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wal is a log file synced with fdatasync. Like a recycled write-ahead log
// (Pebble reuses old log files), it overwrites a file written and synced
// in advance, so that a sync need not also update the file's size.
type wal struct {
	f   *os.File
	off int64
}

const walBytes = 64 << 20 // wrapped around when full

func openWAL(dir string, i int) (*wal, error) {
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("replica%d.log", i)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	zero := make([]byte, 1<<20)
	for k := 0; k < walBytes/len(zero); k++ {
		if _, err := f.Write(zero); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return &wal{f: f}, nil
}

func (w *wal) append(b []byte) error {
	if w.off+int64(len(b)) > walBytes {
		w.off = 0
	}
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		return err
	}
	w.off += int64(len(b))
	return syscall.Fdatasync(int(w.f.Fd()))
}

func runReplica(i, base int, dir string) error {
	w, err := openWAL(dir, i)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr(base, i))
	if err != nil {
		return err
	}
	if i != 1 {
		return follow(ln, w)
	}
	return lead(ln, w, base)
}

// follow appends every batch the leader sends and acknowledges it with one
// byte once it is on disk.
func follow(ln net.Listener, w *wal) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			r := bufio.NewReaderSize(c, 1<<20)
			var buf []byte
			for {
				var hdr [4]byte
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					return
				}
				buf = slices.Grow(buf[:0], int(binary.BigEndian.Uint32(hdr[:])))[:binary.BigEndian.Uint32(hdr[:])]
				if _, err := io.ReadFull(r, buf); err != nil {
					return
				}
				if err := w.append(buf); err != nil {
					fmt.Fprintln(os.Stderr, "commitfloor: follower:", err)
					return
				}
				if _, err := c.Write([]byte{1}); err != nil {
					return
				}
			}
		}()
	}
}

// lead batches the clients' writes, replicates each batch and answers its
// clients once two of three replicas have it on disk.
func lead(ln net.Listener, w *wal, base int) error {
	var followers []net.Conn
	for _, j := range []int{2, 3} {
		c, err := net.Dial("tcp", addr(base, j))
		if err != nil {
			return err
		}
		followers = append(followers, c)
	}
	type write struct {
		data []byte
		c    net.Conn
	}
	var (
		mu      sync.Mutex
		queue   []write
		pending = make(chan struct{}, 1)
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				r := bufio.NewReader(c)
				for {
					var hdr [4]byte
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						return
					}
					data := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					if _, err := io.ReadFull(r, data); err != nil {
						return
					}
					mu.Lock()
					queue = append(queue, write{data, c})
					mu.Unlock()
					select {
					case pending <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()

	// Each replica acknowledges its batches in order: the leader's own
	// appends (one at a time) and each follower's (over one connection).
	type ack struct {
		from int // 0: the leader, 1 and 2: the followers
		err  error
	}
	acks := make(chan ack, 64)
	for k, f := range followers {
		go func(from int, f net.Conn) {
			var b [1]byte
			for {
				_, err := io.ReadFull(f, b[:])
				acks <- ack{from, err}
				if err != nil {
					return
				}
			}
		}(k+1, f)
	}
	// answer acknowledges a committed batch: one write per connection.
	answers := make(map[net.Conn]int)
	ones := make([]byte, 0)
	answer := func(batch []write) error {
		clear(answers)
		for _, wr := range batch {
			answers[wr.c]++
		}
		for c, k := range answers {
			for len(ones) < k {
				ones = append(ones, 1)
			}
			if _, err := c.Write(ones[:k]); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		inflight [][]write // batches sent and not yet committed, oldest first
		durable  [3]int    // batches durable at each replica, counted from the oldest in flight
		writing  bool      // the leader's own append is running
		frame    []byte
	)
	for {
		select {
		case <-pending:
		case a := <-acks:
			if a.err != nil {
				return errors.Join(errors.New("replication failed"), a.err)
			}
			durable[a.from]++
			if a.from == 0 {
				writing = false
			}
			// Commit, oldest first, every batch durable on two replicas.
			for len(inflight) > 0 {
				n := 0
				for _, d := range durable {
					if d > 0 {
						n++
					}
				}
				if n < 2 {
					break
				}
				if err := answer(inflight[0]); err != nil {
					return err
				}
				inflight = inflight[1:]
				for k := range durable {
					durable[k]--
				}
			}
		}
		if writing {
			continue // the next batch starts when the leader's append ends
		}
		mu.Lock()
		batch := queue
		queue = nil
		mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		frame = append(frame[:0], 0, 0, 0, 0)
		for _, wr := range batch {
			frame = binary.BigEndian.AppendUint32(frame, uint32(len(wr.data)))
			frame = append(frame, wr.data...)
		}
		binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
		for _, f := range followers {
			if _, err := f.Write(frame); err != nil {
				return err
			}
		}
		inflight = append(inflight, batch)
		writing = true
		data := slices.Clone(frame[4:])
		go func() { acks <- ack{0, w.append(data)} }()
	}
}
