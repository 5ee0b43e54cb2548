package forgeext

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xraph/forge"
)

// fakeNode is a clusterView whose answers the test sets.
type fakeNode struct {
	mu         sync.Mutex
	leader     bool
	leaderID   uint64
	term       uint64
	url        string
	barrierErr error
	// barrier, when set, is the barrier instead of returning barrierErr.
	barrier  func(ctx context.Context) error
	barriers []string // the method of each barrier's request
	deadline []time.Duration
}

func (f *fakeNode) IsLeader() bool   { f.mu.Lock(); defer f.mu.Unlock(); return f.leader }
func (f *fakeNode) LeaderID() uint64 { f.mu.Lock(); defer f.mu.Unlock(); return f.leaderID }
func (f *fakeNode) GetLeader() string {
	if id := f.LeaderID(); id != 0 {
		return strconv.FormatUint(id, 10)
	}
	return ""
}
func (f *fakeNode) GetTerm() uint64   { f.mu.Lock(); defer f.mu.Unlock(); return f.term }
func (f *fakeNode) LeaderURL() string { f.mu.Lock(); defer f.mu.Unlock(); return f.url }

func (f *fakeNode) ReadBarrier(ctx context.Context) error {
	f.mu.Lock()
	method, _ := ctx.Value(methodKey{}).(string)
	f.barriers = append(f.barriers, method)
	left := time.Duration(-1)
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	f.deadline = append(f.deadline, left)
	err, barrier := f.barrierErr, f.barrier
	f.mu.Unlock()
	if barrier != nil {
		return barrier(ctx)
	}
	return err
}

func (f *fakeNode) barrierCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.barriers...)
}

// methodKey marks a request's context with its method, so the fake sees
// that the barrier got the request's context.
type methodKey struct{}

func markMethod() forge.Middleware {
	return func(next forge.Handler) forge.Handler {
		return func(ctx forge.Context) error {
			ctx.WithContext(context.WithValue(ctx.Context(), methodKey{}, ctx.Request().Method))
			return next(ctx)
		}
	}
}

// follower is a follower that knows the leader, node 2.
func follower() *fakeNode {
	return &fakeNode{leaderID: 2, term: 7, url: "http://127.0.0.1:7802"}
}

// counter counts the inner handler's runs.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }

func (c *counter) get() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// okHandler answers 200 {"ok":true} and counts its runs.
func (c *counter) okHandler(ctx forge.Context) error {
	c.inc()
	return ctx.JSON(http.StatusOK, map[string]bool{"ok": true})
}

// serve serves a fresh Forge app's router, with routes registered by
// register, over HTTP.
func serve(t *testing.T, register func(r forge.Router)) *httptest.Server {
	t.Helper()
	app := forge.NewApp(forge.AppConfig{Name: "t", EnableConfigAutoDiscovery: false, HTTPAddress: "127.0.0.1:0"})
	register(app.Router())
	srv := httptest.NewServer(app.Router())
	t.Cleanup(srv.Close)
	return srv
}

// must fails the test on a route registration error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("register route: %v", err)
	}
}

// response is what the tests look at of an answer.
type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request without following redirects.
func do(t *testing.T, srv *httptest.Server, method, target string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+target, strings.NewReader(""))
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: body}
}

// jsonError checks that r is a JSON answer with code and an "error" field
// equal to msg, and returns the decoded body.
func jsonError(t *testing.T, what string, r response, code int, msg string) map[string]any {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: status %d, want %d (body %s)", what, r.code, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", what, r.body, err)
	}
	if body["error"] != msg {
		t.Errorf("%s: error %v, want %q (body %s)", what, body["error"], msg, r.body)
	}
	return body
}

// checkLeaderHint checks the not-leader body's hint.
func checkLeaderHint(t *testing.T, what string, body map[string]any, id uint64, addr string) {
	t.Helper()
	if got, ok := body["leader_id"].(float64); !ok || got != float64(id) {
		t.Errorf("%s: leader_id %v, want %d", what, body["leader_id"], id)
	}
	if got, ok := body["leader_address"].(string); !ok || got != addr {
		t.Errorf("%s: leader_address %v, want %q", what, body["leader_address"], addr)
	}
}

