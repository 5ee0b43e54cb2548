package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// A tiny in-test cluster: nodes driven from the test goroutine, a network
// that queues messages in a slice, and a state machine that records the
// commands it applied.

// listSM is a state machine whose state is the list of commands applied.
type listSM struct {
	cmds     []string
	restores int    // how many times Restore was called
	tamper   string // changes the hash: a state that silently diverged
}

func (s *listSM) Apply(_ uint64, cmd []byte) any {
	s.cmds = append(s.cmds, string(cmd))
	return "ok:" + string(cmd)
}

// Hash hashes the commands applied (and tamper), for verification.
func (s *listSM) Hash() uint64 {
	h := fnv.New64a()
	for _, c := range s.cmds {
		h.Write([]byte(c))
		h.Write([]byte{0})
	}
	h.Write([]byte(s.tamper))
	return h.Sum64()
}

func (s *listSM) Query([]byte) (any, error) { return strings.Join(s.cmds, ","), nil }

func (s *listSM) Snapshot() ([]byte, error) { return json.Marshal(s.cmds) }

func (s *listSM) Restore(data []byte) error {
	s.restores++
	var cmds []string
	if err := json.Unmarshal(data, &cmds); err != nil {
		return err
	}
	s.cmds, s.tamper = cmds, ""
	return nil
}

// streamSM is a listSM that streams its snapshots.
type streamSM struct{ *listSM }

// WriteSnapshot writes what Snapshot returns.
func (s streamSM) WriteSnapshot(w io.Writer) error {
	b, err := s.Snapshot()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// streamStorage is a MemoryStorage that takes local snapshots as files
// (node.SnapshotStore): a file is a buffer, stored as the snapshot's data
// when Save commits it. failWrite makes the next files' writes fail.
type streamStorage struct {
	*node.MemoryStorage
	failWrite error
	created   int // files created
	aborted   int // files aborted
	reads     int // SnapshotData calls that returned data
}

type memFile struct {
	s   *streamStorage
	buf bytes.Buffer
	err error
}

func (f *memFile) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	return f.buf.Write(p)
}

func (f *memFile) Abort() { f.s.aborted++ }

func (s *streamStorage) CreateSnapshot() (node.SnapshotFile, error) {
	s.created++
	return &memFile{s: s, err: s.failWrite}, nil
}

func (s *streamStorage) SnapshotData(meta core.SnapshotMeta) ([]byte, error) {
	p := s.Persisted()
	if p.Snapshot == nil || p.Snapshot.Meta.Index != meta.Index || p.Snapshot.Meta.Term != meta.Term {
		return nil, fmt.Errorf("no snapshot at index %d term %d stored", meta.Index, meta.Term)
	}
	s.reads++
	return p.Snapshot.Data, nil
}

func (s *streamStorage) Save(u *node.Update, done func(error)) {
	if f, ok := u.LocalSnapshotFile.(*memFile); ok {
		if u.LocalSnapshot == nil || u.LocalSnapshot.Data != nil {
			done(errors.New("a snapshot file without metadata, or with data beside it"))
			return
		}
		c := *u
		c.LocalSnapshot = &core.Snapshot{Meta: u.LocalSnapshot.Meta, Data: f.buf.Bytes()}
		c.LocalSnapshotFile = nil
		u = &c
	}
	s.MemoryStorage.Save(u, done)
}

// confEvent is one call of Config.ConfChangeApplied.
type confEvent struct {
	index uint64
	cc    core.ConfChange
}

// testCluster is a set of nodes on a simulated network.
type testCluster struct {
	t      *testing.T
	ids    []uint64
	cfgs   map[uint64]node.Config
	nodes  map[uint64]*node.Node
	sms    map[uint64]*listSM
	stores map[uint64]*node.MemoryStorage
	confs  map[uint64][]confEvent
	// sent is every message each node handed to its transport, in order.
	sent  map[uint64][]core.Message
	queue []core.Message
	// drop, when set, loses the messages it returns true for.
	drop func(m core.Message) bool
	// stream gives every node a streamStorage and a streamSM, so that it
	// streams its snapshots instead of holding them.
	stream  bool
	streams map[uint64]*streamStorage // with stream: each node's storage
}

// clusterTransport is a node's Transport: it checks that what the node
// sends is backed by its storage, records the messages and queues them.
type clusterTransport struct {
	c  *testCluster
	id uint64
}

func (tr clusterTransport) Send(msgs []core.Message) {
	c := tr.c
	c.checkDurable(tr.id, msgs)
	c.sent[tr.id] = append(c.sent[tr.id], msgs...)
	c.queue = append(c.queue, msgs...)
}

