package consul_test

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

// agent is a stand-in for a Consul agent (and its servers' catalog),
// implementing exactly the HTTP API endpoints the package uses, as
// Consul's API documentation describes them:
//
//	PUT /v1/agent/service/register[?replace-existing-checks=true]
//	PUT /v1/agent/service/deregister/:service_id
//	PUT /v1/agent/check/update/:check_id
//	GET /v1/health/service/:service[?passing&tag&dc&index&wait]
//
// It is strict about request shapes, so a misuse of the client fails a
// test: unknown query parameters and unknown JSON fields are refused
// with 400 (Consul itself ignores unknown query parameters), only TTL
// checks are supported, and required fields are checked. TTL checks
// turn critical when not passed in time (real timers), and a check
// registered without a status starts critical, as in Consul. Blocking
// queries block until the service's index moves past the one asked,
// the wait elapses, or the test kicks them (a wait elapsing or an
// idempotent write, which return the same index).
type agent struct {
	t        *testing.T
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
	note      chan struct{} // closed on anything at all: the test's waitFor re-checks
	closed    chan struct{}
	requests  []string // "METHOD path?query", in order
	parked    []uint64 // the index each blocking query parked at, in order
	registers map[string]int
	updates   map[string]int // by check ID: successful check updates
	failReg   int            // when non-zero, registrations answer this status
	failHlth  int            // the next failHlth health queries answer 500
}

type instance struct {
	reg     registration
	ttl     time.Duration
	status  string
	gen     uint64 // changes with each registration and pass: a timer of an older one is void
	timer   *time.Timer
	created uint64
	changed uint64
}

// registration is the body of PUT /v1/agent/service/register, with the
// fields Consul documents; any other field is refused.
type registration struct {
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
	Check             *check
	Checks            []*check
	Proxy             json.RawMessage `json:",omitempty"`
	Connect           json.RawMessage `json:",omitempty"`
	Namespace         string          `json:",omitempty"`
	Partition         string          `json:",omitempty"`
	Locality          json.RawMessage `json:",omitempty"`
}

type check struct {
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

func newAgent(t *testing.T, token string) *agent {
	t.Helper()
	a := &agent{
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

// addr is the agent's address without a scheme.
func (a *agent) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// changedLocked moves service name's index and wakes blocked queries.
// a.mu is held.
func (a *agent) changedLocked(name string) {
	a.index++
	a.svcIndex[name] = a.index
	close(a.wake)
	a.wake = make(chan struct{})
	a.notedLocked()
}

func (a *agent) notedLocked() {
	close(a.note)
	a.note = make(chan struct{})
}

// kick makes every blocked query return with the unchanged index, as
// when its wait elapses.
func (a *agent) kick() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kicks++
	close(a.wake)
	a.wake = make(chan struct{})
	a.notedLocked()
}

// restart drops every registration, as an agent that restarted without
// them in its configuration does.
func (a *agent) restart() {
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

// restore sets every index back to index (a snapshot restore) and
// makes blocked queries return with it.
func (a *agent) restore(index uint64) {
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

func (a *agent) setFailRegister(status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failReg = status
}

func (a *agent) setFailHealth(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failHlth = n
}

// add registers an instance directly, as an operator's service
// definition would.
func (a *agent) add(reg registration, status string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.instances[reg.ID] = &instance{reg: reg, status: status, created: a.index + 1, changed: a.index + 1}
	a.changedLocked(reg.Name)
}

// waitFor waits until cond (called with a.mu held) holds, failing the
// test if it does not within a generous bound: a guard against a hang,
// not a timing assertion.
func (a *agent) waitFor(what string, cond func() bool) {
	a.t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		ok := cond()
		ch := a.note
		a.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			a.t.Fatalf("stand-in agent: gave up waiting for %s; requests: %s", what, strings.Join(a.requestLog(), ", "))
		}
	}
}

func (a *agent) requestLog() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// status returns the status of id's check, "" if id is not registered.
func (a *agent) status(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in, ok := a.instances[id]; ok {
		return in.status
	}
	return ""
}

func (a *agent) instance(id string) (registration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in, ok := a.instances[id]
	if !ok {
		return registration{}, false
	}
	return in.reg, true
}

func (a *agent) count(prefix string) int {
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

func (a *agent) serve(w http.ResponseWriter, r *http.Request) {
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

func (a *agent) register(w http.ResponseWriter, r *http.Request) {
	q, ok := params(w, r, http.MethodPut, "replace-existing-checks")
	if !ok {
		return
	}
	if v := q.Get("replace-existing-checks"); q.Has("replace-existing-checks") && v != "true" && v != "false" {
		fail(w, http.StatusBadRequest, "invalid replace-existing-checks %q", v)
		return
	}
	var reg registration
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
func (a *agent) armLocked(id string, in *instance) {
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

func (a *agent) deregister(w http.ResponseWriter, r *http.Request, id string) {
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

func (a *agent) update(w http.ResponseWriter, r *http.Request, checkID string) {
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

func (a *agent) health(w http.ResponseWriter, r *http.Request, name string) {
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
