package node_test

import (
	"fmt"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
)

// network is an in-memory transport: a queue that the example drains.
type network struct{ queue []core.Message }

func (n *network) Send(msgs []core.Message) { n.queue = append(n.queue, msgs...) }

// Three nodes replicating the key-value store, driven step by step: write
// through the leader, read linearizably on a follower.
func Example() {
	net := &network{}
	nodes := map[uint64]*node.Node{}
	for _, id := range []uint64{1, 2, 3} {
		n, err := node.New(node.Config{
			Core:         core.Config{ID: id, Voters: []uint64{1, 2, 3}, Seed: id, PreVote: true, CheckQuorum: true},
			Storage:      node.NewMemoryStorage(),
			Transport:    net,
			StateMachine: kv.New(kv.Config{}),
		})
		if err != nil {
			panic(err)
		}
		nodes[id] = n
	}
	deliver := func() {
		for len(net.queue) > 0 {
			m := net.queue[0]
			net.queue = net.queue[1:]
			_ = nodes[m.To].Receive(m)
		}
	}

	_ = nodes[1].Campaign()
	deliver()
	put := nodes[1].Propose(kv.EncodeCommand(kv.Command{Op: kv.OpSet, Key: "greeting", Value: []byte("hello"), ClientID: 7, Seq: 1}))
	deliver()
	_, err := put.Result()
	fmt.Println("put:", put.Resolved(), err)

	get := nodes[2].Read(node.ReadLinearizable, kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: "greeting"}))
	deliver()
	res, err := get.Result()
	fmt.Printf("get on a follower: %s %v\n", res.(kv.Result).Value, err)
	// Output:
	// put: true <nil>
	// get on a follower: hello <nil>
}
