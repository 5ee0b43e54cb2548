package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// startNode starts a one-node in-memory cluster and returns it once it
// leads.
func startNode(t *testing.T) *server.Server {
	t.Helper()
	_, lead := servertest.StartCluster(t, 1, "memory", "tcp")
	return lead
}

// TestRun: both protocols, writes and reads, report every operation done
// without errors, and name the protocol.
func TestRun(t *testing.T) {
	s := startNode(t)
	for _, tc := range []struct{ proto, addrs, op string }{
		{"wire", s.ClientAddr(), "write"},
		{"wire", s.ClientAddr(), "read"},
		{"http", "http://" + s.APIAddr(), "write"},
		{"http", "http://" + s.APIAddr(), "read"},
	} {
		var out, errs bytes.Buffer
		args := []string{"-proto", tc.proto, "-addrs", tc.addrs, "-n", "300", "-clients", "8", "-keys", "50",
			"-op", tc.op}
		if code := run(args, &out, &errs); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs.String())
		}
		want := fmt.Sprintf("%s proto=%s clients=8 n=300 errors=0 ", tc.op, tc.proto)
		if !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), "ops/s") {
			t.Fatalf("%v: output %q", args, out.String())
		}
	}
}

// TestWarmup: the warm-up writes run before the measured ones and are not
// counted in the result.
func TestWarmup(t *testing.T) {
	s := startNode(t)
	before := s.Runner().Status().Applied
	var out, errs bytes.Buffer
	args := []string{"-addrs", s.ClientAddr(), "-warmup", "200", "-n", "100", "-clients", "4"}
	if code := run(args, &out, &errs); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errs.String())
	}
	if !strings.HasPrefix(out.String(), "write proto=wire clients=4 n=100 errors=0 ") {
		t.Fatalf("output %q", out.String())
	}
	if got := s.Runner().Status().Applied - before; got < 300 {
		t.Fatalf("%d entries applied, want at least 300 (200 warm-up + 100 measured writes)", got)
	}
}

// TestFlags: bad flag combinations exit with 2.
func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-proto", "smoke-signals"},
		{"-proto", "wire", "-any-node"},
		{"-n", "0"},
		{"-warmup", "-1"},
	} {
		var out, errs bytes.Buffer
		if code := run(args, &out, &errs); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestTokenAndTLS: against a node with data-plane tokens and api.tls, both
// protocols run clean with a writer token from $CONSENSUS_TOKEN and the CA
// from -cacert; without the token every operation fails.
func TestTokenAndTLS(t *testing.T) {
	const writer = "loadgen-writer-93be0c4d"
	pki := transporttest.NewPKI(t, "loadgen-ca")
	cert, key := pki.Issue("node-1")
	_, s := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
		API: "  tls: true\n", Extra: "security:\n  cert_file: " + cert + "\n  key_file: " + key +
			"\n  tokens:\n    - {token: " + writer + ", role: writer}\n"})
	for _, tc := range []struct{ proto, addrs string }{
		{"wire", s.ClientAddr()},
		{"http", "https://" + s.APIAddr()},
	} {
		t.Setenv("CONSENSUS_TOKEN", writer)
		var out, errs bytes.Buffer
		args := []string{"-proto", tc.proto, "-addrs", tc.addrs, "-n", "100", "-clients", "4", "-cacert", pki.CAFile}
		if code := run(args, &out, &errs); code != 0 || !strings.Contains(out.String(), " errors=0 ") {
			t.Fatalf("%v: exit %d: %s%s", args, code, out.String(), errs.String())
		}
		if strings.Contains(out.String()+errs.String(), writer) {
			t.Fatalf("the output shows the token: %s%s", out.String(), errs.String())
		}
		t.Setenv("CONSENSUS_TOKEN", "")
		out.Reset()
		errs.Reset()
		if code := run(args, &out, &errs); code == 0 && strings.Contains(out.String(), " errors=0 ") {
			t.Fatalf("%v without a token: %s", args, out.String())
		}
	}
}
