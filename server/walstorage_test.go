package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/client"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestClusterOnWALStorage runs a cluster with storage.type wal and checks
// that writes through the client protocol are applied and read back.
func TestClusterOnWALStorage(t *testing.T) {
	srvs, _ := servertest.StartCluster(t, 3, "wal", "tcp")
	var addrs []string
	for _, s := range srvs {
		addrs = append(addrs, s.ClientAddr())
	}
	cl, err := client.New(client.Config{Addrs: addrs, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i := range 50 {
		if err := cl.Put(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	v, found, err := cl.Get(ctx, "k49", client.Linearizable)
	if err != nil || !found || string(v) != "49" {
		t.Fatalf("get k49: %q, %v, %v", v, found, err)
	}
}
