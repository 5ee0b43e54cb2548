package harness

import (
	"fmt"

	"github.com/forge-consensus/consensus/core"
)

// ForgeCluster is a Cluster of forge core Nodes, each with a log slice and
// hard state standing in for durable storage.
type ForgeCluster struct {
	nodes []*core.Node
	// logs[i] holds node i's persisted entries; first[i] is the index of
	// logs[i][0].
	logs  [][]core.Entry
	first []uint64
	hard  []core.HardState
	snaps []*core.Snapshot
}

// NewForgeCluster returns a bootstrapped cluster of size nodes (IDs
// 1..size): every node is created with core.New(cfg, core.Persisted{}) and
// cfg.Voters listing all of them.
func NewForgeCluster(size int) (*ForgeCluster, error) {
	voters := make([]uint64, size)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	c := &ForgeCluster{
		logs:  make([][]core.Entry, size),
		first: make([]uint64, size),
		hard:  make([]core.HardState, size),
		snaps: make([]*core.Snapshot, size),
	}
	for i := 0; i < size; i++ {
		n, err := core.New(core.Config{
			ID:              uint64(i + 1),
			Voters:          voters,
			ElectionTick:    10,
			HeartbeatTick:   1,
			MaxSizePerMsg:   1 << 20,
			MaxInflightMsgs: 256,
		}, core.Persisted{})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// Name implements Cluster.
func (c *ForgeCluster) Name() string { return "forge" }

// Size implements Cluster.
func (c *ForgeCluster) Size() int { return len(c.nodes) }

// Campaign implements Cluster.
func (c *ForgeCluster) Campaign(node int) error { return c.nodes[node].Campaign() }

// IsLeader implements Cluster.
func (c *ForgeCluster) IsLeader(node int) bool {
	return c.nodes[node].BasicStatus().Role == core.Leader
}

// Propose implements Cluster.
func (c *ForgeCluster) Propose(node int, data []byte) error { return c.nodes[node].Propose(data) }

// Ready implements Cluster.
func (c *ForgeCluster) Ready(node int, msgs []core.Message, ents []Committed) ([]core.Message, []Committed, bool) {
	n := c.nodes[node]
	if !n.HasReady() {
		return msgs, ents, false
	}
	rd := n.Ready()
	if rd.Snapshot != nil {
		c.snaps[node] = rd.Snapshot
		c.logs[node] = c.logs[node][:0]
		c.first[node] = rd.Snapshot.Meta.Index + 1
	}
	if len(rd.Entries) > 0 {
		log := c.logs[node]
		idx := rd.Entries[0].Index
		if len(log) == 0 {
			c.first[node] = idx
		}
		pos := idx - c.first[node]
		if idx < c.first[node] || pos > uint64(len(log)) {
			panic(fmt.Sprintf("forge node %d: Ready entries start at %d, log holds [%d, %d)",
				node+1, idx, c.first[node], c.first[node]+uint64(len(log))))
		}
		c.logs[node] = append(log[:pos], rd.Entries...)
	}
	if !rd.HardState.IsEmpty() {
		c.hard[node] = rd.HardState
	}
	msgs = append(msgs, rd.Messages...)
	for k := range rd.CommittedEntries {
		e := &rd.CommittedEntries[k]
		ents = append(ents, Committed{Index: e.Index, Conf: e.Type != core.EntryNormal, Data: e.Data})
	}
	return msgs, ents, true
}

// Advance implements Cluster.
func (c *ForgeCluster) Advance(node int) {
	if err := c.nodes[node].Advance(); err != nil {
		panic(fmt.Sprintf("forge node %d: advance: %v", node+1, err))
	}
}

// Target implements Cluster.
func (c *ForgeCluster) Target(m *core.Message) int { return int(m.To) - 1 }

// Step implements Cluster.
func (c *ForgeCluster) Step(node int, m *core.Message) error {
	// Messages from an older term are ignored by the core with a nil error.
	return c.nodes[node].Step(*m)
}

// Tick implements Cluster.
func (c *ForgeCluster) Tick(node int) { c.nodes[node].Tick() }
