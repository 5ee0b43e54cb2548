package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/client"
)

// BenchmarkForgePath measures the Forge path — HTTP request, Forge
// router and middleware, handler, Service.ApplyResult or Read — beside the
// binary client protocol, on one three-node cluster in this process, at 1
// and 100 concurrent clients. Writes: the users API's create (one
// replicated create-if-absent command per request) against a Put over the
// client protocol; reads: a linearizable GET of a user against a
// linearizable Get. Every request goes to the leader. Compare the ops/s
// of the two paths as a ratio within one run (the machine is shared).
//
//	go test -run '^$' -bench ForgePath -benchtime 2000x ./examples/forge-app/
func BenchmarkForgePath(b *testing.B) {
	cc, nodes := testCluster(b, "")
	lead := waitForLeader(b, nodes)
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}, Timeout: 10 * time.Second}
	kv, err := client.New(client.Config{Addrs: []string{cc.addr(cc.Nodes[lead.ID()-1].Client)}})
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	ctx := context.Background()
	value := strings.Repeat("x", 64)
	// A user to read on both paths.
	if code := post(b, httpc, lead.URL()+"/api/users", `{"id":"reader","name":"R","email":"r@example.com"}`); code != http.StatusCreated {
		b.Fatalf("create the user to read: %d", code)
	}
	if err := kv.Put(ctx, "bench-read", []byte(value)); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	ops := map[string]func(b *testing.B) error{
		"forge/create": func(b *testing.B) error {
			id := seq.Add(1)
			body := fmt.Sprintf(`{"id":"u%d","name":"%s","email":"u%d@example.com"}`, id, value, id)
			if code := post(b, httpc, lead.URL()+"/api/users", body); code != http.StatusCreated {
				return fmt.Errorf("create: %d", code)
			}
			return nil
		},
		"binary/put": func(*testing.B) error {
			return kv.Put(ctx, fmt.Sprintf("k%d", seq.Add(1)), []byte(value))
		},
		"forge/get": func(b *testing.B) error {
			resp, err := httpc.Get(lead.URL() + "/api/users/reader")
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("get: %d", resp.StatusCode)
			}
			return nil
		},
		"binary/get": func(*testing.B) error {
			_, found, err := kv.Get(ctx, "bench-read", client.Linearizable)
			if err == nil && !found {
				err = fmt.Errorf("bench-read not found")
			}
			return err
		},
	}
	for _, name := range []string{"forge/create", "binary/put", "forge/get", "binary/get"} {
		for _, clients := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/clients=%d", name, clients), func(b *testing.B) {
				op := ops[name]
				var next atomic.Int64
				var wg sync.WaitGroup
				var first atomic.Value
				b.ResetTimer()
				start := time.Now()
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							if err := op(b); err != nil {
								first.CompareAndSwap(nil, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				if err, _ := first.Load().(error); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
			})
		}
	}
}

// post sends a JSON body and returns the status code (0 on a transport
// error, which the caller reports).
func post(b *testing.B, c *http.Client, url, body string) int {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
