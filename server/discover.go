package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/adapters/discovery/bootstrap"
	"github.com/forge-consensus/consensus/adapters/snapfile"
	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/nodename"
)

// PromiseFile is the file in storage.path that keeps the voter set a node
// promised while bootstrapping by discovery (package discovery/bootstrap).
// Deleting it can let two clusters form: never delete it by hand.
const PromiseFile = "discovery-promise.json"

// helloPath is where a node answers other nodes' bootstrap asks.
const helloPath = "/discovery/hello"

// askTimeout bounds one ask of one candidate.
const askTimeout = 2 * time.Second

// promisedRetry is how soon a node that promised a set asks again when
// the set is not complete yet (at most the refresh interval).
const promisedRetry = 500 * time.Millisecond

// maxHelloBody bounds an ask's and an answer's body.
const maxHelloBody = 64 << 10

// discovered is a node's discovery state: what Discover found, and what
// the running node keeps up (its answers, address changes, joining).
type discovered struct {
	cfg     DiscoveryConfig
	src     discovery.Source
	self    discovery.Candidate
	apiOff  int
	cliOff  int
	client  *http.Client
	scheme  string
	apiTLS  *tls.Config // api.addr's TLS (nil: plain HTTP)
	token   string      // an admin token of the configuration, sent with asks and add-node ("" : none)
	log     *slog.Logger
	promise string // the promise file ("" for memory storage: kept in memory)
	cluster string // cluster_id

	mu sync.Mutex
	// boot is the bootstrap protocol while the node is not yet a member
	// by its own storage (nil for a node that started with state or with
	// bootstrap_expect 0).
	boot *bootstrap.Node
	// promised is the persisted promise (nil: none).
	promised []string
	// member reports whether the node is a member now.
	member func() bool
	// join says the node started without a membership to join a cluster.
	join bool
	// broken is set when the promise could not be persisted: the node
	// answers no more asks.
	broken error
	// health
	lastLookup time.Time
	lastErr    string
	candidates int
	stopReg    func()
	// joinFailures counts failed asks to be added, for the back-off.
	joinFailures int
	// waiting says why the node has not started yet (health, before it
	// starts).
	waiting string
	// unanswered is how many candidates of the last round did not
	// answer (a pod whose address is listed before it serves, a node
	// restarting).
	unanswered int
	// wake is signalled when an answer made this node promise a set, so
	// that it looks again at once rather than after the refresh interval.
	wake chan struct{}
	// apiLn is api.addr's listener, bound while the node looked for its
	// cluster, for New to serve on (nil once taken).
	apiLn net.Listener

	lookups, failures prometheus.Counter
}

// hello is the body of a POST /discovery/hello answer.
type hello = bootstrap.Hello

// promiseFile is the promise file's content.
type promiseFile struct {
	ClusterID string   `json:"cluster_id"`
	Node      string   `json:"node"`
	Voters    []string `json:"voters"`
}

