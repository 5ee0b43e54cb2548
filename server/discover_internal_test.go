package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/forge-consensus/consensus/adapters/discovery"
	"github.com/forge-consensus/consensus/adapters/discovery/bootstrap"
)

// FuzzHello: whatever body an ask carries, the hello handler answers 200
// or 400 without panicking, and an ask it refuses changes no promise.
func FuzzHello(f *testing.F) {
	f.Add([]byte(`{"From":"n2","ClusterID":"c","Propose":["n1","n2","n3"]}`))
	f.Add([]byte(`{"From":"n2","ClusterID":"c","Propose":null}`))
	f.Add([]byte(`{"From":"","ClusterID":"c"}`))
	f.Add([]byte(`{"From":"n2","ClusterID":"c","Propose":["n3","n1","n2"]}`))
	f.Add([]byte(`{"From":"n2","Extra":1}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := bootstrap.New(bootstrap.Config{Name: "n1", ClusterID: "c", Expect: 3})
		if err != nil {
			t.Fatal(err)
		}
		d := &discovered{cluster: "c", self: discovery.Candidate{Name: "n1"}, boot: b,
			member: func() bool { return false }, log: slog.New(slog.DiscardHandler)}
		h := d.serveHello("c", []TokenConfig{{Token: "t0k", Role: "admin"}})
		req := httptest.NewRequest(http.MethodPost, helloPath, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer t0k")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest:
			if d.promised != nil || b.Promise() != nil {
				t.Fatalf("a refused ask (%s) changed the promise to %v", rec.Body, b.Promise())
			}
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if !slices.Equal(d.promised, b.Promise()) {
			t.Fatalf("promise %v in the protocol, %v kept", b.Promise(), d.promised)
		}
	})
}
