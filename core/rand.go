package core

// splitMix is a small deterministic generator (SplitMix64) for election
// jitter. The core never uses global randomness.
type splitMix struct{ state uint64 }

// seed starts the generator for one node. Seed and node ID are both run
// through the mixer, so nodes sharing a seed draw unrelated sequences (a
// plain xor of the two would leave sequences that are shifted copies of
// each other, and so timeouts that tie round after round).
func (g *splitMix) seed(seed, id uint64) { g.state = mix64(seed + mix64(id)) }

func (g *splitMix) next() uint64 {
	g.state += 0x9e3779b97f4a7c15
	return mix64(g.state)
}

// mix64 is SplitMix64's finalizer: a bijection that scrambles every bit.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a value in [0, n); n must be positive.
func (g *splitMix) intn(n uint64) uint64 { return g.next() % n }
