package consultest_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/forge-consensus/consensus/adapters/discovery/consul/consultest"
)

// TestStandInIsStrict checks the stand-in refuses what Consul refuses,
// so the tests using it notice a client that sends it.
func TestStandInIsStrict(t *testing.T) {
	a := consultest.NewAgent(t, "")
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"PUT", "/v1/agent/service/register", `{"Name":"x","Check":{"TTL":"10s"},"Bogus":1}`, 400},
		{"PUT", "/v1/agent/service/register", `{"ID":"x","Check":{"TTL":"10s"}}`, 400},
		{"PUT", "/v1/agent/service/register", `{"Name":"x","Check":{"TTL":"soon"}}`, 400},
		{"PUT", "/v1/agent/service/register", `{"Name":"x","Check":{"TTL":"10s","Status":"ok"}}`, 400},
		{"PUT", "/v1/agent/service/register", `{"Name":"x","Meta":{"consul-x":"1"},"Check":{"TTL":"10s"}}`, 400},
		{"PUT", "/v1/agent/service/register?dc=dc1", `{"Name":"x","Check":{"TTL":"10s"}}`, 400},
		{"POST", "/v1/agent/service/register", `{"Name":"x","Check":{"TTL":"10s"}}`, 405},
		{"PUT", "/v1/agent/service/register", `{"Name":"x","Check":{"TTL":"10s"}}`, 200},
		{"PUT", "/v1/agent/check/update/service:x", `{"Status":"pass"}`, 400},
		{"PUT", "/v1/agent/check/update/service:x", `{"Status":"passing","Note":"x"}`, 400},
		{"PUT", "/v1/agent/check/update/service:y", `{"Status":"passing"}`, 404},
		{"PUT", "/v1/agent/check/update/service:x", `{"Status":"passing","Output":"ok"}`, 200},
		{"GET", "/v1/health/service/x?passing=1&near=_agent", ``, 400},
		{"GET", "/v1/health/service/x?passing=1", ``, 200},
		{"PUT", "/v1/agent/service/deregister/y", ``, 404},
		{"PUT", "/v1/agent/service/deregister/x", ``, 200},
	} {
		req, err := http.NewRequest(tc.method, a.URL()+tc.path, bytes.NewBufferString(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s %s: %d, want %d", tc.method, tc.path, tc.body, resp.StatusCode, tc.code)
		}
	}
	// A check registered without a status starts critical, as in Consul.
	req, _ := http.NewRequest("PUT", a.URL()+"/v1/agent/service/register", bytes.NewBufferString(`{"Name":"w","Port":1,"Check":{"TTL":"10s"}}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st := a.Status("w"); st != "critical" {
		t.Errorf("a check registered without a status is %q, want critical", st)
	}
}
