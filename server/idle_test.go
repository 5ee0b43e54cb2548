package server_test

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/forge-consensus/consensus/internal/logtest"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestIdleNodeWarns: a node with no peers, no state and join off is in no
// cluster and never will be; it says so at WARN instead of only "node
// ready". A node that lists itself as a peer (a one-node cluster) does not.
func TestIdleNodeWarns(t *testing.T) {
	const warning = "this node is not a member of any cluster"
	for _, tc := range []struct {
		name  string
		peers bool
		want  int
	}{{"no peers", false, 1}, {"itself as a peer", true, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ports := servertest.FreePorts(t, 3)
			peers := ""
			if tc.peers {
				peers = fmt.Sprintf("peers:\n  - {id: 1, address: 127.0.0.1, port: %d}\n", ports[0])
			}
			cfg, err := server.ParseConfig(fmt.Appendf(nil, `node_id: 1
bind_port: %d
%sstorage: {type: memory}
api: {addr: "127.0.0.1:%d", client_addr: "127.0.0.1:%d"}
`, ports[0], peers, ports[1], ports[2]), os.Getenv)
			if err != nil {
				t.Fatal(err)
			}
			logs := &logtest.Counter{}
			s, err := server.New(cfg, slog.New(logs))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := logs.CountPrefix(slog.LevelWarn, warning); got != tc.want {
				t.Fatalf("%d warnings %q, want %d", got, warning, tc.want)
			}
		})
	}
}
