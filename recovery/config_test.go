package recovery

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/forge-consensus/consensus/nodename"
)

// TestRewriteConfigNames: the node's new ID is written as its name when it
// has one (a hashed name cannot be written as its number: that number is
// not a valid name), as a number otherwise; other keys stay.
func TestRewriteConfigNames(t *testing.T) {
	raw := []byte("node_id: node-2\nbind_port: 7002\npeers:\n  - {id: node-1, address: a, port: 1}\n  - {id: node-2, address: b, port: 2}\n")
	zone, err := nodename.ID("us-east-1z")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   uint64
		name string
		want string
	}{{zone, "us-east-1z", "us-east-1z"}, {9, "", "9"}, {9, "node-9", "node-9"}} {
		out, err := rewriteConfig(raw, 2, tc.id, tc.name, "", func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			NodeID   string `yaml:"node_id"`
			BindPort int    `yaml:"bind_port"`
			Join     bool   `yaml:"join"`
			Peers    []struct {
				ID string `yaml:"id"`
			} `yaml:"peers"`
		}
		if err := yaml.Unmarshal(out, &c); err != nil {
			t.Fatal(err)
		}
		if c.NodeID != tc.want || c.Peers[1].ID != tc.want || c.Peers[0].ID != "node-1" || c.BindPort != 7002 || !c.Join {
			t.Fatalf("%s: rewritten to %+v:\n%s", tc.want, c, out)
		}
		if id, err := nodename.ID(c.NodeID); err != nil || id != tc.id || strings.Contains(string(out), "node_id: \"") && tc.name == "" {
			t.Fatalf("%s: node_id %q stands for %d, %v", tc.want, c.NodeID, id, err)
		}
	}
}
