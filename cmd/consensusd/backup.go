package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/forge-consensus/consensus/backup"
	"github.com/forge-consensus/consensus/server"
)

// Exit statuses of consensusd restore and migrate-storage.
const (
	exitBackupFailed  = 1 // I/O, a storage that failed, a copy that did not verify
	exitBackupRefused = 3 // a damaged or foreign backup, a storage not empty: nothing written
)

const restoreUsage = `usage: consensusd restore -from FILE -config FILE -new-cluster-id ID

Seeds this node's empty storage (storage.path) from a backup file made by
"consensusctl snapshot save", for a node of a NEW cluster:
  - the file is verified first (checksum, length, format); a damaged or
    foreign file is refused and nothing is written
  - storage.path must be empty or absent
  - -new-cluster-id must be the config's cluster_id and differ from the
    backed-up cluster's, so that the old and the new cluster never mix
    (the wal storage refuses a log of another cluster_id)
  - the new cluster's members are the config's peers, all voters; run
    restore on every one of them, from the same file, then start them
The cluster serves the backed-up state; its log continues after the
backup's index.

Exit status: 0 restored, 1 failed, 2 usage error, 3 refused (a damaged or
foreign file, a storage that is not empty, the old cluster's ID).

flags:
`

// restoreCmd is "consensusd restore".
func restoreCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consensusd restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, restoreUsage)
		fs.PrintDefaults()
	}
	from := fs.String("from", "", "the backup file (consensusctl snapshot save)")
	path := fs.String("config", "", "the new node's configuration file")
	newID := fs.String("new-cluster-id", "", "the new cluster's ID: the config's cluster_id, not the backed-up cluster's")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *from == "" || *path == "" || *newID == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "consensusd restore: -from, -config and -new-cluster-id are required, and nothing else")
		fs.Usage()
		return exitUsage
	}
	cfg, err := server.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd restore: %s: %v\n", *path, err)
		return exitUsage
	}
	f, err := os.Open(*from)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd restore: %v\n", err)
		return exitBackupFailed
	}
	var data bytes.Buffer
	info, err := backup.Read(f, &data)
	f.Close()
	if err != nil {
		fmt.Fprintf(stderr, "consensusd restore: %s: %v; nothing was written\n", *from, err)
		if errors.Is(err, backup.ErrDamaged) || errors.Is(err, backup.ErrForeign) {
			return exitBackupRefused
		}
		return exitBackupFailed
	}
	switch {
	case *newID != cfg.ClusterID:
		fmt.Fprintf(stderr, "consensusd restore: -new-cluster-id %q is not the cluster_id of %s (%q): set cluster_id: %s "+
			"in the configuration of every node of the new cluster\n", *newID, *path, cfg.ClusterID, *newID)
		return exitUsage
	case *newID == info.ClusterID:
		fmt.Fprintf(stderr, "consensusd restore: -new-cluster-id %q is the backed-up cluster's ID: a restored cluster "+
			"gets a new one, so that its nodes and the old cluster's never mix; nothing was written\n", *newID)
		return exitBackupRefused
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := server.RestoreBackup(cfg, info.Header, data.Bytes(), log)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd restore: %v\n", err)
		if errors.Is(err, server.ErrNotEmpty) {
			return exitBackupRefused
		}
		if errors.Is(err, server.ErrInvalidConfig) {
			return exitUsage
		}
		return exitBackupFailed
	}
	fmt.Fprintf(stdout, "restored %s (cluster %s, node %d, index %d, term %d, %d bytes, sha256 %s)\n",
		*from, info.ClusterID, info.Node, info.Index, info.Term, info.Size, info.SHA256)
	fmt.Fprintf(stdout, "into %s storage %s as node %s of cluster %s: %d keys, state hash %016x, voters %v\n",
		cfg.Storage.Type, cfg.Storage.Path, cfg.NodeID, cfg.ClusterID, res.Keys, res.StateHash, res.Voters)
	fmt.Fprintf(stdout, "start it with: consensusd -config %s\n", *path)
	return exitOK
}

