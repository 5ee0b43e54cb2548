//go:build linux

package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
)

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

func runReplica(i, base int, dir string, apply bool) error {
	w, err := openWAL(dir, i)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr(base, i))
	if err != nil {
		return err
	}
	if i != 1 {
		return follow(ln, w, apply)
	}
	return lead(ln, w, base, apply)
}

// follow appends every batch the leader sends and acknowledges it with one
// byte once it is on disk.
//
// With apply, each command of the batch is then applied to the replica's
// key-value store, off the acknowledgement's path (as a Raft follower
// applies what it learns is committed).
func follow(ln net.Listener, w *wal, apply bool) error {
	sm := newStateMachine(apply)
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
				n := int(binary.BigEndian.Uint32(hdr[:]))
				buf = slices.Grow(buf[:0], n)[:n]
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
				if err := sm.applyFrame(buf); err != nil {
					fmt.Fprintln(os.Stderr, "commitfloor: follower:", err)
					return
				}
			}
		}()
	}
}

// clientWrite is a client's write queued at the leader.
type clientWrite struct {
	data []byte // ID and value
	c    *leaderConn
}

// leaderConn is a client connection at the leader. Answers are queued in
// out and sent by the connection's own writer goroutine, so that a slow
// client never holds up the commit loop.
type leaderConn struct {
	nc     net.Conn
	mu     sync.Mutex
	out    []byte
	closed bool // wake is closed: the client is gone
	wake   chan struct{}
}

// reply queues the answer to one write.
func (lc *leaderConn) reply(id []byte) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.closed {
		return
	}
	lc.out = append(lc.out, id...)
	select {
	case lc.wake <- struct{}{}:
	default:
	}
}

// shut stops the connection's writer.
func (lc *leaderConn) shut() {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.closed {
		lc.closed = true
		close(lc.wake)
	}
}

func (lc *leaderConn) writeLoop() {
	var spare []byte
	for range lc.wake {
		lc.mu.Lock()
		b := lc.out
		lc.out = spare[:0]
		lc.mu.Unlock()
		if len(b) > 0 {
			if _, err := lc.nc.Write(b); err != nil {
				_ = lc.nc.Close()
				lc.shut()
				return
			}
		}
		spare = b
	}
}

// lead batches the clients' writes, replicates each batch and answers its
// clients once two of three replicas have it on disk.
//
// With apply, the leader encodes each write as a key-value command (the
// frame carries the commands) and applies a committed batch to its store
// before answering it, as a Raft leader applies before it answers.
func lead(ln net.Listener, w *wal, base int, apply bool) error {
	sm := newStateMachine(apply)
	var followers []net.Conn
	for _, j := range []int{2, 3} {
		c, err := net.Dial("tcp", addr(base, j))
		if err != nil {
			return err
		}
		followers = append(followers, c)
	}
	var (
		mu      sync.Mutex
		queue   []clientWrite
		pending = make(chan struct{}, 1)
	)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			lc := &leaderConn{nc: nc, wake: make(chan struct{}, 1)}
			go lc.writeLoop()
			go func() {
				defer lc.shut()
				r := bufio.NewReaderSize(nc, 64<<10)
				for {
					var hdr [4]byte
					if _, err := io.ReadFull(r, hdr[:]); err != nil {
						return
					}
					n := binary.BigEndian.Uint32(hdr[:])
					if n < 8 || n > 1<<20 {
						fmt.Fprintf(os.Stderr, "commitfloor: leader: bad request length %d\n", n)
						_ = nc.Close()
						return
					}
					data := make([]byte, n)
					if _, err := io.ReadFull(r, data); err != nil {
						return
					}
					mu.Lock()
					queue = append(queue, clientWrite{data, lc})
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
	// answer answers a committed batch: its IDs go to each client
	// connection's writer.
	answer := func(batch []clientWrite, body []byte) error {
		if err := sm.applyFrame(body); err != nil {
			return err
		}
		for _, wr := range batch {
			wr.c.reply(wr.data[:respLen])
		}
		return nil
	}
	var (
		inflight [][]clientWrite // batches sent and not yet committed, oldest first
		bodies   [][]byte        // their frame bodies
		durable  [3]int          // batches durable at each replica, counted from the oldest in flight
		writing  bool            // the leader's own append is running
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
				if err := answer(inflight[0], bodies[0]); err != nil {
					return err
				}
				inflight, bodies = inflight[1:], bodies[1:]
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
		frame = sm.appendBatch(frame, batch)
		binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
		for _, f := range followers {
			if _, err := f.Write(frame); err != nil {
				return err
			}
		}
		inflight = append(inflight, batch)
		writing = true
		data := slices.Clone(frame[4:])
		bodies = append(bodies, data)
		go func() { acks <- ack{0, w.append(data)} }()
	}
}
