package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/forge-consensus/consensus/server"
)

const encryptionStatusUsage = `usage: consensusd encryption-status -config FILE [-json]

Opens the stopped node's encrypted storage with the keys of FILE, decrypts
every stored record and prints which key IDs they use: the active key, the
configured ones, those still in use (by the snapshot and by runs of log
entries) and the old keys no record uses any more, which can be removed
from security.encryption_old_keys. A running node shows the same in GET
/status ("encryption").

Exit status: 0 done, 1 failed, 2 bad flags or configuration (a wrong or
missing key included), 4 damaged storage.

flags:
`

// encryptionStatusCmd is "consensusd encryption-status".
func encryptionStatusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consensusd encryption-status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, encryptionStatusUsage)
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "the node's configuration file")
	asJSON := fs.Bool("json", false, "print the key usage as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if *path == "" {
		fmt.Fprintln(stderr, "consensusd encryption-status: -config is required")
		fs.Usage()
		return exitConfig
	}
	cfg, err := server.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd encryption-status: %s: %v\n", *path, err)
		return exitConfig
	}
	u, err := server.EncryptionStatus(cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd encryption-status: %v\n", err)
		return startExitCode(err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(u, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	fmt.Fprintf(stdout, "active key:      %s\n", u.Active)
	fmt.Fprintf(stdout, "configured keys: %s\n", strings.Join(u.Configured, ", "))
	fmt.Fprintf(stdout, "keys in use:     %s\n", strings.Join(u.InUse, ", "))
	if u.Snapshot != nil {
		fmt.Fprintf(stdout, "  snapshot at index %d (term %d): key %s\n", u.Snapshot.Index, u.Snapshot.Term, u.Snapshot.Key)
	}
	for _, r := range u.Entries {
		fmt.Fprintf(stdout, "  entries %d..%d: key %s\n", r.First, r.Last, r.Key)
	}
	var unused []string
	for _, k := range u.Configured[1:] {
		if !slices.Contains(u.InUse, k) {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		fmt.Fprintf(stdout, "old keys no longer in use (remove them from security.encryption_old_keys): %s\n", strings.Join(unused, ", "))
	}
	return exitOK
}
