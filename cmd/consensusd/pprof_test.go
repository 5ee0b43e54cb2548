package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestProfileMux checks that -pprof's handler serves the profile index and
// nothing outside /debug/pprof/.
func TestProfileMux(t *testing.T) {
	srv := httptest.NewServer(profileMux())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Errorf("index: %s, %q", resp.Status, body)
	}
	resp, err = http.Get(srv.URL + "/kv/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/kv/x on the profile address: %s, want 404", resp.Status)
	}
}
