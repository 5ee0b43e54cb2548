package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/forge-consensus/consensus/admin"
)

// dispatch runs one command.
func (c *cli) dispatch(cmd string, args []string) error {
	switch cmd {
	case "status":
		return c.status(args)
	case "nodes":
		return c.nodes(args)
	case "leader":
		return c.leader(args)
	case "health":
		return c.health(args)
	case "add-node":
		return c.addNode(args)
	case "promote":
		return c.promote(args)
	case "remove-node", "transfer-leadership":
		if err := wantArgs(args, 1, cmd+" <id>"); err != nil {
			return err
		}
		id, err := parseID(args[0])
		if err != nil {
			return err
		}
		if cmd == "remove-node" {
			return c.mutate("/remove-node", admin.RemoveNodeRequest{NodeID: id}, fmt.Sprintf("node %s removed", id), false)
		}
		return c.mutate("/transfer-leadership", admin.TransferLeadershipRequest{Target: id},
			fmt.Sprintf("leadership transferred to node %s", id), false)
	case "snapshot":
		return c.snapshot(args)
	case "kv":
		return c.kv(args)
	case "help":
		return flag.ErrHelp
	}
	return usagef("unknown command")
}

// admin calls an admin route and returns the body of a 200 answer.
func (c *cli) admin(method, route string, req any) ([]byte, error) {
	var body []byte
	ctype := ""
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		ctype = "application/json"
	}
	resp, err := c.call(method, c.prefix+route, body, ctype)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, resp.err()
	}
	return resp.body, nil
}

// print writes body re-indented in json mode, or else the table that
// table writes to an aligning writer.
func (c *cli) print(body []byte, table func(w io.Writer)) error {
	if c.json {
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
			return fmt.Errorf("server answered invalid JSON: %w", err)
		}
		buf.WriteByte('\n')
		_, err := c.stdout.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode the server's answer: %w", err)
	}
	return nil
}

// get fetches an admin route that answers 200 with a JSON body into v.
func (c *cli) get(route string, args []string, v any) ([]byte, error) {
	if err := wantArgs(args, 0, strings.TrimPrefix(route, "/")); err != nil {
		return nil, err
	}
	body, err := c.admin(http.MethodGet, route, nil)
	if err != nil {
		return nil, err
	}
	return body, decode(body, v)
}

// getFromLeader fetches an admin route from the leader, since only the
// leader sees every member's activity and replication: it asks the first
// endpoint that answers for /status and, if that node is not the leader
// but names it, asks the leader; otherwise the first answer stands.
func (c *cli) getFromLeader(route string, args []string, v any) ([]byte, error) {
	var info admin.ClusterInfo
	body, err := c.get("/status", args, &info)
	if err != nil {
		return nil, err
	}
	if info.Role != "leader" && info.LeaderAddress != "" {
		resp, err := c.follow(http.MethodGet, strings.TrimRight(info.LeaderAddress, "/")+c.prefix+route, nil, "")
		if err == nil && resp.status == http.StatusOK {
			return resp.body, decode(resp.body, v)
		}
	}
	if route == "/status" {
		return body, decode(body, v)
	}
	return c.get(route, args, v)
}

func (c *cli) status(args []string) error {
	var info admin.ClusterInfo
	body, err := c.getFromLeader("/status", args, &info)
	if err != nil {
		return err
	}
	return c.print(body, func(w io.Writer) {
		fmt.Fprintf(w, "CLUSTER\t%s\n", info.ID)
		fmt.Fprintf(w, "NODE\t%s (%s)\n", nameOr(info.NodeName, info.NodeID), info.Role)
		fmt.Fprintf(w, "LEADER\t%s\n", leaderString(info.Leader, info.LeaderName, info.LeaderAddress))
		fmt.Fprintf(w, "TERM\t%d\n", info.Term)
		fmt.Fprintf(w, "COMMIT\t%d\n", info.CommitIndex)
		fmt.Fprintf(w, "APPLIED\t%d\n", info.LastApplied)
		fmt.Fprintf(w, "NODES\t%d active of %d\n", info.ActiveNodes, info.TotalNodes)
		fmt.Fprintf(w, "QUORUM\t%s\n\n", yesNo(info.HasQuorum))
		nodesTable(w, info.Nodes)
	})
}

func (c *cli) nodes(args []string) error {
	var v struct {
		Nodes []admin.NodeStatus `json:"nodes"`
	}
	body, err := c.getFromLeader("/nodes", args, &v)
	if err != nil {
		return err
	}
	return c.print(body, func(w io.Writer) { nodesTable(w, v.Nodes) })
}

func nodesTable(w io.Writer, nodes []admin.NodeStatus) {
	fmt.Fprintln(w, "ID\tADDRESS\tROLE\tVOTER\tACTIVE\tMATCH\tLAG")
	for _, n := range nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n",
			nameOr(n.Name, n.ID), n.Address, n.Role, yesNo(n.Voter), yesNo(n.Active), n.MatchIndex, n.Lag)
	}
}

