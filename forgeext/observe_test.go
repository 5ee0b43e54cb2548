package forgeext_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xraph/forge"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/forge-consensus/consensus/forgeext"
)

// syncBuffer is a log sink safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSpansLogsAndCorrelation(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nodes, svcs := cluster(t, 1, forgeext.WithTracerProvider(tp), forgeext.WithLogger(log))
	svc := svcs[leader(t, svcs)]

	// A handler behind the correlation middleware applies a command: the
	// span is a child of the request's span, and the log names the node,
	// the term and the correlation ID.
	r := nodes[0].app.Router()
	r.Use(svc.CorrelationMiddleware())
	if err := r.POST("/t", func(c forge.Context) error {
		ctx, parent := tp.Tracer("test").Start(c.Request().Context(), "http POST /t")
		defer parent.End()
		if _, err := svc.ApplyResult(ctx, set("traced", "1")); err != nil {
			return err
		}
		return c.String(http.StatusOK, forgeext.CorrelationID(ctx))
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/t", nil)
	req.Header.Set("X-Request-ID", "req-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(forgeext.HeaderCorrelationID) != "req-42" {
		t.Fatalf("POST /t: %d, correlation header %q", resp.StatusCode, resp.Header.Get(forgeext.HeaderCorrelationID))
	}
	var apply, parent sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "consensus.apply":
			apply = s
		case "http POST /t":
			parent = s
		}
	}
	if apply == nil || parent == nil {
		t.Fatalf("spans recorded: %d, no consensus.apply under the request", len(rec.Ended()))
	}
	if apply.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatal("consensus.apply is not a child of the request's span")
	}
	attrs := map[string]string{}
	for _, a := range apply.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["consensus.command"] != "set" || attrs["consensus.node_id"] != "1" || attrs["consensus.correlation_id"] != "req-42" || attrs["consensus.term"] == "0" {
		t.Fatalf("span attributes: %v", attrs)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"consensus apply"`) || !strings.Contains(out, `"correlation_id":"req-42"`) || !strings.Contains(out, `"node":"1"`) {
		t.Fatalf("no apply log with node and correlation ID in:\n%s", out)
	}
	// Protocol-level detail stays off by default.
	if strings.Contains(out, "raft ready") {
		t.Fatal("raft details logged without observability.log_raft_details")
	}

	// A failing read is recorded as an error on its span.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := svc.Read(ctx, "missing"); err == nil {
		t.Fatal("read of a missing key succeeded")
	}
	var read sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "consensus.read" {
			read = s
		}
	}
	if read == nil || read.Status().Code.String() != "Error" {
		t.Fatalf("read span: %v", read)
	}
}

func TestLogRaftDetails(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, svcs := cluster(t, 1, forgeext.WithLogger(log), func(c *forgeext.Config) error {
		c.Observability.LogRaftDetails = true
		return nil
	})
	leader(t, svcs)
	poll(t, "protocol-level logs appear", func() bool { return strings.Contains(logs.String(), "raft ready") })
}
