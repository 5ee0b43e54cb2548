// Package consultest is a stand-in of the Consul agent's HTTP API, for
// tests of the Consul discovery mechanism (package consul) and of nodes
// that find each other through it. It is not Consul: it implements, in
// one process and without a cluster of Consul servers behind it, only
// the endpoints the mechanism uses, as Consul's documentation of the
// agent API describes them, and it is stricter than Consul about what
// it accepts, so that a client misusing the API fails a test:
//
//	PUT /v1/agent/service/register[?replace-existing-checks=true]
//	PUT /v1/agent/service/deregister/:service_id
//	PUT /v1/agent/check/update/:check_id
//	GET /v1/health/service/:service[?passing&tag&dc&index&wait]
//
// A test checking the mechanism against a real Consul agent is still
// worth running where one is at hand (see package consul's TestRealAgent).
package consultest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Agent is a stand-in of a Consul agent (and of its servers' catalog),
// serving the endpoints listed in the package documentation over HTTP
// on a loopback address until the test that made it ends.
//
// It is strict about request shapes: unknown query parameters and
// unknown JSON fields are refused with 400 (Consul itself ignores
// unknown query parameters), only TTL checks are supported, and
// required fields are checked. TTL checks turn critical when not passed
// in time (real timers), and a check registered without a status starts
// critical, as in Consul. Blocking queries block until the service's
// index moves past the one asked, the wait elapses, or the test kicks
// them (Kick, Restore: they then return the same index, as after a wait
// elapsing or an idempotent write). With a token, every request must
// carry it in X-Consul-Token (403 otherwise, as with ACLs on and a
// default policy of deny).
//
// Its methods are safe for concurrent use.
type Agent struct {
	t        testing.TB
	srv      *httptest.Server
	token    string // required ACL token; "" means ACLs off
	dc       string
	node     string
	nodeAddr string

	mu        sync.Mutex
	index     uint64            // the catalog's last index
	svcIndex  map[string]uint64 // by service name: the index of its last change
	instances map[string]*instance
	kicks     uint64        // how often blocked queries were kicked
	wake      chan struct{} // closed on every state change and kick: blocked queries re-check
	note      chan struct{} // closed on anything at all: WaitFor re-checks
	closed    chan struct{}
	requests  []string // "METHOD path?query", in order
	parked    []uint64 // the index each blocking query parked at, in order
	registers map[string]int
	updates   map[string]int // by check ID: successful check updates
	failReg   int            // when non-zero, registrations answer this status
	failHlth  int            // the next failHlth health queries answer 500
}

type instance struct {
	reg     Registration
	ttl     time.Duration
	status  string
	gen     uint64 // changes with each registration and pass: a timer of an older one is void
	timer   *time.Timer
	created uint64
	changed uint64
}

// Registration is the body of PUT /v1/agent/service/register, with the
// fields Consul documents; any other field is refused.
type Registration struct {
	Kind              string                     `json:",omitempty"`
	ID                string                     `json:",omitempty"`
	Name              string                     `json:",omitempty"`
	Tags              []string                   `json:",omitempty"`
	Address           string                     `json:",omitempty"`
	TaggedAddresses   map[string]json.RawMessage `json:",omitempty"`
	Meta              map[string]string          `json:",omitempty"`
	Port              int                        `json:",omitempty"`
	SocketPath        string                     `json:",omitempty"`
	EnableTagOverride bool                       `json:",omitempty"`
	Weights           json.RawMessage            `json:",omitempty"`
	Check             *Check
	Checks            []*Check
	Proxy             json.RawMessage `json:",omitempty"`
	Connect           json.RawMessage `json:",omitempty"`
	Namespace         string          `json:",omitempty"`
	Partition         string          `json:",omitempty"`
	Locality          json.RawMessage `json:",omitempty"`
}

// Check is a service's check in a Registration. Only TTL checks are
// accepted.
type Check struct {
	CheckID                        string `json:",omitempty"`
	Name                           string `json:",omitempty"`
	Notes                          string `json:",omitempty"`
	Status                         string `json:",omitempty"`
	TTL                            string `json:",omitempty"`
	DeregisterCriticalServiceAfter string `json:",omitempty"`
	// Other kinds of checks: refused by the stand-in, which runs none.
	ScriptArgs []string `json:",omitempty"`
	Interval   string   `json:",omitempty"`
	Timeout    string   `json:",omitempty"`
	HTTP       string   `json:",omitempty"`
	TCP        string   `json:",omitempty"`
	UDP        string   `json:",omitempty"`
	GRPC       string   `json:",omitempty"`
	H2PING     string   `json:",omitempty"`
}

var metaKey = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)

