package transporttest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// CutProxy forwards TCP connections from its address to a target and can
// cut the way back: while cut, what the target answers is held (not
// dropped, as TCP retransmits across a one-way firewall rule), so a dialer
// sees its connection attempts hang; Heal lets the held bytes through.
// Cut also breaks the connections open at the time, as a real cut does
// once keepalives or write timeouts notice it.
type CutProxy struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	gate   chan struct{} // closed while healed; a fresh, open one while cut
	conns  map[net.Conn]net.Conn
	failed chan struct{} // a connection accepted during the cut ended
}

// NewCutProxy starts a healed proxy to target, closed when t ends.
func NewCutProxy(t testing.TB, target string) *CutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &CutProxy{l: l, target: target, gate: make(chan struct{}), conns: map[net.Conn]net.Conn{},
		failed: make(chan struct{}, 64)}
	close(p.gate)
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = l.Close()
		p.Heal()
		p.mu.Lock()
		for c, up := range p.conns {
			_ = c.Close()
			_ = up.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Addr is the address to dial instead of the target's.
func (p *CutProxy) Addr() string { return p.l.Addr().String() }

// Cut holds back everything the target sends from now on and breaks the
// open connections.
func (p *CutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already cut
	}
	for c, up := range p.conns {
		_ = c.Close()
		_ = up.Close()
	}
}

// Heal lets the held bytes through and stops holding.
func (p *CutProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// AttemptFailed receives a value each time a connection accepted while
// cut is closed by its dialer: a connection attempt that gave up.
func (p *CutProxy) AttemptFailed() <-chan struct{} { return p.failed }

func (p *CutProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		gate := p.gate
		p.conns[c] = up
		p.mu.Unlock()
		var cut bool
		select {
		case <-gate:
		default:
			cut = true
		}
		p.wg.Go(func() {
			_, _ = io.Copy(up, c) // ends when the dialer closes
			_ = up.Close()
			_ = c.Close()
			p.mu.Lock()
			delete(p.conns, c)
			stillCut := gate == p.gate
			select {
			case <-gate:
				stillCut = false
			default:
			}
			p.mu.Unlock()
			if cut && stillCut {
				select {
				case p.failed <- struct{}{}:
				default:
				}
			}
		})
		p.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					p.mu.Lock()
					g := p.gate
					p.mu.Unlock()
					<-g
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = c.Close()
		})
	}
}
