package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	consclient "github.com/forge-consensus/consensus/client"
	"github.com/forge-consensus/consensus/wire"
)

// Limits the misbehaving-client test configures, short so that it ends in
// seconds.
const (
	mbReadTimeout = 2 * time.Second
	mbIdleTimeout = 3 * time.Second
	mbPerIP       = 400
	mbReadMemory  = 16 << 20
	// mbRSSBound is the resident memory the node must stay under while
	// attacked: about twice the peak measured (see the issue 13 note in
	// docs/measured.md, "Under misbehaving clients"); the code before the
	// limits reached 834 MiB.
	mbRSSBound = 256 << 20
)

// freeBase returns a port p with p, p+100 and p+200 free on loopback.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(20000)
		var lns []net.Listener
		ok := true
		for _, q := range []int{p, p + 100, p + 200} {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free ports")
	return 0
}

// vmRSS returns a process's resident memory in bytes (VmRSS).
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// dialFrom dials addr from the loopback address 127.0.0.2: the attackers'
// own address, so that the per-address cap keeps room for clients on
// 127.0.0.1.
func dialFrom(addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// closedAt waits for the server to close nc and returns when it did (the
// zero time if it did not by deadline).
func closedAt(nc net.Conn, deadline time.Time) time.Time {
	_ = nc.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		return time.Time{}
	}
	return time.Now()
}

