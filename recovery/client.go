package recovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
//
// The token goes only to the endpoints the operator named (and to this
// node's own API): never to an address a member's answer names. A
// member's status names the leader at the API address in that member's
// own directory, which need not be spelled as the operator spelled it
// (localhost for 127.0.0.1, a name inside a container network, another
// port mapping). So the client follows a leader by its ID: to the
// endpoint named for that ID, when there is one, and only otherwise to
// the address the answer gives. It is not safe for concurrent use.
type adminClient struct {
	hc        *http.Client
	endpoints []string          // base URLs, without the path prefix
	trusted   map[string]bool   // hostKey of every endpoint: only these get the token
	named     map[uint64]string // node ID -> its endpoint (from the configuration, or the endpoint's own answer)
	prefix    string
	token     string
}

// endpoint is an admin API base URL, with the ID of the node it belongs
// to when that is known (0 otherwise).
type endpoint struct {
	url string
	id  uint64
}

func newAdminClient(hc *http.Client, endpoints []endpoint, prefix, token string) (*adminClient, error) {
	c := &adminClient{hc: hc, prefix: prefix, token: token, trusted: map[string]bool{}, named: map[uint64]string{}}
	for _, e := range endpoints {
		ep := strings.TrimRight(strings.TrimSpace(e.url), "/")
		if err := c.trust(ep); err != nil {
			return nil, err
		}
		c.endpoints = append(c.endpoints, ep)
		if e.id != 0 {
			c.named[e.id] = ep
		}
	}
	if len(c.endpoints) == 0 {
		return nil, errors.New("no admin API endpoints: the config lists no other member (or pass -endpoints)")
	}
	return c, nil
}

// trust adds base's host to the hosts that get the token.
func (c *adminClient) trust(base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q is not an http(s) base URL", base)
	}
	c.trusted[hostKey(u)] = true
	return nil
}

// trusts reports whether the token may be sent to u.
func (c *adminClient) trusts(u *url.URL) bool { return c.trusted[hostKey(u)] }

// hostKey is u's host and port as a request reaches them: the host in
// lower case without a trailing dot, the scheme's default port made
// explicit. Two URLs with the same key reach the same listener.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), port)
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
	if c.token != "" && c.trusts(req.URL) {
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
		if resp.StatusCode == http.StatusUnauthorized && !c.trusts(req.URL) {
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
	var last, report []string
	for {
		last = last[:0]
		for _, ep := range c.endpoints {
			info, err := c.status(ctx, ep)
			if err != nil {
				last = append(last, err.Error())
				continue
			}
			if info.NodeID != 0 {
				c.named[info.NodeID] = ep // its own answer says which node it is
			}
			if info.Role == "leader" {
				return view{base: ep, info: info}, nil
			}
			if info.Leader == 0 {
				last = append(last, fmt.Sprintf("%s: node %d knows no leader", ep, info.NodeID))
				continue
			}
			v, err := c.follow(ctx, ep, info)
			if err != nil {
				last = append(last, err.Error())
				continue
			}
			return v, nil
		}
		// The reasons of the last round that ctx did not cut short say
		// more than "deadline exceeded".
		if ctx.Err() == nil || len(report) == 0 {
			report = append(report[:0], last...)
		}
		select {
		case <-ctx.Done():
			return view{}, fmt.Errorf("no leader found (%s): %w", strings.Join(report, "; "), ctx.Err())
		case <-time.After(poll):
		}
	}
}

// status asks base for its status, within askTimeout: one member that
// does not answer (stopped mid-request, or paused) must not use up the
// whole wait.
func (c *adminClient) status(ctx context.Context, base string) (admin.ClusterInfo, error) {
	var info admin.ClusterInfo
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	err := c.call(ctx, http.MethodGet, base, "/status", nil, &info)
	return info, err
}

// follow asks the leader that info (the answer of ep) names for its view:
// at the endpoint named for the leader's ID if there is one, whatever
// address info gives for it, and otherwise (or if that endpoint does not
// answer as that node) at that address, with the token only if it is one
// of the endpoints.
func (c *adminClient) follow(ctx context.Context, ep string, info admin.ClusterInfo) (view, error) {
	lead := info.Leader
	var bases []string
	if b, ok := c.named[lead]; ok {
		bases = append(bases, b)
	}
	if h := strings.TrimRight(info.LeaderAddress, "/"); h != "" && !slices.Contains(bases, h) {
		bases = append(bases, h)
	}
	if len(bases) == 0 {
		return view{}, fmt.Errorf("%s: node %d names node %d as the leader, at no address", ep, info.NodeID, lead)
	}
	var errs []string
	for _, b := range bases {
		li, err := c.status(ctx, b)
		switch {
		case err != nil:
			if u, perr := url.Parse(b); perr == nil && !c.trusts(u) {
				err = fmt.Errorf("node %d names node %d as the leader at %s, not one of the endpoints: %w",
					info.NodeID, lead, b, err)
			}
			errs = append(errs, err.Error())
		case li.Role != "leader":
			errs = append(errs, fmt.Sprintf("%s: node %d is not the leader", b, li.NodeID))
			if li.NodeID == lead {
				// The node named answered: another address for it
				// would say the same.
				return view{}, errors.New(strings.Join(errs, "; "))
			}
		default:
			// The leader (or a newer one, answering as the leader).
			return view{base: b, info: li}, nil
		}
	}
	return view{}, errors.New(strings.Join(errs, "; "))
}