var (
	writeMethods = []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}
	readMethods  = []string{http.MethodGet, http.MethodHead, http.MethodOptions}
	allMethods   = append(append([]string(nil), readMethods...), writeMethods...)
)

// routeAll registers h for every method on path.
func routeAll(t *testing.T, r forge.Router, path string, h forge.Handler, opts ...forge.RouteOption) {
	t.Helper()
	for _, reg := range []func(string, any, ...forge.RouteOption) error{r.GET, r.HEAD, r.OPTIONS, r.POST, r.PUT, r.DELETE, r.PATCH} {
		must(t, reg(path, h, opts...))
	}
}

func TestMiddlewareRequireLeaderOnFollower(t *testing.T) {
	node := follower()
	var c counter
	srv := serve(t, func(r forge.Router) {
		r.Use(requireLeader(node))
		routeAll(t, r, "/kv", c.okHandler)
	})
	for _, m := range writeMethods {
		before := c.get()
		resp := do(t, srv, m, "/kv")
		body := jsonError(t, m, resp, http.StatusServiceUnavailable, "not the leader")
		checkLeaderHint(t, m, body, 2, "http://127.0.0.1:7802")
		if got := resp.header.Get("Retry-After"); got != "1" {
			t.Errorf("%s: Retry-After %q, want 1", m, got)
		}
		if resp.header.Get("Location") != "" {
			t.Errorf("%s: Location %q without WithRedirect", m, resp.header.Get("Location"))
		}
		if c.get() != before {
			t.Errorf("%s: the handler ran on a follower", m)
		}
	}
	for _, m := range readMethods {
		before := c.get()
		if resp := do(t, srv, m, "/kv"); resp.code != http.StatusOK {
			t.Errorf("%s: status %d, want 200 (reads pass)", m, resp.code)
		}
		if c.get() != before+1 {
			t.Errorf("%s: the handler did not run", m)
		}
	}
}

func TestMiddlewareRequireLeaderOnLeader(t *testing.T) {
	node := &fakeNode{leader: true, leaderID: 1, term: 3, url: "http://127.0.0.1:7801"}
	var c counter
	srv := serve(t, func(r forge.Router) {
		r.Use(requireLeader(node, AllMethods(), WithRedirect()))
		routeAll(t, r, "/kv", c.okHandler)
	})
	for i, m := range allMethods {
		resp := do(t, srv, m, "/kv")
		if resp.code != http.StatusOK {
			t.Errorf("%s: status %d, want 200 on the leader (body %s)", m, resp.code, resp.body)
		}
		if c.get() != i+1 {
			t.Errorf("%s: the handler did not run on the leader", m)
		}
	}
}

func TestMiddlewareRequireLeaderNoLeaderKnown(t *testing.T) {
	node := &fakeNode{term: 4}
	var c counter
	srv := serve(t, func(r forge.Router) {
		r.Use(requireLeader(node, WithRedirect()))
		must(t, r.POST("/kv", c.okHandler))
	})
	resp := do(t, srv, http.MethodPost, "/kv")
	body := jsonError(t, "no leader", resp, http.StatusServiceUnavailable, "not the leader")
	checkLeaderHint(t, "no leader", body, 0, "")
	if resp.header.Get("Location") != "" || resp.header.Get("Retry-After") != "1" {
		t.Errorf("no leader: Location %q, Retry-After %q; want none and 1",
			resp.header.Get("Location"), resp.header.Get("Retry-After"))
	}
	// A leader known by ID only: still no redirect.
	node.mu.Lock()
	node.leaderID = 3
	node.mu.Unlock()
	resp = do(t, srv, http.MethodPost, "/kv")
	body = jsonError(t, "leader without URL", resp, http.StatusServiceUnavailable, "not the leader")
	checkLeaderHint(t, "leader without URL", body, 3, "")
	if c.get() != 0 {
		t.Errorf("the handler ran %d times with no leader", c.get())
	}
}

