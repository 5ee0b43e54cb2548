//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the command when runLoad
// starts the replicas (it runs os.Executable with -replica).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-replica" {
		main()
		return
	}
	os.Exit(m.Run())
}

// freeBase finds three consecutive free loopback ports.
func freeBase(t *testing.T) int {
	t.Helper()
	for base := 21000; base < 60000; base += 97 {
		ok := true
		var ls []net.Listener
		for i := 0; i < 3 && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			_ = l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no three consecutive free ports")
	return 0
}

func TestCommitFloorRuns(t *testing.T) {
	for _, c := range []struct{ clients, conns int }{{1, 8}, {20, 3}} {
		if err := runLoad(freeBase(t), t.TempDir(), c.clients, c.conns, 300, 50, 128); err != nil {
			t.Fatalf("clients=%d conns=%d: %v", c.clients, c.conns, err)
		}
	}
}
