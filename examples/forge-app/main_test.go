package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/server/servertest"
)

// testCluster starts the three apps in this process as -local-cluster does
// (StartNodes), on free loopback ports with temporary data, and stops them
// at the test's end if the test has not.
func testCluster(t testing.TB, token string) (ClusterConfig, Nodes) {
	t.Helper()
	ports := servertest.FreePorts(t, 4*clusterSize)
	cc := ClusterConfig{
		Host: "127.0.0.1", DataDir: t.TempDir(), AdminToken: token,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for i := range clusterSize {
		p := ports[4*i:]
		cc.Nodes = append(cc.Nodes, NodePorts{App: p[0], Raft: p[1], API: p[2], Client: p[3]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	nodes, err := StartNodes(ctx, cc, []int{1, 2, 3})
	if err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := nodes.Stop(ctx); err != nil {
			t.Errorf("stop the cluster: %v", err)
		}
	})
	return cc, nodes
}

// waitForLeader polls until every node knows the same leader, which
// leads, and returns it.
func waitForLeader(t testing.TB, nodes Nodes) *Node {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if l := nodes.Leader(); l != nil {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader that every node knows within 20s")
		}
		time.Sleep(20 * time.Millisecond) // polling an election, not asserting a duration
	}
}

// response is what a request returned.
type response struct {
	code   int
	header http.Header
	body   string
}

// do sends a request without following redirects.
func do(t *testing.T, method, url, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the body: %v", method, url, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// wantUser checks that r is a 200 with user.
func wantUser(t *testing.T, what string, r response, want User) {
	t.Helper()
	var got User
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &got) != nil || got != want {
		t.Fatalf("%s: %d %s; want 200 with %+v", what, r.code, r.body, want)
	}
}

func TestUsersAPIOnALocalCluster(t *testing.T) {
	_, nodes := testCluster(t, "")
	lead := waitForLeader(t, nodes)
	var follower *Node
	for _, n := range nodes {
		if n != lead {
			follower = n
			break
		}
	}
	leaderID := strconv.Itoa(lead.ID())
	ada := User{ID: "u1", Name: "Ada", Email: "ada@example.com"}
	adaJSON := `{"id":"u1","name":"Ada","email":"ada@example.com"}`

	// Create on the leader.
	r := do(t, "POST", lead.URL()+"/api/users", adaJSON)
	if r.code != http.StatusCreated || r.header.Get("Location") != "/api/users/u1" {
		t.Fatalf("create on the leader: %d %s (Location %q)", r.code, r.body, r.header.Get("Location"))
	}
	if got := r.header.Get(forgeext.HeaderRole); got != "leader" {
		t.Fatalf("create on the leader: %s = %q", forgeext.HeaderRole, got)
	}

	// Every node reads it (linearizable by default) and names the leader.
	for _, n := range nodes {
		r := do(t, "GET", n.URL()+"/api/users/u1", "")
		wantUser(t, fmt.Sprintf("read on node %d", n.ID()), r, ada)
		if got := r.header.Get(forgeext.HeaderLeader); got != leaderID {
			t.Fatalf("node %d: %s = %q; want %s", n.ID(), forgeext.HeaderLeader, got, leaderID)
		}
		if got := r.header.Get(HeaderReadConsistency); got != "linearizable" {
			t.Fatalf("node %d: %s = %q", n.ID(), HeaderReadConsistency, got)
		}
	}
	// A stale read is local; right after a linearizable read on the same
	// node it sees the user too.
	r = do(t, "GET", follower.URL()+"/api/users/u1?consistency=stale", "")
	wantUser(t, "stale read on a follower", r, ada)
	if got := r.header.Get(HeaderReadConsistency); got != "stale" {
		t.Fatalf("stale read: %s = %q", HeaderReadConsistency, got)
	}
	if r := do(t, "GET", follower.URL()+"/api/users/u1?consistency=eventual", ""); r.code != http.StatusBadRequest {
		t.Fatalf("unknown consistency: %d %s; want 400", r.code, r.body)
	}

	// A follower redirects writes to the leader's app (app_urls).
	r = do(t, "POST", follower.URL()+"/api/users", `{"id":"u2","name":"Grace","email":"grace@example.com"}`)
	wantLocation := lead.URL() + "/api/users"
	if r.code != http.StatusTemporaryRedirect || r.header.Get("Location") != wantLocation {
		t.Fatalf("create on a follower: %d %s (Location %q); want 307 to %s", r.code, r.body, r.header.Get("Location"), wantLocation)
	}
	if got := r.header.Get(forgeext.HeaderLeader); got != leaderID {
		t.Fatalf("redirect: %s = %q; want %s", forgeext.HeaderLeader, got, leaderID)
	}
	if got := r.header.Get(forgeext.HeaderRole); got != "follower" {
		t.Fatalf("redirect: %s = %q", forgeext.HeaderRole, got)
	}
	if r := do(t, "GET", lead.URL()+"/api/users/u2", ""); r.code != http.StatusNotFound {
		t.Fatalf("the redirected create took effect: %d %s", r.code, r.body)
	}

	// Missing users, duplicates and bad requests.
	if r := do(t, "GET", follower.URL()+"/api/users/nobody", ""); r.code != http.StatusNotFound {
		t.Fatalf("missing user: %d %s; want 404", r.code, r.body)
	}
	if r := do(t, "POST", lead.URL()+"/api/users", `{"id":"u1","name":"Other","email":"other@example.com"}`); r.code != http.StatusConflict {
		t.Fatalf("duplicate: %d %s; want 409", r.code, r.body)
	}
	for _, body := range []string{`{"id":`, `{"id":"u3"}`, `{"id":"u3","name":"N","email":"not-an-address"}`,
		`{"id":"a b","name":"N","email":"n@example.com"}`, `{"id":"u3","name":"N","email":"n@example.com","age":3}`} {
		if r := do(t, "POST", lead.URL()+"/api/users", body); r.code != http.StatusBadRequest {
			t.Fatalf("create %s: %d %s; want 400", body, r.code, r.body)
		}
	}
	wantUser(t, "the user after the refused duplicate", do(t, "GET", lead.URL()+"/api/users/u1", ""), ada)

	// Update and delete.
	lovelace := User{ID: "u1", Name: "Ada Lovelace", Email: "ada@example.com"}
	wantUser(t, "update", do(t, "PUT", lead.URL()+"/api/users/u1", `{"name":"Ada Lovelace","email":"ada@example.com"}`), lovelace)
	wantUser(t, "read after the update on a follower", do(t, "GET", follower.URL()+"/api/users/u1", ""), lovelace)
	if r := do(t, "PUT", lead.URL()+"/api/users/nobody", `{"name":"N","email":"n@example.com"}`); r.code != http.StatusNotFound {
		t.Fatalf("update a missing user: %d %s; want 404", r.code, r.body)
	}
	if r := do(t, "PUT", lead.URL()+"/api/users/u1", `{"id":"u9","name":"N","email":"n@example.com"}`); r.code != http.StatusBadRequest {
		t.Fatalf("update with another id: %d %s; want 400", r.code, r.body)
	}
	if r := do(t, "DELETE", follower.URL()+"/api/users/u1", ""); r.code != http.StatusTemporaryRedirect {
		t.Fatalf("delete on a follower: %d %s; want 307", r.code, r.body)
	}
	if r := do(t, "DELETE", lead.URL()+"/api/users/u1", ""); r.code != http.StatusNoContent {
		t.Fatalf("delete: %d %s; want 204", r.code, r.body)
	}
	if r := do(t, "DELETE", lead.URL()+"/api/users/u1", ""); r.code != http.StatusNotFound {
		t.Fatalf("delete again: %d %s; want 404", r.code, r.body)
	}
	for _, n := range nodes {
		if r := do(t, "GET", n.URL()+"/api/users/u1", ""); r.code != http.StatusNotFound {
			t.Fatalf("node %d after the delete: %d %s; want 404", n.ID(), r.code, r.body)
		}
	}

	// The admin API is on every app, behind the leader header too.
	r = do(t, "GET", follower.URL()+"/consensus/health", "")
	if r.code != http.StatusOK || r.header.Get(forgeext.HeaderLeader) != leaderID {
		t.Fatalf("health on a follower: %d %s", r.code, r.body)
	}

	// Stopping is clean: every port is free again.
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := nodes.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, n := range nodes {
		for _, addr := range []string{strings.TrimPrefix(n.URL(), "http://"), strings.TrimPrefix(n.ConsensusURL(), "http://")} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("node %d: %s still in use after Stop: %v", n.ID(), addr, err)
			}
			ln.Close()
		}
	}
}