func TestMiddlewareRequireLeaderRedirect(t *testing.T) {
	node := follower()
	node.url = "http://127.0.0.1:7802/" // a trailing slash is not doubled
	var c counter
	srv := serve(t, func(r forge.Router) {
		// As a route option, on a group's route.
		g := r.Group("/api")
		must(t, g.PUT("/kv/:key", c.okHandler, forge.WithMiddleware(requireLeader(node, WithRedirect()))))
		must(t, g.GET("/kv/:key", c.okHandler, forge.WithMiddleware(requireLeader(node, WithRedirect()))))
	})
	resp := do(t, srv, http.MethodPut, "/api/kv/a%20b?x=1&y=2")
	body := jsonError(t, "redirect", resp, http.StatusTemporaryRedirect, "not the leader")
	checkLeaderHint(t, "redirect", body, 2, "http://127.0.0.1:7802/")
	if got, want := resp.header.Get("Location"), "http://127.0.0.1:7802/api/kv/a%20b?x=1&y=2"; got != want {
		t.Errorf("Location %q, want %q", got, want)
	}
	if c.get() != 0 {
		t.Errorf("the handler ran on a redirected write")
	}
	if resp := do(t, srv, http.MethodGet, "/api/kv/a"); resp.code != http.StatusOK || c.get() != 1 {
		t.Errorf("GET: status %d, handler runs %d; want 200, 1", resp.code, c.get())
	}
}

func TestMiddlewareRequireLeaderAllMethods(t *testing.T) {
	node := follower()
	var c counter
	srv := serve(t, func(r forge.Router) {
		r.Use(requireLeader(node, AllMethods()))
		routeAll(t, r, "/kv", c.okHandler)
	})
	for _, m := range allMethods {
		resp := do(t, srv, m, "/kv")
		if resp.code != http.StatusServiceUnavailable {
			t.Errorf("%s: status %d, want 503 with AllMethods", m, resp.code)
		}
		if m != http.MethodHead {
			body := jsonError(t, m, resp, http.StatusServiceUnavailable, "not the leader")
			checkLeaderHint(t, m, body, 2, "http://127.0.0.1:7802")
		}
	}
	if c.get() != 0 {
		t.Errorf("the handler ran %d times with AllMethods on a follower", c.get())
	}
}

func TestMiddlewareReadOnlyRouting(t *testing.T) {
	node := follower()
	var c counter
	srv := serve(t, func(r forge.Router) {
		// As group middleware (Use on a group).
		g := r.Group("/v1")
		g.Use(readOnlyRouting(node))
		routeAll(t, g, "/kv", c.okHandler)
	})
	for _, m := range readMethods {
		before := c.get()
		if resp := do(t, srv, m, "/v1/kv"); resp.code != http.StatusOK || c.get() != before+1 {
			t.Errorf("%s on a follower: status %d, handler ran %v; want 200, true", m, resp.code, c.get() == before+1)
		}
	}
	for _, m := range writeMethods {
		resp := do(t, srv, m, "/v1/kv?q=1")
		if resp.code != http.StatusTemporaryRedirect {
			t.Fatalf("%s on a follower: status %d, want 307", m, resp.code)
		}
		if got, want := resp.header.Get("Location"), "http://127.0.0.1:7802/v1/kv?q=1"; got != want {
			t.Errorf("%s: Location %q, want %q", m, got, want)
		}
	}
	reads := c.get()

	node.mu.Lock()
	node.url, node.leaderID = "", 0
	node.mu.Unlock()
	resp := do(t, srv, http.MethodPost, "/v1/kv")
	checkLeaderHint(t, "no leader", jsonError(t, "no leader", resp, http.StatusServiceUnavailable, "not the leader"), 0, "")
	if c.get() != reads {
		t.Errorf("a write ran on a follower")
	}

	node.mu.Lock()
	node.leader, node.leaderID = true, 1
	node.mu.Unlock()
	if resp := do(t, srv, http.MethodPost, "/v1/kv"); resp.code != http.StatusOK || c.get() != reads+1 {
		t.Errorf("POST on the leader: status %d, want 200 and the handler run", resp.code)
	}
}

