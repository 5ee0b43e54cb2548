package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/admin"
	"github.com/forge-consensus/consensus/backup"
)

// minDownloadIdle is the least time a backup download may go without a
// byte (the node takes a snapshot before it answers).
const minDownloadIdle = 30 * time.Second

// snapshot runs "snapshot" (take one), "snapshot save FILE" and
// "snapshot status FILE".
func (c *cli) snapshot(args []string) error {
	if len(args) == 0 {
		return c.mutate("/snapshot", nil, "snapshot taken at index", true)
	}
	switch args[0] {
	case "save":
		fs := flag.NewFlagSet("snapshot save", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		nodeName := fs.String("node", "", "")
		pos, err := parseInterspersed(fs, args[1:])
		if err != nil {
			return err
		}
		if err := wantArgs(pos, 1, "snapshot save FILE [--node ID]"); err != nil {
			return err
		}
		return c.snapshotSave(pos[0], *nodeName)
	case "status":
		if err := wantArgs(args[1:], 1, "snapshot status FILE"); err != nil {
			return err
		}
		return c.snapshotStatus(args[1])
	}
	return usagef("unknown snapshot command %q: want save or status (or none, to take a snapshot)", args[0])
}

// source picks the endpoint to download from: the one that is node (by
// name or number), or else the leader's, or else the first that answers.
// The token goes to --endpoints only, so the node must be one of them.
func (c *cli) source(node string) (string, string, error) {
	var want admin.NodeID
	if node != "" {
		id, err := parseID(node)
		if err != nil {
			return "", "", err
		}
		want = id
	}
	var first, firstWhat string
	var failed []string
	for _, ep := range c.endpoints {
		resp, err := c.send(http.MethodGet, ep+c.prefix+"/status", nil, "")
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		if resp.status != http.StatusOK {
			failed = append(failed, ep+": "+resp.err().Error())
			continue
		}
		var info admin.ClusterInfo
		if err := json.Unmarshal(resp.body, &info); err != nil {
			failed = append(failed, fmt.Sprintf("%s: status: %v", ep, err))
			continue
		}
		what := fmt.Sprintf("node %s (%s)", showNode(info.NodeID, info.NodeName), info.Role)
		switch {
		case want.ID != 0 && info.NodeID == want.ID:
			return ep, what, nil
		case want.ID == 0 && info.Role == "leader":
			return ep, what, nil
		}
		if first == "" {
			first, firstWhat = ep, what
		}
	}
	if want.ID != 0 {
		return "", "", fmt.Errorf("node %s is not at any of --endpoints (list its API URL there)%s", want, failures(failed))
	}
	if first == "" {
		return "", "", fmt.Errorf("no endpoint answered%s", failures(failed))
	}
	return first, firstWhat + ", not the leader: no leader among --endpoints", nil
}

func failures(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return ": " + strings.Join(f, "; ")
}

func showNode(id uint64, name string) string {
	if name != "" {
		return name
	}
	return fmt.Sprint(id)
}

// snapshotSave downloads a backup into file: into file.tmp, verified as it
// arrives, fsynced, then renamed.
func (c *cli) snapshotSave(file, node string) error {
	ep, what, err := c.source(node)
	if err != nil {
		return err
	}
	idle := max(c.timeout, minDownloadIdle)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchdog := time.AfterFunc(idle, cancel)
	defer watchdog.Stop()
	target := ep + c.prefix + "/snapshot/download"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token) // ep is one of --endpoints
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return (&response{status: resp.StatusCode, header: resp.Header, body: body}).err()
	}
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w (a download in progress, or left by one that failed: remove it)", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	body := &progressReader{r: resp.Body, alive: func() { watchdog.Reset(idle) }}
	info, err := backup.Read(io.TeeReader(body, f), nil)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("download from %s: no data for %v: %w", what, idle, err)
		}
		return fmt.Errorf("download from %s: %w", what, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		_ = d.Sync() // the rename durable; best effort where directories cannot be synced
		d.Close()
	}
	return c.describe(file, info, "saved from "+what)
}

// progressReader calls alive on every read that returns data.
type progressReader struct {
	r     io.Reader
	alive func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.alive()
	}
	return n, err
}

// snapshotStatus verifies a backup file and describes it.
func (c *cli) snapshotStatus(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := backup.Read(f, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return c.describe(file, info, "verified")
}

func (c *cli) describe(file string, info backup.Info, what string) error {
	if c.json {
		b, err := json.Marshal(struct {
			File string `json:"file"`
			backup.Header
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		}{file, info.Header, info.Size, info.SHA256})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "%s\n", b)
		return err
	}
	fmt.Fprintf(c.stdout, "%s: %s\n", file, what)
	fmt.Fprintf(c.stdout, "  cluster id  %s\n", info.ClusterID)
	fmt.Fprintf(c.stdout, "  node        %s\n", showNode(info.Node, info.NodeName))
	fmt.Fprintf(c.stdout, "  index       %d\n", info.Index)
	fmt.Fprintf(c.stdout, "  term        %d\n", info.Term)
	fmt.Fprintf(c.stdout, "  voters      %v\n", info.Voters)
	fmt.Fprintf(c.stdout, "  created     %s\n", info.Created.Format(time.RFC3339))
	fmt.Fprintf(c.stdout, "  size        %d bytes (data %d)\n", info.Size, info.DataLength)
	_, err := fmt.Fprintf(c.stdout, "  sha256      %s\n", info.SHA256)
	return err
}
