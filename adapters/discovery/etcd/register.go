package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/nodename"
)

// registration is one Register call's state.
type registration struct {
	key   string
	value string

	done chan struct{}
	once sync.Once

	mu  sync.Mutex
	err error // why the registration is lost now; nil while it holds
}

func (r *registration) setErr(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

func (r *registration) getErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Register puts self under the cluster's prefix with a lease of TTL and
// keeps it alive until ctx ends or stop is called, which withdraw it
// (revoke the lease, deleting the key); Close ends it without
// withdrawing it. It returns once the record is in etcd, or with the
// error that kept it out. self needs a valid node name, a host and a
// port in 1..65535.
//
// When the keep-alive ends (the lease expired, etcd was unreachable for
// longer than TTL), the record is put again under a new lease, with
// back-off; meanwhile RegistrationErr and Lookup report the loss. stop
// waits for the withdrawal (bounded by DialTimeout); calling it again
// does nothing.
func (s *Source) Register(ctx context.Context, self discovery.Candidate) (stop func(), err error) {
	if _, err := nodename.ID(self.Name); err != nil {
		return nil, fmt.Errorf("discovery: etcd: register: name: %w", err)
	}
	if self.Host == "" || strings.ContainsFunc(self.Host, badKeyRune) {
		return nil, fmt.Errorf("discovery: etcd: register %s: host %q", self.Name, self.Host)
	}
	if self.Port < 1 || self.Port > 65535 {
		return nil, fmt.Errorf("discovery: etcd: register %s: port %d is not in 1..65535", self.Name, self.Port)
	}
	value, err := json.Marshal(record{Name: self.Name, Host: self.Host, Port: self.Port})
	if err != nil {
		return nil, fmt.Errorf("discovery: etcd: register %s: %w", self.Name, err)
	}
	r := &registration{key: s.prefix + self.Name, value: string(value), done: make(chan struct{})}
	lease, err := s.put(ctx, r)
	if err != nil {
		if lease != 0 {
			s.revoke(context.WithoutCancel(ctx), lease) // the put may have taken effect
		}
		return nil, err
	}
	s.log.Info("discovery: etcd: registered", "key", r.key, "addr", self.Addr(), "lease", fmt.Sprintf("%x", int64(lease)), "ttl_s", s.ttl)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// The lease expires on its own, as Close leaves registrations.
		return nil, fmt.Errorf("discovery: etcd: register %s: the source is closed", r.key)
	}
	loopCtx, cancel := context.WithCancel(ctx)
	stopAfter := context.AfterFunc(s.closing, cancel)
	s.regs[r] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		defer stopAfter()
		defer func() {
			s.mu.Lock()
			delete(s.regs, r)
			s.mu.Unlock()
		}()
		s.keepAlive(loopCtx, r, lease)
	}()
	return func() {
		r.once.Do(func() {
			cancel()
			<-r.done
		})
	}, nil
}

// keepAlive keeps lease alive, registers r again when it is lost, and
// withdraws r when ctx ends, unless the Source is closing.
func (s *Source) keepAlive(ctx context.Context, r *registration, lease clientv3.LeaseID) {
	var pending clientv3.LeaseID // granted, and maybe holding the key, while ctx ended
	defer func() {
		if s.closing.Err() != nil {
			return // Close: the lease expires on its own, as when a node dies
		}
		wctx := context.WithoutCancel(ctx)
		if pending != 0 {
			s.revoke(wctx, pending)
		}
		s.revoke(wctx, lease)
		s.log.Info("discovery: etcd: withdrew registration", "key", r.key)
	}()
	for {
		ch, err := s.client.KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("lease %x expired or etcd did not answer for its TTL (%ds)", int64(lease), s.ttl)
		}
		r.setErr(fmt.Errorf("discovery: etcd: registration %s lost, registering again: %w", r.key, err))
		s.log.Warn("discovery: etcd: keep-alive ended; registering again", "key", r.key, "err", err)

		backoff := minBackoff
		for {
			fresh, err := s.put(ctx, r)
			if err == nil {
				old := lease
				lease = fresh
				r.setErr(nil)
				s.log.Info("discovery: etcd: registered again", "key", r.key, "lease", fmt.Sprintf("%x", int64(lease)))
				// The old lease holds no key any more; it may still
				// live (etcd restored it after a restart).
				s.revoke(ctx, old)
				break
			}
			if fresh != 0 {
				// The put may have taken effect: withdraw it, or keep
				// it if the caller is done, to be revoked on return.
				if ctx.Err() != nil {
					pending = fresh
					return
				}
				s.revoke(ctx, fresh)
			}
			if ctx.Err() != nil {
				return
			}
			r.setErr(fmt.Errorf("discovery: etcd: registration %s lost, registering again: %w", r.key, err))
			if !sleep(ctx, jitter(backoff)) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// put grants a lease and puts r's record with it. It returns the lease
// whenever it was granted, even if the put failed.
func (s *Source) put(ctx context.Context, r *registration) (clientv3.LeaseID, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	g, err := s.client.Grant(ctx, s.ttl)
	if err != nil {
		return 0, fmt.Errorf("discovery: etcd: register %s: grant lease: %w", r.key, err)
	}
	if _, err := s.client.Put(ctx, r.key, r.value, clientv3.WithLease(g.ID)); err != nil {
		return g.ID, fmt.Errorf("discovery: etcd: register %s: put: %w", r.key, err)
	}
	return g.ID, nil
}

// revoke revokes lease, best effort: a lease that expired already, or
// that etcd cannot be asked to revoke, expires on its own.
func (s *Source) revoke(ctx context.Context, lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.client.Revoke(ctx, lease); err != nil && !isLeaseNotFound(err) {
		s.log.Warn("discovery: etcd: revoke lease; it expires on its own", "lease", fmt.Sprintf("%x", int64(lease)), "err", err)
	}
}

// RegistrationErr returns why this Source's registrations are lost now
// (their keep-alive ended and they are not registered again yet), nil
// while all hold. Lookup returns it too.
func (s *Source) RegistrationErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for r := range s.regs {
		if err := r.getErr(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isLeaseNotFound(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }
