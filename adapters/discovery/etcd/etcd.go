// Package etcd is the etcd discovery mechanism: every node registers
// itself under a key prefix of an etcd cluster, held by a lease it keeps
// alive, and finds the others by reading the prefix. It is a package of
// its own so that only programs that use it link the etcd client.
//
// # Keys
//
// A node named N of the cluster C registers at the key
//
//	Prefix + C + "/" + N          e.g. /forge-consensus/default/node-1
//
// with a JSON value {"name":"node-1","host":"10.0.0.5","port":7000}
// (Candidate's fields). Prefix is discovery.prefix ("/forge-consensus/"
// when unset) and C is the node's cluster_id, so several clusters can
// share one etcd and one prefix; a node reads only its own cluster's
// keys. Anything under the cluster's prefix that is not such a record
// (not JSON, a name that is not the key's last part or not a valid node
// name, no host, a port outside 1..65535, a deeper key) is skipped and
// counted (Source.Malformed), never returned as a candidate and never
// failing the lookup.
//
// # Registration
//
// Register grants a lease of TTL, puts the record with it and keeps the
// lease alive. When etcd stops answering for longer than the TTL, or
// the lease is gone (it expired during a partition, etcd lost its data),
// the keep-alive ends and the registration is put again under a new
// lease, with back-off, until it succeeds or the registration ends.
// While it is lost, Lookup fails and says so (the Registrar contract:
// keep-alive errors are reported through the next Lookup), and
// RegistrationErr returns the cause for health checks. A node
// registering a name that is registered already (the same node
// restarted at a new address before its old lease expired) replaces the
// record: the latest registration wins, and the old lease, revoked or
// expiring, no longer holds the key.
//
// The stop function Register returns, and the end of Register's
// context, withdraw the registration: the lease is revoked and the key
// deleted at once. Close does not: it drops the connection the way a
// node that dies does, and the registration disappears when its lease
// expires, after TTL.
//
// # Changes
//
// Changes watches the cluster's prefix and signals after any change.
// The watch resumes after the revision it last saw when it fails (etcd
// restarted, the member it used lost its leader); when those revisions
// were compacted away, it signals (changes may have been missed) and
// resumes at the oldest revision etcd kept.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/nodename"
)

// Defaults and limits of Config.
const (
	// DefaultPrefix is Config.Prefix when unset.
	DefaultPrefix = "/forge-consensus/"
	// DefaultTTL is Config.TTL when unset.
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest Config.TTL accepted: etcd refuses shorter
	// leases with its default timing, and a shorter one would expire on
	// the first lost keep-alive.
	MinTTL = 2 * time.Second
	// DefaultDialTimeout is Config.DialTimeout when unset.
	DefaultDialTimeout = 5 * time.Second
)

// Back-off between attempts to register again, and to watch again.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Config configures the etcd mechanism. The YAML keys named are the
// server configuration's (discovery.*); New's errors name them.
type Config struct {
	// Endpoints are the etcd members' client URLs
	// (discovery.etcd_endpoints): "http://10.0.0.1:2379",
	// "https://etcd-0.etcd:2379" or "host:port". At least one; all
	// http or all https. https endpoints need no TLS settings when the
	// system's roots verify the server.
	Endpoints []string
	// Prefix is the key prefix (discovery.prefix), DefaultPrefix when
	// empty; a "/" is appended when it does not end with one. The
	// cluster's keys live under Prefix + ClusterID + "/".
	Prefix string
	// ClusterID is the node's cluster_id: each cluster's nodes register
	// and look up under their own ClusterID + "/" below Prefix. Empty:
	// directly under Prefix.
	ClusterID string
	// DialTimeout bounds each request to etcd: a Lookup's read, a
	// lease grant, put or revoke, and getting an authentication token
	// (discovery.etcd_dial_timeout); DefaultDialTimeout when zero.
	DialTimeout time.Duration
	// TTL is the registration lease's time to live
	// (discovery.etcd_ttl): how long a node that died stays registered.
	// Whole seconds, at least MinTTL; DefaultTTL when zero.
	TTL time.Duration
	// TLS is a ready client TLS configuration (for programs that build
	// their own). Not with CAFile, CertFile or KeyFile.
	TLS *tls.Config
	// CAFile is a PEM file of the certificates that verify etcd's
	// server certificate (discovery.etcd_tls.ca_file); empty: the
	// system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key this
	// node presents to etcd (discovery.etcd_tls.cert_file,
	// discovery.etcd_tls.key_file), for etcd's --client-cert-auth;
	// both or neither.
	CertFile string
	KeyFile  string
	// Username and Password authenticate to etcd when its auth is
	// enabled (discovery.etcd_username, discovery.etcd_password); both
	// or neither.
	Username string
	Password string
	// Logger receives this mechanism's logs and the etcd client's;
	// slog.Default() when nil.
	Logger *slog.Logger
}