// Discover runs a node's discovery before it starts (New calls it when a
// program did not): for a node configured with a discovery type other
// than static, it looks its candidates up and asks them until it can form
// a new cluster (bootstrap_expect) or join an existing one, answering
// their asks meanwhile on api.addr, and returns the configuration to start
// the node with (its peers filled in). A node whose storage already holds
// state returns at once, with the peers found by one lookup. It returns
// ctx's error if ctx ends first.
func Discover(ctx context.Context, cfg Config, log *slog.Logger) (Config, error) {
	if !cfg.Discovery.Enabled() || cfg.discovered != nil {
		return cfg, nil
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", string(cfg.NodeID))
	d, err := newDiscovered(cfg, log)
	if err != nil {
		return cfg, err
	}
	log = d.log
	started := false
	defer func() {
		if !started {
			d.close() // withdraw a registration, close the source's client
		}
	}()
	st, closer, err := openNodeStorage(cfg, log)
	if err != nil {
		return cfg, fmt.Errorf("server: node %s: %w", cfg.NodeID, err)
	}
	p, err := st.Load()
	if closer != nil {
		if cerr := closer.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}
	if err != nil {
		return cfg, fmt.Errorf("server: node %s: storage %s: %w", cfg.NodeID, storageName(cfg), err)
	}
	if err := d.loadPromise(cfg); err != nil {
		return cfg, err
	}
	if r, ok := d.src.(discovery.Registrar); ok {
		stop, err := r.Register(context.WithoutCancel(ctx), d.self)
		if err != nil {
			log.Warn("discovery: registering this node failed; retrying at each refresh", "err", err)
		} else {
			d.stopReg = stop
		}
	}
	if !p.IsEmpty() {
		// A member: the membership is in its storage. Learn the others'
		// addresses once, without waiting long for them (the running
		// node keeps looking them up).
		lctx, cancel := context.WithTimeout(ctx, cfg.Discovery.RefreshInterval)
		_, found, _ := d.round(lctx)
		cancel()
		cfg.Peers = d.peers(found, nil)
		cfg.discovered = d
		started = true
		log.Info("discovery: this node is a member (its storage holds state); peers found", "peers", len(cfg.Peers))
		return cfg, nil
	}
	if cfg.Discovery.BootstrapExpect > 0 {
		b, err := bootstrap.New(bootstrap.Config{Name: string(cfg.NodeID), ClusterID: cfg.ClusterID,
			Expect: cfg.Discovery.BootstrapExpect, Promise: d.promised})
		if err != nil {
			return cfg, fmt.Errorf("server: node %s: %w", cfg.NodeID, err)
		}
		d.boot = b
	}
	voters, via, found, err := d.decide(ctx, cfg)
	if err != nil {
		return cfg, err
	}
	if voters != nil {
		cfg.Peers = d.peers(found, voters)
		log.Info("discovery: forming a new cluster", "voters", strings.Join(voters, ","))
	} else {
		cfg.Peers = d.peers(found, via)
		d.join = true
		log.Info("discovery: joining the existing cluster", "via", strings.Join(via, ","))
	}
	cfg.discovered = d
	started = true
	return cfg, nil
}

// newDiscovered builds a node's discovery state; log is the node's
// logger, which the mechanism logs to as well (it names itself).
func newDiscovered(cfg Config, log *slog.Logger) (*discovered, error) {
	apiOff, cliOff, err := cfg.discoveryPorts()
	if err != nil {
		return nil, err
	}
	apiTLS, err := apiTLSConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("server: node %s: %w", cfg.NodeID, err)
	}
	client, err := peerClient(cfg, apiTLS, askTimeout)
	if err != nil {
		return nil, fmt.Errorf("server: node %s: %w", cfg.NodeID, err)
	}
	src, err := cfg.Discovery.source(&cfg, log, false) // last: nothing fails after it
	if err != nil {
		return nil, err
	}
	d := &discovered{
		cfg: cfg.Discovery, cluster: cfg.ClusterID, src: src, apiOff: apiOff, cliOff: cliOff, client: client, scheme: "http",
		log:  log.With("discovery", cfg.Discovery.Type),
		self: discovery.Candidate{Name: string(cfg.NodeID), Host: cfg.Discovery.AdvertiseAddr, Port: cfg.BindPort},
	}
	d.lookups, d.failures = discoveryCounters(src.Kind())
	if apiTLS != nil {
		d.scheme = "https"
		d.apiTLS = apiTLS
	}
	for _, t := range cfg.Security.Tokens {
		if t.Role == string(admin.RoleAdmin) {
			d.token = t.Token
			break
		}
	}
	if cfg.Storage.Type != "memory" && cfg.Storage.Path != "" {
		d.promise = filepath.Join(cfg.Storage.Path, PromiseFile)
	}
	d.member = func() bool { return false }
	d.waiting = "no lookup yet"
	d.wake = make(chan struct{}, 1)
	return d, nil
}