// NewAgent starts a stand-in agent on a loopback address, stopped when
// the test ends. With a non-empty token every request must carry it.
func NewAgent(t testing.TB, token string) *Agent {
	t.Helper()
	a := &Agent{
		t: t, token: token, dc: "dc1", node: "consul-agent-1", nodeAddr: "10.9.0.1",
		index: 10, svcIndex: map[string]uint64{}, instances: map[string]*instance{},
		wake: make(chan struct{}), note: make(chan struct{}), closed: make(chan struct{}),
		registers: map[string]int{}, updates: map[string]int{},
	}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		close(a.closed)
		a.srv.Close()
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, in := range a.instances {
			if in.timer != nil {
				in.timer.Stop()
			}
		}
	})
	return a
}

// Addr is the agent's address without a scheme (host:port), as
// discovery.consul_address takes it.
func (a *Agent) Addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// URL is the agent's base URL, http://host:port.
func (a *Agent) URL() string { return a.srv.URL }

// Datacenter is the agent's datacenter, "dc1".
func (a *Agent) Datacenter() string { return a.dc }

// NodeAddress is the address of the agent's Consul node, which a
// health query gives an instance registered without an address.
func (a *Agent) NodeAddress() string { return a.nodeAddr }

// changedLocked moves service name's index and wakes blocked queries.
// a.mu is held.
func (a *Agent) changedLocked(name string) {
	a.index++
	a.svcIndex[name] = a.index
	close(a.wake)
	a.wake = make(chan struct{})
	a.notedLocked()
}

func (a *Agent) notedLocked() {
	close(a.note)
	a.note = make(chan struct{})
}

// Kick makes every blocked query return with the unchanged index, as
// when its wait elapses.
func (a *Agent) Kick() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kicks++
	close(a.wake)
	a.wake = make(chan struct{})
	a.notedLocked()
}

// Restart drops every registration, as an agent that restarted without
// them in its configuration does (the catalog's index goes on, as it
// lives on Consul's servers). Clients' connections are kept.
func (a *Agent) Restart() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, in := range a.instances {
		if in.timer != nil {
			in.timer.Stop()
		}
		delete(a.instances, id)
		a.changedLocked(in.reg.Name)
	}
}

// Restore sets every index back to index (a snapshot restore) and
// makes blocked queries return with it.
func (a *Agent) Restore(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index = index
	for name := range a.svcIndex {
		a.svcIndex[name] = index
	}
	for _, in := range a.instances {
		in.created, in.changed = min(in.created, index), min(in.changed, index)
	}
	a.kicks++
	close(a.wake)
	a.wake = make(chan struct{})
	a.notedLocked()
}

// SetFailRegister makes registrations answer status (after counting
// them, see Registers); 0 makes them succeed again.
func (a *Agent) SetFailRegister(status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failReg = status
}

// SetFailHealth makes the next n health queries answer 500, as when the
// agent's servers have no leader.
func (a *Agent) SetFailHealth(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failHlth = n
}

// Add registers an instance directly, with its check in status, as an
// operator's service definition would. reg.Check must be set.
func (a *Agent) Add(reg Registration, status string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.instances[reg.ID] = &instance{reg: reg, status: status, created: a.index + 1, changed: a.index + 1}
	a.changedLocked(reg.Name)
}

// WaitFor waits until cond holds, failing the test if it does not
// within a generous bound (30s): a guard against a hang, not a timing
// assertion. cond is called at first and again after every request
// and change the agent sees; it reads the agent through its methods
// (it is called without the agent's lock held).
func (a *Agent) WaitFor(what string, cond func() bool) {
	a.t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		ch := a.note // taken before cond reads: a change after it closes ch
		a.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			a.t.Fatalf("stand-in agent: gave up waiting for %s; requests: %s", what, strings.Join(a.Requests(), ", "))
		}
	}
}