// Source is the etcd mechanism: a discovery.Registrar and
// discovery.Watcher. It is safe for concurrent use.
type Source struct {
	client  *clientv3.Client
	prefix  string // Prefix + ClusterID + "/"
	ttl     int64  // seconds
	timeout time.Duration
	log     *slog.Logger

	closing context.Context // done once Close was called
	close   context.CancelFunc
	wg      sync.WaitGroup // registration loops and watches
	once    sync.Once

	mu     sync.Mutex
	closed bool // Close was called: no new goroutines
	regs   map[*registration]struct{}

	malformed atomic.Int64
	lookedUp  atomic.Int64 // the etcd revision of the latest Lookup
}

var (
	_ discovery.Registrar = (*Source)(nil)
	_ discovery.Watcher   = (*Source)(nil)
)

// New checks cfg and returns the Source it describes. It does not wait
// for etcd: the connection is made in the background, and requests
// wait for it up to DialTimeout.
func New(cfg Config) (*Source, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("discovery.etcd_endpoints: empty; at least one etcd client URL (http://host:2379) is required with discovery type etcd")
	}
	schemes := map[string]bool{}
	endpoints := make([]string, 0, len(cfg.Endpoints))
	for _, e := range cfg.Endpoints {
		e = strings.TrimSpace(e)
		scheme, err := checkEndpoint(e)
		if err != nil {
			return nil, fmt.Errorf("discovery.etcd_endpoints: %q: %w", e, err)
		}
		schemes[scheme] = true
		endpoints = append(endpoints, e)
	}
	if schemes["http"] && schemes["https"] {
		return nil, errors.New("discovery.etcd_endpoints: mixes http:// and https:// endpoints; use one scheme for all")
	}

	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsFunc(prefix, badKeyRune) {
		return nil, fmt.Errorf("discovery.prefix: %q has white space or control characters", cfg.Prefix)
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if cfg.ClusterID != "" {
		if strings.Contains(cfg.ClusterID, "/") || strings.ContainsFunc(cfg.ClusterID, badKeyRune) {
			return nil, fmt.Errorf("cluster_id: %q has '/', white space or control characters, which etcd discovery cannot use in its keys", cfg.ClusterID)
		}
		prefix += cfg.ClusterID + "/"
	}

	switch {
	case cfg.DialTimeout < 0:
		return nil, fmt.Errorf("discovery.etcd_dial_timeout: %v is negative", cfg.DialTimeout)
	case cfg.DialTimeout == 0:
		cfg.DialTimeout = DefaultDialTimeout
	}
	switch {
	case cfg.TTL == 0:
		cfg.TTL = DefaultTTL
	case cfg.TTL < MinTTL:
		return nil, fmt.Errorf("discovery.etcd_ttl: %v is shorter than %v", cfg.TTL, MinTTL)
	case cfg.TTL%time.Second != 0:
		return nil, fmt.Errorf("discovery.etcd_ttl: %v is not a whole number of seconds (etcd leases count seconds)", cfg.TTL)
	}

	if (cfg.Username == "") != (cfg.Password == "") {
		if cfg.Username == "" {
			return nil, errors.New("discovery.etcd_username: empty, but discovery.etcd_password is set; give both or neither")
		}
		return nil, errors.New("discovery.etcd_password: empty, but discovery.etcd_username is set; give both or neither")
	}

	tlsConfig, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil && schemes["http"] {
		return nil, errors.New("discovery.etcd_endpoints: http:// endpoints with discovery.etcd_tls settings; use https://")
	}
	if tlsConfig == nil && schemes["https"] {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12} // the system's roots
	}

	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("discovery", "etcd")
	closing, closeFn := context.WithCancel(context.Background())
	client, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  tlsConfig,
		Username:             cfg.Username,
		Password:             cfg.Password,
		Context:              closing,
		Logger:               zap.New(slogCore{log: log.With("component", "etcd-client")}),
	})
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("discovery: etcd: client for %v: %w", endpoints, err)
	}
	return &Source{
		client:  client,
		prefix:  prefix,
		ttl:     int64(cfg.TTL / time.Second),
		timeout: cfg.DialTimeout,
		log:     log,
		closing: closing,
		close:   closeFn,
		regs:    map[*registration]struct{}{},
	}, nil
}

