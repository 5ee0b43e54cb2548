package core

import "testing"

// TestElectionJitterIndependentPerNode checks that nodes given the same
// seed draw unrelated timeout sequences: no node's sequence is equal to,
// or a shifted copy of, another's.
func TestElectionJitterIndependentPerNode(t *testing.T) {
	const n = 64
	for _, seed := range []uint64{0, 1, 42, 2475162076878636095, ^uint64(0)} {
		seqs := map[uint64][]uint64{}
		for id := uint64(1); id <= 7; id++ {
			var g splitMix
			g.seed(seed, id)
			for range n + 2 {
				seqs[id] = append(seqs[id], g.intn(3))
			}
		}
		for a := uint64(1); a <= 7; a++ {
			for b := uint64(1); b <= 7; b++ {
				if a == b {
					continue
				}
				for shift := 0; shift <= 2; shift++ {
					same := 0
					for i := range n {
						if seqs[a][i] == seqs[b][i+shift] {
							same++
						}
					}
					// Independent draws from 3 values agree about n/3 times.
					if same > n*2/3 {
						t.Errorf("seed %d: nodes %d and %d (shift %d) agree on %d of %d draws", seed, a, b, shift, same, n)
					}
				}
			}
		}
	}
}

// TestElectionJitterReproducible checks that the same seed and ID give the
// same timeouts, and that the timeouts span [ElectionTick, 2*ElectionTick).
func TestElectionJitterReproducible(t *testing.T) {
	draw := func(seed, id uint64) []int {
		r, err := newRaft(Config{ID: id, ElectionTick: 10, Seed: seed}, Persisted{})
		if err != nil {
			t.Fatal(err)
		}
		var out []int
		for range 200 {
			r.becomeFollower(r.term, None)
			out = append(out, r.randomizedElectionTimeout)
		}
		return out
	}
	a, b := draw(7, 1), draw(7, 1)
	seen := map[int]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d: %d then %d for the same seed and ID", i, a[i], b[i])
		}
		if a[i] < 10 || a[i] >= 20 {
			t.Fatalf("timeout %d outside [10, 20)", a[i])
		}
		seen[a[i]] = true
	}
	if len(seen) != 10 {
		t.Fatalf("200 draws hit %d of the 10 possible timeouts", len(seen))
	}
	if c := draw(8, 1); equalInts(a, c) {
		t.Fatal("seeds 7 and 8 drew the same timeouts")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