func (c *cli) leader(args []string) error {
	var v struct {
		ID      uint64 `json:"leader_id"`
		Name    string `json:"leader_name"`
		Address string `json:"leader_address"`
		Term    uint64 `json:"term"`
	}
	body, err := c.get("/leader", args, &v)
	if err != nil {
		return err
	}
	return c.print(body, func(w io.Writer) {
		fmt.Fprintf(w, "ID\tADDRESS\tTERM\n%s\t%s\t%d\n", nameOr(v.Name, v.ID), v.Address, v.Term)
	})
}

// health prints the health verdict; a 503 carrying one is unhealthy, not a
// failure to answer.
func (c *cli) health(args []string) error {
	if err := wantArgs(args, 0, "health"); err != nil {
		return err
	}
	resp, err := c.call(http.MethodGet, c.prefix+"/health", nil, "")
	if err != nil {
		return err
	}
	var hs admin.HealthStatus
	if (resp.status != http.StatusOK && resp.status != http.StatusServiceUnavailable) ||
		json.Unmarshal(resp.body, &hs) != nil || hs.Status == "" {
		return resp.err()
	}
	err = c.print(resp.body, func(w io.Writer) {
		fmt.Fprintf(w, "STATUS\t%s\n", hs.Status)
		fmt.Fprintf(w, "LEADER\t%s\n", leaderString(hs.Leader, hs.LeaderName, ""))
		fmt.Fprintf(w, "QUORUM\t%s\n", yesNo(hs.HasQuorum))
		fmt.Fprintf(w, "NODES\t%d active of %d\n\n", hs.ActiveNodes, hs.TotalNodes)
		fmt.Fprintln(w, "CHECK\tHEALTHY\tMESSAGE")
		for _, ch := range hs.Checks {
			fmt.Fprintf(w, "%s\t%s\t%s\n", ch.Name, yesNo(ch.Healthy), ch.Message)
		}
	})
	if err == nil && !hs.Healthy {
		err = fmt.Errorf("cluster is %s", hs.Status)
	}
	return err
}

func (c *cli) addNode(args []string) error {
	fs := flag.NewFlagSet("add-node", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	learner := fs.Bool("learner", false, "")
	wait, waitTimeout := waitFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 3, "add-node <id> <host> <port> [--learner] [--wait [--wait-timeout D]]"); err != nil {
		return err
	}
	if *learner && *wait {
		return usagef("--wait waits for a promotion that --learner does not ask for (promote it with: promote <id> --wait)")
	}
	id, err := parseID(pos[0])
	if err != nil {
		return err
	}
	host := strings.TrimSpace(pos[1])
	if host == "" {
		return usagef("empty host")
	}
	if err := admin.CheckHost(host); err != nil {
		return usagef("invalid host %q: %v", host, err)
	}
	port, err := strconv.Atoi(pos[2])
	if err != nil || port < 1 || port > 65535 {
		return usagef("invalid port %q: want 1..65535", pos[2])
	}
	route, err := waitRoute("/add-node", *wait, *waitTimeout)
	if err != nil {
		return err
	}
	req := admin.AddNodeRequest{NodeID: id, Address: host, Port: port, Learner: *learner}
	done := fmt.Sprintf("node %s added at %s", id, net.JoinHostPort(host, strconv.Itoa(port)))
	return c.staged(route, req, done, id, *waitTimeout)
}

// promote asks the leader to promote a learner that has caught up.
func (c *cli) promote(args []string) error {
	fs := flag.NewFlagSet("promote", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wait, waitTimeout := waitFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 1, "promote <id> [--wait [--wait-timeout D]]"); err != nil {
		return err
	}
	id, err := parseID(pos[0])
	if err != nil {
		return err
	}
	route, err := waitRoute("/promote", *wait, *waitTimeout)
	if err != nil {
		return err
	}
	return c.staged(route, admin.PromoteRequest{NodeID: id}, fmt.Sprintf("node %s", id), id, *waitTimeout)
}

// waitFlags adds --wait and --wait-timeout to fs.
func waitFlags(fs *flag.FlagSet) (wait *bool, timeout *time.Duration) {
	return fs.Bool("wait", false, ""), fs.Duration("wait-timeout", admin.DefaultWaitTimeout, "")
}

// waitRoute adds ?wait=voter&timeout=D to route when waiting.
func waitRoute(route string, wait bool, timeout time.Duration) (string, error) {
	if !wait {
		return route, nil
	}
	if timeout <= 0 || timeout > admin.MaxWaitTimeout {
		return "", usagef("--wait-timeout %v: want more than 0 and at most %v", timeout, admin.MaxWaitTimeout)
	}
	return route + "?" + url.Values{"wait": {admin.StageVoter}, "timeout": {timeout.String()}}.Encode(), nil
}

