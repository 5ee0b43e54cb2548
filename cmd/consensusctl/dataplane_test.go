package main

import (
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/adapters/transport/transporttest"
	"github.com/forge-consensus/consensus/server/servertest"
)

// TestKVAgainstAuthenticatedTLSNode: against a real node serving its API
// over TLS with data-plane tokens, the kv commands work with a token from
// --token or $CONSENSUS_TOKEN and --cacert, are refused without one or
// with a reader's token for a write, and never print the token.
func TestKVAgainstAuthenticatedTLSNode(t *testing.T) {
	const reader, writer = "ctl-reader-71c0f3a9", "ctl-writer-2e8d4b16"
	pki := transporttest.NewPKI(t, "ctl-ca")
	cert, key := pki.Issue("node-1")
	_, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 1, Storage: "memory", Transport: "tcp",
		API: "  tls: true\n", Extra: "security:\n  cert_file: " + cert + "\n  key_file: " + key +
			"\n  tokens:\n    - {token: " + reader + ", role: reader}\n    - {token: " + writer + ", role: writer}\n"})
	ep := "https://" + lead.APIAddr()
	noLeak := func(r result) {
		t.Helper()
		for _, tok := range []string{reader, writer} {
			if strings.Contains(r.stdout+r.stderr, tok) {
				t.Errorf("the output shows a token:\nstdout: %s\nstderr: %s", r.stdout, r.stderr)
			}
		}
	}

	r := runCLI(t, runConfig{}, map[string]string{"CONSENSUS_TOKEN": writer},
		"--endpoints", ep, "--cacert", pki.CAFile, "kv", "put", "k", "v1")
	wantCode(t, r, 0)
	noLeak(r)
	r = runCLI(t, runConfig{}, nil, "--endpoints", ep, "--cacert", pki.CAFile, "--token", reader, "kv", "get", "k")
	wantCode(t, r, 0)
	if r.stdout != "v1\n" {
		t.Errorf("get: %q", r.stdout)
	}
	r = runCLI(t, runConfig{}, nil, "--endpoints", ep, "--cacert", pki.CAFile, "--token", reader, "kv", "put", "k", "v2")
	wantCode(t, r, 1)
	noLeak(r)
	if !strings.Contains(r.stderr, `role "reader" may not do this`) {
		t.Errorf("reader's put: stderr %q", r.stderr)
	}
	r = runCLI(t, runConfig{}, nil, "--endpoints", ep, "--cacert", pki.CAFile, "kv", "get", "k")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "missing bearer token") {
		t.Errorf("no token: stderr %q", r.stderr)
	}
	r = runCLI(t, runConfig{}, nil, "--endpoints", ep, "--token", reader, "kv", "get", "k")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "certificate") {
		t.Errorf("without --cacert: stderr %q", r.stderr)
	}
}
