package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func FuzzHandler(f *testing.F) {
	f.Add("POST", "/consensus/add-node", `{"node_id":"node-3","address":"h","port":80}`, "admin-tok", uint8(0))
	f.Add("POST", "/consensus/remove-node", `{"node_id":3}`, "op-tok", uint8(1))
	f.Add("POST", "/consensus/transfer-leadership", `{"target_node_id":2}`, "admin-tok", uint8(7))
	f.Add("POST", "/consensus/snapshot", ``, "", uint8(3))
	f.Add("GET", "/consensus/leader", ``, "view-tok", uint8(0))
	f.Add("GET", "/consensus/metrics", ``, "view-tok", uint8(0))
	f.Add("DELETE", "/consensus/../status", `[`, "x", uint8(2))

	errs := []error{nil, ErrUnknownNode, ErrConflict, ErrNoQuorum, ErrInvalidRequest, context.DeadlineExceeded,
		errors.New("boom"), &NotLeaderError{LeaderID: 2, LeaderAddress: "http://127.0.0.1:7801"}, &NotLeaderError{}}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]int{"m": 1}) })

	f.Fuzz(func(t *testing.T, method, path, body, token string, sel uint8) {
		fc := healthyFake()
		fc.err = errs[int(sel)%len(errs)]
		if sel&0x10 != 0 {
			fc.health = HealthStatus{Status: "degraded"}
			fc.info = ClusterInfo{}
		}
		cfg := Config{Tokens: testTokens, RedirectWrites: sel&0x20 != 0, OpenMetrics: sel&0x40 != 0}
		if sel&0x80 != 0 {
			cfg = Config{AllowUnauthenticated: sel&0x20 != 0, Metrics: metrics}
		}
		h, err := Handler(cfg, fc)
		if err != nil {
			t.Fatal(err)
		}
		req := (&http.Request{
			Method: method,
			URL:    &url.URL{Path: path},
			Header: http.Header{},
			Body:   io.NopCloser(strings.NewReader(body)),
		}).WithContext(context.Background())
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("body %q is not a JSON object: %v", rec.Body, err)
		}
		if rec.Code >= 400 && m["error"] == nil {
			t.Fatalf("error status %d without \"error\": %s", rec.Code, rec.Body)
		}
		switch rec.Code {
		case 400, 401, 403, 405, 413: // refused before reaching the cluster, except a 400 the fake itself returned
			if errors.Is(fc.err, ErrInvalidRequest) && rec.Code == 400 {
				break
			}
			if calls := fc.Calls(); len(calls) != 0 {
				t.Fatalf("status %d but the cluster was called: %v", rec.Code, calls)
			}
		}
	})
}
