package core

import (
	"fmt"
	"slices"
	"testing"
)

// memStore is what a test host has persisted for one node.
type memStore struct {
	hs      HardState
	snap    *Snapshot
	entries []Entry
}

func (s *memStore) persisted() Persisted {
	return Persisted{HardState: s.hs, Snapshot: s.snap, Entries: slices.Clone(s.entries)}
}

// save applies the persistence part of a Ready, as a host must.
func (s *memStore) save(rd *Ready) {
	if rd.Snapshot != nil {
		s.snap = rd.Snapshot
		s.entries = nil
	}
	if len(rd.Entries) > 0 {
		first := rd.Entries[0].Index
		off := uint64(1)
		if s.snap != nil {
			off = s.snap.Meta.Index + 1
		}
		keep := int(first - off)
		if keep < 0 || keep > len(s.entries) {
			panic(fmt.Sprintf("memStore: entries from %d do not follow stored log [%d, %d]", first, off, off+uint64(len(s.entries))-1))
		}
		s.entries = append(s.entries[:keep:keep], rd.Entries...)
	}
	if !rd.HardState.IsEmpty() {
		s.hs = rd.HardState
	}
}

// compact drops stored entries up to index (after a snapshot at index).
func (s *memStore) compact(snap *Snapshot) {
	off := uint64(1)
	if s.snap != nil {
		off = s.snap.Meta.Index + 1
	}
	drop := int(snap.Meta.Index + 1 - off)
	s.entries = slices.Clone(s.entries[drop:])
	s.snap = snap
}

// cluster is an in-memory cluster of test nodes on a perfect network
// (messages are queued and delivered by deliver).
type cluster struct {
	t       testing.TB
	ids     []uint64
	nodes   map[uint64]*Node
	stores  map[uint64]*memStore
	cfgs    map[uint64]Config
	applied map[uint64][]Entry // normal and conf change entries applied, per node
	reads   map[uint64][]ReadState
	queue   []Message
	// drop, when set, filters messages in flight (return true to drop).
	drop func(m Message) bool
}

// newCluster founds a cluster of the given voters; tweak adjusts configs.
func newCluster(t testing.TB, ids []uint64, tweak func(*Config)) *cluster {
	c := &cluster{t: t, ids: ids, nodes: map[uint64]*Node{}, stores: map[uint64]*memStore{},
		cfgs: map[uint64]Config{}, applied: map[uint64][]Entry{}, reads: map[uint64][]ReadState{}}
	for _, id := range ids {
		cfg := Config{ID: id, Voters: ids, ElectionTick: 10, HeartbeatTick: 1, Seed: 42}
		if tweak != nil {
			tweak(&cfg)
		}
		c.cfgs[id] = cfg
		c.stores[id] = &memStore{}
		n, err := New(cfg, Persisted{})
		if err != nil {
			t.Fatalf("New(%d): %v", id, err)
		}
		c.nodes[id] = n
	}
	return c
}

// process handles every node's Ready until none has any, queueing
// messages; it does not deliver them.
func (c *cluster) process() {
	for progress := true; progress; {
		progress = false
		for _, id := range c.ids {
			n := c.nodes[id]
			if n == nil || !n.HasReady() {
				continue
			}
			progress = true
			rd := n.Ready()
			c.stores[id].save(&rd)
			c.queue = append(c.queue, rd.Messages...)
			if rd.Snapshot != nil {
				c.applied[id] = nil // state replaced; tests look at suffixes
			}
			c.applied[id] = append(c.applied[id], rd.CommittedEntries...)
			c.reads[id] = append(c.reads[id], rd.ReadStates...)
			if err := n.Advance(); err != nil {
				c.t.Fatalf("Advance(%d): %v", id, err)
			}
		}
	}
}

// deliver processes and delivers messages until the network is quiet.
func (c *cluster) deliver() {
	for i := 0; i < 10000; i++ {
		c.process()
		if len(c.queue) == 0 {
			return
		}
		q := c.queue
		c.queue = nil
		for _, m := range q {
			if c.drop != nil && c.drop(m) {
				continue
			}
			if n := c.nodes[m.To]; n != nil {
				_ = n.Step(m)
			}
		}
	}
	c.t.Fatalf("network never went quiet")
}

// tick ticks every live node once and delivers the results.
func (c *cluster) tick(times int) {
	for range times {
		for _, id := range c.ids {
			if n := c.nodes[id]; n != nil {
				n.Tick()
			}
		}
		c.deliver()
	}
}

// leader returns the ID of the node that is leader in the highest term, or None.
func (c *cluster) leader() uint64 {
	var lead, term uint64
	for _, id := range c.ids {
		if n := c.nodes[id]; n != nil {
			st := n.BasicStatus()
			if st.Role == Leader && st.Term >= term {
				lead, term = id, st.Term
			}
		}
	}
	return lead
}

// campaign makes id campaign and delivers until quiet.
func (c *cluster) campaign(id uint64) {
	if err := c.nodes[id].Campaign(); err != nil {
		c.t.Fatalf("Campaign(%d): %v", id, err)
	}
	c.deliver()
}

// crash stops a node, losing nothing it persisted.
func (c *cluster) crash(id uint64) { c.nodes[id] = nil }

// restart brings a node back from its store.
func (c *cluster) restart(id uint64) {
	cfg := c.cfgs[id]
	cfg.Voters = nil
	st := c.stores[id]
	if st.snap != nil {
		cfg.Applied = st.snap.Meta.Index
	}
	n, err := New(cfg, st.persisted())
	if err != nil {
		c.t.Fatalf("restart %d: %v", id, err)
	}
	c.nodes[id] = n
	c.applied[id] = nil
}

// data returns the Data of the normal, non-empty entries applied on id.
func (c *cluster) data(id uint64) []string {
	var out []string
	for _, e := range c.applied[id] {
		if e.Type == EntryNormal && len(e.Data) > 0 {
			out = append(out, string(e.Data))
		}
	}
	return out
}