// peerClient returns a client for other nodes' HTTP APIs: over TLS when
// this node's API is (api.tls, api.mtls), trusting security.ca_file (the
// system's roots if none) and presenting this node's certificate, which
// a node with api.mtls asks for.
func peerClient(cfg Config, apiTLS *tls.Config, timeout time.Duration) (*http.Client, error) {
	c := &http.Client{Timeout: timeout}
	if apiTLS == nil {
		return c, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: apiTLS.Certificates}
	if f := cfg.Security.CAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("security.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("security.ca_file %s: no PEM certificate in it", f)
		}
	}
	c.Transport = &http.Transport{TLSClientConfig: tc, TLSHandshakeTimeout: timeout}
	return c, nil
}

// loadPromise reads the persisted promise, refusing one of another node
// or cluster.
func (d *discovered) loadPromise(cfg Config) error {
	if d.promise == "" {
		return nil
	}
	b, err := os.ReadFile(d.promise)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: node %s: read %s: %w", cfg.NodeID, d.promise, err)
	}
	var pf promiseFile
	if err := json.Unmarshal(b, &pf); err != nil {
		return fmt.Errorf("server: node %s: %s is damaged (%v): it keeps the voter set this node promised; "+
			"restore it, or, if this node never formed a cluster, remove it with every other node stopped", cfg.NodeID, d.promise, err)
	}
	if pf.ClusterID != cfg.ClusterID || pf.Node != string(cfg.NodeID) {
		return fmt.Errorf("server: node %s: %s belongs to node %q of cluster %q, not node %q of cluster %q",
			cfg.NodeID, d.promise, pf.Node, pf.ClusterID, cfg.NodeID, cfg.ClusterID)
	}
	d.promised = pf.Voters
	if len(pf.Voters) == 0 {
		d.promised = nil
	}
	return nil
}

// persist makes the promise durable (write, fsync, rename, fsync the
// directory) before anything that depends on it is sent.
func (d *discovered) persist(voters []string) error {
	if d.promise == "" {
		d.promised = slices.Clone(voters)
		return nil
	}
	b, err := json.Marshal(promiseFile{ClusterID: d.cluster, Node: d.self.Name, Voters: voters})
	if err != nil {
		return fmt.Errorf("encode the promise: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(d.promise), 0o750); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(d.promise), err)
	}
	if err := writeDurable(d.promise, b); err != nil {
		return fmt.Errorf("persist the promise in %s: %w", d.promise, err)
	}
	d.promised = slices.Clone(voters)
	return nil
}

// answer handles another node's ask.
func (d *discovered) answer(a bootstrap.Ask, clusterID string) (hello, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return hello{}, d.broken
	}
	if member := d.member(); d.boot == nil || member {
		return hello{Name: d.self.Name, ClusterID: clusterID, Member: member, Promise: slices.Clone(d.promised)}, nil
	}
	h, changed := d.boot.Answer(a)
	if changed {
		if err := d.persist(d.boot.Promise()); err != nil {
			d.broken = err
			d.log.Error("discovery: the promise could not be persisted; this node answers no more asks", "err", err)
			return hello{}, err
		}
		d.log.Info("discovery: promised a voter set", "asked_by", a.From, "voters", strings.Join(a.Propose, ","))
		select { // look again now: the set may be complete
		case d.wake <- struct{}{}:
		default:
		}
	}
	return h, nil
}

// serveHello is the handler of POST /discovery/hello.
// Asks must carry an admin token of security.tokens (every node has the
// same): an answer can change the node's promise.
func (d *discovered) serveHello(clusterID string, tokens []TokenConfig) http.Handler {
	var sums [][32]byte
	for _, t := range tokens {
		if t.Role == string(admin.RoleAdmin) {
			sums = append(sums, sha256.Sum256([]byte(t.Token)))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			httpError(w, http.StatusMethodNotAllowed, "POST only")
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(tok))
		match := 0
		for _, s := range sums {
			match |= subtle.ConstantTimeCompare(sum[:], s[:])
		}
		if !ok || match != 1 {
			httpError(w, http.StatusUnauthorized, "discovery asks need an admin token of security.tokens")
			return
		}
		var a bootstrap.Ask
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHelloBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			httpError(w, http.StatusBadRequest, "invalid ask: "+err.Error())
			return
		}
		if a.From == "" {
			httpError(w, http.StatusBadRequest, "invalid ask: no from")
			return
		}
		h, err := d.answer(a, clusterID)
		if err != nil {
			httpError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h)
	})
}

