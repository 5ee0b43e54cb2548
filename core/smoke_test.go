package core

import (
	"slices"
	"testing"
)

func TestSmokeElectAndReplicate(t *testing.T) {
	c := newCluster(t, []uint64{1, 2, 3}, nil)
	c.deliver()
	c.campaign(1)
	if c.leader() != 1 {
		t.Fatalf("leader = %d, want 1", c.leader())
	}
	for i := range 10 {
		if err := c.nodes[1].Propose([]byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.deliver()
	want := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, id := range c.ids {
		if got := c.data(id); !slices.Equal(got, want) {
			t.Fatalf("node %d applied %v, want %v", id, got, want)
		}
	}
}