// staged POSTs a membership request and prints done with the stage the
// member reached. A request that waits for a promotion gets waitTimeout
// on top of the request timeout.
func (c *cli) staged(route string, req any, done string, id admin.NodeID, waitTimeout time.Duration) error {
	if strings.Contains(route, "wait=") {
		defer func(t time.Duration) { c.timeout = t }(c.timeout)
		c.timeout += waitTimeout
	}
	body, err := c.admin(http.MethodPost, route, req)
	if err != nil {
		return err
	}
	var v struct {
		Stage     string `json:"stage"`
		Promotion string `json:"promotion"`
	}
	if err := decode(body, &v); err != nil {
		return err
	}
	return c.print(body, func(w io.Writer) {
		switch {
		case v.Stage == admin.StageVoter:
			done += ": a voter"
		case v.Stage == admin.StageLearner && strings.HasPrefix(v.Promotion, "manual"):
			done += fmt.Sprintf(": a learner until promoted (consensusctl promote %s)", id)
		case v.Stage == admin.StageLearner:
			done += ": a learner, promoted to voter once it has caught up (--wait waits for that)"
			if v.Promotion != "" {
				done += "\n" + v.Promotion
			}
		}
		fmt.Fprintln(w, done)
	})
}

// mutate POSTs req to an admin route and prints done, followed by the
// answer's index if withIndex.
func (c *cli) mutate(route string, req any, done string, withIndex bool) error {
	body, err := c.admin(http.MethodPost, route, req)
	if err != nil {
		return err
	}
	var v struct {
		Index uint64 `json:"index"`
	}
	if err := decode(body, &v); err != nil {
		return err
	}
	return c.print(body, func(w io.Writer) {
		if withIndex {
			done += " " + strconv.FormatUint(v.Index, 10)
		}
		fmt.Fprintln(w, done)
	})
}

// kv runs a key-value subcommand against /kv/{key}.
func (c *cli) kv(args []string) error {
	if len(args) == 0 {
		return usagef("want a subcommand: kv get|put|delete")
	}
	sub := args[0]
	fs := flag.NewFlagSet("kv "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var consistency string
	if sub == "get" {
		fs.StringVar(&consistency, "consistency", "", "")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"get": 1, "put": 2, "delete": 1}[sub]
	if want == 0 {
		return usagef("unknown subcommand: want kv get|put|delete")
	}
	if err := wantArgs(pos, want, "kv "+sub+map[string]string{"get": " <key>", "put": " <key> <value>", "delete": " <key>"}[sub]); err != nil {
		return err
	}
	if pos[0] == "" {
		return usagef("empty key")
	}
	path := "/kv/" + url.PathEscape(pos[0])
	switch sub {
	case "get":
		switch consistency {
		case "":
		case "linearizable", "lease", "stale":
			path += "?consistency=" + consistency
		default:
			return usagef("--consistency %q: want linearizable, lease or stale", consistency)
		}
		resp, err := c.call(http.MethodGet, path, nil, "")
		if err != nil {
			return err
		}
		if resp.status != http.StatusOK {
			return resp.err()
		}
		if !c.json {
			_, err = fmt.Fprintf(c.stdout, "%s\n", resp.body)
			return err
		}
		out := map[string]string{"key": pos[0], "value": string(resp.body)}
		if !utf8.Valid(resp.body) {
			delete(out, "value")
			out["value_base64"] = base64.StdEncoding.EncodeToString(resp.body)
		}
		body, _ := json.Marshal(out) // strings always encode
		return c.print(body, nil)
	case "put":
		value := []byte(pos[1])
		if pos[1] == "-" {
			if value, err = io.ReadAll(c.stdin); err != nil {
				return fmt.Errorf("read the value from standard input: %w", err)
			}
		}
		return c.kvWrite(http.MethodPut, path, value, "application/octet-stream", func(map[string]any) string { return "OK" })
	default:
		return c.kvWrite(http.MethodDelete, path, nil, "", func(v map[string]any) string {
			if v["deleted"] == true {
				return "deleted"
			}
			return "not found, nothing deleted"
		})
	}
}

func (c *cli) kvWrite(method, path string, value []byte, ctype string, summary func(map[string]any) string) error {
	resp, err := c.call(method, path, value, ctype)
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return resp.err()
	}
	var v map[string]any
	if err := decode(resp.body, &v); err != nil {
		return err
	}
	return c.print(resp.body, func(w io.Writer) { fmt.Fprintln(w, summary(v)) })
}

func leaderString(id uint64, name, addr string) string {
	switch {
	case id == 0:
		return "none"
	case addr == "":
		return nameOr(name, id)
	}
	return fmt.Sprintf("%s at %s", nameOr(name, id), addr)
}

// nameOr returns a member's name, or its ID when the node did not send
// one (an older node).
func nameOr(name string, id uint64) string {
	if name != "" {
		return name
	}
	return strconv.FormatUint(id, 10)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
