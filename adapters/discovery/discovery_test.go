package discovery_test

import (
	"context"
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/adapters/discovery"
)

func TestStaticSortsAndDeduplicates(t *testing.T) {
	s, err := discovery.NewStatic([]discovery.Candidate{
		{Name: "node-3", Host: "10.0.0.3", Port: 7000},
		{Name: "node-1", Host: "10.0.0.1", Port: 7000},
		{Name: "node-3", Host: "10.0.0.3", Port: 7000},
		{Name: "node-2", Host: "10.0.0.2", Port: 7000},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.String())
	}
	want := []string{"node-1@10.0.0.1:7000", "node-2@10.0.0.2:7000", "node-3@10.0.0.3:7000"}
	if !slices.Equal(names, want) {
		t.Fatalf("Lookup = %v, want %v", names, want)
	}
	if s.Kind() != "static" {
		t.Fatalf("Kind = %q", s.Kind())
	}
}

func TestStaticRefusesBadCandidates(t *testing.T) {
	for _, c := range []discovery.Candidate{{Name: "a", Port: 7000}, {Name: "b", Host: "h", Port: 0}, {Name: "c", Host: "h", Port: 70000}} {
		if _, err := discovery.NewStatic([]discovery.Candidate{c}); err == nil {
			t.Errorf("NewStatic(%+v) accepted", c)
		}
	}
}

func TestStaticLookupHonoursContext(t *testing.T) {
	s, err := discovery.NewStatic(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Lookup(ctx); err == nil {
		t.Fatal("Lookup with a cancelled context succeeded")
	}
}
