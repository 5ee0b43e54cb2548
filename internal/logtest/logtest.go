// Package logtest is a log/slog handler for tests that count what a
// component logged.
package logtest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Counter is a slog.Handler that records every record's level and message,
// at every level. It is safe for concurrent use.
type Counter struct {
	mu   sync.Mutex
	recs []rec
}

type rec struct {
	level slog.Level
	msg   string
}

// Enabled is true at every level.
func (c *Counter) Enabled(context.Context, slog.Level) bool { return true }

// Handle records r's level and message.
func (c *Counter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, rec{r.Level, r.Message})
	return nil
}

// WithAttrs returns c: attributes are not recorded.
func (c *Counter) WithAttrs([]slog.Attr) slog.Handler { return c }

// WithGroup returns c.
func (c *Counter) WithGroup(string) slog.Handler { return c }

// Count returns how many records at level had message msg.
func (c *Counter) Count(level slog.Level, msg string) int {
	return c.count(level, func(m string) bool { return m == msg })
}

// CountPrefix returns how many records at level had a message starting
// with prefix.
func (c *Counter) CountPrefix(level slog.Level, prefix string) int {
	return c.count(level, func(m string) bool { return strings.HasPrefix(m, prefix) })
}

func (c *Counter) count(level slog.Level, match func(string) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.recs {
		if r.level == level && match(r.msg) {
			n++
		}
	}
	return n
}
