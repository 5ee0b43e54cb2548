// Package bootstrap decides, from what discovered candidates answer,
// whether a node that has no Raft state forms a new cluster with them,
// joins an existing one, or waits: the bootstrap_expect protocol.
//
// It is pure: no clock, no I/O, no goroutines. A host asks every
// candidate (Ask), collects their answers (Hello) and passes them to
// Decide; it answers other nodes' asks with Answer; and it persists
// Promise before it sends anything after a call that changed it.
//
// # Exactly one cluster
//
// A node bootstraps a cluster with voters S only after every node of S
// has promised S, and a node promises at most one set, ever (the promise
// is persisted). Two different sets that share a node can therefore not
// both be bootstrapped, whatever order nodes start in, whatever their
// discovery answers lag behind, reorder or lose. A node proposes a set
// only when exactly bootstrap_expect nodes without Raft state answered,
// itself among them; with exactly that many nodes started, every
// complete answer is the same set, so they all propose it and all
// bootstrap it. Two sets of bootstrap_expect nodes each always share a
// node while fewer than twice bootstrap_expect nodes exist, so the
// guarantee holds as long as at most 2*bootstrap_expect-1 nodes are
// started before a cluster exists (9 for bootstrap_expect 5). Start
// twice as many at once, with answers lost, and two disjoint sets can
// each complete: the protocol cannot tell that from two deployments
// sharing a discovery name.
//
// # Liveness, and what it gives up
//
// With more than bootstrap_expect nodes started before a cluster
// exists, nodes can promise different overlapping sets, none of which
// completes: they wait, and say why (Decision.Reason), rather than risk
// two clusters. A node that promised a set gives its promise up only
// when a node of that set is a member that never promised it (so the set
// can never complete), and then joins that member's cluster. Once a
// cluster exists, a node without state joins it.
package bootstrap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Ask is what a node sends a candidate: who asks, for which cluster,
// and the voter set it asks the candidate to promise (nil: none yet).
type Ask struct {
	From      string
	ClusterID string
	Propose   []string
}

// Hello is a node's answer to an Ask.
type Hello struct {
	// Name is the answering node's name.
	Name string
	// ClusterID is its configured cluster_id; answers of another
	// cluster's nodes are ignored.
	ClusterID string
	// Member says it has Raft state: it bootstrapped or joined a cluster.
	Member bool
	// Promise is the voter set it promised (and, once a member that
	// bootstrapped, formed the cluster with), sorted; nil: none.
	Promise []string
}

// Kind is what a Decision tells the host to do.
type Kind int

// The decisions.
const (
	// Wait: look up and ask again after the refresh interval.
	Wait Kind = iota
	// Propose: this node promised Voters itself; ask every one of them
	// to promise it too (now, not after the refresh interval).
	Propose
	// Bootstrap: start Raft with Voters as the initial voters.
	Bootstrap
	// Join: ask a member of the existing cluster (Via, names) to add
	// this node (as a learner, then a voter once caught up).
	Join
)

