package admin

import (
	"context"
	"io"
	"testing"
)

// backupFake is a Cluster that streams a fixed backup.
type backupFake struct {
	*fakeCluster
	called bool
}

func (b *backupFake) Backup(context.Context) (*Backup, error) {
	b.called = true
	return &Backup{ClusterID: "c1", Node: 2, Index: 77, Term: 3, Size: 5,
		WriteTo: func(w io.Writer) error { _, err := io.WriteString(w, "bytes"); return err }}, nil
}

// TestDownloadBackup: GET /snapshot/download streams the cluster's backup
// with its length and headers to an operator or admin; a viewer, a
// missing token and a POST are refused without asking the cluster; a
// cluster that cannot stream backups answers 501.
func TestDownloadBackup(t *testing.T) {
	for tok, want := range map[string]int{"op-tok": 200, "admin-tok": 200, "view-tok": 403, "": 401} {
		b := &backupFake{fakeCluster: healthyFake()}
		rec := do(newHandler(t, Config{Tokens: testTokens}, b), "GET", "/consensus/snapshot/download", "", tok)
		if rec.Code != want {
			t.Errorf("token %q: %d, want %d (%s)", tok, rec.Code, want, rec.Body)
			continue
		}
		if want != 200 {
			if b.called {
				t.Errorf("token %q: the cluster was asked for a backup", tok)
			}
			continue
		}
		h := rec.Header()
		if rec.Body.String() != "bytes" || h.Get("Content-Length") != "5" || h.Get("X-Consensus-Index") != "77" ||
			h.Get("X-Consensus-Term") != "3" || h.Get("X-Consensus-Cluster-Id") != "c1" ||
			h.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("token %q: body %q, headers %v", tok, rec.Body, h)
		}
	}
	b := &backupFake{fakeCluster: healthyFake()}
	if rec := do(newHandler(t, Config{Tokens: testTokens}, b), "POST", "/consensus/snapshot/download", "", "op-tok"); rec.Code != 405 || b.called {
		t.Errorf("POST: %d", rec.Code)
	}
	rec := do(newHandler(t, Config{Tokens: testTokens}, healthyFake()), "GET", "/consensus/snapshot/download", "", "op-tok")
	if rec.Code != 501 {
		t.Errorf("no Backuper: %d (%s)", rec.Code, rec.Body)
	}
}
