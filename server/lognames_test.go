package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestNamingHandler: node IDs in the node attributes are logged as names,
// given directly or through With, while other attributes (an address in
// "from", a count) and IDs of 0 pass unchanged.
func TestNamingHandler(t *testing.T) {
	var buf bytes.Buffer
	names := map[uint64]string{1: "node-1", 0xbcc3edcc1ecf38f7: "us-east-1a"}
	log := slog.New(namingHandler{h: slog.NewJSONHandler(&buf, nil), name: func(id uint64) string {
		if n, ok := names[id]; ok {
			return n
		}
		return "?"
	}})
	log.With("peer", uint64(0xbcc3edcc1ecf38f7)).Info("peer unreachable", "node", uint64(1), "leader", 0,
		"from", "10.0.0.1:7000", "to", int64(1), "count", uint64(1))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"peer": "us-east-1a", "node": "node-1", "leader": float64(0), "from": "10.0.0.1:7000",
		"to": "node-1", "count": float64(1)}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, rec[k], rec[k], v)
		}
	}
}
