package client

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/forge-consensus/consensus/wire"
)

// fakeNode accepts connections on loopback and answers each request with
// answer(request); it returns its address.
func fakeNode(t *testing.T, answer func(wire.Request) wire.Response) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for {
					p, err := wire.ReadFrame(br, nil)
					if err != nil {
						return
					}
					var out []byte
					for len(p) > 0 {
						r, rest, err := wire.DecodeRequest(p)
						if err != nil && !errors.Is(err, wire.ErrInvalidRequest) {
							return
						}
						resp := answer(r)
						resp.ID = r.ID
						out = wire.AppendResponse(out, &resp)
						p = rest
					}
					if _, err := nc.Write(wire.AppendFrame(nil, out)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTokenAgainstOldNode: a node older than Auth answers it BadRequest
// (an unknown op); the client goes on without, and its calls work.
func TestTokenAgainstOldNode(t *testing.T) {
	addr := fakeNode(t, func(r wire.Request) wire.Response {
		if r.Op > wire.OpDelete { // what an old node's check says
			return wire.Response{Status: wire.StatusBadRequest, Value: []byte("wire: invalid request: unknown op")}
		}
		return wire.Response{Status: wire.StatusOK, Value: []byte("v")}
	})
	c, err := New(Config{Addrs: []string{addr}, Token: "t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, ok, err := c.Get(context.Background(), "k", Linearizable); err != nil || !ok || string(v) != "v" {
		t.Fatalf("Get: %q %v %v", v, ok, err)
	}
}

// TestWrongTokenIsFinal: a refused token fails the call at once with
// ErrUnauthorized (not retried until the time-out), a refused role with
// ErrForbidden; the token is sent as the Auth's value.
func TestWrongTokenIsFinal(t *testing.T) {
	for token, want := range map[string]error{"wrong": ErrUnauthorized, "viewer": ErrForbidden} {
		addr := fakeNode(t, func(r wire.Request) wire.Response {
			switch {
			case r.Op != wire.OpAuth:
				return wire.Response{Status: wire.StatusOK}
			case string(r.Value) == "viewer":
				return wire.Response{Status: wire.StatusForbidden, Value: []byte("no data access")}
			}
			return wire.Response{Status: wire.StatusUnauthorized, Value: []byte("invalid token")}
		})
		c, err := New(Config{Addrs: []string{addr}, Token: token, RequestTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.Put(ctx, "k", []byte("v"))
		cancel()
		c.Close()
		if !errors.Is(err, want) || errors.Is(err, ErrUnknownOutcome) {
			t.Errorf("token %q: Put: %v, want %v", token, err, want)
		}
	}
}
