package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-consensus/consensus/server/servertest"
)

// TestSnapshotSaveAndStatus: against a real 3-node cluster, snapshot save
// downloads a verified backup from the leader (or the node named), leaves
// no temporary file and prints the cluster ID, index, term, size and
// checksum; snapshot status verifies a file and refuses a damaged or
// foreign one; a viewer's token may not download.
func TestSnapshotSaveAndStatus(t *testing.T) {
	const op, viewer = "ctl-op-5b1e0c77", "ctl-view-93d2aa41"
	srvs, lead := servertest.StartClusterOpts(t, servertest.Options{Nodes: 3, Storage: "pebble", Transport: "tcp",
		Extra: "cluster_id: saved\nsecurity:\n  tokens:\n    - {token: " + op + ", role: operator}\n" +
			"    - {token: " + viewer + ", role: viewer}\n"})
	var eps []string
	for _, s := range srvs {
		eps = append(eps, "http://"+s.APIAddr())
	}
	all := strings.Join(eps, ",")
	dir := t.TempDir()
	r := runCLI(t, runConfig{}, nil, "--endpoints", all, "--token", op, "kv", "put", "backed", "up")
	wantCode(t, r, 0)

	file := filepath.Join(dir, "b.fcb")
	r = runCLI(t, runConfig{}, nil, "--endpoints", all, "--token", op, "snapshot", "save", file)
	wantCode(t, r, 0)
	for _, want := range []string{"saved from node " + string(lead.Config().NodeID) + " (leader)", "cluster id  saved",
		"index ", "term ", "size ", "sha256 "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("save: no %q in\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, op) {
		t.Error("the output shows the token")
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("%s.tmp left behind", file)
	}
	r = runCLI(t, runConfig{}, nil, "snapshot", "status", file)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "verified") || !strings.Contains(r.stdout, "voters      [1 2 3]") {
		t.Errorf("status: %s", r.stdout)
	}
	r = runCLI(t, runConfig{}, nil, "-o", "json", "snapshot", "status", file)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, `"cluster_id":"saved"`) || !strings.Contains(r.stdout, `"sha256":"`) {
		t.Errorf("status -o json: %s", r.stdout)
	}

	// From a named follower.
	var follower string
	for _, s := range srvs {
		if s != lead {
			follower = string(s.Config().NodeID)
		}
	}
	f2 := filepath.Join(dir, "f.fcb")
	r = runCLI(t, runConfig{}, nil, "--endpoints", all, "--token", op, "snapshot", "save", "--node", follower, f2)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "saved from node "+follower+" (follower)") {
		t.Errorf("save --node %s: %s", follower, r.stdout)
	}
	r = runCLI(t, runConfig{}, nil, "--endpoints", all, "--token", op, "snapshot", "save", "--node", "9", f2+"x")
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "node 9 is not at any of --endpoints") {
		t.Errorf("save --node 9: %s", r.stderr)
	}

	// Damaged and foreign files.
	raw, _ := os.ReadFile(file)
	raw[len(raw)-40] ^= 1
	bad := filepath.Join(dir, "bad.fcb")
	os.WriteFile(bad, raw, 0o600)
	r = runCLI(t, runConfig{}, nil, "snapshot", "status", bad)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "backup file damaged: checksum mismatch") {
		t.Errorf("damaged: %s", r.stderr)
	}
	os.WriteFile(bad, []byte("key,value\na,b\n"), 0o600)
	r = runCLI(t, runConfig{}, nil, "snapshot", "status", bad)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "not a consensus backup file") {
		t.Errorf("foreign: %s", r.stderr)
	}

	// The file holds every key: a viewer may not download it.
	r = runCLI(t, runConfig{}, nil, "--endpoints", all, "--token", viewer, "snapshot", "save", filepath.Join(dir, "v.fcb"))
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, `role "viewer" may not do this`) {
		t.Errorf("viewer: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "v.fcb.tmp")); !os.IsNotExist(err) {
		t.Error("a refused download left a file")
	}
	r = runCLI(t, runConfig{}, nil, "snapshot", "bogus")
	wantCode(t, r, 2)
}
