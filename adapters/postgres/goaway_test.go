package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/node"
)

// withAppName returns dsn with application_name set to name, so that a
// test can find the store's backends in pg_stat_activity.
func withAppName(dsn, name string) string {
	if strings.Contains(dsn, "://") {
		if strings.Contains(dsn, "?") {
			return dsn + "&application_name=" + name
		}
		return dsn + "?application_name=" + name
	}
	return dsn + " application_name=" + name
}

// adminConn connects to dsn for the test's own statements.
func adminConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// terminate ends every backend of application app, returning how many.
func terminate(t *testing.T, c *pgx.Conn, app string) int {
	t.Helper()
	var n int
	err := c.QueryRow(context.Background(),
		"SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) AS ended", app).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// testSchema returns a fresh schema name, dropped at the end of the test.
func testSchema(t *testing.T, dsn string) string {
	schema := schemaOf(t.TempDir())
	t.Cleanup(func() { dropSchema(t, dsn, schema) })
	return schema
}

// TestServerGoesAwayMidTransaction: the store's connection is cut while a
// write transaction is open on the server (its insert waits for a lock the
// test holds). The Save fails, later Saves fail (fail-stop), and a
// reopened store holds exactly what was acknowledged before.
func TestServerGoesAwayMidTransaction(t *testing.T) {
	dsn := testDSN(t)
	schema := testSchema(t, dsn)
	app := "goaway_" + schema
	s, err := Open(Options{DSN: withAppName(dsn, app), Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storagetest.MustSave(t, s, &node.Update{Entries: storagetest.Entries(1, 10, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 10}, Sync: true})

	admin := adminConn(t, dsn)
	ctx := context.Background()
	locker, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Rollback(ctx)
	if _, err := locker.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, "entries"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	s.Save(&node.Update{Entries: storagetest.Entries(11, 12, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: 12}, Sync: true},
		func(err error) { done <- err })

	// Wait for the write to block inside its transaction, then cut it.
	watch := adminConn(t, dsn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", app).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the Save completed (%v) while its table was locked", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the write never waited for the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := terminate(t, watch, app); n == 0 {
		t.Fatal("no backend to terminate")
	}
	if err := locker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the Save whose connection was cut mid-transaction was acknowledged")
		}
		t.Logf("the cut Save failed: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("done not called")
	}
	// Fail-stop: the next write fails too, though the server is back.
	if err := storagetest.SaveWait(t, s, &node.Update{Entries: storagetest.Entries(11, 11, 1), Sync: true}); err == nil {
		t.Fatal("a Save after a failed one succeeded: the store must fail stop")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(Options{DSN: dsn, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := storagetest.MustLoad(t, s)
	if n := len(p.Entries); n != 10 || p.Entries[n-1].Index != 10 || p.HardState.Commit != 10 {
		t.Fatalf("after reopening: entries %s, hard state %+v; want 1..10 and commit 10", storagetest.Span(p.Entries), p.HardState)
	}
}

// TestServerGoesAwayDuringStream: the store appends with up to 4 Saves
// outstanding while every one of its connections is terminated, at a
// moment that varies from round to round. The first failed Save ends the
// acknowledgements (every later Save fails), and a reopened store holds
// every acknowledged entry and nothing that was not saved: a prefix of the
// stream.
func TestServerGoesAwayDuringStream(t *testing.T) {
	dsn := testDSN(t)
	admin := adminConn(t, dsn)
	for round, killAfter := range []int{0, 3, 17, 40} {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			schema := testSchema(t, dsn)
			app := "stream_" + schema
			s, err := Open(Options{DSN: withAppName(dsn, app), Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var (
				mu     sync.Mutex
				acked  uint64 // the last acknowledged index
				failed bool
				order  []string
			)
			sem := make(chan struct{}, 4)
			var wg sync.WaitGroup
			killed := false
			const total = 120
			for i := uint64(1); i <= total; i++ {
				sem <- struct{}{}
				mu.Lock()
				if !killed && int(acked) >= killAfter {
					killed = true
					mu.Unlock()
					terminate(t, admin, app)
					mu.Lock()
				}
				mu.Unlock()
				wg.Add(1)
				s.Save(&node.Update{Entries: storagetest.Entries(i, i, 1), HardState: core.HardState{Term: 1, Vote: 1, Commit: i - 1}, Sync: true},
					func(err error) {
						defer wg.Done()
						defer func() { <-sem }()
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err != nil:
							failed = true
						case failed:
							order = append(order, fmt.Sprintf("entry %d acknowledged after a failure", i))
						case i != acked+1:
							order = append(order, fmt.Sprintf("entry %d acknowledged after %d", i, acked))
						default:
							acked = i
						}
					})
			}
			wg.Wait()
			if len(order) > 0 {
				t.Fatal(strings.Join(order, "; "))
			}
			if !failed {
				t.Fatalf("no Save failed though the connections were terminated (after %d acknowledgements)", killAfter)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(Options{DSN: dsn, Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := storagetest.MustLoad(t, s)
			last := uint64(0)
			for k, e := range p.Entries {
				if e.Index != uint64(k+1) || string(e.Data) != string(storagetest.EntryData(e.Index, 1)) {
					t.Fatalf("entry %d of the reloaded log is %d/%d", k, e.Index, e.Term)
				}
				last = e.Index
			}
			if last < acked {
				t.Fatalf("the reloaded log ends at %d; %d was acknowledged", last, acked)
			}
			t.Logf("killed after %d acks: %d acknowledged, %d stored", killAfter, acked, last)
		})
	}
}

// TestOwnership: a second Open of the same schema takes it over; the
// first store's next write fails (ErrNotOwner) and writes nothing.
func TestOwnership(t *testing.T) {
	dsn := testDSN(t)
	schema := testSchema(t, dsn)
	a, err := Open(Options{DSN: dsn, Schema: schema, Identity: "c/n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	storagetest.MustSave(t, a, &node.Update{Entries: storagetest.Entries(1, 3, 1), Sync: true})
	b, err := Open(Options{DSN: dsn, Schema: schema, Identity: "c/n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := storagetest.SaveWait(t, a, &node.Update{Entries: storagetest.Entries(4, 4, 1), Sync: true}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a write of the displaced store: %v, want ErrNotOwner", err)
	}
	if p := storagetest.MustLoad(t, b); len(p.Entries) != 3 {
		t.Fatalf("entries %s after the displaced write; want 1..3", storagetest.Span(p.Entries))
	}
	if _, err := Open(Options{DSN: dsn, Schema: schema, Identity: "c/n2"}); err == nil || !strings.Contains(err.Error(), `belongs to "c/n1"`) {
		t.Fatalf("Open under another identity: %v", err)
	}
}
