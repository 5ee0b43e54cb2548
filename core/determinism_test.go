package core

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// traceRun drives a 5-node cluster with seed-chosen actions (ticks,
// deliveries in random order, drops, duplicates, proposals, reads,
// transfers, membership changes, compaction, crashes and restarts) and
// returns a hash of every byte the nodes output.
func traceRun(t *testing.T, seed uint64, steps int) ([]byte, int) {
	rng := rand.New(rand.NewPCG(seed, seed^0xabcdef))
	ids := []uint64{1, 2, 3, 4, 5}
	c := newCluster(t, ids, func(cfg *Config) {
		cfg.Seed = seed
		cfg.PreVote = seed%2 == 0
		cfg.CheckQuorum = seed%3 == 0
		cfg.ElectionTick = 5
		cfg.MaxSizePerMsg = 256
		cfg.MaxInflightMsgs = 4
	})
	h := sha256.New()
	var buf []byte
	out := func(id uint64, rd *Ready) {
		buf = binary.AppendUvarint(buf[:0], id)
		if rd.SoftState != nil {
			buf = append(buf, 's', byte(rd.SoftState.Role))
			buf = binary.AppendUvarint(buf, rd.SoftState.Lead)
		}
		buf, _ = rd.HardState.AppendBinary(buf)
		if rd.Snapshot != nil {
			buf, _ = rd.Snapshot.AppendBinary(buf)
		}
		for i := range rd.Entries {
			buf, _ = rd.Entries[i].AppendBinary(buf)
		}
		for i := range rd.Messages {
			buf, _ = rd.Messages[i].AppendBinary(buf)
		}
		for i := range rd.CommittedEntries {
			buf, _ = rd.CommittedEntries[i].AppendBinary(buf)
		}
		for _, rs := range rd.ReadStates {
			buf = binary.AppendUvarint(buf, rs.Index)
			buf = append(buf, rs.Context...)
		}
		h.Write(buf)
	}
	commits := 0
	for step := 0; step < steps; step++ {
		id := ids[rng.IntN(len(ids))]
		n := c.nodes[id]
		switch k := rng.IntN(100); {
		case n == nil:
			if k < 10 {
				c.restart(id)
			}
		case k < 30:
			n.Tick()
		case k < 55 && len(c.queue) > 0:
			i := rng.IntN(len(c.queue))
			m := c.queue[i]
			switch d := rng.IntN(20); {
			case d == 0: // drop
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
			case d == 1: // duplicate: deliver and keep
			default:
				c.queue = append(c.queue[:i], c.queue[i+1:]...)
			}
			if dst := c.nodes[m.To]; dst != nil {
				_ = dst.Step(m)
			}
		case k < 75:
			if n.HasReady() {
				rd := n.Ready()
				out(id, &rd)
				c.stores[id].save(&rd)
				c.queue = append(c.queue, rd.Messages...)
				commits += len(rd.CommittedEntries)
				c.applied[id] = append(c.applied[id], rd.CommittedEntries...)
				if err := n.Advance(); err != nil {
					t.Fatal(err)
				}
			}
		case k < 85:
			_ = n.Propose(fmt.Appendf(nil, "%d-%d", seed, step))
		case k < 88:
			_ = n.ReadIndex(fmt.Appendf(nil, "r%d", step))
		case k < 90:
			_ = n.TransferLeadership(ids[rng.IntN(len(ids))])
		case k < 92:
			typ := []ConfChangeType{AddVoter, AddLearner, RemoveNode}[rng.IntN(3)]
			_ = n.ProposeConfChange(ConfChange{Changes: []ConfChangeSingle{{Type: typ, NodeID: ids[rng.IntN(len(ids))]}}})
		case k < 94:
			st := n.BasicStatus()
			if st.Applied > st.FirstIndex+2 && !n.HasReady() {
				if n.Compact(st.Applied-1, fmt.Appendf(nil, "snap%d", st.Applied-1)) == nil {
					c.stores[id].compact(n.Snapshot())
				}
			}
		case k < 95:
			c.crash(id)
		}
	}
	return h.Sum(nil), commits
}

// TestDeterminism runs long random schedules twice per seed and requires
// byte-identical output; different seeds must produce different output.
func TestDeterminism(t *testing.T) {
	steps := 20000
	if testing.Short() {
		steps = 3000
	}
	seen := map[string]uint64{}
	for seed := uint64(1); seed <= 6; seed++ {
		a, commits := traceRun(t, seed, steps)
		b, _ := traceRun(t, seed, steps)
		if string(a) != string(b) {
			t.Fatalf("seed %d: two runs produced different output", seed)
		}
		if commits == 0 {
			t.Fatalf("seed %d: nothing committed: the run exercises too little", seed)
		}
		if prev, dup := seen[string(a)]; dup {
			t.Fatalf("seeds %d and %d produced identical output", prev, seed)
		}
		seen[string(a)] = seed
	}
}