// newTestCluster builds a three-voter cluster {1,2,3}; tweak adjusts each
// node's configuration.
func newTestCluster(t *testing.T, tweak func(cfg *node.Config)) *testCluster {
	t.Helper()
	return newClusterStreaming(t, false, tweak)
}

// newClusterStreaming is newTestCluster with, if stream, nodes that stream
// their snapshots (node.SnapshotStore and node.SnapshotWriter).
func newClusterStreaming(t *testing.T, stream bool, tweak func(cfg *node.Config)) *testCluster {
	t.Helper()
	c := &testCluster{
		t: t, ids: []uint64{1, 2, 3}, stream: stream,
		cfgs: map[uint64]node.Config{}, nodes: map[uint64]*node.Node{}, sms: map[uint64]*listSM{},
		stores: map[uint64]*node.MemoryStorage{}, confs: map[uint64][]confEvent{}, sent: map[uint64][]core.Message{},
	}
	for _, id := range c.ids {
		cfg := node.Config{
			Core: core.Config{ID: id, Voters: []uint64{1, 2, 3}, ElectionTick: 10, HeartbeatTick: 1, Seed: 1000 + 17*id},
		}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs[id] = cfg
		c.stores[id] = node.NewMemoryStorage()
		c.start(id)
	}
	return c
}

// start (re)starts node id from its storage with a fresh state machine and
// its configuration in c.cfgs.
func (c *testCluster) start(id uint64) {
	c.t.Helper()
	cfg := c.cfgs[id]
	sm := &listSM{}
	cfg.Storage = c.stores[id]
	cfg.Transport = clusterTransport{c: c, id: id}
	cfg.StateMachine = sm
	if c.stream {
		if c.streams == nil {
			c.streams = map[uint64]*streamStorage{}
		}
		if c.streams[id] == nil || c.streams[id].MemoryStorage != c.stores[id] {
			c.streams[id] = &streamStorage{MemoryStorage: c.stores[id]}
		}
		cfg.Storage = c.streams[id]
		cfg.StateMachine = streamSM{sm}
	}
	user := cfg.ConfChangeApplied
	cfg.ConfChangeApplied = func(index uint64, cc core.ConfChange) {
		c.confs[id] = append(c.confs[id], confEvent{index: index, cc: cc})
		if user != nil {
			user(index, cc)
		}
	}
	c.sms[id] = sm
	n, err := node.New(cfg)
	if err != nil {
		c.t.Fatalf("node.New(%d): %v", id, err)
	}
	c.nodes[id] = n
}

// restart replaces node id by a new run on the same storage, with a fresh
// state machine and the given incarnation (0: derived from the seed).
func (c *testCluster) restart(id, incarnation uint64) {
	c.t.Helper()
	cfg := c.cfgs[id]
	cfg.Incarnation = incarnation
	c.cfgs[id] = cfg
	c.start(id)
}

// checkDurable checks the persistence-before-send rule on messages node id
// is sending: the terms, votes and log positions they claim are in its
// storage already.
func (c *testCluster) checkDurable(id uint64, msgs []core.Message) {
	c.t.Helper()
	p := c.stores[id].Persisted()
	last := uint64(0)
	if p.Snapshot != nil {
		last = p.Snapshot.Meta.Index
	}
	stored := map[uint64]uint64{} // index -> term
	for _, e := range p.Entries {
		stored[e.Index] = e.Term
		last = max(last, e.Index)
	}
	for _, m := range msgs {
		switch m.Type {
		case core.MsgPreVote, core.MsgPreVoteResp, core.MsgProp, core.MsgReadIndex, core.MsgTransferLeader:
			// Pre-vote terms are hypothetical; forwarded requests carry none.
		default:
			if m.Term > p.HardState.Term {
				c.t.Errorf("node %d sent %v in term %d with stored term %d", id, m.Type, m.Term, p.HardState.Term)
			}
		}
		switch m.Type {
		case core.MsgApp, core.MsgHeartbeat:
			// A leader may send entries it has not stored yet (it writes
			// in parallel with its followers), but the commit index it
			// announces must be covered by its own stored log.
			if m.Commit > last {
				c.t.Errorf("node %d announced commit %d to %d with only %d stored", id, m.Commit, m.To, last)
			}
			for _, e := range m.Entries {
				if e.Index <= m.Commit {
					if t, ok := stored[e.Index]; !ok || t != e.Term {
						c.t.Errorf("node %d sent committed entry %d (term %d) to %d before storing it", id, e.Index, e.Term, m.To)
					}
				}
			}
		case core.MsgAppResp:
			if !m.Reject && m.Index > last {
				c.t.Errorf("node %d acknowledged index %d to %d with only %d stored", id, m.Index, m.To, last)
			}
		case core.MsgVoteResp:
			if !m.Reject && (p.HardState.Vote != m.To || p.HardState.Term != m.Term) {
				c.t.Errorf("node %d granted its vote to %d in term %d; stored vote %d in term %d",
					id, m.To, m.Term, p.HardState.Vote, p.HardState.Term)
			}
		case core.MsgVote:
			if p.HardState.Vote != id || p.HardState.Term != m.Term {
				c.t.Errorf("node %d asked for votes in term %d; stored vote %d in term %d", id, m.Term, p.HardState.Vote, p.HardState.Term)
			}
		}
	}
}

