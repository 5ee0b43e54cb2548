package sim

import (
	"fmt"
	"strings"

	"github.com/forge-consensus/consensus/core"
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
