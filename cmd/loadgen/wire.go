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
	cl, err := client.New(client.Config{Addrs: c.addrs, RequestTimeout: 10 * time.Second, Token: c.token, TLS: c.tls})
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
	return runClients(c, "wire", func(_, i int) string {
		var err error
		if c.op == "write" {
			err = cl.Put(ctx, keys[i%c.keys], value)
		} else {
			var found bool
			_, found, err = cl.Get(ctx, keys[i%readKeys], client.Linearizable)
			if err == nil && !found {
				return "not found"
			}
		}
		if err != nil {
			return cause(err)
		}
		return ""
	}), nil
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