const migrateUsage = `usage: consensusd migrate-storage -config FILE -to-config NEWFILE
       consensusd migrate-storage -config FILE -to-type TYPE [-to-path DIR]

Copies a STOPPED node's storage, as FILE describes it, to an empty storage
of any type the node opens (wal, pebble, bolt, badger, postgres), plain or
encrypted either side: the hard state, the snapshot and the log.

The target is described by:
  -to-config NEWFILE  the node's configuration after the migration: its
                      storage section (type, path, postgres.dsn, ...) and
                      its security.enable_encryption, encryption_key(_file)
                      and encryption_old_keys describe the target. Its
                      cluster_id and node_id must be FILE's. This is how to
                      migrate to postgres (a DSN), into or out of
                      encryption, or to another key. Afterwards start the
                      node with: consensusd -config NEWFILE
  -to-type, -to-path  shorthand: FILE with storage.type and storage.path
                      replaced (the same encryption settings and keys;
                      for postgres, FILE's storage.postgres section, and
                      -to-path only for an encrypted target's key marker).
                      Afterwards set them in FILE and start the node.

The target must be empty: a directory empty or absent, a postgres schema
(storage.postgres.schema, or the one derived from cluster_id and node_id)
absent or holding no table. The source is only read: it is never changed
(a postgres source is read in a read-only transaction, without taking
the schema over). A wrong or missing key for an encrypted source is
refused before the target is created.

Then it verifies the copy: both storages are read back and compared
exactly, and the state hashes reached by applying each log up to the
commit index must be equal (printed as "state hash").

Exit status: 0 copied and verified, 1 failed, 2 usage or configuration
error (a wrong or missing encryption key included), 3 refused (a target
that is not empty, a node that is running: its bind_port or api.addr is
in use).

flags:
`

// migrateCmd is "consensusd migrate-storage".
func migrateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consensusd migrate-storage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, migrateUsage)
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "the stopped node's configuration file (its storage is the source)")
	toConfig := fs.String("to-config", "", "a configuration file whose storage and security sections describe the target")
	toType := fs.String("to-type", "", "shorthand: the target's storage type (as storage.type)")
	toPath := fs.String("to-path", "", "shorthand: the target's directory (as storage.path): empty or absent")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	shorthand := *toType != "" || *toPath != ""
	switch {
	case *path == "" || fs.NArg() > 0:
		fmt.Fprintln(stderr, "consensusd migrate-storage: -config is required, with -to-config or -to-type (and -to-path), and nothing else")
		fs.Usage()
		return exitUsage
	case *toConfig != "" && shorthand:
		fmt.Fprintln(stderr, "consensusd migrate-storage: give -to-config, or -to-type and -to-path, not both")
		return exitUsage
	case *toConfig == "" && (*toType == "" || (*toPath == "" && strings.TrimSpace(*toType) != "postgres")):
		fmt.Fprintln(stderr, "consensusd migrate-storage: the target is missing: give -to-config NEWFILE, or -to-type and -to-path")
		fs.Usage()
		return exitUsage
	}
	from, err := server.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd migrate-storage: %s: %v\n", *path, err)
		return exitUsage
	}
	to, target := from, ""
	if *toConfig != "" {
		if to, err = server.LoadConfig(*toConfig); err != nil {
			fmt.Fprintf(stderr, "consensusd migrate-storage: %s: %v\n", *toConfig, err)
			return exitUsage
		}
	} else {
		to.Storage.Type, to.Storage.Path = strings.TrimSpace(*toType), *toPath
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := server.MigrateStorage(from, to, log)
	if err != nil {
		fmt.Fprintf(stderr, "consensusd migrate-storage: %v\n", err)
		switch {
		case errors.Is(err, server.ErrNotEmpty), errors.Is(err, server.ErrRunning):
			return exitBackupRefused
		case errors.Is(err, server.ErrInvalidConfig):
			return exitUsage
		}
		return exitBackupFailed
	}
	fmt.Fprintf(stdout, "copied %s %s%s to %s %s%s: hard state term %d vote %d commit %d, snapshot at %d, %d log entries\n",
		from.Storage.Type, server.StorageName(from), encryptedNote(from), to.Storage.Type, server.StorageName(to), encryptedNote(to),
		res.HardState.Term, res.HardState.Vote, res.HardState.Commit, res.SnapshotIndex, res.Entries)
	fmt.Fprintf(stdout, "verified: contents equal, state hash %016x in both\n", res.StateHash)
	if *toConfig != "" {
		target = fmt.Sprintf("start the node with: consensusd -config %s", *toConfig)
	} else {
		target = fmt.Sprintf("now set storage.type: %s and storage.path: %s in %s, and start the node", to.Storage.Type, to.Storage.Path, *path)
	}
	fmt.Fprintln(stdout, target)
	return exitOK
}

// encryptedNote marks an encrypted storage in messages.
func encryptedNote(cfg server.Config) string {
	if cfg.Security.EnableEncryption {
		return " (encrypted)"
	}
	return ""
}