// Requests returns the requests served so far, in order, each as
// "METHOD path?query".
func (a *Agent) Requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// Parked returns the index each blocking query parked at, in order.
func (a *Agent) Parked() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.parked)
}

// Status returns the status of instance id's check, "" if id is not
// registered.
func (a *Agent) Status(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in, ok := a.instances[id]; ok {
		return in.status
	}
	return ""
}

// Instance returns the registration of instance id, as the agent holds
// it (its single check in Check).
func (a *Agent) Instance(id string) (Registration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in, ok := a.instances[id]
	if !ok {
		return Registration{}, false
	}
	reg := in.reg
	if reg.Check != nil {
		c := *reg.Check
		reg.Check = &c
	}
	return reg, true
}

// Instances returns the IDs of the instances registered, sorted.
func (a *Agent) Instances() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]string, 0, len(a.instances))
	for id := range a.instances {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Registers returns how many registrations of instance id were asked,
// failed ones included.
func (a *Agent) Registers(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.registers[id]
}

// Updates returns how many updates of check checkID succeeded.
func (a *Agent) Updates(checkID string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.updates[checkID]
}

// Count returns how many requests served began with prefix ("METHOD
// path?query").
func (a *Agent) Count(prefix string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, format, args...)
}

func (a *Agent) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests = append(a.requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	a.notedLocked()
	a.mu.Unlock()

	if a.token != "" {
		switch tok := r.Header.Get("X-Consul-Token"); {
		case tok == "":
			fail(w, http.StatusForbidden, "Permission denied: anonymous token lacks permission")
			return
		case tok != a.token:
			fail(w, http.StatusForbidden, "ACL not found")
			return
		}
	}
	path := r.URL.Path
	switch {
	case path == "/v1/agent/service/register":
		a.register(w, r)
	case strings.HasPrefix(path, "/v1/agent/service/deregister/"):
		a.deregister(w, r, strings.TrimPrefix(path, "/v1/agent/service/deregister/"))
	case strings.HasPrefix(path, "/v1/agent/check/update/"):
		a.update(w, r, strings.TrimPrefix(path, "/v1/agent/check/update/"))
	case strings.HasPrefix(path, "/v1/health/service/"):
		a.health(w, r, strings.TrimPrefix(path, "/v1/health/service/"))
	default:
		fail(w, http.StatusNotFound, "stand-in: no endpoint %s", path)
	}
}

// params refuses methods and query parameters the endpoint does not take.
func params(w http.ResponseWriter, r *http.Request, method string, allowed ...string) (url.Values, bool) {
	if r.Method != method {
		fail(w, http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		return nil, false
	}
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains(allowed, k) {
			fail(w, http.StatusBadRequest, "stand-in: unexpected query parameter %q", k)
			return nil, false
		}
	}
	return q, true
}

func decodeStrict(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("Request decode failed: %v", err)
	}
	if dec.More() {
		return fmt.Errorf("Request decode failed: trailing data")
	}
	return nil
}

