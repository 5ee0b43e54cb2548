package core

import "testing"

// TestLeaseReadStatus: BasicStatus counts lease reads answered on the
// lease, with the read index and term of the last one, and lease reads that
// fell back to a confirmation round (here: after a transfer began).
func TestLeaseReadStatus(t *testing.T) {
	c := steadyLeader(t, []uint64{1, 2, 3}, func(cfg *Config) { cfg.CheckQuorum = true })
	c.propose(1, "a")
	c.deliver()
	n1 := c.nodes[1]
	if err := n1.LeaseRead([]byte("r1")); err != nil {
		t.Fatal(err)
	}
	st := n1.BasicStatus()
	if st.LeaseReads != 1 || st.LeaseReadRounds != 0 || st.LeaseReadIndex != st.Commit || st.LeaseReadTerm != st.Term {
		t.Fatalf("after one lease read on a valid lease: %+v", st)
	}
	if err := n1.TransferLeadership(2); err != nil {
		t.Fatal(err)
	}
	c.drop = func(m Message) bool { return m.To == 1 }
	if err := n1.LeaseRead([]byte("r2")); err != nil {
		t.Fatal(err)
	}
	st = n1.BasicStatus()
	if st.LeaseReads != 1 || st.LeaseReadRounds != 1 {
		t.Fatalf("a lease read during a transfer: %d answered on the lease, %d rounds; want 1 and 1", st.LeaseReads, st.LeaseReadRounds)
	}
	if st := c.nodes[2].BasicStatus(); st.LeaseReads != 0 || st.LeaseReadRounds != 0 {
		t.Fatalf("a follower counts lease reads: %+v", st)
	}
}
