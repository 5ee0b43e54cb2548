package core

// splitMix is a small deterministic generator (SplitMix64) for election
// jitter. The core never uses global randomness.
type splitMix struct{ state uint64 }

func (g *splitMix) seed(s uint64) { g.state = s }

func (g *splitMix) next() uint64 {
	g.state += 0x9e3779b97f4a7c15
	z := g.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a value in [0, n); n must be positive.
func (g *splitMix) intn(n uint64) uint64 { return g.next() % n }