func TestMiddlewareAddLeaderHeader(t *testing.T) {
	node := follower()
	srv := serve(t, func(r forge.Router) {
		r.Use(addLeaderHeader(node))
		must(t, r.GET("/ok", func(ctx forge.Context) error { return ctx.String(http.StatusOK, "ok") }))
		must(t, r.GET("/fail", func(ctx forge.Context) error {
			return ctx.JSON(http.StatusInternalServerError, map[string]string{"error": "boom"})
		}))
		must(t, r.GET("/err", func(ctx forge.Context) error { return forge.InternalError(errors.New("boom")) }))
		must(t, r.GET("/panic", func(ctx forge.Context) error { panic("boom") }))
		// Outside RequireLeader's refusal.
		must(t, r.POST("/write", func(ctx forge.Context) error { return ctx.NoContent(http.StatusNoContent) },
			forge.WithMiddleware(requireLeader(node))))
	})
	check := func(path, method, leader, term, role string) response {
		t.Helper()
		resp := do(t, srv, method, path)
		for h, want := range map[string]string{HeaderLeader: leader, HeaderTerm: term, HeaderRole: role} {
			if got := resp.header.Get(h); got != want {
				t.Errorf("%s %s (status %d): %s %q, want %q", method, path, resp.code, h, got, want)
			}
		}
		return resp
	}
	if r := check("/ok", http.MethodGet, "2", "7", "follower"); r.code != http.StatusOK {
		t.Errorf("/ok: status %d", r.code)
	}
	if r := check("/fail", http.MethodGet, "2", "7", "follower"); r.code != http.StatusInternalServerError {
		t.Errorf("/fail: status %d, want 500", r.code)
	}
	if r := check("/err", http.MethodGet, "2", "7", "follower"); r.code < 400 {
		t.Errorf("/err: status %d, want an error", r.code)
	}
	check("/panic", http.MethodGet, "2", "7", "follower")
	check("/write", http.MethodPost, "2", "7", "follower")

	node.mu.Lock()
	node.leader, node.leaderID, node.term = true, 1, 8
	node.mu.Unlock()
	check("/ok", http.MethodGet, "1", "8", "leader")
	if r := check("/write", http.MethodPost, "1", "8", "leader"); r.code != http.StatusNoContent {
		t.Errorf("/write on the leader: status %d, want 204", r.code)
	}

	node.mu.Lock()
	node.leader, node.leaderID, node.term = false, 0, 9
	node.mu.Unlock()
	check("/ok", http.MethodGet, "0", "9", "follower")
}

func TestMiddlewareConsistencyLinearizable(t *testing.T) {
	node := follower()
	var c counter
	srv := serve(t, func(r forge.Router) {
		r.Use(markMethod(), consistencyMiddleware(node, Linearizable, WithBarrierTimeout(time.Hour)))
		routeAll(t, r, "/kv", c.okHandler)
	})
	for _, m := range allMethods {
		before := c.get()
		if resp := do(t, srv, m, "/kv"); resp.code != http.StatusOK || c.get() != before+1 {
			t.Errorf("%s: status %d, handler ran %v; want 200, true", m, resp.code, c.get() == before+1)
		}
	}
	if got, want := fmt.Sprint(node.barrierCalls()), "[GET HEAD]"; got != want {
		t.Errorf("barriers for %s, want %s (GET and HEAD only, with the request's context)", got, want)
	}
	node.mu.Lock()
	deadlines := append([]time.Duration(nil), node.deadline...)
	node.mu.Unlock()
	for _, d := range deadlines {
		if d <= 59*time.Minute || d > time.Hour {
			t.Errorf("barrier deadline in %v, want about the 1h WithBarrierTimeout", d)
		}
	}
}

func TestMiddlewareConsistencyBarrierTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []MiddlewareOption
		want func(time.Duration) bool
	}{
		{"default", nil, func(d time.Duration) bool { return d > DefaultBarrierTimeout-time.Minute && d <= DefaultBarrierTimeout }},
		{"none", []MiddlewareOption{WithBarrierTimeout(0)}, func(d time.Duration) bool { return d == -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := follower()
			srv := serve(t, func(r forge.Router) {
				must(t, r.GET("/kv", func(ctx forge.Context) error { return ctx.NoContent(http.StatusOK) },
					forge.WithMiddleware(consistencyMiddleware(node, Linearizable, tc.opts...))))
			})
			do(t, srv, http.MethodGet, "/kv")
			node.mu.Lock()
			defer node.mu.Unlock()
			if len(node.deadline) != 1 || !tc.want(node.deadline[0]) {
				t.Errorf("barrier deadlines (-1: none) %v", node.deadline)
			}
		})
	}

	// The barrier's own timeout ends a barrier that does not return.
	node := follower()
	node.barrier = func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("consensus: read: %w: %w", ErrTimeout, ctx.Err())
		case <-time.After(10 * time.Second): // WithBarrierTimeout was not applied
			return errors.New("the barrier was not bounded")
		}
	}
	var c counter
	srv := serve(t, func(r forge.Router) {
		must(t, r.GET("/kv", c.okHandler, forge.WithMiddleware(consistencyMiddleware(node, Linearizable, WithBarrierTimeout(time.Millisecond)))))
	})
	jsonError(t, "stuck barrier", do(t, srv, http.MethodGet, "/kv"), http.StatusGatewayTimeout, "read barrier timed out")
	if c.get() != 0 {
		t.Errorf("the handler ran after the barrier timed out")
	}
}

func TestMiddlewareConsistencyBarrierErrors(t *testing.T) {
	for _, tc := range []struct {
		err       error
		code      int
		msg       string
		hint      bool
		retryHint bool
	}{
		{fmt.Errorf("consensus: read: %w: dropped", ErrNoQuorum), http.StatusServiceUnavailable, "no quorum", false, true},
		{ErrNotStarted, http.StatusServiceUnavailable, "consensus service not running", false, false},
		{fmt.Errorf("consensus: read: %w: node timeout", ErrTimeout), http.StatusGatewayTimeout, "read barrier timed out", false, false},
		{context.DeadlineExceeded, http.StatusGatewayTimeout, "read barrier timed out", false, false},
		{fmt.Errorf("consensus: read: %w", &NotLeaderError{LeaderID: 3, LeaderAddress: "http://10.0.0.3:8080"}),
			http.StatusServiceUnavailable, "not the leader", true, true},
		{errors.New("disk on fire"), http.StatusServiceUnavailable, "read barrier failed", false, false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			node := follower()
			node.barrierErr = tc.err
			var c counter
			srv := serve(t, func(r forge.Router) {
				r.Use(consistencyMiddleware(node, Linearizable))
				routeAll(t, r, "/kv", c.okHandler)
			})
			resp := do(t, srv, http.MethodGet, "/kv")
			body := jsonError(t, "GET", resp, tc.code, tc.msg)
			if tc.hint {
				checkLeaderHint(t, "GET", body, 3, "http://10.0.0.3:8080")
			}
			if got := resp.header.Get("Retry-After") == "1"; got != tc.retryHint {
				t.Errorf("Retry-After %q, want it: %v", resp.header.Get("Retry-After"), tc.retryHint)
			}
			if resp := do(t, srv, http.MethodHead, "/kv"); resp.code != tc.code {
				t.Errorf("HEAD: status %d, want %d", resp.code, tc.code)
			}
			if c.get() != 0 {
				t.Errorf("the handler ran after a failed barrier")
			}
			// Writes and OPTIONS do not wait for the barrier.
			for _, m := range append([]string{http.MethodOptions}, writeMethods...) {
				if resp := do(t, srv, m, "/kv"); resp.code != http.StatusOK {
					t.Errorf("%s: status %d, want 200 (no barrier)", m, resp.code)
				}
			}
			if got := len(node.barrierCalls()); got != 2 {
				t.Errorf("%d barriers, want 2 (GET and HEAD)", got)
			}
		})
	}
}

