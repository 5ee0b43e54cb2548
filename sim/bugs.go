package sim

import (
	"fmt"
	"strings"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
)

// checkBugs refuses planted bugs in builds that cannot plant them.
func checkBugs(bugs uint64) error {
	if bugs == 0 {
		return nil
	}
	if !core.BugsEnabled {
		return fmt.Errorf("sim: planted bugs %#x need a build with -tags simbugs", bugs)
	}
	if bugs&^uint64(core.AllBugs) != 0 {
		return fmt.Errorf("sim: unknown planted bugs %#x", bugs)
	}
	return nil
}

// ParseBugs parses a comma-separated list of bug names (see core.Bug).
func ParseBugs(s string) (uint64, error) {
	var bugs uint64
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		found := false
		for b := core.Bug(1); b <= core.AllBugs; b <<= 1 {
			if b.String() == name {
				bugs |= uint64(b)
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("sim: unknown bug %q", name)
		}
	}
	return bugs, nil
}

// divergentFrom is the first index at which core.BugDivergentApply
// misapplies a write.
const divergentFrom = 64

// divergentStore is the state machine of core.BugDivergentApply: it writes
// the first Set it applies at or after divergentFrom under another key
// (its own key with a quote appended, which no client uses), so that its
// replica's state silently differs from the others' from then on.
type divergentStore struct {
	*kv.Store
	done bool
}

// Apply applies cmd, or misapplies it once.
func (s *divergentStore) Apply(index uint64, cmd []byte) any {
	if !s.done && index >= divergentFrom {
		if c, err := kv.DecodeCommand(cmd); err == nil && c.Op == kv.OpSet {
			s.done = true
			c.Key += "'"
			return s.Store.Apply(index, kv.EncodeCommand(c))
		}
	}
	return s.Store.Apply(index, cmd)
}
