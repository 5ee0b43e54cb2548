package server

import (
	"context"
	"log/slog"
)

// nodeAttr reports whether key is a log attribute whose integer values
// are node IDs, shown by name instead.
func nodeAttr(key string) bool {
	switch key {
	case "node", "peer", "leader", "lead", "from", "to", "target":
		return true
	}
	return false
}

// namingHandler shows node IDs by name: an attribute nodeAttr names whose
// value is an integer (the transports', runner's and node's logs carry
// numeric IDs) becomes the member's name (its ID in decimal if it has
// none). Other attributes pass unchanged.
type namingHandler struct {
	h    slog.Handler
	name func(id uint64) string
}

func (n namingHandler) Enabled(ctx context.Context, l slog.Level) bool { return n.h.Enabled(ctx, l) }

func (n namingHandler) Handle(ctx context.Context, r slog.Record) error {
	named := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		named.AddAttrs(n.attr(a))
		return true
	})
	return n.h.Handle(ctx, named)
}

func (n namingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = n.attr(a)
	}
	return namingHandler{h: n.h.WithAttrs(out), name: n.name}
}

func (n namingHandler) WithGroup(g string) slog.Handler {
	return namingHandler{h: n.h.WithGroup(g), name: n.name}
}

func (n namingHandler) attr(a slog.Attr) slog.Attr {
	if !nodeAttr(a.Key) {
		return a
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindUint64:
		if id := v.Uint64(); id != 0 {
			return slog.String(a.Key, n.name(id))
		}
	case slog.KindInt64:
		if id := v.Int64(); id > 0 {
			return slog.String(a.Key, n.name(uint64(id)))
		}
	}
	return a
}
