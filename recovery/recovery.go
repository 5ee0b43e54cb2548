// Package recovery brings back a node whose storage is damaged, safely:
// the node returns under a new ID, as a learner with empty storage, and
// votes again only once it holds the cluster's log.
//
// A node whose storage refuses to start may have lost state it had
// acknowledged: entries it told the leader it stored, the vote it cast in
// its term. Raft counts votes and acknowledgements by node ID, so it must
// not come back under its old ID with less than it promised (Alagappan et
// al., "Protocol-Aware Recovery for Consensus-Based Storage", FAST '18):
// it could vote a second time in a term, or be counted in a quorum for
// entries it no longer has, and a committed write could be lost. Run, the
// engine of "consensusd recover", replaces it instead:
//
//  1. It checks the node's storage: it must refuse to open (corruption), be
//     absent or empty; a store that opens cleanly is replaced only with
//     Options.Force.
//  2. It finds the leader through the other members' admin APIs and checks
//     that the replacement is safe: the old node must not be active, the
//     others must be a quorum without it, and the new ID must never have
//     been a member (nor be in use at another address).
//  3. It removes the old ID from the cluster (through the leader; this
//     needs a quorum of the others). From then on, nothing the old
//     incarnation sends or sent is counted.
//  4. It renames the damaged data directory to <path>.damaged-<UTC time>
//     (it never deletes it: it is evidence).
//  5. It rewrites the configuration file for the new ID with join: true
//     (keeping a copy of the old file as <file>.bak-<UTC time>), before the
//     new ID exists anywhere, so that the file and the data directory
//     always describe the same node.
//  6. It creates the new node's empty storage, then adds the new ID as a
//     learner at the node's address. (So, on a later run, storage that is
//     absent while the new ID is a member means lost state, and is refused.)
//  7. It starts the node, which receives the leader's snapshot and log,
//     and waits until its log is within Options.MaxLag entries of the
//     leader's commit index and holds every entry committed before it was
//     added.
//  8. It promotes the new ID to voter.
//
// Each step first looks at what is already true, so running it again after
// a crash or an interruption completes the job, and running it once more
// does nothing. It refuses, changing nothing, when a step would be unsafe
// (errors matching ErrRefused).
package recovery

import (
	"context"
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
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/server"
)

// ErrRefused is wrapped by the errors of Run that refuse a recovery as
// unsafe or impossible: nothing was changed by the step that refused.
var ErrRefused = errors.New("refused")

// Defaults of Options.
const (
	DefaultMaxLag         = 100
	DefaultCatchUpTimeout = 10 * time.Minute
	// membershipTimeout bounds one membership step (retries included).
	membershipTimeout = time.Minute
	poll              = 100 * time.Millisecond
)

// Options configures Run.
type Options struct {
	// ConfigPath is the damaged node's configuration file (consensusd's
	// YAML). Run rewrites it for the new ID.
	ConfigPath string
	// NewID is the ID the node comes back under. It must never have been
	// a member of the cluster.
	NewID uint64
	// NewName is the name NewID stands for (package nodename), written
	// into the configuration and the membership change; "" writes NewID
	// as a number.
	NewName string
	// Force replaces the node even if its storage opens cleanly.
	Force bool
	// Endpoints are admin API base URLs of other members, such as
	// "http://10.0.0.1:7101" (without the path prefix). Default: every
	// other member of the configuration's peers, at its api_port. The
	// token is sent to these and to this node's own API only; a leader
	// among them is asked at its endpoint, however the other members'
	// answers spell its address.
	Endpoints []string
	// Token is the admin API's bearer token (role admin). Default: the
	// first admin token of the configuration's security.tokens.
	Token string
	// MaxLag is how close to the leader's commit index the new node's log
	// must be before it is promoted (default DefaultMaxLag).
	MaxLag uint64
	// CatchUpTimeout bounds the wait for the new node to catch up
	// (default DefaultCatchUpTimeout).
	CatchUpTimeout time.Duration
	// KeepRunning leaves the recovered node running: Result.Server serves
	// and the caller closes it. Otherwise Run stops it before returning.
	KeepRunning bool
	// Out receives a line for each step (nil: discarded).
	Out io.Writer
	// Logger receives the recovered node's logs (nil: discarded).
	Logger *slog.Logger
	// Getenv expands ${VAR} in the configuration (nil: os.Getenv).
	Getenv func(string) string
	// Now is the clock for the names of the moved directory and the backup
	// (nil: time.Now).
	Now func() time.Time
	// HTTPClient talks to the admin APIs (nil: one with a 10 s timeout).
	HTTPClient *http.Client
}