// checkEndpoint checks one endpoint and returns its scheme ("http",
// "https", or "" for host:port).
func checkEndpoint(e string) (string, error) {
	if e == "" {
		return "", errors.New("empty")
	}
	scheme, hostport := "", e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return "", err
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", fmt.Errorf("scheme %q; use http:// or https://", u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return "", errors.New("only scheme://host:port")
		}
		scheme, hostport = u.Scheme, u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("not host:port (e.g. http://10.0.0.1:2379): %w", err)
	}
	if host == "" {
		return "", errors.New("no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("port %q is not in 1..65535", port)
	}
	return scheme, nil
}

// clientTLS returns the TLS configuration cfg asks for, nil for none.
func clientTLS(cfg Config) (*tls.Config, error) {
	files := cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	if cfg.TLS != nil {
		if files {
			return nil, errors.New("discovery.etcd_tls: both a TLS configuration and files; give one")
		}
		return cfg.TLS.Clone(), nil
	}
	if !files {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("discovery.etcd_tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("discovery.etcd_tls.ca_file: %s has no PEM certificate", cfg.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case cfg.CertFile != "" && cfg.KeyFile == "":
		return nil, errors.New("discovery.etcd_tls.key_file: empty, but discovery.etcd_tls.cert_file is set; give both or neither")
	case cfg.CertFile == "" && cfg.KeyFile != "":
		return nil, errors.New("discovery.etcd_tls.cert_file: empty, but discovery.etcd_tls.key_file is set; give both or neither")
	case cfg.CertFile != "":
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("discovery.etcd_tls.cert_file, discovery.etcd_tls.key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

func badKeyRune(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// Kind returns "etcd".
func (s *Source) Kind() string { return "etcd" }

// Prefix returns the prefix of the cluster's keys: Prefix + ClusterID + "/".
func (s *Source) Prefix() string { return s.prefix }

// Close ends every registration's keep-alive without withdrawing it
// (its key expires with its lease, after TTL: call stop first to
// withdraw at once), closes every Changes channel and the connection.
func (s *Source) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.close()
		s.wg.Wait()
		err = s.client.Close()
		if errors.Is(err, context.Canceled) {
			err = nil // the client reports its own context, which Close cancelled
		}
	})
	if err != nil {
		return fmt.Errorf("discovery: etcd: close: %w", err)
	}
	return nil
}

// record is a registration's value.
type record struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Lookup reads the cluster's prefix and returns its registrations,
// sorted. Malformed records are skipped (see Malformed). It fails when
// etcd could not be read, and while a registration of this Source is
// lost (its keep-alive ended and it is not registered again yet; see
// RegistrationErr).
func (s *Source) Lookup(ctx context.Context) ([]discovery.Candidate, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("discovery: etcd: get %s: %w", s.prefix, err)
	}
	for rev := resp.Header.Revision; ; {
		prev := s.lookedUp.Load()
		if rev <= prev || s.lookedUp.CompareAndSwap(prev, rev) {
			break
		}
	}
	if err := s.RegistrationErr(); err != nil {
		return nil, err
	}
	out := make([]discovery.Candidate, 0, len(resp.Kvs))
	var bad []string
	for _, kv := range resp.Kvs {
		c, err := decode(strings.TrimPrefix(string(kv.Key), s.prefix), kv.Value)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%q: %v", kv.Key, err))
			continue
		}
		out = append(out, c)
	}
	if prev := s.malformed.Swap(int64(len(bad))); len(bad) > 0 && int64(len(bad)) != prev {
		s.log.Warn("discovery: etcd: skipped malformed registrations", "prefix", s.prefix, "count", len(bad), "first", bad[0])
	}
	return discovery.Sort(out), nil
}

