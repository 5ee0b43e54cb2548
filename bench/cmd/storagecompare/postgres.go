//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// envDSN names the environment variable holding the DSN of the
// PostgreSQL database the postgres clusters use (as in the tests). The
// nodes read it from their environment (${VAR} in their configuration).
const envDSN = "CONSENSUS_TEST_POSTGRES_DSN"

// pgSchemas are the schemas of one postgres cluster's three nodes:
// prefix + "_n" + the node's ID.
type pgSchemas struct {
	dsn    string
	prefix string
}

func (p *pgSchemas) schema(id int) string { return fmt.Sprintf("%s_n%d", p.prefix, id) }

// drop deletes the three schemas and everything in them.
func (p *pgSchemas) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(context.Background())
	var errs []error
	for id := 1; id <= 3; id++ {
		if _, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{p.schema(id)}.Sanitize()+" CASCADE"); err != nil {
			errs = append(errs, fmt.Errorf("drop schema %s: %w", p.schema(id), err))
		}
	}
	return errors.Join(errs...)
}

// newRunID returns 8 random hex digits naming this run's schemas.
func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// schemaPrefix is the prefix of the schemas of system name in run id:
// lowercase letters, digits and _ only (pgstore.ValidSchema).
func schemaPrefix(id, name string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(name))
	return "storagecompare_" + id + "_" + clean
}
