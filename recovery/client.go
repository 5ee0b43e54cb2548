package recovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/admin"
)

// maxAnswer caps the size of an admin API answer.
const maxAnswer = 8 << 20

// httpError is an admin API answer other than 200.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.msg) }

// adminClient talks to the other members' admin APIs.
type adminClient struct {
	hc        *http.Client
	endpoints []string        // base URLs, without the path prefix
	trusted   map[string]bool // host:port of every endpoint: only these get the token
	prefix    string
	token     string
}

func newAdminClient(hc *http.Client, endpoints []string, prefix, token string) (*adminClient, error) {
	c := &adminClient{hc: hc, prefix: prefix, token: token, trusted: map[string]bool{}}
	for _, ep := range endpoints {
		ep = strings.TrimRight(strings.TrimSpace(ep), "/")
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("endpoint %q is not an http(s) base URL", ep)
		}
		c.endpoints = append(c.endpoints, ep)
		c.trusted[u.Host] = true
	}
	if len(c.endpoints) == 0 {
		return nil, errors.New("no admin API endpoints: the config lists no other member (or pass -endpoints)")
	}
	return c, nil
}

// call sends one request to base+prefix+route and decodes a 200 answer
// into out (if not nil).
func (c *adminClient) call(ctx context.Context, method, base, route string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	target := strings.TrimRight(base, "/") + c.prefix + route
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, target, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" && c.trusted[req.URL.Host] {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, target, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized && !c.trusted[req.URL.Host] {
			msg += " (the token is sent only to the endpoints: " + strings.Join(c.endpoints, ", ") + ")"
		}
		return fmt.Errorf("%s %s: %w", method, target, &httpError{resp.StatusCode, msg})
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, target, err)
		}
	}
	return nil
}

// view is the cluster as its leader sees it.
type view struct {
	base string // the leader's admin base URL
	info admin.ClusterInfo
}

// member returns the status of node id and whether it is a member.
func (v view) member(id uint64) (admin.NodeStatus, bool) {
	for _, n := range v.info.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return admin.NodeStatus{}, false
}

// voters returns the voters' IDs, sorted.
func (v view) voters() []uint64 {
	var ids []uint64
	for _, n := range v.info.Nodes {
		if n.Voter {
			ids = append(ids, n.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// learners returns the learners' IDs, sorted.
func (v view) learners() []uint64 {
	var ids []uint64
	for _, n := range v.info.Nodes {
		if !n.Voter {
			ids = append(ids, n.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// askTimeout bounds one status request while looking for the leader.
const askTimeout = 2 * time.Second

// leader asks the endpoints, in order, for the cluster's status until one
// is the leader or names it, and returns the leader's view. It retries
// until ctx ends (an election may be under way).
func (c *adminClient) leader(ctx context.Context, poll time.Duration) (view, error) {
	var last []string
	for {
		last = last[:0]
		for _, ep := range c.endpoints {
			var info admin.ClusterInfo
			// One member that does not answer (stopped mid-request, or
			// paused) must not use up the whole wait: each ask is bounded.
			cctx, cancel := context.WithTimeout(ctx, askTimeout)
			err := c.call(cctx, http.MethodGet, ep, "/status", nil, &info)
			cancel()
			if err != nil {
				last = append(last, err.Error())
				continue
			}
			if info.Role == "leader" {
				return view{base: ep, info: info}, nil
			}
			if info.LeaderAddress == "" {
				last = append(last, fmt.Sprintf("%s: node %d knows no leader", ep, info.NodeID))
				continue
			}
			var li admin.ClusterInfo
			cctx, cancel = context.WithTimeout(ctx, askTimeout)
			err = c.call(cctx, http.MethodGet, info.LeaderAddress, "/status", nil, &li)
			cancel()
			if err != nil {
				last = append(last, err.Error())
				continue
			}
			if li.Role == "leader" {
				return view{base: strings.TrimRight(info.LeaderAddress, "/"), info: li}, nil
			}
			last = append(last, fmt.Sprintf("%s: node %d is not the leader", info.LeaderAddress, li.NodeID))
		}
		select {
		case <-ctx.Done():
			return view{}, fmt.Errorf("no leader found (%s): %w", strings.Join(last, "; "), ctx.Err())
		case <-time.After(poll):
		}
	}
}