// Result is what Run did.
type Result struct {
	// OldID is the replaced node's ID (0 when the run resumed a recovery
	// whose configuration already names NewID).
	OldID uint64
	// NewID is the node's new ID.
	NewID uint64
	// NothingToDo reports that NewID was a voter already and the
	// configuration named it: Run changed nothing.
	NothingToDo bool
	// Moved is where this run moved the damaged data directory ("" if it
	// moved nothing).
	Moved string
	// ConfigBackup is the copy of the old configuration file this run made
	// ("" if none).
	ConfigBackup string
	// Voters are the cluster's voters at the end.
	Voters []uint64
	// Server is the recovered node, serving, with Options.KeepRunning (the
	// caller closes it); nil otherwise.
	Server *server.Server
}

// run is one recovery in progress.
type run struct {
	o      Options
	out    io.Writer
	cfg    server.Config // as the file is now
	raw    []byte
	self   server.PeerConfig // this node's entry in peers
	addr   string            // its raft address, host:port
	client *adminClient
	ownAPI string // this node's own API base URL
	res    *Result
}

const steps = 8

func (r *run) step(n int, format string, args ...any) {
	fmt.Fprintf(r.out, "[%d/%d] %s\n", n, steps, fmt.Sprintf(format, args...))
}

func (r *run) detail(format string, args ...any) {
	fmt.Fprintf(r.out, "      %s\n", fmt.Sprintf(format, args...))
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Run replaces the node of o.ConfigPath by a fresh one under o.NewID (see
// the package documentation). It prints each step to o.Out.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxLag == 0 {
		o.MaxLag = DefaultMaxLag
	}
	if o.CatchUpTimeout == 0 {
		o.CatchUpTimeout = DefaultCatchUpTimeout
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.NewID == 0 {
		return nil, errors.New("recovery: the new ID is required (a positive integer no member ever had)")
	}
	raw, err := os.ReadFile(o.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("recovery: read config: %w", err)
	}
	cfg, err := server.ParseConfig(raw, o.Getenv)
	if err != nil {
		return nil, fmt.Errorf("recovery: %s: %w", o.ConfigPath, err)
	}
	r := &run{o: o, out: o.Out, cfg: cfg, raw: raw, res: &Result{NewID: o.NewID}}
	if err := r.setup(); err != nil {
		return nil, err
	}
	if cfg.NodeID.ID() == o.NewID {
		err = r.resume(ctx)
	} else {
		r.res.OldID = cfg.NodeID.ID()
		err = r.replace(ctx)
	}
	if err != nil {
		if r.res.Server != nil {
			r.res.Server.Close()
			r.res.Server = nil
		}
		return r.res, fmt.Errorf("recovery: %w", err)
	}
	return r.res, nil
}

// setup finds this node's peer entry and the admin API endpoints.
func (r *run) setup() error {
	cfg := r.cfg
	i := slices.IndexFunc(cfg.Peers, func(p server.PeerConfig) bool { return p.ID == cfg.NodeID })
	if i < 0 {
		return fmt.Errorf("recovery: %s lists no peers: the node's cluster cannot be reached", r.o.ConfigPath)
	}
	r.self = cfg.Peers[i]
	r.addr = net.JoinHostPort(r.self.Address, strconv.Itoa(r.self.Port))
	var eps []endpoint
	for _, e := range r.o.Endpoints {
		eps = append(eps, endpoint{url: e})
	}
	if len(eps) == 0 {
		// Every other member the file names, the one with the new ID
		// too: if that ID is in use, its node may well be the leader,
		// and the leader must be reached to say so.
		for _, p := range cfg.Peers {
			if p.ID != cfg.NodeID {
				u := "http://" + net.JoinHostPort(p.Address, strconv.Itoa(p.APIPort))
				eps = append(eps, endpoint{url: u, id: p.ID.ID()})
			}
		}
	}
	tok := r.o.Token
	if tok == "" {
		for _, t := range cfg.Security.Tokens {
			if t.Role == string(admin.RoleAdmin) {
				tok = t.Token
				break
			}
		}
	}
	c, err := newAdminClient(r.o.HTTPClient, eps, cfg.AdminAPI.PathPrefix, tok)
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	r.client = c
	r.ownAPI = "http://" + loopback(cfg.API.Addr)
	if err := c.trust(r.ownAPI); err != nil { // this node's own API, with this node's token
		return fmt.Errorf("recovery: api.addr: %w", err)
	}
	return nil
}

// replace runs every step for a configuration that still names the old
// node.
func (r *run) replace(ctx context.Context) error {
	old, nid := r.res.OldID, r.o.NewID
	fmt.Fprintf(r.out, "recover: node %d (%s) comes back as node %d at %s\n", old, r.o.ConfigPath, nid, r.addr)

	// 1. The local storage.
	lost, why, err := r.checkStorage()
	if err != nil {
		return err
	}
	switch {
	case lost:
		r.step(1, "storage: %s", why)
	case why != "":
		r.step(1, "storage: %s at %s refuses to open: damaged", r.cfg.Storage.Type, r.cfg.Storage.Path)
		r.detail("%s", why)
	case r.o.Force:
		r.step(1, "storage: %s at %s opens cleanly; replacing it anyway (-force)", r.cfg.Storage.Type, r.cfg.Storage.Path)
	default:
		return refused("storage %s at %s opens cleanly: node %d is not damaged; start it as usual "+
			"(to replace it all the same, pass -force)", r.cfg.Storage.Type, r.cfg.Storage.Path, old)
	}

	// 2. The cluster, and whether the replacement is safe.
	v, err := r.leader(ctx)
	if err != nil {
		return err
	}
	if n, ok := v.member(old); ok && n.Active {
		// Right after an election the leader counts every member as
		// active for an election timeout; wait that out.
		grace := 2*r.cfg.Raft.ElectionTimeoutMax + time.Second
		if w, err := r.await(ctx, grace, func(v view) bool {
			n, ok := v.member(old)
			return !ok || !n.Active
		}); err != nil {
			r.describe(2, v)
			return refused("the leader has heard from node %d within the last election timeout: "+
				"is it running? Stop it first", old)
		} else {
			v = w
		}
	}
	r.describe(2, v)
	if err := r.checkNewID(v); err != nil {
		return err
	}
	if _, ok := v.member(old); ok {
		if err := checkQuorum(v, old); err != nil {
			return err
		}
	}
	if _, ok := v.member(old); ok {
		r.detail("node %d is inactive; without it, %d of the voters %s are active: a quorum",
			old, activeVoters(v, old), ids(without(v.voters(), old)))
	}

	// 3. Remove the old ID.
	if _, ok := v.member(old); !ok {
		r.step(3, "remove node %d: not a member (already removed)", old)
	} else {
		if v, err = r.change(ctx, "/remove-node", admin.RemoveNodeRequest{NodeID: admin.ID(old)},
			func(v view) bool { _, ok := v.member(old); return !ok }); err != nil {
			return fmt.Errorf("remove node %d: %w", old, err)
		}
		r.step(3, "remove node %d: done; voters %s", old, ids(v.voters()))
	}

	// 4. Move the damaged data aside.
	if err := r.moveAside(lost); err != nil {
		return err
	}

	// 5. The configuration names the new ID from now on.
	if err := r.writeConfig(); err != nil {
		return err
	}
	return r.rejoin(ctx, v)
}

// resume finishes a recovery whose configuration names the new ID already:
// the old ID was removed and the data moved aside before it was written.
func (r *run) resume(ctx context.Context) error {
	nid := r.o.NewID
	fmt.Fprintf(r.out, "recover: %s names node %d already: resuming\n", r.o.ConfigPath, nid)
	r.step(1, "storage: %s belongs to node %d (not checked for damage)", r.cfg.Storage.Path, nid)
	v, err := r.leader(ctx)
	if err != nil {
		return err
	}
	if err := r.checkNewID(v); err != nil {
		return err
	}
	if n, ok := v.member(nid); ok && n.Voter {
		r.describe(2, v)
		if err := r.checkOwnStorage(); err != nil {
			return err
		}
		r.res.NothingToDo, r.res.Voters = true, v.voters()
		fmt.Fprintf(r.out, "nothing to do: node %d is a voter and %s names it\n", nid, r.o.ConfigPath)
		return nil
	}
	r.describe(2, v)
	r.step(3, "remove the old node: done before %s was rewritten", r.o.ConfigPath)
	r.step(4, "move the damaged data aside: done before %s was rewritten", r.o.ConfigPath)
	r.step(5, "config: %s names node %d already", r.o.ConfigPath, nid)
	return r.rejoin(ctx, v)
}

// rejoin adds the new ID as a learner, starts the node, waits for it to
// catch up and promotes it (steps 6 to 8).
func (r *run) rejoin(ctx context.Context, v view) error {
	nid := r.o.NewID
	var err error
	if n, ok := v.member(nid); ok {
		if err := r.checkOwnStorage(); err != nil {
			return err
		}
		r.step(6, "add node %d as a learner: a member already (%s)", nid, n.Role)
	} else {
		// The new ID has never been a member, so its storage holds nothing
		// anyone counted on. Create it now, before the ID exists: from then
		// on an absent directory means lost state, never "not started".
		if lost, why, err := r.checkStorage(); err != nil {
			return err
		} else if !lost && why != "" {
			return refused("node %d is not a member yet, but its storage %s is damaged: %s", nid,
				r.cfg.Storage.Path, why)
		}
		if err := server.CheckStorage(r.cfg, nil); err != nil {
			return fmt.Errorf("create the storage of node %d: %w", nid, err)
		}
		req := admin.AddNodeRequest{NodeID: admin.NodeID{ID: nid, Name: r.o.NewName}, Address: r.self.Address, Port: r.self.Port,
			APIPort: r.self.APIPort, ClientPort: r.self.ClientPort, Learner: true}
		if v, err = r.change(ctx, "/add-node", req, func(v view) bool { _, ok := v.member(nid); return ok }); err != nil {
			return fmt.Errorf("add node %d as a learner: %w", nid, err)
		}
		r.step(6, "add node %d as a learner at %s: done (commit index %d)", nid, r.addr, v.info.CommitIndex)
	}
	// Every entry committed up to now must reach the new node before it
	// votes.
	floor := v.info.CommitIndex

	if err := r.start(); err != nil {
		return err
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, r.o.CatchUpTimeout)
	defer cancel()
	if s := r.res.Server; s != nil {
		go func() {
			select {
			case <-s.Runner().Done():
				cancel()
			case <-cctx.Done():
			}
		}()
	}
	lastPrint := time.Now()
	v, err = r.await(cctx, r.o.CatchUpTimeout, func(v view) bool {
		n, ok := v.member(nid)
		if !ok {
			return false
		}
		done := n.Active && n.MatchIndex >= floor && n.Lag <= r.o.MaxLag
		if !done && time.Since(lastPrint) >= 5*time.Second {
			lastPrint = time.Now()
			r.detail("node %d: log at %d, leader's commit index %d", nid, n.MatchIndex, v.info.CommitIndex)
		}
		return done
	})
	if err != nil {
		if s := r.res.Server; s != nil && s.Runner().Err() != nil {
			return fmt.Errorf("node %d stopped while catching up: %w", nid, s.Runner().Err())
		}
		return fmt.Errorf("node %d did not catch up (it stays a learner; run the command again to wait more): %w",
			nid, err)
	}
	n, _ := v.member(nid)
	r.detail("caught up: node %d holds the log up to %d, leader's commit index %d, after %s",
		nid, n.MatchIndex, v.info.CommitIndex, time.Since(start).Round(100*time.Millisecond))

	if n.Voter {
		r.step(8, "promote node %d to voter: a voter already", nid)
	} else {
		req := admin.AddNodeRequest{NodeID: admin.NodeID{ID: nid, Name: r.o.NewName}, Address: r.self.Address, Port: r.self.Port,
			APIPort: r.self.APIPort, ClientPort: r.self.ClientPort}
		if v, err = r.change(ctx, "/add-node", req, func(v view) bool {
			n, ok := v.member(nid)
			return ok && n.Voter
		}); err != nil {
			return fmt.Errorf("promote node %d: %w", nid, err)
		}
		r.step(8, "promote node %d to voter: done; voters %s", nid, ids(v.voters()))
	}
	r.res.Voters = v.voters()
	if s := r.res.Server; s != nil && !r.o.KeepRunning {
		st := s.Runner().Status()
		if err := s.Close(); err != nil {
			return fmt.Errorf("stop node %d: %w", nid, err)
		}
		r.res.Server = nil
		fmt.Fprintf(r.out, "done: node %d is a voter (applied index %d); stopped. Start it as usual: consensusd -config %s\n",
			nid, st.Applied, r.o.ConfigPath)
		return nil
	}
	fmt.Fprintf(r.out, "done: node %d is a voter\n", nid)
	return nil
}

// start starts the node under the new ID, unless it is running already
// (its API answers as the new ID).
func (r *run) start() error {
	nid := r.o.NewID
	if r.running() {
		r.step(7, "start node %d: it is running already (its API at %s answers)", nid, r.cfg.API.Addr)
		return nil
	}
	s, err := server.New(r.cfg, r.o.Logger)
	if err != nil {
		return fmt.Errorf("start node %d: %w", nid, err)
	}
	go s.Serve()
	r.res.Server = s
	r.step(7, "start node %d: raft %s, API %s; it receives the leader's snapshot and log", nid, r.addr, s.APIAddr())
	return nil
}

// running reports whether the node's own API answers as the new ID.
func (r *run) running() bool {
	var info admin.ClusterInfo
	err := r.client.call(context.Background(), http.MethodGet, r.ownAPI, "/status", nil, &info)
	return err == nil && info.NodeID == r.o.NewID
}

// loopback returns host:port with an unspecified host replaced by
// 127.0.0.1, to dial a listener of this machine.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// checkStorage reports whether the storage is lost (absent, empty or in
// memory) or damaged (why says how), and fails if it cannot tell.
func (r *run) checkStorage() (lost bool, why string, err error) {
	cfg := r.cfg
	if cfg.Storage.Type == "memory" {
		return true, "memory storage: the node's state went with its process", nil
	}
	path := cfg.Storage.Path
	if cfg.Storage.Type == "postgres" {
		// No directory to look at: the database answers. A schema that
		// opens cleanly is not replaced without -force.
		path = "storage.postgres"
		return r.openStorage(path)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, fmt.Sprintf("%s does not exist: the node's state is lost", path), nil
	case err != nil:
		return false, "", fmt.Errorf("storage: %w", err)
	case !fi.IsDir():
		return false, "", refused("storage.path %s is not a directory", path)
	}
	if ents, err := os.ReadDir(path); err != nil {
		return false, "", fmt.Errorf("storage: %w", err)
	} else if len(ents) == 0 {
		return true, fmt.Sprintf("%s is empty: the node's state is lost", path), nil
	}
	return r.openStorage(path)
}

// openStorage opens the node's storage to tell whether it is damaged.
func (r *run) openStorage(what string) (lost bool, why string, err error) {
	err = server.CheckStorage(r.cfg, nil)
	switch {
	case err == nil:
		return false, "", nil
	case server.IsCorrupt(err):
		return false, err.Error(), nil
	}
	return false, "", refused("storage %s cannot be opened, and not because its data is damaged: %v "+
		"(is the node still running?)", what, err)
}

// checkOwnStorage checks, once the new ID is a member, that its storage
// still holds what it acknowledged: unless the node is running, the
// storage must open cleanly. Lost or damaged, the node must come back
// under yet another ID.
func (r *run) checkOwnStorage() error {
	if r.cfg.Storage.Type == "memory" || r.running() {
		return nil
	}
	lost, why, err := r.checkStorage()
	if err != nil {
		return err
	}
	if lost || why != "" {
		if why == "" {
			why = "it is absent or empty"
		}
		return refused("node %d is a member, but its storage cannot back what it acknowledged (%s): "+
			"it must not rejoin as node %d; bring it back under another new ID: "+
			"consensusd recover -config %s -new-id <an ID no member ever had>", r.o.NewID, why, r.o.NewID,
			r.o.ConfigPath)
	}
	return nil
}

// checkNewID refuses a new ID that is or was a member elsewhere.
func (r *run) checkNewID(v view) error {
	nid := r.o.NewID
	if slices.Contains(v.info.RemovedNodes, nid) {
		return refused("node %d was a member and has been removed: an ID is never reused (a message from "+
			"its old incarnation could be counted for the new one); choose an ID no node ever had", nid)
	}
	if n, ok := v.member(nid); ok && n.Address != r.addr {
		return refused("node %d is a member at %q, not at this node's address %s; choose an unused ID",
			nid, n.Address, r.addr)
	}
	for _, p := range r.cfg.Peers {
		a := net.JoinHostPort(p.Address, strconv.Itoa(p.Port))
		if p.ID.ID() == nid && a != r.addr {
			return refused("node %d is in %s's peers at %s; choose an unused ID", nid, r.o.ConfigPath, a)
		}
	}
	return nil
}

// checkQuorum refuses to remove voter old unless the active voters other
// than it are a majority of the current voters: the removal commits, and
// the cluster keeps a quorum after it.
func checkQuorum(v view, old uint64) error {
	voters := v.voters()
	if !slices.Contains(voters, old) {
		return nil
	}
	if len(voters) == 1 {
		return refused("node %d is the cluster's only voter: no other node holds its log", old)
	}
	up := active(v, old)
	need := len(voters)/2 + 1
	if len(up) < need {
		return refused("removing node %d needs %d of the %d voters %s, but only %d other voters are active %s: "+
			"the cluster would lose its quorum; bring another voter back first", old, need, len(voters),
			ids(voters), len(up), ids(up))
	}
	return nil
}

// active returns the active voters other than except.
func active(v view, except uint64) []uint64 {
	var ids []uint64
	for _, id := range v.voters() {
		if n, _ := v.member(id); id != except && n.Active {
			ids = append(ids, id)
		}
	}
	return ids
}

func activeVoters(v view, except uint64) int { return len(active(v, except)) }

// without returns ids without id.
func without(ids []uint64, id uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(ids), func(x uint64) bool { return x == id })
}