// apiURL returns the base URL of a candidate's HTTP API.
func (d *discovered) apiURL(c discovery.Candidate) string {
	return d.scheme + "://" + net.JoinHostPort(c.Host, strconv.Itoa(c.Port+d.apiOff))
}

// ask sends one ask to a candidate.
func (d *discovered) ask(ctx context.Context, c discovery.Candidate, a bootstrap.Ask) (hello, error) {
	body, _ := json.Marshal(a)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.apiURL(c)+helloPath, bytes.NewReader(body))
	if err != nil {
		return hello{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return hello{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHelloBody))
	if err != nil {
		return hello{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return hello{}, fmt.Errorf("%s answered %s: %s", c, resp.Status, strings.TrimSpace(string(b)))
	}
	var h hello
	if err := json.Unmarshal(b, &h); err != nil {
		return hello{}, fmt.Errorf("%s: invalid answer: %w", c, err)
	}
	if c.Name != "" && h.Name != c.Name {
		return hello{}, fmt.Errorf("%s answered as %q", c, h.Name)
	}
	if _, err := nodename.ID(h.Name); err != nil {
		return hello{}, fmt.Errorf("%s answered with an invalid name %q: %w", c, h.Name, err)
	}
	return h, nil
}

// lookup asks the source for candidates, counting and recording the
// outcome for health and metrics.
func (d *discovered) lookup(ctx context.Context) ([]discovery.Candidate, error) {
	cs, err := d.src.Lookup(ctx)
	d.lookups.Inc()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastLookup = time.Now()
	if err != nil {
		d.failures.Inc()
		d.lastErr = err.Error()
		return nil, err
	}
	d.lastErr = ""
	d.candidates = len(cs)
	return cs, nil
}

// round looks the candidates up and asks every one but this node. It
// returns the answers and where each answering node was found (by name).
func (d *discovered) round(ctx context.Context) ([]hello, map[string]discovery.Candidate, error) {
	cs, err := d.lookup(ctx)
	if err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	a := bootstrap.Ask{From: d.self.Name, ClusterID: d.cluster}
	if d.boot != nil {
		a = d.boot.Ask()
	}
	d.mu.Unlock()
	type result struct {
		c discovery.Candidate
		h hello
		e error
	}
	results := make([]result, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		if c.Name == d.self.Name || (c.Name == "" && sameHost(c.Host, d.self.Host) && c.Port == d.self.Port) {
			results[i].e = errSelf
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, askTimeout)
			defer cancel()
			h, err := d.ask(actx, c, a)
			results[i] = result{c: c, h: h, e: err}
		}()
	}
	wg.Wait()
	var answers []hello
	found := map[string]discovery.Candidate{}
	missing := 0
	for _, r := range results {
		if r.e != nil {
			if r.e != errSelf {
				missing++
				d.log.Debug("discovery: a candidate did not answer", "candidate", r.c.String(), "err", r.e)
			}
			continue
		}
		answers = append(answers, r.h)
		c := r.c
		c.Name = r.h.Name
		found[c.Name] = c
	}
	d.mu.Lock()
	d.unanswered = missing
	d.mu.Unlock()
	return answers, found, nil
}

var errSelf = errors.New("this node")