// Malformed returns how many records under the cluster's prefix the
// last Lookup skipped as malformed. Lookup logs them (a warning naming
// the first) when their number changes.
func (s *Source) Malformed() int { return int(s.malformed.Load()) }

// decode returns the candidate the record under name (the key without
// the prefix) stands for.
func decode(name string, value []byte) (discovery.Candidate, error) {
	if _, err := nodename.ID(name); err != nil {
		return discovery.Candidate{}, fmt.Errorf("key: %w", err)
	}
	var r record
	if err := json.Unmarshal(value, &r); err != nil {
		return discovery.Candidate{}, fmt.Errorf("value: %w", err)
	}
	switch {
	case r.Name != name:
		return discovery.Candidate{}, fmt.Errorf("value: name %q is not the key's %q", r.Name, name)
	case r.Host == "" || strings.ContainsFunc(r.Host, badKeyRune):
		return discovery.Candidate{}, fmt.Errorf("value: host %q", r.Host)
	case r.Port < 1 || r.Port > 65535:
		return discovery.Candidate{}, fmt.Errorf("value: port %d is not in 1..65535", r.Port)
	}
	return discovery.Candidate{Name: r.Name, Host: r.Host, Port: r.Port}, nil
}

// Changes watches the cluster's prefix: the channel receives a value
// (coalesced: at most one waits) after any change, and after the watch
// lost events to a compaction. It is closed when ctx ends or the Source
// is closed.
//
// The watch starts after the revision the latest Lookup of this Source
// read, so a change made after that Lookup is signalled even if it
// comes before the watch is set up (which takes a round trip, and an
// authentication with a user name); without a Lookup before, it starts
// when etcd sets it up. Call Lookup, then Changes, then Lookup again at
// each signal.
func (s *Source) Changes(ctx context.Context) <-chan struct{} {
	var from int64
	if rev := s.lookedUp.Load(); rev > 0 {
		from = rev + 1
	}
	return s.changes(ctx, from)
}

// changes is Changes watching from revision rev (0: the current one).
func (s *Source) changes(ctx context.Context, rev int64) <-chan struct{} {
	out := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(out)
		return out
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closing, cancel)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		defer stop()
		defer cancel()
		s.watch(ctx, rev, out)
	}()
	return out
}

// watch watches the prefix from revision next (0: now) until ctx ends,
// signalling out, and watches again when the watch fails.
func (s *Source) watch(ctx context.Context, next int64, out chan<- struct{}) {
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	backoff := minBackoff
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCreatedNotify()}
		if next > 0 {
			opts = append(opts, clientv3.WithRev(next))
		}
		var werr error
		for resp := range s.client.Watch(wctx, s.prefix, opts...) {
			if err := resp.Err(); err != nil {
				werr = err
				if resp.CompactRevision != 0 {
					// The revisions from next to the compaction are
					// gone: whatever changed there is reported as one
					// change, and the watch resumes at the oldest
					// revision kept.
					next = resp.CompactRevision
					signal()
				}
				break
			}
			backoff = minBackoff
			if resp.Created && next == 0 && resp.Header != nil {
				next = resp.Header.Revision + 1
			}
			if n := len(resp.Events); n > 0 {
				next = resp.Events[n-1].Kv.ModRevision + 1
				signal()
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if werr == nil {
			werr = errors.New("watch channel closed")
		}
		s.log.Warn("discovery: etcd: watch ended; watching again", "prefix", s.prefix, "from_revision", next, "err", werr)
		if !sleep(ctx, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