// describe prints the leader's view as step n.
func (r *run) describe(n int, v view) {
	r.step(n, "cluster: leader %d at %s, term %d, commit index %d; voters %s (active %s), learners %s",
		v.info.Leader, v.base, v.info.Term, v.info.CommitIndex, ids(v.voters()), ids(active(v, 0)), ids(v.learners()))
}

// leader finds the leader, waiting for an election if one is under way.
func (r *run) leader(ctx context.Context) (view, error) {
	lctx, cancel := context.WithTimeout(ctx, 4*r.cfg.Raft.ElectionTimeoutMax+5*time.Second)
	defer cancel()
	v, err := r.client.leader(lctx, poll)
	if err != nil {
		return view{}, refused("%v: recovery needs a leader, elected by a quorum of the other members", err)
	}
	return v, nil
}

// await polls the leader's view until done accepts it or timeout passes.
func (r *run) await(ctx context.Context, timeout time.Duration, done func(view) bool) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		v, err := r.client.leader(ctx, poll)
		if err != nil {
			return v, err
		}
		if done(v) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// change posts a membership change to the leader until done accepts the
// leader's view: a lost answer, a leader change or a change that is still
// pending are retried; a refusal is not.
func (r *run) change(ctx context.Context, route string, body any, done func(view) bool) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, membershipTimeout)
	defer cancel()
	var last error
	conflicts := 0
	for {
		v, err := r.client.leader(ctx, poll)
		if err != nil {
			if last != nil {
				err = fmt.Errorf("%w (last answer: %v)", err, last)
			}
			return v, err
		}
		if done(v) {
			return v, nil
		}
		err = r.client.call(ctx, http.MethodPost, v.base, route, body, nil)
		if err == nil {
			continue // look again
		}
		if he := (*httpError)(nil); errors.As(err, &he) {
			switch he.status {
			case http.StatusConflict, http.StatusNotFound:
				// The change may have raced another one, or our own
				// earlier attempt: look again, a few times.
				if conflicts++; conflicts > 3 {
					return v, err
				}
			case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				// No leader or quorum for now, a change still pending, or
				// an answer that came too late: look again.
			default:
				return v, err
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%w (last answer: %v)", ctx.Err(), last)
		case <-time.After(4 * poll):
		}
	}
}