func TestAdminTokenProtectsTheAdminAPI(t *testing.T) {
	_, nodes := testCluster(t, "s3cret")
	lead := waitForLeader(t, nodes)
	if r := do(t, "GET", lead.URL()+"/consensus/status", ""); r.code != http.StatusUnauthorized {
		t.Fatalf("status without the token: %d %s; want 401", r.code, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", lead.URL()+"/consensus/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info forgeext.ClusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK ||
		info.Leader != uint64(lead.ID()) || info.ID != ClusterID {
		t.Fatalf("status with the token: %d %+v %v", resp.StatusCode, info, err)
	}
}

func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-local-cluster"}, true},
		{[]string{"-node", "2", "-data", "/tmp/x"}, true},
		{nil, false},
		{[]string{"-node", "4"}, false},
		{[]string{"-node", "1", "-local-cluster"}, false},
		{[]string{"-local-cluster", "extra"}, false},
		{[]string{"-local-cluster", "-raft-port-base", "65500"}, false},
	} {
		_, err := parseFlags(c.args, io.Discard)
		if (err == nil) != c.ok {
			t.Errorf("parseFlags(%q) = %v; want ok %v", c.args, err, c.ok)
		}
	}
}

// TestConcurrentCreatesOfOneID: many clients create the same user at once
// on the leader; exactly one gets 201 and every other 409, and the stored
// user is the winner's (create-if-absent is one replicated command).
func TestConcurrentCreatesOfOneID(t *testing.T) {
	_, nodes := testCluster(t, "")
	lead := waitForLeader(t, nodes)
	const n = 20
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"id":"same","name":"Client %d","email":"c%d@example.com"}`, i, i)
			codes[i] = do(t, "POST", lead.URL()+"/api/users", body).code
		}()
	}
	wg.Wait()
	created := slices.Index(codes, http.StatusCreated)
	if created < 0 || slices.Index(codes[created+1:], http.StatusCreated) >= 0 {
		t.Fatalf("codes %v: want exactly one 201", codes)
	}
	for i, c := range codes {
		if i != created && c != http.StatusConflict {
			t.Fatalf("codes %v: want 409 for every other create", codes)
		}
	}
	want := User{ID: "same", Name: fmt.Sprintf("Client %d", created), Email: fmt.Sprintf("c%d@example.com", created)}
	for _, nd := range nodes {
		wantUser(t, "the winner's user", do(t, "GET", nd.URL()+"/api/users/same", ""), want)
	}
}