func TestMiddlewareConsistencyStaleAndLease(t *testing.T) {
	for _, level := range []ReadConsistency{Stale, Lease} {
		node := follower()
		node.barrierErr = ErrNoQuorum
		var c counter
		srv := serve(t, func(r forge.Router) {
			r.Use(consistencyMiddleware(node, level))
			routeAll(t, r, "/kv", c.okHandler)
		})
		for _, m := range allMethods {
			if resp := do(t, srv, m, "/kv"); resp.code != http.StatusOK {
				t.Errorf("level %d, %s: status %d, want 200", level, m, resp.code)
			}
		}
		if c.get() != len(allMethods) || len(node.barrierCalls()) != 0 {
			t.Errorf("level %d: handler ran %d times, %d barriers; want %d, 0",
				level, c.get(), len(node.barrierCalls()), len(allMethods))
		}
	}
}

func TestMiddlewareConsistencyUnknownLevelPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("ConsistencyMiddleware(42) did not panic")
		}
	}()
	consistencyMiddleware(follower(), ReadConsistency(42))
}

// The *Service methods delegate: a service that is not running knows no
// leader, and its barrier fails with ErrNotStarted.
func TestMiddlewareServiceNotRunning(t *testing.T) {
	svc := NewService(Config{}, nil)
	var c counter
	srv := serve(t, func(r forge.Router) {
		r.Use(svc.AddLeaderHeader())
		must(t, r.POST("/require", c.okHandler, forge.WithMiddleware(svc.RequireLeader(WithRedirect()))))
		must(t, r.POST("/route", c.okHandler, forge.WithMiddleware(svc.ReadOnlyRouting())))
		must(t, r.GET("/route", c.okHandler, forge.WithMiddleware(svc.ReadOnlyRouting())))
		must(t, r.GET("/linear", c.okHandler, forge.WithMiddleware(svc.ConsistencyMiddleware(Linearizable))))
		must(t, r.GET("/stale", c.okHandler, forge.WithMiddleware(svc.ConsistencyMiddleware(Stale))))
	})
	for _, path := range []string{"/require", "/route"} {
		resp := do(t, srv, http.MethodPost, path)
		checkLeaderHint(t, path, jsonError(t, path, resp, http.StatusServiceUnavailable, "not the leader"), 0, "")
		if resp.header.Get(HeaderLeader) != "0" || resp.header.Get(HeaderTerm) != "0" || resp.header.Get(HeaderRole) != "follower" {
			t.Errorf("%s: headers %v", path, resp.header)
		}
	}
	jsonError(t, "/linear", do(t, srv, http.MethodGet, "/linear"), http.StatusServiceUnavailable, "consensus service not running")
	if c.get() != 0 {
		t.Errorf("a handler ran %d times on a stopped service", c.get())
	}
	for _, path := range []string{"/route", "/stale"} {
		if resp := do(t, srv, http.MethodGet, path); resp.code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", path, resp.code)
		}
	}
	if c.get() != 2 {
		t.Errorf("handler ran %d times, want 2", c.get())
	}
}

func TestMiddlewareNilServicePanicsAtSetup(t *testing.T) {
	var svc *Service
	for name, build := range map[string]func(){
		"RequireLeader":         func() { svc.RequireLeader() },
		"ReadOnlyRouting":       func() { svc.ReadOnlyRouting() },
		"AddLeaderHeader":       func() { svc.AddLeaderHeader() },
		"ConsistencyMiddleware": func() { svc.ConsistencyMiddleware(Stale) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s of a nil *Service did not panic", name)
				}
			}()
			build()
		}()
	}
}
