package forgeext

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/xraph/forge"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the OpenTelemetry instrumentation name of the service's
// spans.
const TracerName = "github.com/forge-consensus/consensus/forgeext"

// HeaderCorrelationID carries a request's correlation ID.
const HeaderCorrelationID = "X-Correlation-ID"

type correlationKey struct{}

// WithCorrelationID returns ctx carrying a correlation ID, which the
// service's logs and spans for requests made with ctx include.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation ID ctx carries ("" if none).
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// CorrelationMiddleware gives every request a correlation ID: the
// request's X-Correlation-ID (or X-Request-ID) header, or a new random one.
// It is put in the request's context (see CorrelationID) and echoed in the
// response's X-Correlation-ID header.
func (s *Service) CorrelationMiddleware() forge.Middleware {
	return func(next forge.Handler) forge.Handler {
		return func(ctx forge.Context) error {
			r := ctx.Request()
			id := r.Header.Get(HeaderCorrelationID)
			if id == "" {
				id = r.Header.Get("X-Request-ID")
			}
			if id == "" || len(id) > 128 {
				var b [8]byte
				_, _ = crand.Read(b[:])
				id = hex.EncodeToString(b[:])
			}
			ctx.Response().Header().Set(HeaderCorrelationID, id)
			ctx.WithContext(WithCorrelationID(r.Context(), id))
			return next(ctx)
		}
	}
}

// tracer returns the tracer for the service's spans: from
// Config.TracerProvider, or OpenTelemetry's global provider (a no-op until
// the application installs one).
func (s *Service) tracer() trace.Tracer {
	tp := s.Config().TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(TracerName)
}

// operation starts a span (a child of any span in ctx, such as the
// incoming HTTP request's) for one service operation; the returned end
// records its outcome on the span and in the log, with the node, term and
// correlation ID.
func (s *Service) operation(ctx context.Context, op string, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	start := time.Now()
	term := s.GetTerm()
	attrs = append(attrs, attribute.String("consensus.node_id", s.NodeName()),
		attribute.Int64("consensus.term", int64(term)))
	cid := CorrelationID(ctx)
	if cid != "" {
		attrs = append(attrs, attribute.String("consensus.correlation_id", cid))
	}
	ctx, span := s.tracer().Start(ctx, "consensus."+op, trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		level := slog.LevelDebug
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			if !expected(err) {
				level = slog.LevelWarn
			}
		}
		span.End()
		if s.log.Enabled(ctx, level) {
			s.log.LogAttrs(ctx, level, "consensus "+op, slog.String("node", s.NodeName()), slog.Uint64("term", term),
				slog.String("correlation_id", cid), slog.Duration("took", time.Since(start)), slog.Any("err", err))
		}
	}
}

// expected reports errors that are part of normal operation (a follower
// refusing a write, a missing key, a leaderless moment), logged at Debug.
func expected(err error) bool {
	return IsNotLeaderError(err) || errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrNoQuorum) ||
		errors.Is(err, ErrInvalidCommand) || errors.Is(err, ErrCommandFailed)
}

// levelFilter drops records below min: the node's protocol-level Debug
// logs stay off unless observability.log_raft_details is set.
type levelFilter struct {
	min slog.Level
	h   slog.Handler
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.min, f.h.WithAttrs(a)}
}
func (f levelFilter) WithGroup(g string) slog.Handler { return levelFilter{f.min, f.h.WithGroup(g)} }
