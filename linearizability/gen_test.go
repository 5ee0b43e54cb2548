package linearizability

import (
	"fmt"
	"math/rand/v2"
	"sort"
)

// genConfig shapes a generated history.
type genConfig struct {
	clients, keys, ops int
	openFrac           float64 // fraction of operations whose outcome is unknown
	maxLatency         int64
	// Operation mix, out of 100: the rest are Gets.
	putPct, casPct, delPct int
}

func realistic() genConfig {
	return genConfig{clients: 4, keys: 8, ops: 2000, openFrac: 0.03, maxLatency: 5000,
		putPct: 30, casPct: 10, delPct: 10}
}

// genHistory simulates clients of a linearizable store: every operation with
// a known outcome takes effect at a random point of its interval; an open
// one takes effect at a random time after its call (possibly after the
// client gave up) or, half of the time, never. The history is therefore
// linearizable.
func genHistory(rng *rand.Rand, cfg genConfig) History {
	type effect struct {
		id int
		at int64
	}
	rec := NewRecorder()
	next := make([]int64, cfg.clients)
	written := make([][]string, cfg.keys) // values written per key, in call order
	var effects []effect
	open := make(map[int]bool)
	rets := make(map[int]int64)
	ins := make(map[int]Input)
	for n := 0; n < cfg.ops; n++ {
		c := 0
		for i := range next {
			if next[i] < next[c] {
				c = i
			}
		}
		call := next[c]
		k := rng.IntN(cfg.keys)
		in := Input{Key: fmt.Sprintf("k%d", k)}
		switch r := rng.IntN(100); {
		case r < cfg.putPct:
			in.Kind = Put
			in.Value = fmt.Sprintf("c%d-%d", c, n)
			written[k] = append(written[k], in.Value)
		case r < cfg.putPct+cfg.casPct:
			in.Kind = CAS
			in.Value = fmt.Sprintf("c%d-%d", c, n)
			if w := written[k]; len(w) > 0 {
				if rng.IntN(10) < 7 {
					in.Expected = w[len(w)-1]
				} else {
					in.Expected = w[rng.IntN(len(w))]
				}
			} else {
				in.Expected = "none"
			}
			written[k] = append(written[k], in.Value)
		case r < cfg.putPct+cfg.casPct+cfg.delPct:
			in.Kind = Delete
		default:
			in.Kind = Get
		}
		id := rec.Invoke(c, in, call)
		ins[id] = in
		lat := 1 + rng.Int64N(cfg.maxLatency)
		if rng.Float64() < cfg.openFrac {
			open[id] = true
			if rng.IntN(2) == 0 {
				effects = append(effects, effect{id, call + rng.Int64N(4*cfg.maxLatency)})
			}
			next[c] = call + 3*cfg.maxLatency
		} else {
			ret := call + lat
			rets[id] = ret
			effects = append(effects, effect{id, call + rng.Int64N(lat+1)})
			next[c] = ret + rng.Int64N(cfg.maxLatency/4+1)
		}
	}
	sort.SliceStable(effects, func(i, j int) bool { return effects[i].at < effects[j].at })
	store := make(map[string]string)
	for _, e := range effects {
		in := ins[e.id]
		cur, present := store[in.Key]
		var out Output
		switch in.Kind {
		case Get:
			out = Output{Value: cur, Found: present}
		case Put:
			store[in.Key] = in.Value
		case Delete:
			out.Found = present
			delete(store, in.Key)
		case CAS:
			out.Found, out.Value = present, cur
			if present && cur == in.Expected {
				out.OK = true
				store[in.Key] = in.Value
			}
		}
		if !open[e.id] {
			rec.Return(e.id, out, rets[e.id])
		}
	}
	for id := range open {
		rec.Fail(id)
	}
	return rec.History()
}

// staleRead makes a random read return the value of a Put that another Put
// overwrote before the read was invoked — illegal, since generated values
// are unique. It reports false if the history has no such read.
func staleRead(rng *rand.Rand, h History) bool {
	for _, gi := range rng.Perm(len(h.Ops)) {
		g := &h.Ops[gi]
		if g.Input.Kind != Get || g.Open {
			continue
		}
		for _, p := range h.Ops {
			if p.Input.Kind != Put || p.Open || p.Input.Key != g.Input.Key || p.Return >= g.Call {
				continue
			}
			for _, q := range h.Ops {
				if q.Input.Kind == Put && !q.Open && q.Input.Key == g.Input.Key && q.Call > p.Return && q.Return < g.Call {
					g.Output = Output{Found: true, Value: p.Input.Value}
					return true
				}
			}
		}
	}
	return false
}

// phantomRead makes a random read return a value nobody wrote. It reports
// false if the history has no read.
func phantomRead(rng *rand.Rand, h History) bool {
	for _, gi := range rng.Perm(len(h.Ops)) {
		if g := &h.Ops[gi]; g.Input.Kind == Get && !g.Open {
			g.Output = Output{Found: true, Value: "never-written"}
			return true
		}
	}
	return false
}
