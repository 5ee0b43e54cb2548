package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/forge-consensus/consensus/adapters/storagetest"
	"github.com/forge-consensus/consensus/internal/powerfs"
)

// envPowerCutDSN passes the DSN of TestPowerCut's own server to the test's
// child processes (the writer and the verifier); set, it also tells a
// child from the test process.
const envPowerCutDSN = "PGSTORE_POWERCUT_DSN"

// TestPowerCut is the storage suite's power-cut test (storagetest.PowerCut)
// with PostgreSQL in the middle: the test starts a server of its own (not
// the one of CONSENSUS_TEST_POSTGRES_DSN) whose data directory is on a
// powerfs mount, with PostgreSQL's durability settings at their defaults
// (fsync, synchronous_commit and full_page_writes on; checked at every
// start). A child process saves updates through this package and reports
// each acknowledgement; at a random moment the child and every process of
// the server are killed with SIGKILL, the file system drops what no fsync
// covered (tearing writes in half the rounds), the server is started again
// and runs its own crash recovery, and another child reopens the store:
// it must hold every acknowledged update and a prefix of the rest, or
// (after a tearing cut only) refuse a damaged row. A server that refuses
// to start after a cut fails the test, tearing or not: PostgreSQL must
// survive the loss and the torn tail of what it never fsynced.
//
// It runs as root (FUSE, and the server as user postgres) with
// PostgreSQL's binaries in /usr/lib/postgresql/<version>/bin (the highest
// version); without them it skips, and fails under CI (CI=true). It runs
// 10 rounds within 60 s by default; PG_POWERCUTS sets the number of rounds
// (6 s of budget each).
func TestPowerCut(t *testing.T) {
	dsn := os.Getenv(envPowerCutDSN)
	o := storagetest.PowerCutOptions{
		Tear:      true,
		Mount:     powerfs.MountOptions{AllowOther: true}, // the server runs as user postgres
		Rounds:    10,
		Budget:    60 * time.Second,
		RoundsEnv: "PG_POWERCUTS",
	}
	if dsn == "" { // the test process; a child has the DSN
		storagetest.RequirePowerFS(t)
		srv := newPGServer(t)
		o.Server = srv
		dsn = srv.dsn()
		t.Setenv(envPowerCutDSN, dsn)
	}
	b := storagetest.Backend{
		Name: "postgres",
		Open: func(t testing.TB, dir string) (storagetest.Store, error) {
			// No cleanup dropping the schema, unlike backendFor: the
			// verifying child's test ends after each round, and the
			// store must outlive it. The whole cluster goes with the test.
			return Open(Options{DSN: dsn, Schema: schemaOf(dir)})
		},
		IsCorrupt: func(err error) bool { return errors.Is(err, ErrCorrupt) },
	}
	storagetest.PowerCutWith(t, b, o)
}

// Bounds on the server's commands: past them it has hung (on the mount,
// most likely), and the test fails rather than waits.
const (
	initdbTimeout = 3 * time.Minute
	startTimeout  = 3 * time.Minute // crash recovery included
	killTimeout   = time.Minute
)

// pgServer is a PostgreSQL server of TestPowerCut's own, its data
// directory on the power-cut mount. It implements storagetest.PowerCutServer.
type pgServer struct {
	bin      string // the directory of initdb and postgres
	version  string
	port     int
	uid, gid uint32 // of user postgres
	logPath  string // the server's output, every start appended

	data       string // the data directory, on the mount ("" before initdb)
	cmd        *osexec.Cmd
	exited     chan struct{} // closed once cmd has been waited for
	starts     int
	recoveries int // starts that ran crash recovery
}

// newPGServer finds PostgreSQL's binaries and user and a free port on
// the loopback for a server (not yet started): it skips t without them,
// and fails it instead under CI (CI=true).
func newPGServer(t *testing.T) *pgServer {
	t.Helper()
	missing := func(why string) {
		t.Helper()
		msg := "TestPowerCut needs PostgreSQL's server binaries and user: " + why +
			" (Debian's postgresql package; .ci/run installs it)"
		if os.Getenv("CI") == "true" {
			t.Fatal("under CI the PostgreSQL power-cut test must run: " + msg)
		}
		t.Skip(msg)
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(versions) == 0 {
		missing("no /usr/lib/postgresql/*/bin/postgres")
	}
	// The highest version (numerically: 9.6 < 10 < 15).
	num := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(versions, func(i, j int) bool { return num(versions[i]) < num(versions[j]) })
	bin := filepath.Dir(versions[len(versions)-1])
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		missing(err.Error())
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		missing(err.Error())
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("user postgres: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := &pgServer{
		bin: bin, version: filepath.Base(filepath.Dir(bin)), port: port,
		uid: uint32(uid), gid: uint32(gid),
		logPath: filepath.Join(t.TempDir(), "postgres.log"),
	}
	t.Cleanup(func() {
		t.Logf("PostgreSQL %s: started %d times, %d of them with crash recovery", s.version, s.starts, s.recoveries)
	})
	return s
}

// dsn is the connection string of the server (trust authentication on
// the loopback, as initdb sets it up here).
func (s *pgServer) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=10", s.port)
}