// live returns the node id if it runs.
func (c *testCluster) live(id uint64) *node.Node {
	n := c.nodes[id]
	if n == nil || n.Stopped() != nil {
		return nil
	}
	return n
}

// deliverOnce delivers the messages queued now (not those they cause) and
// reports whether there were any.
func (c *testCluster) deliverOnce() bool {
	q := c.queue
	c.queue = nil
	for _, m := range q {
		if c.drop != nil && c.drop(m) {
			continue
		}
		n := c.live(m.To)
		if n == nil {
			continue
		}
		if err := n.Receive(m); errors.Is(err, core.ErrInvalidMessage) {
			c.t.Errorf("node %d refused %v from %d: %v", m.To, m.Type, m.From, err)
		}
	}
	return len(q) > 0
}

// deliverAll delivers messages until the network is quiet.
func (c *testCluster) deliverAll() {
	c.t.Helper()
	for range 10000 {
		if !c.deliverOnce() {
			return
		}
	}
	c.t.Fatal("network never went quiet")
}

// tick ticks every live node n times, delivering everything after each.
func (c *testCluster) tick(n int) {
	c.t.Helper()
	for range n {
		for _, id := range c.ids {
			if nd := c.live(id); nd != nil {
				nd.Tick()
			}
		}
		c.deliverAll()
	}
}

// campaign makes id campaign, delivers, and checks it leads.
func (c *testCluster) campaign(id uint64) {
	c.t.Helper()
	if err := c.nodes[id].Campaign(); err != nil {
		c.t.Fatalf("Campaign(%d): %v", id, err)
	}
	c.deliverAll()
	if st := c.nodes[id].Status(); st.Role != core.Leader {
		c.t.Fatalf("node %d is %v after campaigning, want leader", id, st.Role)
	}
}

// leader returns the live node that leads in the highest term, or 0.
func (c *testCluster) leader() uint64 {
	var lead, term uint64
	for _, id := range c.ids {
		if n := c.live(id); n != nil {
			if st := n.Status(); st.Role == core.Leader && st.Term >= term {
				lead, term = id, st.Term
			}
		}
	}
	return lead
}

// isolate cuts the nodes in group off from the others; heal undoes it.
func (c *testCluster) isolate(group ...uint64) {
	c.drop = func(m core.Message) bool { return slices.Contains(group, m.From) != slices.Contains(group, m.To) }
}

func (c *testCluster) heal() { c.drop = nil }

// propose proposes cmd on id, delivers, and checks the result.
func (c *testCluster) propose(id uint64, cmd string) {
	c.t.Helper()
	f := c.nodes[id].Propose([]byte(cmd))
	c.deliverAll()
	mustResult(c.t, f, "ok:"+cmd)
}

// mustResult checks that f resolved with want and no error.
func mustResult(t *testing.T, f *node.Future, want any) {
	t.Helper()
	if !f.Resolved() {
		t.Fatalf("future unresolved, want %v", want)
	}
	got, err := f.Result()
	if err != nil || got != want {
		t.Fatalf("future resolved with (%v, %v), want (%v, nil)", got, err, want)
	}
}

// mustErr checks that f resolved with an error matching target.
func mustErr(t *testing.T, f *node.Future, target error) {
	t.Helper()
	if !f.Resolved() {
		t.Fatalf("future unresolved, want error %v", target)
	}
	if got, err := f.Result(); !errors.Is(err, target) {
		t.Fatalf("future resolved with (%v, %v), want error %v", got, err, target)
	}
}

// sentSince returns the messages of type typ node id sent from position
// from of its record on.
func (c *testCluster) sentSince(id uint64, from int, typ core.MessageType) []core.Message {
	var out []core.Message
	for _, m := range c.sent[id][from:] {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// count returns how many times cmd occurs in cmds.
func count(cmds []string, cmd string) int {
	k := 0
	for _, c := range cmds {
		if c == cmd {
			k++
		}
	}
	return k
}

// cmdList returns "c1".."cN" with the given prefix.
func cmdList(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}