func (k Kind) String() string {
	switch k {
	case Wait:
		return "wait"
	case Propose:
		return "propose"
	case Bootstrap:
		return "bootstrap"
	case Join:
		return "join"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Decision is the result of Decide.
type Decision struct {
	Kind   Kind
	Voters []string // Propose, Bootstrap: the voter set, sorted
	Via    []string // Join: members that answered, sorted
	// Reason says why, for logs and health ("found 2 of 3 candidates").
	Reason string
}

// Config configures a Node.
type Config struct {
	// Name is this node's name (node_id).
	Name string
	// ClusterID is cluster_id.
	ClusterID string
	// Expect is bootstrap_expect: the number of voters a new cluster
	// forms with. At least 1.
	Expect int
	// Promise is the promise persisted by an earlier run (nil: none).
	Promise []string
	// Member says the node already has Raft state.
	Member bool
}

// Node is one node's side of the protocol. It is not safe for
// concurrent use: the host serializes Answer and Decide.
type Node struct {
	cfg     Config
	promise []string
}

// New returns a Node, or an error naming what is wrong with cfg.
func New(cfg Config) (*Node, error) {
	if cfg.Name == "" {
		return nil, errors.New("bootstrap: no node name")
	}
	if cfg.Expect < 1 {
		return nil, fmt.Errorf("bootstrap: discovery.bootstrap_expect: %d, want at least 1", cfg.Expect)
	}
	if cfg.Promise != nil {
		if err := validSet(cfg.Promise, cfg.Expect, cfg.Name); err != nil {
			return nil, fmt.Errorf("bootstrap: the persisted promise: %w", err)
		}
	}
	return &Node{cfg: cfg, promise: slices.Clone(cfg.Promise)}, nil
}

// validSet checks that s is a voter set a node named self may promise:
// expect distinct names, sorted, self among them.
func validSet(s []string, expect int, self string) error {
	if len(s) != expect {
		return fmt.Errorf("%d names, want bootstrap_expect (%d)", len(s), expect)
	}
	for i, n := range s {
		if n == "" {
			return errors.New("an empty name")
		}
		if i > 0 && s[i-1] >= n {
			return fmt.Errorf("not sorted and distinct at %q", n)
		}
	}
	if _, ok := slices.BinarySearch(s, self); !ok {
		return fmt.Errorf("%s is not among %s", self, strings.Join(s, ","))
	}
	return nil
}

// Promise returns the set this node promised (nil: none). The host
// persists it whenever Answer or Decide changed it, before it sends
// the answer or any ask.
func (n *Node) Promise() []string { return slices.Clone(n.promise) }

// SetMember records that the node now has Raft state (it bootstrapped
// or joined): it answers as a member from then on.
func (n *Node) SetMember() { n.cfg.Member = true }

// Hello returns this node's own answer.
func (n *Node) Hello() Hello {
	return Hello{Name: n.cfg.Name, ClusterID: n.cfg.ClusterID, Member: n.cfg.Member, Promise: slices.Clone(n.promise)}
}

// Ask returns what this node sends candidates now: its promise, if it
// has one, for them to promise too.
func (n *Node) Ask() Ask {
	return Ask{From: n.cfg.Name, ClusterID: n.cfg.ClusterID, Propose: slices.Clone(n.promise)}
}

// Answer handles an Ask from another node. It promises the proposed
// set if this node has promised nothing, has no Raft state, and the set
// is valid for it (bootstrap_expect names, this node among them); the
// return value says whether the promise changed (persist it first).
func (n *Node) Answer(a Ask) (h Hello, changed bool) {
	if a.ClusterID == n.cfg.ClusterID && a.Propose != nil && n.promise == nil && !n.cfg.Member &&
		validSet(a.Propose, n.cfg.Expect, n.cfg.Name) == nil {
		n.promise = slices.Clone(a.Propose)
		changed = true
	}
	return n.Hello(), changed
}

// Decide takes the answers of one round of asks (from the candidates
// that answered; this node's own is added) and says what to do. The
// decision's Kind is Propose only when this node made its own promise
// in this call (persist it).
func (n *Node) Decide(answers []Hello) Decision {
	if n.cfg.Member {
		return Decision{Kind: Wait, Reason: "already a member"}
	}
	byName := map[string]Hello{n.cfg.Name: n.Hello()}
	var foreign []string
	for _, h := range answers {
		if h.Name == "" {
			continue
		}
		if h.ClusterID != n.cfg.ClusterID {
			foreign = append(foreign, h.Name)
			continue
		}
		if h.Name == n.cfg.Name {
			continue // ourselves, through discovery: our own state is the truth
		}
		byName[h.Name] = h
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	slices.Sort(names)
	var members []string
	for _, name := range names {
		if byName[name].Member {
			members = append(members, name)
		}
	}

	if n.promise != nil {
		var missing []string
		for _, v := range n.promise {
			if h, ok := byName[v]; !ok || !slices.Equal(h.Promise, n.promise) {
				missing = append(missing, v)
			}
		}
		if len(missing) == 0 {
			return Decision{Kind: Bootstrap, Voters: slices.Clone(n.promise),
				Reason: "every voter of " + strings.Join(n.promise, ",") + " promised it"}
		}
		// Our set can never complete if a node of it is a member that did
		// not promise it: members never promise (Answer), and a member's
		// promise never changes. Then, and only then, give ours up and
		// join. (The first node to give up a set does so because of such
		// a member, which never promised the set; so a set given up never
		// completes, and giving it up cannot let two clusters form.)
		for _, v := range n.promise {
			if h, ok := byName[v]; ok && h.Member && !slices.Equal(h.Promise, n.promise) {
				given := strings.Join(n.promise, ",")
				n.promise = nil
				return Decision{Kind: Join, Via: members, Reason: v + ", of the set " + given +
					" promised here, is a member of a cluster formed otherwise; giving the promise up"}
			}
		}
		return Decision{Kind: Wait, Reason: "promised " + strings.Join(n.promise, ",") +
			"; waiting for the promise of " + strings.Join(missing, ",")}
	}
	if len(members) > 0 {
		return Decision{Kind: Join, Via: members, Reason: "a cluster exists"}
	}
	why := ""
	if len(foreign) > 0 {
		slices.Sort(foreign)
		why = " (ignored, of another cluster_id: " + strings.Join(foreign, ",") + ")"
	}
	switch {
	case len(names) < n.cfg.Expect:
		return Decision{Kind: Wait, Reason: fmt.Sprintf("found %d of %d candidates: %s%s", len(names), n.cfg.Expect, strings.Join(names, ","), why)}
	case len(names) > n.cfg.Expect:
		return Decision{Kind: Wait, Reason: fmt.Sprintf("found %d candidates without a cluster, more than bootstrap_expect (%d): %s; "+
			"waiting for a cluster to join%s", len(names), n.cfg.Expect, strings.Join(names, ","), why)}
	}
	n.promise = names
	return Decision{Kind: Propose, Voters: slices.Clone(names), Reason: "found " + strings.Join(names, ",") + "; asking each to promise it"}
}

// overlap reports whether sorted sets a and b share a name.
func overlap(a, b []string) bool {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			return true
		}
	}
	return false
}
