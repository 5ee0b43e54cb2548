package harness

import (
	"errors"
	"fmt"
	"io"
	"log"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// EtcdCluster is a Cluster of go.etcd.io/raft/v3 RawNodes backed by
// raft.MemoryStorage.
type EtcdCluster struct {
	nodes   []*raft.RawNode
	storage []*raft.MemoryStorage
}

var etcdDiscardLogger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

// NewEtcdCluster returns a bootstrapped cluster of size nodes (IDs 1..size).
//
// Bootstrap: each node's MemoryStorage starts with a snapshot at index 1,
// term 1 whose ConfState lists all voters; this is the way the raft
// package's own documentation recommends (RawNode.Bootstrap says to prefer
// it), and it mirrors the forge core, whose bootstrap log is one committed
// entry at index 1, term 1.
func NewEtcdCluster(size int) (*EtcdCluster, error) {
	voters := make([]uint64, size)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	c := &EtcdCluster{}
	for i := 0; i < size; i++ {
		st := raft.NewMemoryStorage()
		if err := st.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{
			Index:     1,
			Term:      1,
			ConfState: raftpb.ConfState{Voters: voters},
		}}); err != nil {
			return nil, err
		}
		rn, err := raft.NewRawNode(&raft.Config{
			ID:                        uint64(i + 1),
			ElectionTick:              10,
			HeartbeatTick:             1,
			Storage:                   st,
			MaxSizePerMsg:             1 << 20,
			MaxInflightMsgs:           256,
			MaxUncommittedEntriesSize: 0, // unlimited
			CheckQuorum:               false,
			PreVote:                   false,
			Logger:                    etcdDiscardLogger,
		})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, rn)
		c.storage = append(c.storage, st)
	}
	return c, nil
}

// Name implements Cluster.
func (c *EtcdCluster) Name() string { return "etcd" }

// Size implements Cluster.
func (c *EtcdCluster) Size() int { return len(c.nodes) }

// Campaign implements Cluster.
func (c *EtcdCluster) Campaign(node int) error { return c.nodes[node].Campaign() }

// IsLeader implements Cluster.
func (c *EtcdCluster) IsLeader(node int) bool {
	return c.nodes[node].BasicStatus().RaftState == raft.StateLeader
}

// Propose implements Cluster.
func (c *EtcdCluster) Propose(node int, data []byte) error { return c.nodes[node].Propose(data) }

// Ready implements Cluster.
func (c *EtcdCluster) Ready(node int, msgs []raftpb.Message, ents []Committed) ([]raftpb.Message, []Committed, bool) {
	rn := c.nodes[node]
	if !rn.HasReady() {
		return msgs, ents, false
	}
	rd := rn.Ready()
	st := c.storage[node]
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := st.ApplySnapshot(rd.Snapshot); err != nil {
			panic(fmt.Sprintf("etcd node %d: apply snapshot: %v", node+1, err))
		}
	}
	if len(rd.Entries) > 0 {
		if err := st.Append(rd.Entries); err != nil {
			panic(fmt.Sprintf("etcd node %d: append: %v", node+1, err))
		}
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := st.SetHardState(rd.HardState); err != nil {
			panic(fmt.Sprintf("etcd node %d: set hard state: %v", node+1, err))
		}
	}
	msgs = append(msgs, rd.Messages...)
	for k := range rd.CommittedEntries {
		e := &rd.CommittedEntries[k]
		conf := e.Type != raftpb.EntryNormal
		if conf {
			c.applyConfChange(rn, e)
		}
		ents = append(ents, Committed{Index: e.Index, Conf: conf, Data: e.Data})
	}
	return msgs, ents, true
}

func (c *EtcdCluster) applyConfChange(rn *raft.RawNode, e *raftpb.Entry) {
	var cc raftpb.ConfChangeI
	switch e.Type {
	case raftpb.EntryConfChange:
		var v1 raftpb.ConfChange
		if err := v1.Unmarshal(e.Data); err != nil {
			panic(err)
		}
		cc = v1
	case raftpb.EntryConfChangeV2:
		var v2 raftpb.ConfChangeV2
		if err := v2.Unmarshal(e.Data); err != nil {
			panic(err)
		}
		cc = v2
	}
	rn.ApplyConfChange(cc)
}

// Advance implements Cluster.
func (c *EtcdCluster) Advance(node int) { c.nodes[node].Advance(raft.Ready{}) }

// Target implements Cluster.
func (c *EtcdCluster) Target(m *raftpb.Message) int { return int(m.To) - 1 }

// Step implements Cluster.
func (c *EtcdCluster) Step(node int, m *raftpb.Message) error {
	err := c.nodes[node].Step(*m)
	if errors.Is(err, raft.ErrStepPeerNotFound) {
		return nil
	}
	return err
}

// Tick implements Cluster.
func (c *EtcdCluster) Tick(node int) { c.nodes[node].Tick() }