func (a *Agent) register(w http.ResponseWriter, r *http.Request) {
	q, ok := params(w, r, http.MethodPut, "replace-existing-checks")
	if !ok {
		return
	}
	if v := q.Get("replace-existing-checks"); q.Has("replace-existing-checks") && v != "true" && v != "false" {
		fail(w, http.StatusBadRequest, "invalid replace-existing-checks %q", v)
		return
	}
	var reg Registration
	if err := decodeStrict(r, &reg); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	if reg.Name == "" {
		fail(w, http.StatusBadRequest, "Missing service name")
		return
	}
	if reg.ID == "" {
		reg.ID = reg.Name
	}
	if reg.Port < 0 || reg.Port > 65535 {
		fail(w, http.StatusBadRequest, "Invalid port %d", reg.Port)
		return
	}
	for k := range reg.Meta {
		if !metaKey.MatchString(k) || strings.HasPrefix(k, "consul-") {
			fail(w, http.StatusBadRequest, "Invalid Service Meta: key %q", k)
			return
		}
	}
	checks := reg.Checks
	if reg.Check != nil {
		checks = append(checks, reg.Check)
	}
	if len(checks) != 1 {
		fail(w, http.StatusBadRequest, "stand-in: want exactly one check, got %d", len(checks))
		return
	}
	c := checks[0]
	if c.ScriptArgs != nil || c.Interval != "" || c.Timeout != "" || c.HTTP != "" || c.TCP != "" || c.UDP != "" || c.GRPC != "" || c.H2PING != "" {
		fail(w, http.StatusBadRequest, "stand-in: only TTL checks are supported")
		return
	}
	ttl, err := time.ParseDuration(c.TTL)
	if err != nil || ttl <= 0 {
		fail(w, http.StatusBadRequest, "Invalid check: TTL %q", c.TTL)
		return
	}
	if c.DeregisterCriticalServiceAfter != "" {
		if _, err := time.ParseDuration(c.DeregisterCriticalServiceAfter); err != nil {
			fail(w, http.StatusBadRequest, "Invalid check: DeregisterCriticalServiceAfter %q", c.DeregisterCriticalServiceAfter)
			return
		}
	}
	status := c.Status
	switch status {
	case "":
		status = "critical" // Consul's initial status
	case "passing", "warning", "critical":
	default:
		fail(w, http.StatusBadRequest, "Invalid check status %q", c.Status)
		return
	}
	if c.CheckID == "" {
		c.CheckID = "service:" + reg.ID
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	a.registers[reg.ID]++
	if a.failReg != 0 {
		fail(w, a.failReg, "stand-in: registration failing")
		a.notedLocked()
		return
	}
	for id, in := range a.instances {
		if id != reg.ID && in.reg.Check != nil && in.reg.Check.CheckID == c.CheckID {
			fail(w, http.StatusBadRequest, "check %q belongs to service %q", c.CheckID, id)
			return
		}
	}
	reg.Check, reg.Checks = c, nil
	in := a.instances[reg.ID]
	if in == nil {
		in = &instance{created: a.index + 1}
		a.instances[reg.ID] = in
	} else if in.timer != nil {
		in.timer.Stop()
	}
	in.reg, in.ttl, in.status = reg, ttl, status
	in.changed = a.index + 1
	a.armLocked(reg.ID, in)
	a.changedLocked(reg.Name)
	w.WriteHeader(http.StatusOK)
}

// armLocked (re)starts the TTL timer of in: unless passed again, its
// check turns critical after its TTL.
func (a *Agent) armLocked(id string, in *instance) {
	in.gen++
	gen := in.gen
	in.timer = time.AfterFunc(in.ttl, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if cur := a.instances[id]; cur != in || in.gen != gen || in.status == "critical" {
			return
		}
		in.status = "critical"
		in.changed = a.index + 1
		a.changedLocked(in.reg.Name)
	})
}

func (a *Agent) deregister(w http.ResponseWriter, r *http.Request, id string) {
	if _, ok := params(w, r, http.MethodPut); !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	in, ok := a.instances[id]
	if !ok {
		fail(w, http.StatusNotFound, "Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id)
		return
	}
	if in.timer != nil {
		in.timer.Stop()
	}
	delete(a.instances, id)
	a.changedLocked(in.reg.Name)
	w.WriteHeader(http.StatusOK)
}

func (a *Agent) update(w http.ResponseWriter, r *http.Request, checkID string) {
	if _, ok := params(w, r, http.MethodPut); !ok {
		return
	}
	var body struct {
		Status string
		Output string
	}
	if err := decodeStrict(r, &body); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	switch body.Status {
	case "passing", "warning", "critical":
	default:
		fail(w, http.StatusBadRequest, "Invalid check status: %q", body.Status)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var (
		id string
		in *instance
	)
	for i, x := range a.instances {
		if x.reg.Check != nil && x.reg.Check.CheckID == checkID {
			id, in = i, x
		}
	}
	if in == nil {
		fail(w, http.StatusNotFound, "Unknown check ID %q. Ensure that the check ID is passed, not the check name.", checkID)
		return
	}
	a.updates[checkID]++
	if in.timer != nil {
		in.timer.Stop()
	}
	a.armLocked(id, in)
	if in.status != body.Status {
		in.status = body.Status
		in.changed = a.index + 1
		a.changedLocked(in.reg.Name)
	} else {
		a.notedLocked()
	}
	w.WriteHeader(http.StatusOK)
}

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type serviceJSON struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	Meta              map[string]string
	Port              int
	Weights           map[string]int
	EnableTagOverride bool
	CreateIndex       uint64
	ModifyIndex       uint64
}

type checkJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	CreateIndex uint64
	ModifyIndex uint64
}

