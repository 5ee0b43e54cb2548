//go:build linux

package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The client protocol, minimal but shaped like the cluster's (package
// wire): requests pipelined on a connection, each with an ID the response
// echoes.
//
//	request:  length (4 bytes: 8 + len(value)), ID (8 bytes), value
//	response: ID (8 bytes)
//
// All integers are big-endian.
const (
	reqHeader = 4 + 8
	respLen   = 8
)

// loadConfig is what the client process runs.
type loadConfig struct {
	addr                            string // the leader
	clients, conns, n, warmup, size int
}

// result is one run's figures.
type result struct {
	cfg            loadConfig
	conns          int
	elapsed        time.Duration
	p50, p99, p999 time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("commit floor clients=%d conns=%d n=%d size=%d  %.0f writes/s  p50 %v  p99 %v  p999 %v",
		r.cfg.clients, r.conns, r.cfg.n, r.cfg.size, float64(r.cfg.n)/r.elapsed.Seconds(),
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.p999.Round(time.Microsecond))
}

// runClients connects to the leader, runs cfg.warmup writes and then
// cfg.n timed ones from cfg.clients goroutines, each with one write
// outstanding, and returns the timed run's figures.
func runClients(cfg loadConfig) (result, error) {
	if cfg.clients <= 0 || cfg.conns <= 0 || cfg.n <= 0 || cfg.warmup < 0 || cfg.size < 0 {
		return result{}, errors.New("-clients, -conns, -n must be positive, -warmup and -size ≥ 0")
	}
	cs := make([]*clientConn, min(cfg.conns, cfg.clients))
	for i := range cs {
		c, err := dialClientConn(cfg.addr)
		if err != nil {
			return result{}, err
		}
		defer c.close()
		cs[i] = c
	}
	value := make([]byte, cfg.size)
	for i := range value {
		value[i] = 'x'
	}
	run := func(total int) ([]time.Duration, time.Duration, error) {
		lat := make([][]time.Duration, cfg.clients)
		var next atomic.Int64
		var first error
		var once sync.Once
		var wg sync.WaitGroup
		start := time.Now()
		for i := range cfg.clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := cs[i%len(cs)]
				done := make(chan error, 1)
				mine := make([]time.Duration, 0, total/cfg.clients+1)
				defer func() { lat[i] = mine }()
				for next.Add(1) <= int64(total) {
					t := time.Now()
					if err := c.call(value, done); err != nil {
						once.Do(func() { first = err })
						return
					}
					mine = append(mine, time.Since(t))
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		if first != nil {
			return nil, 0, first
		}
		return slices.Concat(lat...), el, nil
	}
	if cfg.warmup > 0 {
		if _, _, err := run(cfg.warmup); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	lat, el, err := run(cfg.n)
	if err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return result{cfg: cfg, conns: len(cs), elapsed: el, p50: q(0.50), p99: q(0.99), p999: q(0.999)}, nil
}

// clientConn is a connection shared by clients: requests queue into one
// buffer that a writer goroutine sends with one system call, and a reader
// goroutine hands each response to the call with its ID.
type clientConn struct {
	nc      net.Conn
	mu      sync.Mutex
	out     []byte
	nextID  uint64
	pending map[uint64]chan error
	err     error // set once the connection failed
	wake    chan struct{}
	spare   []byte
}

func dialTCP(a string) (net.Conn, error) { return net.Dial("tcp", a) }

func dialClientConn(a string) (*clientConn, error) {
	nc, err := dialTCP(a)
	if err != nil {
		return nil, err
	}
	c := &clientConn{nc: nc, pending: make(map[uint64]chan error), wake: make(chan struct{}, 1)}
	go c.writeLoop()
	go c.readLoop()
	return c, nil
}

func (c *clientConn) close() {
	_ = c.nc.Close()
	close(c.wake)
}

// call sends one write and waits for its answer.
func (c *clientConn) call(value []byte, done chan error) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.nextID++
	id := c.nextID
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(8+len(value)))
	c.out = binary.BigEndian.AppendUint64(c.out, id)
	c.out = append(c.out, value...)
	c.pending[id] = done
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
				c.fail(err)
				return
			}
		}
		c.spare = b
	}
}

func (c *clientConn) readLoop() {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var b [respLen]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			c.fail(err)
			return
		}
		id := binary.BigEndian.Uint64(b[:])
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if !ok {
			c.fail(fmt.Errorf("answer to unknown request %d", id))
			return
		}
		ch <- nil
	}
}

// fail answers every pending call with err and every later one too.
func (c *clientConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = fmt.Errorf("connection to %s: %w", c.nc.RemoteAddr(), err)
	}
	for id, ch := range c.pending {
		ch <- c.err
		delete(c.pending, id)
	}
}