// command returns a command running the binary name of the server with
// args as user postgres.
func (s *pgServer) command(ctx context.Context, name string, args ...string) *osexec.Cmd {
	cmd := osexec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.uid, Gid: s.gid}}
	return cmd
}

// initdb creates the cluster on the mount, then cuts the power without
// tearing: initdb fsyncs what it wrote, so the cut must leave a cluster
// that starts (the first Start checks that).
func (s *pgServer) initdb(t *testing.T, fsys *powerfs.FS) error {
	data := filepath.Join(fsys.Dir(), "pgdata")
	if err := os.Mkdir(data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chown(data, int(s.uid), int(s.gid)); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := fsyncDir(fsys.Dir()); err != nil { // the entry of pgdata
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), initdbTimeout)
	defer cancel()
	cmd := s.command(ctx, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions")
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("initdb did not finish within %v (killed): %s", initdbTimeout, out)
	}
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	rep, err := fsys.Cut(false, nil)
	if err != nil {
		return fmt.Errorf("cut after initdb: %w", err)
	}
	t.Logf("initdb of PostgreSQL %s on the mount took %v; a cut after it dropped %v", s.version, time.Since(start).Round(time.Millisecond), rep)
	s.data = data
	return nil
}

// Start starts the server (creating the cluster at the first call) and
// returns once it accepts connections with fsync, synchronous_commit and
// full_page_writes on. The postmaster is the first process of a PID
// namespace of its own, so that Kill's SIGKILL to it makes the kernel
// kill every process of the server at once (its backends are not in its
// process group: each leads a session of its own).
func (s *pgServer) Start(t *testing.T, fsys *powerfs.FS) error {
	if s.data == "" {
		if err := s.initdb(t, fsys); err != nil {
			return err
		}
	}
	if s.cmd != nil {
		return errors.New("the server is already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logStart, err := logf.Seek(0, 2)
	if err != nil {
		return err
	}
	cmd := s.command(context.Background(), "postgres", "-D", s.data, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		// Few buffers: pages are evicted (written, not fsynced) all the
		// time, so the cuts drop and tear data pages too, which the WAL's
		// full-page images must repair.
		"-c", "shared_buffers=1MB", "-c", "max_connections=20")
	cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL // if the test process dies
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)
	if err := s.waitReady(logStart); err != nil {
		s.Kill(t)
		return err
	}
	s.starts++
	if strings.Contains(s.logSince(logStart), "automatic recovery in progress") {
		s.recoveries++
	}
	return nil
}

// waitReady waits for the started server to accept connections and
// checks its durability settings, or fails if it exits or takes longer
// than startTimeout.
func (s *pgServer) waitReady(logStart int64) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited (%v); its log says:\n%s", s.cmd.ProcessState, s.logSince(logStart))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres does not accept connections after %v; its log says:\n%s", startTimeout, s.logSince(logStart))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		settings, err := s.settings(ctx)
		cancel()
		if err != nil {
			time.Sleep(20 * time.Millisecond) // not up yet: poll again
			continue
		}
		for _, name := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
			if settings[name] != "on" {
				return fmt.Errorf("the server runs with %s = %q, want on", name, settings[name])
			}
		}
		return nil
	}
}

// settings connects to the server and returns its durability settings.
func (s *pgServer) settings(ctx context.Context) (map[string]string, error) {
	c, err := pgx.Connect(ctx, s.dsn())
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	var name, setting string
	_, err = pgx.ForEachRow(rows, []any{&name, &setting}, func() error {
		m[name] = setting
		return nil
	})
	return m, err
}

// logSince returns the server's log from offset off on.
func (s *pgServer) logSince(off int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	if off > int64(len(b)) {
		off = 0
	}
	return string(bytes.TrimSpace(b[off:]))
}

// Kill kills every process of the server with SIGKILL (the postmaster is
// the first process of its PID namespace: the kernel kills the others
// when it dies) and returns once the postmaster has been reaped, which
// the kernel allows only after every other process of the namespace has
// exited.
func (s *pgServer) Kill(t *testing.T) {
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill postgres: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(killTimeout):
		t.Fatalf("postgres (pid %d) still runs %v after SIGKILL", pid, killTimeout)
	}
	s.cmd = nil
}

// Remove drops the schema of the store of dir (durably: the DROP
// commits with synchronous_commit on).
func (s *pgServer) Remove(t *testing.T, dir string) {
	t.Helper()
	dropSchema(t, s.dsn(), schemaOf(dir))
}

// fsyncDir fsyncs the directory dir.
func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return d.Close()
}

var _ storagetest.PowerCutServer = (*pgServer)(nil)
