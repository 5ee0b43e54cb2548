package kv

import (
	"encoding/hex"
	"testing"
)

// TestGoldenEncodings pins the encodings and the state hash: replicas
// running different builds must agree byte for byte, so any change here is
// a format change that needs a new version.
func TestGoldenEncodings(t *testing.T) {
	s := New(Config{})
	mustApply(t, s, 1, cmdSet("b", "2", 1, 1))
	mustApply(t, s, 2, cmdSet("a", "1", 0, 0))
	cas := EncodeCommand(Command{Op: OpCAS, Key: "b", Expected: []byte("2"), Value: []byte("3"), ClientID: 2, Seq: 5})
	res := mustApply(t, s, 3, cas)

	check := func(what string, got []byte, want string) {
		t.Helper()
		if h := hex.EncodeToString(got); h != want {
			t.Errorf("%s:\n got %s\nwant %s", what, h, want)
		}
	}
	check("command", cas, "01040205016201330132")
	check("result", EncodeResult(res), "0100030132")
	check("snapshot", mustSnapshot(t, s), "01030201610131016201330201010100020002050300030132bc4d5dec")
	if got := s.Hash(); got != 0x9e5050960d964c33 {
		t.Errorf("hash %#x, want 0x9e5050960d964c33", got)
	}
}