// moveAside renames the data directory to <path>.damaged-<UTC time>.
func (r *run) moveAside(lost bool) error {
	path := r.cfg.Storage.Path
	if r.cfg.Storage.Type == "memory" {
		r.step(4, "move the damaged data aside: nothing to move (memory storage)")
		return nil
	}
	if r.cfg.Storage.Type == "postgres" {
		if r.cfg.Storage.Postgres.Schema != "" {
			return refused("storage.postgres.schema is set (%q): under its new ID the node would reuse that schema; "+
				"remove the key (each ID then has its own schema) or name a new, empty schema", r.cfg.Storage.Postgres.Schema)
		}
		r.step(4, "move the damaged data aside: nothing to move: under its new ID the node has a schema of its own; "+
			"the old one is left in the database for you to inspect or drop")
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		r.step(4, "move the damaged data aside: %s does not exist%s", path, r.previous(path))
		return nil
	}
	base := strings.TrimRight(path, string(os.PathSeparator)) + ".damaged-" + stamp(r.o.Now())
	to := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, to); err != nil {
		return fmt.Errorf("move %s aside: %w", path, err)
	}
	if err := syncDir(filepath.Dir(filepath.Clean(path))); err != nil {
		return fmt.Errorf("move %s aside: %w", path, err)
	}
	r.res.Moved = to
	what := "damaged"
	if lost {
		what = "empty"
	}
	r.step(4, "move the %s data aside: %s -> %s (kept, never deleted)", what, path, to)
	return nil
}

