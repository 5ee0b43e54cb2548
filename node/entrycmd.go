package node

import "github.com/forge-consensus/consensus/core"

// EntryCommand returns the command a committed normal entry hands to
// StateMachine.Apply (the entry's data without the proposal header the
// node adds), and false for an entry that never reaches the state machine:
// a new leader's empty entry, a verification record, or an entry that is
// not a normal one. Tools that replay a stored log offline use it to reach
// the state a node would.
func EntryCommand(e core.Entry) ([]byte, bool) {
	if e.Type != core.EntryNormal || len(e.Data) == 0 || isRecord(e.Data) {
		return nil, false
	}
	if _, _, cmd, ok := splitHeader(e.Data); ok {
		return cmd, true
	}
	return e.Data, true
}
