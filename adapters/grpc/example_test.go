package grpc_test

import (
	"fmt"

	"github.com/forge-consensus/consensus/adapters/grpc"
	"github.com/forge-consensus/consensus/adapters/transport"
	"github.com/forge-consensus/consensus/core"
)

// Two transports on loopback: node 1 sends node 2 a heartbeat. (Plaintext
// for brevity: production uses Options.TLS with MutualTLS.)
func ExampleNew() {
	got := make(chan core.Message, 1)
	n2, err := grpc.New(transport.Config{
		ID: 2, ListenAddr: "127.0.0.1:0",
		Deliver: func(m core.Message) { got <- m },
	}, grpc.Options{Compression: "gzip"})
	if err != nil {
		panic(err)
	}
	defer n2.Close()
	n1, err := grpc.New(transport.Config{
		ID: 1, ListenAddr: "127.0.0.1:0",
		Deliver: func(core.Message) {},
	}, grpc.Options{Compression: "gzip"})
	if err != nil {
		panic(err)
	}
	defer n1.Close()

	n1.SetPeer(2, n2.Addr())
	n1.Send([]core.Message{{Type: core.MsgHeartbeat, From: 1, To: 2, Term: 4, Commit: 17}})
	m := <-got
	fmt.Println(m.Type, "from", m.From, "term", m.Term, "commit", m.Commit)
	// Output: MsgHeartbeat from 1 term 4 commit 17
}
