package admin

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestAddNodeValidatesIDHostAndPort (issue 13 §3 probe): a node ID that
// is no node's (2^64-1 as a number or a name), an address that is not a
// host (spaces, slashes, NUL, a port) and a port out of range are 400s
// naming the field, and the Cluster is never called.
func TestAddNodeValidatesIDHostAndPort(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"node_id":18446744073709551615,"address":"h","port":7000}`, "node_id"},
		{`{"node_id":"18446744073709551615","address":"h","port":7000}`, "node_id"},
		{`{"node_id":"node-18446744073709551615","address":"h","port":7000}`, "node_id"},
		{`{"node_id":0,"address":"h","port":7000}`, "node_id"},
		{`{"node_id":4,"address":"a b/c\u0000:x","port":7000}`, "address"},
		{`{"node_id":4,"address":"a b","port":7000}`, "address"},
		{`{"node_id":4,"address":"a/b","port":7000}`, "address"},
		{`{"node_id":4,"address":"a\u0000b","port":7000}`, "address"},
		{`{"node_id":4,"address":"10.0.0.4:7000","port":7000}`, "address"},
		{`{"node_id":4,"address":"h.example:7000","port":7000}`, "address"},
		{`{"node_id":4,"address":"-h","port":7000}`, "address"},
		{`{"node_id":4,"address":"h","port":0}`, "port"},
		{`{"node_id":4,"address":"h","port":65536}`, "port"},
	} {
		f := healthyFake()
		h := newHandler(t, Config{Tokens: testTokens}, f)
		m := expect(t, do(h, "POST", "/consensus/add-node", tc.body, "admin-tok"), 400)
		if msg, _ := m["error"].(string); !strings.Contains(msg, tc.field) {
			t.Errorf("%s: error %q does not name %s", tc.body, msg, tc.field)
		}
		if got := f.Mutations(); len(got) != 0 {
			t.Errorf("%s reached the cluster: %v", tc.body, got)
		}
	}
	// Hosts that are fine: names, '_' (Compose), IPv4 and IPv6 literals.
	for _, host := range []string{"node4.example.com", "consensus_node-4", "10.0.0.4", "::1", "fe80::1"} {
		f := healthyFake()
		h := newHandler(t, Config{Tokens: testTokens}, f)
		expect(t, do(h, "POST", "/consensus/add-node", fmt.Sprintf(`{"node_id":4,"address":%q,"port":7000}`, host), "admin-tok"), 200)
	}
}

// stagedFake is a MemberAdder and Promoter whose node 4 is a learner that
// becomes a voter once promote is true and (with catchUpAfter) enough
// polls have passed.
type stagedFake struct {
	*fakeCluster
	mu           sync.Mutex
	polls        int
	catchUpAfter int // Info polls before a promotion succeeds; -1 never
	promoted     bool
	auto         bool // the leader promotes by itself once caught up
}

func (f *stagedFake) AddMember(_ context.Context, m NewMember) error {
	f.record("AddMember(%d,%v)", m.ID, m.Learner)
	f.mu.Lock()
	f.auto = !m.Learner
	f.mu.Unlock()
	return nil
}

func (f *stagedFake) caughtUp() bool {
	return f.catchUpAfter >= 0 && f.polls >= f.catchUpAfter
}

func (f *stagedFake) PromoteMember(_ context.Context, id uint64) error {
	f.record("PromoteMember(%d)", id)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.caughtUp() {
		return fmt.Errorf("%w: node %d: 900 entries behind", ErrNotCaughtUp, id)
	}
	f.promoted = true
	return nil
}

func (f *stagedFake) Info(context.Context) ClusterInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	if f.auto && f.caughtUp() {
		f.promoted = true
	}
	info := f.info
	info.Nodes = append([]NodeStatus(nil), info.Nodes...)
	n := NodeStatus{ID: 4, Role: "learner", Promotion: "pending: 900 entries behind"}
	if f.promoted {
		n = NodeStatus{ID: 4, Role: "follower", Voter: true}
	}
	info.Nodes = append(info.Nodes, n)
	return info
}

// TestAddNodeStages (issue 13 §3 probe): add-node answers the stage the
// node reached, "learner" at once (never an instant voter); with
// ?wait=voter it returns once the node is promoted, or answers 504 with
// the stage and why when the timeout ends first.
func TestAddNodeStages(t *testing.T) {
	body := `{"node_id":4,"address":"h","port":7000}`
	f := &stagedFake{fakeCluster: healthyFake(), catchUpAfter: 3}
	h := newHandler(t, Config{Tokens: testTokens}, f)
	m := expect(t, do(h, "POST", "/consensus/add-node", body, "admin-tok"), 200)
	if m["stage"] != StageLearner || !strings.Contains(fmt.Sprint(m["promotion"]), "pending") {
		t.Fatalf("add-node answer %v: want stage learner and the promotion's state", m)
	}

	f = &stagedFake{fakeCluster: healthyFake(), catchUpAfter: 3}
	h = newHandler(t, Config{Tokens: testTokens}, f)
	m = expect(t, do(h, "POST", "/consensus/add-node?wait=voter&timeout=10s", body, "admin-tok"), 200)
	if m["stage"] != StageVoter {
		t.Fatalf("add-node waiting for the promotion: %v, want stage voter", m)
	}

	f = &stagedFake{fakeCluster: healthyFake(), catchUpAfter: -1}
	h = newHandler(t, Config{Tokens: testTokens}, f)
	m = expect(t, do(h, "POST", "/consensus/add-node?wait=voter&timeout=200ms", body, "admin-tok"), 504)
	if m["stage"] != StageLearner || !strings.Contains(m["error"].(string), "still a learner after 200ms: pending: 900 entries behind") {
		t.Fatalf("add-node whose wait timed out: %v", m)
	}

	for _, q := range []string{"?wait=yes", "?wait=voter&timeout=soon", "?wait=voter&timeout=-1s", "?wait=voter&timeout=11m",
		"?timeout=5s"} {
		f := &stagedFake{fakeCluster: healthyFake()}
		h := newHandler(t, Config{Tokens: testTokens}, f)
		m := expect(t, do(h, "POST", "/consensus/add-node"+q, body, "admin-tok"), 400)
		if msg := m["error"].(string); !strings.Contains(msg, "query parameter") {
			t.Errorf("%s: error %q names no query parameter", q, msg)
		}
		if got := f.Mutations(); len(got) != 0 {
			t.Errorf("%s reached the cluster: %v", q, got)
		}
	}
}

// TestPromote: POST /promote promotes a caught-up learner, refuses one
// that is behind (409, saying why), waits with ?wait=voter, and is 501 on
// a Cluster that is no Promoter.
func TestPromote(t *testing.T) {
	body := `{"node_id":4}`
	f := &stagedFake{fakeCluster: healthyFake(), catchUpAfter: 1000}
	h := newHandler(t, Config{Tokens: testTokens}, f)
	m := expect(t, do(h, "POST", "/consensus/promote", body, "admin-tok"), 409)
	if !strings.Contains(m["error"].(string), "not caught up: node 4: 900 entries behind") {
		t.Fatalf("promote a learner that is behind: %v", m)
	}
	expect(t, do(h, "POST", "/consensus/promote", body, "op-tok"), 403)

	f = &stagedFake{fakeCluster: healthyFake(), catchUpAfter: 4}
	h = newHandler(t, Config{Tokens: testTokens}, f)
	m = expect(t, do(h, "POST", "/consensus/promote?wait=voter&timeout=10s", body, "admin-tok"), 200)
	if m["stage"] != StageVoter {
		t.Fatalf("promote with wait: %v", m)
	}
	if got := f.Mutations(); len(got) < 2 || got[len(got)-1] != "PromoteMember(4)" {
		t.Fatalf("promote with wait did not retry until caught up: %v", got)
	}
	m = expect(t, do(h, "POST", "/consensus/promote", body, "admin-tok"), 200)
	if m["stage"] != StageVoter {
		t.Fatalf("promote a voter: %v", m)
	}

	expect(t, do(h, "POST", "/consensus/promote", `{"node_id":0}`, "admin-tok"), 400)
	expect(t, do(newHandler(t, Config{Tokens: testTokens}, healthyFake()), "POST", "/consensus/promote", body, "admin-tok"), 501)
}
