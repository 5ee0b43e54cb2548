package sim

import "math"

// Rand is a small, fast, seeded generator (SplitMix64). Each subsystem of a
// run draws from its own Rand split from the root seed, so that switching
// one fault class off does not change the choices of the others.
type Rand struct{ s uint64 }

// NewRand returns the generator for stream name under root seed.
func NewRand(root uint64, name string) *Rand {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return &Rand{s: mix64(root ^ mix64(h))}
}

// Split returns an independent generator named by name, derived from r's
// current state (r itself does not move).
func (r *Rand) Split(name string) *Rand { return NewRand(r.s, name) }

// Uint64 returns 64 random bits.
func (r *Rand) Uint64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// Intn returns an int in [0, n); n must be > 0.
func (r *Rand) Intn(n int) int { return int(r.Uint64() % uint64(n)) }

// Int63n returns an int64 in [0, n); n must be > 0.
func (r *Rand) Int63n(n int64) int64 { return int64(r.Uint64() % uint64(n)) }

// Range returns an int64 in [lo, hi]; hi < lo yields lo.
func (r *Rand) Range(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + r.Int63n(hi-lo+1)
}

// perm returns a random permutation of [0, n).
func (r *Rand) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		j := r.Intn(i + 1)
		p[i], p[j] = p[j], i
	}
	return p
}

// Float64 returns a float64 in [0, 1).
func (r *Rand) Float64() float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// Chance returns true with probability p.
func (r *Rand) Chance(p float64) bool { return p > 0 && r.Float64() < p }

// Exp returns an exponentially distributed int64 with the given mean.
func (r *Rand) Exp(mean int64) int64 {
	if mean <= 0 {
		return 0
	}
	return int64(-math.Log(1-r.Float64()) * float64(mean))
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