type entryJSON struct {
	Node    nodeJSON
	Service serviceJSON
	Checks  []checkJSON
}

func (a *Agent) health(w http.ResponseWriter, r *http.Request, name string) {
	q, ok := params(w, r, http.MethodGet, "passing", "tag", "dc", "index", "wait")
	if !ok {
		return
	}
	passing := false
	if q.Has("passing") {
		v := q.Get("passing")
		b, err := strconv.ParseBool(v)
		if v != "" && err != nil {
			fail(w, http.StatusBadRequest, "Invalid value for ?passing")
			return
		}
		passing = v == "" || b
	}
	if dc := q.Get("dc"); q.Has("dc") && dc != a.dc {
		fail(w, http.StatusInternalServerError, "No path to datacenter")
		return
	}
	var index uint64
	if q.Has("index") {
		var err error
		if index, err = strconv.ParseUint(q.Get("index"), 10, 64); err != nil {
			fail(w, http.StatusBadRequest, "Invalid index")
			return
		}
	}
	wait := 5 * time.Minute
	if q.Has("wait") {
		d, err := time.ParseDuration(q.Get("wait"))
		if err != nil || d < 0 {
			fail(w, http.StatusBadRequest, "Invalid wait time")
			return
		}
		wait = min(d, 10*time.Minute)
	}
	tags := q["tag"]

	a.mu.Lock()
	if a.failHlth > 0 {
		a.failHlth--
		a.mu.Unlock()
		fail(w, http.StatusInternalServerError, "stand-in: no cluster leader")
		return
	}
	current := func() uint64 {
		if i, ok := a.svcIndex[name]; ok {
			return i
		}
		return a.index
	}
	if index > 0 && current() <= index {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		kicks := a.kicks
		a.parked = append(a.parked, current())
		a.notedLocked()
		for current() <= index && a.kicks == kicks {
			wake := a.wake
			a.mu.Unlock()
			timedOut := false
			select {
			case <-wake:
			case <-timer.C:
				timedOut = true
			case <-r.Context().Done():
				return
			case <-a.closed:
				return
			}
			a.mu.Lock()
			if timedOut {
				break
			}
		}
	}
	out := []entryJSON{}
	for _, in := range a.instances {
		reg := in.reg
		if reg.Name != name {
			continue
		}
		if !slices.ContainsFunc(tags, func(t string) bool { return !slices.Contains(reg.Tags, t) }) {
			if passing && in.status != "passing" {
				continue
			}
			e := entryJSON{
				Node: nodeJSON{ID: "40e4a748-2192-161a-0510-9bf59fe950b5", Node: a.node, Address: a.nodeAddr, Datacenter: a.dc,
					TaggedAddresses: map[string]string{"lan": a.nodeAddr, "wan": a.nodeAddr}, Meta: map[string]string{}, CreateIndex: 5, ModifyIndex: 5},
				Service: serviceJSON{ID: reg.ID, Service: reg.Name, Tags: reg.Tags, Address: reg.Address, Meta: reg.Meta, Port: reg.Port,
					Weights: map[string]int{"Passing": 1, "Warning": 1}, CreateIndex: in.created, ModifyIndex: in.changed},
				Checks: []checkJSON{
					{Node: a.node, CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable", CreateIndex: 5, ModifyIndex: 5},
					{Node: a.node, CheckID: reg.Check.CheckID, Name: reg.Check.Name, Status: in.status, Notes: reg.Check.Notes, ServiceID: reg.ID,
						ServiceName: reg.Name, ServiceTags: reg.Tags, Type: "ttl", CreateIndex: in.created, ModifyIndex: in.changed},
				},
			}
			if e.Service.Tags == nil {
				e.Service.Tags = []string{}
			}
			if e.Service.Meta == nil {
				e.Service.Meta = map[string]string{}
			}
			out = append(out, e)
		}
	}
	idx := current()
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y entryJSON) int { return strings.Compare(x.Service.ID, y.Service.ID) })
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	w.Header().Set("X-Consul-KnownLeader", "true")
	w.Header().Set("X-Consul-LastContact", "0")
	_ = json.NewEncoder(w).Encode(out)
}