// TestMisbehavingClients is issue 13's load test of misbehaving clients
// against a live consensusd (one node): hundreds of connections that
// announce 4 MiB frames, send all but 64 KiB of them and stall; trickled
// client-protocol frames and HTTP bodies; a flood of idle connections over
// the per-address cap; frames announcing 4 GiB. Meanwhile a normal client
// on another address writes and reads, the node's resident memory stays
// under mbRSSBound, and the trickling connections are closed within
// api.read_timeout (plus a margin).
//
// CONSENSUSD_BIN runs another binary, and MISBEHAVE_NO_LIMITS=1 leaves the
// api.* limits out of its configuration: to measure a build without them.
func TestMisbehavingClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	if c, err := dialFrom("127.0.0.1:1"); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("cannot dial from 127.0.0.2: %v", err)
	} else if c != nil {
		c.Close()
	}
	base := freeBase(t)
	dir := t.TempDir()
	paths, err := WriteLocalConfigs(dir, 1, base, "tcp", false)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("MISBEHAVE_NO_LIMITS") == "" {
		raw, _ := os.ReadFile(paths[0])
		limits := fmt.Sprintf("  fault_switch: false\n  read_timeout: %v\n  idle_timeout: %v\n  max_connections_per_ip: %d\n"+
			"  max_read_memory: %d\n", mbReadTimeout, mbIdleTimeout, mbPerIP, mbReadMemory)
		cfg := strings.Replace(string(raw), "  fault_switch: false\n", limits, 1)
		if err := os.WriteFile(paths[0], []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := os.Getenv("CONSENSUSD_BIN")
	if bin == "" {
		bin = buildDaemon(t)
	}
	logf, err := os.Create(filepath.Join(dir, "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", paths[0])
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("--- node log (tail) ---\n%s", tail(string(b), 3000))
		}
	})
	pid := cmd.Process.Pid
	apiURL := "http://127.0.0.1:" + strconv.Itoa(base+100)
	apiAddr := "127.0.0.1:" + strconv.Itoa(base+100)
	clientAddr := "127.0.0.1:" + strconv.Itoa(base+200)

	// A normal client, on 127.0.0.1.
	cl, err := consclient.New(consclient.Config{Addrs: []string{clientAddr}, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for cl.Put(ctx, "warm", []byte("up")) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the node did not take a write within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}

	// Watch the resident memory from here on.
	var peak atomic.Int64
	peak.Store(before)
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			if rss, err := vmRSS(pid); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	var attackers sync.WaitGroup
	var conns []net.Conn
	var connsMu sync.Mutex
	keep := func(nc net.Conn) {
		connsMu.Lock()
		conns = append(conns, nc)
		connsMu.Unlock()
	}
	defer func() {
		connsMu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		connsMu.Unlock()
	}()
	header := func(n uint32) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, n), 0)
	}
	start := time.Now()
	// Every attacker gives up by then, so that the test ends even against
	// a node that never cuts them off.
	giveUp := start.Add(mbReadTimeout + 5*time.Second)

	// 1. Stalled frames: 200 connections announce 4 MiB, send all but the
	// last 64 KiB, stall.
	const stalled = 200
	for range stalled {
		nc, err := dialFrom(clientAddr)
		if err != nil {
			t.Fatal(err)
		}
		keep(nc)
		_ = nc.SetWriteDeadline(giveUp)
		attackers.Add(1)
		go func() {
			defer attackers.Done()
			_, _ = nc.Write(append(header(wire.MaxFrameBytes), make([]byte, wire.MaxFrameBytes-64<<10)...))
		}()
	}
	// 2. Trickled frames and HTTP bodies: a byte every 200 ms.
	const trickled = 50
	type trickler struct {
		nc      net.Conn
		started time.Time
		closed  time.Time
	}
	var tricklers []*trickler
	for i := range 2 * trickled {
		addr, first := clientAddr, header(1<<20)
		if i%2 == 1 {
			addr, first = apiAddr, []byte("PUT /kv/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		}
		nc, err := dialFrom(addr)
		if err != nil {
			t.Fatal(err)
		}
		keep(nc)
		tr := &trickler{nc: nc, started: time.Now()}
		tricklers = append(tricklers, tr)
		attackers.Add(2)
		go func() {
			defer attackers.Done()
			if _, err := nc.Write(first); err != nil {
				return
			}
			for time.Now().Before(giveUp) {
				time.Sleep(200 * time.Millisecond)
				if _, err := nc.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}()
		go func() {
			defer attackers.Done()
			tr.closed = closedAt(nc, giveUp)
		}()
	}
	// 3. A flood of idle connections, past the per-address cap.
	for range mbPerIP {
		nc, err := dialFrom(clientAddr)
		if err != nil {
			t.Fatal(err)
		}
		keep(nc)
	}
	// 4. Frames announcing 4 GiB: refused at once.
	for range 20 {
		nc, err := dialFrom(clientAddr)
		if err != nil {
			t.Fatal(err)
		}
		keep(nc)
		if _, err := nc.Write(header(1<<32 - 1)); err == nil {
			if closedAt(nc, time.Now().Add(5*time.Second)).IsZero() {
				t.Error("a frame announcing 4 GiB did not close its connection")
			}
		}
	}

	// Meanwhile the normal client writes and reads, and the HTTP API answers.
	for i := range 50 {
		key := "k" + strconv.Itoa(i)
		if err := cl.Put(ctx, key, []byte(key)); err != nil {
			t.Fatalf("put %s under attack: %v", key, err)
		}
		if v, found, err := cl.Get(ctx, key, consclient.Linearizable); err != nil || !found || string(v) != key {
			t.Fatalf("get %s under attack: %q %v", key, v, err)
		}
	}
	resp, err := http.Get(apiURL + "/status")
	if err != nil {
		t.Fatalf("GET /status under attack: %v", err)
	}
	resp.Body.Close()
	attacked := time.Since(start)

	// The trickling connections are cut off at api.read_timeout.
	attackers.Wait()
	stillOpen, late := 0, time.Duration(0)
	for _, tr := range tricklers {
		if tr.closed.IsZero() {
			stillOpen++
			continue
		}
		late = max(late, tr.closed.Sub(tr.started))
	}
	close(stopWatch)
	<-watchDone
	after, _ := vmRSS(pid)
	t.Logf("RSS before %d MiB, peak under attack %d MiB, after %d MiB (bound %d MiB); %d stalled frames, "+
		"%d trickled, %d idle; normal client served 100 operations in %v; slowest trickler cut off after %v",
		before>>20, peak.Load()>>20, after>>20, mbRSSBound>>20, stalled, 2*trickled, mbPerIP,
		attacked.Round(time.Millisecond), late.Round(time.Millisecond))
	if stillOpen > 0 {
		t.Errorf("%d of %d trickling connections still open %v after they began (api.read_timeout %v)",
			stillOpen, len(tricklers), mbReadTimeout+5*time.Second, mbReadTimeout)
	}
	if late > mbReadTimeout+3*time.Second {
		t.Errorf("a trickling connection was cut off after %v, want within api.read_timeout %v + 3s", late, mbReadTimeout)
	}
	if p := peak.Load(); p > mbRSSBound {
		t.Errorf("resident memory peaked at %d MiB under attack, want under %d MiB", p>>20, mbRSSBound>>20)
	}
}