// decide runs rounds until the node may bootstrap (voters) or join (via).
func (d *discovered) decide(ctx context.Context, cfg Config) (voters, via []string, found map[string]discovery.Candidate, err error) {
	// Answer the others' asks on api.addr meanwhile.
	raw, lerr := net.Listen("tcp", cfg.API.Addr)
	if lerr != nil {
		return nil, nil, nil, fmt.Errorf("server: node %s: api.addr: %w", cfg.NodeID, lerr)
	}
	var ln net.Listener = keepOpen{raw}
	if d.apiTLS != nil {
		ln = tls.NewListener(ln, d.apiTLS)
	}
	mux := http.NewServeMux()
	mux.Handle(helloPath, d.serveHello(cfg.ClusterID, cfg.Security.Tokens))
	// The health probes answer meanwhile: alive, not ready (a Kubernetes
	// liveness probe must not restart a node that waits for its peers).
	prefix := cfg.AdminAPI.PathPrefix
	mux.HandleFunc(prefix+"/health/live", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"alive","discovery":"looking for the cluster"}`+"\n")
	})
	notReady := func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		why := d.waiting
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "unhealthy", "healthy": false,
			"checks": []admin.Check{{Name: "discovery", Healthy: false, Message: d.src.Kind() + ": " + why}}})
	}
	mux.HandleFunc(prefix+"/health/ready", notReady)
	mux.HandleFunc(prefix+"/health", notReady)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() {
		// Stop answering here, and hand the listening socket to New: asks
		// that arrive until the node serves wait in its backlog rather
		// than being refused.
		// The deadline ends the Accept that Serve waits in (closing the
		// socket would too, but it is kept); Close then waits for Serve
		// to return.
		tl, _ := raw.(*net.TCPListener)
		if tl != nil {
			_ = tl.SetDeadline(time.Now())
		}
		_ = srv.Close()
		<-served
		if tl != nil {
			_ = tl.SetDeadline(time.Time{})
		}
		if err == nil {
			d.mu.Lock()
			d.apiLn = raw
			d.mu.Unlock()
		} else {
			raw.Close()
		}
	}()

	var changes <-chan struct{}
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	if w, ok := d.src.(discovery.Watcher); ok {
		changes = w.Changes(wctx)
	}
	lastReason := ""
	for {
		answers, f, lerr := d.round(ctx)
		if lerr != nil {
			if ctx.Err() != nil {
				return nil, nil, nil, fmt.Errorf("server: node %s: discovery: %w", cfg.NodeID, ctx.Err())
			}
			if lerr.Error() != lastReason {
				d.log.Warn("discovery: lookup failed; trying again", "err", lerr)
				lastReason = lerr.Error()
			}
			d.mu.Lock()
			d.waiting = "the lookup failed: " + lerr.Error()
			d.mu.Unlock()
		} else {
			dec, err := d.decideOnce(answers)
			if err != nil {
				return nil, nil, nil, err
			}
			switch dec.Kind {
			case bootstrap.Bootstrap:
				if missing := missingAddrs(dec.Voters, f, d.self); len(missing) == 0 {
					return dec.Voters, nil, f, nil
				}
			case bootstrap.Join:
				if len(dec.Via) > 0 {
					return nil, dec.Via, f, nil
				}
			case bootstrap.Propose:
				d.log.Info("discovery: "+dec.Reason, "voters", strings.Join(dec.Voters, ","))
				continue // ask them now
			}
			if dec.Reason != lastReason {
				d.log.Info("discovery: waiting: " + dec.Reason)
				lastReason = dec.Reason
			}
			d.mu.Lock()
			d.waiting = "waiting: " + dec.Reason
			d.mu.Unlock()
		}
		wait := d.cfg.RefreshInterval
		d.mu.Lock()
		if d.promised != nil {
			// Mid-protocol: the nodes of the set are starting too, or
			// just started and will answer in a moment; ask again soon.
			wait = min(wait, promisedRetry)
		}
		d.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, nil, fmt.Errorf("server: node %s: discovery: %w", cfg.NodeID, ctx.Err())
		case <-t.C:
		case <-changes:
			t.Stop()
		case <-d.wake:
			t.Stop()
		}
	}
}

// decideOnce passes one round's answers to the protocol and persists a
// changed promise.
func (d *discovered) decideOnce(answers []hello) (bootstrap.Decision, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return bootstrap.Decision{}, d.broken
	}
	if d.boot == nil {
		// bootstrap_expect 0: only join.
		var members []string
		for _, h := range answers {
			if h.Member && h.ClusterID == d.cluster {
				members = append(members, h.Name)
			}
		}
		slices.Sort(members)
		if len(members) > 0 {
			return bootstrap.Decision{Kind: bootstrap.Join, Via: members, Reason: "a cluster exists"}, nil
		}
		return bootstrap.Decision{Kind: bootstrap.Wait, Reason: "no member of a cluster found (bootstrap_expect is 0: this node only joins)"}, nil
	}
	dec := d.boot.Decide(answers)
	if p := d.boot.Promise(); !slices.Equal(p, d.promised) {
		if err := d.persist(p); err != nil {
			d.broken = err
			return bootstrap.Decision{}, fmt.Errorf("server: node %s: discovery: %w", d.self.Name, err)
		}
	}
	return dec, nil
}

// missingAddrs returns the names among want whose address is unknown.
func missingAddrs(want []string, found map[string]discovery.Candidate, self discovery.Candidate) []string {
	var out []string
	for _, n := range want {
		if _, ok := found[n]; !ok && n != self.Name {
			out = append(out, n)
		}
	}
	return out
}

// peers returns the peers list to start with: this node and the nodes
// named (all found nodes when names is nil), at the addresses found.
func (d *discovered) peers(found map[string]discovery.Candidate, names []string) []PeerConfig {
	out := []PeerConfig{d.peerOf(d.self)}
	seen := map[string]bool{d.self.Addr(): true}
	keys := names
	if keys == nil {
		for n := range found {
			keys = append(keys, n)
		}
		slices.Sort(keys)
	}
	for _, n := range keys {
		c, ok := found[n]
		if !ok || n == d.self.Name || seen[c.Addr()] {
			continue
		}
		seen[c.Addr()] = true
		out = append(out, d.peerOf(c))
	}
	return out
}

func (d *discovered) peerOf(c discovery.Candidate) PeerConfig {
	return PeerConfig{ID: NodeName(c.Name), Address: c.Host, Port: c.Port, APIPort: c.Port + d.apiOff, ClientPort: c.Port + d.cliOff}
}

// close withdraws the registration, if any, closes the source if
// discovery built it, and closes a listener New did not take.
func (d *discovered) close() {
	d.mu.Lock()
	stop := d.stopReg
	d.stopReg = nil
	ln := d.apiLn
	d.apiLn = nil
	d.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	if stop != nil {
		stop()
	}
	if cl, ok := d.src.(io.Closer); ok && d.cfg.Source == nil {
		if err := cl.Close(); err != nil {
			d.log.Warn("discovery: closing the source", "err", err)
		}
	}
}

// writeDurable replaces path with b durably: a temporary file written and
// fsynced, renamed over path, and the directory fsynced.
func writeDurable(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return snapfile.SyncDir(filepath.Dir(path))
}

// startDiscovery starts the running node's part of discovery: answering
// asks as a member, asking to be added while joining, following members
// that moved, and keeping a registration alive.
func (s *Server) startDiscovery() {
	d := s.cfg.discovered
	if d == nil {
		// Served at zero, so that dashboards find the series on every node.
		l, f := discoveryCounters(s.cfg.Discovery.Type)
		for _, c := range []prometheus.Collector{l, f} {
			if err := s.metrics.Registry().Register(c); err != nil {
				s.log.Warn("discovery: metrics not registered", "err", err)
			}
		}
		return
	}
	for _, c := range []prometheus.Collector{d.lookups, d.failures} {
		if err := s.metrics.Registry().Register(c); err != nil {
			s.log.Warn("discovery: metrics not registered", "err", err)
		}
	}
	d.mu.Lock()
	d.member = s.isMember
	if d.join {
		d.boot = nil // a joining node promises nothing to anyone
	} else if d.boot != nil {
		d.boot.SetMember()
	}
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	s.discStop = cancel
	s.discDone = make(chan struct{})
	go func() {
		defer close(s.discDone)
		s.discoveryLoop(ctx, d)
	}()
}

// stopDiscovery ends what startDiscovery started and withdraws the
// registration.
func (s *Server) stopDiscovery() {
	if s.discDone != nil {
		s.discStop()
		<-s.discDone
	}
	if d := s.cfg.discovered; d != nil {
		d.close()
	}
}

// isMember reports whether this node is in the cluster's configuration.
func (s *Server) isMember() bool { return s.inConfig(s.cfg.NodeID.ID()) }

// inConfig reports whether node id is in the cluster's configuration, as
// this node knows it.
func (s *Server) inConfig(id uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := s.run.CoreStatus(ctx)
	if err != nil {
		return false
	}
	c := st.Config
	return slices.Contains(c.Voters, id) || slices.Contains(c.Learners, id) || slices.Contains(c.VotersOutgoing, id)
}

// discoveryLoop looks the candidates up every refresh interval (sooner
// when the source says they changed).
func (s *Server) discoveryLoop(ctx context.Context, d *discovered) {
	var changes <-chan struct{}
	if w, ok := d.src.(discovery.Watcher); ok {
		changes = w.Changes(ctx)
	}
	wait := d.cfg.RefreshInterval
	var retry time.Duration // the back-off while candidates do not answer
	for {
		answers, found, err := d.round(ctx)
		s.followSelf(d)
		if err == nil {
			s.followMoves(d, found)
		}
		if r, ok := d.src.(discovery.Registrar); ok {
			d.mu.Lock()
			registered := d.stopReg != nil
			d.mu.Unlock()
			if !registered {
				if stop, err := r.Register(ctx, d.self); err == nil {
					d.mu.Lock()
					d.stopReg = stop
					d.mu.Unlock()
				}
			}
		}
		wait = d.cfg.RefreshInterval
		d.mu.Lock()
		unanswered := d.unanswered
		d.mu.Unlock()
		if err == nil && unanswered > 0 {
			// A candidate that does not answer yet may be a member at a
			// new address that is still starting: look again soon,
			// backing off to the refresh interval.
			retry = min(max(2*retry, promisedRetry/2), d.cfg.RefreshInterval)
			wait = retry
		} else {
			retry = 0
		}
		if d.join && !s.isMember() && err == nil {
			if jerr := s.askToJoin(ctx, d, answers, found); jerr != nil {
				d.joinFailures++
				s.log.Warn("discovery: asking to be added failed; trying again", "err", jerr, "attempt", d.joinFailures)
				wait = min(d.cfg.RefreshInterval<<min(d.joinFailures, 4), 30*time.Second)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-changes:
			t.Stop()
		}
	}
}

// followSelf records this node at the address it advertises now: the
// replicated address of a node added by add-node is where it was when it
// joined, and it may have come back elsewhere. Each round, since applying
// the add again (a restart replays the log) puts the old address back.
func (s *Server) followSelf(d *discovered) {
	self := memberOf(s.cfg.NodeID.ID(), d.self.Name, d.self.Host, d.self.Port, d.self.Port+d.apiOff, d.self.Port+d.cliOff)
	if s.dir.setFound(self) {
		s.log.Info("discovery: this node is at a new address", "addr", self.raftAddr())
	}
}

// followMoves points the transport at members found at a new address.
func (s *Server) followMoves(d *discovered, found map[string]discovery.Candidate) {
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := found[n]
		id, err := nodename.ID(n)
		if err != nil || id == s.cfg.NodeID.ID() {
			continue
		}
		m := memberOf(id, n, c.Host, c.Port, c.Port+d.apiOff, c.Port+d.cliOff)
		if s.dir.setFound(m) {
			s.tr.SetPeer(id, m.raftAddr())
			s.log.Info("discovery: a member is at a new address", "member", id, "addr", m.raftAddr())
			continue
		}
		// A member this node has no address for: one that was away when
		// this node restarted and looked its peers up (the peers list of
		// a node that formed or joined by discovery is that lookup's).
		if _, known := s.dir.get(id); !known && s.inConfig(id) && s.dir.learn(m) {
			s.tr.SetPeer(id, m.raftAddr())
			s.log.Info("discovery: found a member this node had no address for", "member", id, "addr", m.raftAddr())
		}
	}
}

// askToJoin asks the members that answered to add this node, learner
// first (the leader promotes it once it has caught up), following a
// not-leader answer to the leader.
func (s *Server) askToJoin(ctx context.Context, d *discovered, answers []hello, found map[string]discovery.Candidate) error {
	var members []string
	for _, h := range answers {
		if h.Member && h.ClusterID == s.cfg.ClusterID {
			members = append(members, h.Name)
		}
	}
	slices.Sort(members)
	if len(members) == 0 {
		return errors.New("no member of the cluster answered")
	}
	body, _ := json.Marshal(map[string]any{"node_id": d.self.Name, "address": d.self.Host, "port": d.self.Port,
		"api_port": d.self.Port + d.apiOff, "client_port": d.self.Port + d.cliOff})
	prefix := s.cfg.AdminAPI.PathPrefix
	var errs []error
	for _, m := range members {
		url := d.apiURL(found[m]) + prefix + "/add-node"
		for range 2 { // the member, then the leader it names
			leader, err := d.postAddNode(ctx, url, body)
			if err == nil {
				s.log.Info("discovery: asked to be added to the cluster", "via", url)
				return nil
			}
			errs = append(errs, err)
			if leader == "" {
				break
			}
			url = strings.TrimSuffix(leader, "/") + prefix + "/add-node"
		}
	}
	return errors.Join(errs...)
}

// postAddNode posts an add-node request; on a not-leader answer it
// returns the leader's base URL.
func (d *discovered) postAddNode(ctx context.Context, url string, body []byte) (leader string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxHelloBody))
	if resp.StatusCode == http.StatusOK {
		return "", nil
	}
	var e struct {
		LeaderAddress string `json:"leader_address"`
	}
	_ = json.Unmarshal(b, &e)
	return e.LeaderAddress, fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
}

// discoveryCheck is the health check of discovery: the source, its last
// lookup and error. It does not make the node unhealthy: a member keeps
// serving while its discovery source is down.
func (s *Server) discoveryCheck() (admin.Check, bool) {
	d := s.cfg.discovered
	if d == nil {
		return admin.Check{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c := admin.Check{Name: "discovery", Healthy: d.lastErr == ""}
	switch {
	case d.lastLookup.IsZero():
		c.Message = d.src.Kind() + ": no lookup yet"
	case d.lastErr != "":
		c.Message = d.src.Kind() + ": the last lookup failed: " + d.lastErr
	default:
		c.Message = fmt.Sprintf("%s: %d candidates at the last lookup, %s ago", d.src.Kind(), d.candidates,
			time.Since(d.lastLookup).Round(time.Second))
	}
	return c, true
}

// discoveryCounters returns the counters of lookups and failed lookups of
// a discovery source of the kind named.
func discoveryCounters(kind string) (lookups, failures prometheus.Counter) {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "forge_consensus_discovery_lookups_total",
			Help: "Lookups of the discovery source.", ConstLabels: prometheus.Labels{"source": kind}}),
		prometheus.NewCounter(prometheus.CounterOpts{Name: "forge_consensus_discovery_lookup_failures_total",
			Help: "Lookups of the discovery source that failed.", ConstLabels: prometheus.Labels{"source": kind}})
}

// keepOpen is a listener whose Close does nothing: the socket outlives
// the server that used it.
type keepOpen struct{ net.Listener }

func (keepOpen) Close() error { return nil }

// takeListener returns api.addr's listener bound by Discover, if any; the
// caller owns it.
func (d *discovered) takeListener() net.Listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	ln := d.apiLn
	d.apiLn = nil
	return ln
}
