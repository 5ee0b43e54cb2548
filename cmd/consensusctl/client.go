package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

const (
	maxHops     = 3
	maxResponse = 8 << 20
)

// cli is one parsed invocation: where to send requests and how.
type cli struct {
	runConfig
	endpoints []string        // base URLs without a trailing "/"
	trusted   map[string]bool // host:port of every endpoint; only these get the token
	prefix    string          // admin path prefix, "" for the root
	token     string
	timeout   time.Duration
	json      bool
	client    *http.Client
}

// response is a complete HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// serverError is a refusal, with the message from the body's "error" field
// when there is one.
type serverError struct {
	status int
	msg    string
}

func (e *serverError) Error() string { return e.msg }

func (r *response) err() error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(r.body, &e) == nil && e.Error != "" {
		return &serverError{r.status, e.Error}
	}
	msg := fmt.Sprintf("HTTP %d %s", r.status, http.StatusText(r.status))
	if b := strings.TrimSpace(string(r.body)); b != "" {
		msg += ": " + b[:min(len(b), 200)]
	}
	return &serverError{r.status, msg}
}

// connError is a failure to get an answer. sent reports whether the
// request had been written, so that it may have taken effect.
type connError struct {
	err  error
	sent bool
}

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// call sends a request for path (with its query) to the first endpoint that
// answers, following leader redirects, and returns the answer.
func (c *cli) call(method, path string, body []byte, contentType string) (*response, error) {
	var failed []string
	for _, ep := range c.endpoints {
		resp, err := c.follow(method, ep+path, body, contentType)
		var ce *connError
		if errors.As(err, &ce) && (method == http.MethodGet || !ce.sent) {
			failed = append(failed, err.Error())
			continue
		}
		if ce != nil {
			return nil, fmt.Errorf("no answer, the request may have taken effect: %w", err)
		}
		return resp, err
	}
	return nil, fmt.Errorf("no endpoint answered: %s", strings.Join(failed, "; "))
}

// follow sends the request to target and follows leader redirects: 307 and
// 308 up to maxHops times, and one retry at the leader_address of a 503.
func (c *cli) follow(method, target string, body []byte, contentType string) (*response, error) {
	retried := false
	for hops := 0; ; {
		resp, err := c.send(method, target, body, contentType)
		if err != nil {
			return nil, err
		}
		loc := resp.header.Get("Location")
		switch {
		case (resp.status == http.StatusTemporaryRedirect || resp.status == http.StatusPermanentRedirect) && loc != "":
			if hops == maxHops {
				return nil, fmt.Errorf("%s %s: gave up after %d redirects", method, target, maxHops)
			}
			hops++
			if target, err = resolve(target, loc); err != nil {
				return nil, err
			}
		case resp.status == http.StatusServiceUnavailable && !retried:
			var nl struct {
				LeaderAddress string `json:"leader_address"`
			}
			if json.Unmarshal(resp.body, &nl) != nil || nl.LeaderAddress == "" {
				return resp, nil
			}
			retried = true
			lu, err := url.Parse(nl.LeaderAddress)
			if err != nil || !isHTTP(lu) {
				return nil, fmt.Errorf("refusing to retry at leader_address %q: not an http(s) URL", nl.LeaderAddress)
			}
			u, _ := url.Parse(target) // send parsed it already
			target = strings.TrimSuffix(nl.LeaderAddress, "/") + u.RequestURI()
		default:
			return resp, nil
		}
	}
}

// resolve returns loc relative to base, refusing anything but http(s).
func resolve(base, loc string) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", base, err)
	}
	u, err := b.Parse(loc)
	if err != nil || !isHTTP(u) {
		return "", fmt.Errorf("refusing to follow the leader redirect to %q: not an http(s) URL", loc)
	}
	return u.String(), nil
}

// send makes one HTTP request, with the token if target is an endpoint's
// host, and reads the whole answer.
func (c *cli) send(method, target string, body []byte, contentType string) (*response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var sent atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { sent.Store(info.Err == nil) },
	})
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		if c.trusted[hostPort(req.URL)] {
			req.Header.Set("Authorization", "Bearer "+c.token)
		} else {
			fmt.Fprintf(c.stderr, "consensusctl: not sending the token to %s: it is not one of --endpoints\n", req.URL.Host)
		}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, &connError{err: err, sent: sent.Load()}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, &connError{err: fmt.Errorf("read answer of %s %s: %w", method, target, err), sent: true}
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("answer of %s %s is over %d bytes", method, target, maxResponse)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}