// previous names directories an earlier run moved aside.
func (r *run) previous(path string) string {
	m, _ := filepath.Glob(strings.TrimRight(path, string(os.PathSeparator)) + ".damaged-*")
	if len(m) == 0 {
		return ""
	}
	return " (moved aside earlier: " + strings.Join(m, ", ") + ")"
}

// writeConfig backs the configuration file up and rewrites it for the new
// ID, with join: true, then reloads it.
func (r *run) writeConfig() error {
	old, nid, path := r.res.OldID, r.o.NewID, r.o.ConfigPath
	ts := stamp(r.o.Now())
	backup := path + ".bak-" + ts
	comment := fmt.Sprintf("Written by consensusd recover at %s: node %d came back as node %d.\n"+
		"The previous file is %s; the damaged data, if any, %s.damaged-*.", ts, old, nid, backup, r.cfg.Storage.Path)
	if r.cfg.Storage.Type == "memory" {
		comment = fmt.Sprintf("Written by consensusd recover at %s: node %d came back as node %d.\n"+
			"The previous file is %s.", ts, old, nid, backup)
	}
	data, err := rewriteConfig(r.raw, old, nid, r.o.NewName, comment, r.o.Getenv)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	cfg, err := server.ParseConfig(data, r.o.Getenv)
	if err != nil || cfg.NodeID.ID() != nid || !cfg.Join {
		return fmt.Errorf("rewrite %s: the new file does not load as node %d with join: %v", path, nid, err)
	}
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := writeFileSync(backup, r.raw, perm); err != nil {
		return fmt.Errorf("back up %s: %w", path, err)
	}
	if err := writeFileSync(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	r.cfg, r.raw, r.res.ConfigBackup = cfg, data, backup
	r.step(5, "config: %s names node %d (join: true); the old file is kept as %s", path, nid, backup)
	return nil
}

// stamp formats t for file names: UTC, to the second.
func stamp(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// ids formats node IDs as {1,3,4}.
func ids(v []uint64) string {
	s := make([]string, len(v))
	for i, id := range v {
		s[i] = strconv.FormatUint(id, 10)
	}
	return "{" + strings.Join(s, ",") + "}"
}
