package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-consensus/consensus/client"
)

// driveWire runs the load over the binary client protocol: c.clients
// goroutines, each with one request outstanding, share one client.Client.
func driveWire(c config) (result, error) {
	cl, err := client.New(client.Config{Addrs: c.addrs, RequestTimeout: 10 * time.Second})
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	ctx := context.Background()
	value := make([]byte, c.size)
	for i := range value {
		value[i] = 'x'
	}
	keys := make([]string, c.keys)
	for k := range keys {
		keys[k] = "key" + strconv.Itoa(k)
	}
	readKeys := min(c.keys, 1000)
	if c.op == "read" { // something to read
		var next atomic.Int64
		var wg sync.WaitGroup
		var first error
		var once sync.Once
		for range min(64, readKeys) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := next.Add(1) - 1; k < int64(readKeys); k = next.Add(1) - 1 {
					if err := cl.Put(ctx, keys[k], value); err != nil {
						once.Do(func() { first = err })
						return
					}
				}
			}()
		}
		wg.Wait()
		if first != nil {
			return result{}, fmt.Errorf("write the keys to read: %w", first)
		}
	}
	lat := make([][]time.Duration, c.clients)
	var next, errs atomic.Int64
	var codesMu sync.Mutex
	codes := map[string]int{}
	fail := func(why string) {
		errs.Add(1)
		codesMu.Lock()
		codes[why]++
		codesMu.Unlock()
	}
	var wg sync.WaitGroup
	start := time.Now()
	for cn := range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, c.n/c.clients+1)
			defer func() { lat[cn] = mine }()
			for {
				i := next.Add(1) - 1
				if i >= int64(c.n) {
					return
				}
				t0 := time.Now()
				var err error
				if c.op == "write" {
					err = cl.Put(ctx, keys[int(i)%c.keys], value)
				} else {
					var found bool
					_, found, err = cl.Get(ctx, keys[int(i)%readKeys], client.Linearizable)
					if err == nil && !found {
						fail("not found")
						continue
					}
				}
				if err != nil {
					fail(cause(err))
					continue
				}
				mine = append(mine, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return summarize(c, "wire", time.Since(start), lat, errs.Load(), codes), nil
}

// cause names the kind of a client error.
func cause(err error) string {
	for _, k := range []error{client.ErrUnknownOutcome, client.ErrUnavailable, client.ErrRefused,
		client.ErrBadRequest, client.ErrClosed} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return err.Error()
}
