// Command consensusctl is the command-line client of a Forge Consensus
// cluster. It reads and changes the cluster through the admin REST API
// (package admin) and reads and writes keys through the key-value API that
// every node serves at the root of the same HTTP server (package server).
//
// Usage:
//
//	consensusctl [global flags] <command> [args]
//
// Commands:
//
//	status                       cluster status, from the leader when it can be asked
//	nodes                        the members, their activity and lag (from the leader too)
//	leader                       leader id, address and term
//	health                       health checks; exit status 0 if healthy, 1 if not
//	add-node <id> <host> <port> [--learner] [--wait [--wait-timeout D]]
//	                             add a node (admin token): it joins as a
//	                             learner, promoted to voter once caught up;
//	                             --wait waits for that (default 30s);
//	                             --learner keeps it a learner
//	promote <id> [--wait [--wait-timeout D]]
//	                             promote a learner that has caught up (admin
//	                             token); --wait waits until it has
//	remove-node <id>             remove a node (admin token)
//	transfer-leadership <id>     hand leadership to a node (operator token)
//	snapshot                     take a snapshot (operator token)
//	snapshot save <file> [--node ID]
//	                             download a backup (operator token) from the
//	                             leader (or node ID) into file, verified
//	snapshot status <file>       verify a backup file and describe it
//	kv get <key> [--consistency linearizable|lease|stale]
//	kv put <key> <value>         a value of "-" is read from standard input
//	kv delete <key>
//
// A node ID is its name: "node-3", "us-east-1a", or a number such as "3".
// kv get prints the value and a newline, or
// with -o json {"key":K,"value":V} ("value_base64" if V is not UTF-8).
//
// Global flags, before the command:
//
//	--endpoints URLs   comma-separated base URLs of the nodes, tried in order
//	                   (default $CONSENSUSCTL_ENDPOINTS, else http://127.0.0.1:7101)
//	--prefix PATH      admin API path prefix (default /consensus)
//	--token TOKEN      bearer token (default $CONSENSUSCTL_TOKEN, else
//	                   $CONSENSUS_TOKEN); never printed. The kv commands need a
//	                   reader or writer token (or an admin one) on a node with
//	                   data-plane tokens; the others an admin API token
//	--cacert FILE      PEM CA certificates to trust instead of the system roots
//	--cert FILE, --key FILE
//	                   client certificate and key for mutual TLS
//	--insecure-skip-verify
//	                   do not verify server certificates (unsafe: anyone on the
//	                   path can read the token and forge answers)
//	--timeout D        timeout of each HTTP request (default 5s)
//	-o, --output F     table or json (default table); json prints the server's JSON
//
// Endpoints are tried in order: a connection error moves on to the next one,
// except for a write that was already sent, which may have taken effect. Any
// HTTP answer is final, except that consensusctl follows leader redirects
// itself: a 307 or 308 is re-sent, same method and body, to its Location (at
// most 3 hops, http and https only), and a 503 naming a leader_address is
// retried once there. The token is sent only to hosts (host:port) listed in
// --endpoints, never to other redirect targets, so list every node to let
// writes reach the leader.
//
// Exit status: 0 on success, 1 if a server refused the request, the cluster
// is unhealthy or no endpoint answered, 2 on a usage error.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/admin"
)

const usage = `usage: consensusctl [global flags] <command> [args]

commands:
  status                       cluster status, from the leader when it can be asked
  nodes                        the members, their activity and lag (from the leader too)
  leader                       leader id, address and term
  health                       health checks; exit status 0 if healthy, 1 if not
  add-node <id> <host> <port> [--learner] [--wait [--wait-timeout D]]
                               add a node (admin token): it joins as a learner,
                               promoted to voter once caught up; --wait waits
                               for that (default 30s); --learner keeps it one
  promote <id> [--wait [--wait-timeout D]]
                               promote a learner that has caught up (admin
                               token); --wait waits until it has
  remove-node <id>             remove a node (admin token)
  transfer-leadership <id>     hand leadership to a node (operator token)
  snapshot                     take a snapshot (operator token)
  snapshot save <file> [--node ID]
                               download a backup (operator token) from the leader
                               among --endpoints (or node ID) into file, verified
  snapshot status <file>       verify a backup file and describe it
  kv get <key> [--consistency linearizable|lease|stale]
  kv put <key> <value>         a value of "-" is read from standard input
  kv delete <key>

A node ID is its name: "node-3", "us-east-1a", or a number such as "3". With -o json, kv get prints {"key":K,"value":V}.

global flags (before the command):
  --endpoints URLs     comma-separated base URLs, tried in order
                       (default $CONSENSUSCTL_ENDPOINTS, else ` + defaultEndpoint + `)
  --prefix PATH        admin API path prefix (default /consensus)
  --token TOKEN        bearer token (default $CONSENSUSCTL_TOKEN, else $CONSENSUS_TOKEN):
                       reader/writer (or admin) for kv, viewer/operator/admin for the rest
  --cacert FILE        PEM CA certificates to trust instead of the system roots
  --cert FILE          client certificate for mutual TLS (with --key)
  --key FILE           client key for mutual TLS
  --insecure-skip-verify
                       do not verify server certificates (UNSAFE)
  --timeout D          timeout of each HTTP request (default 5s)
  -o, --output F       table or json (default table)

Leader redirects (307/308, or 503 with leader_address) are followed, at most
3 hops. The token is sent only to hosts (host:port) listed in --endpoints.
Exit status: 0 ok, 1 refused, unhealthy or unreachable, 2 usage error.
`

const defaultEndpoint = "http://127.0.0.1:7101"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// runConfig is what an invocation needs from its surroundings. Tests build
// it directly to inject an HTTP client.
type runConfig struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// client, when set, is used instead of one built from the TLS flags.
	client *http.Client
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return runConfig{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}.run(args)
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// run executes one command line and returns the exit status.
func (rc runConfig) run(args []string) int {
	c, rest, err := rc.parse(args)
	what := ""
	if err == nil {
		defer c.client.CloseIdleConnections()
		if len(rest) == 0 {
			err = usagef("no command given")
		} else {
			what = rest[0]
			if what == "kv" && len(rest) > 1 {
				what += " " + rest[1]
			}
			err = c.dispatch(rest[0], rest[1:])
		}
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(rc.stdout, usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(rc.stderr, "consensusctl: %s\n\n%s", joinWhat(what, err), usage)
		return 2
	}
	fmt.Fprintf(rc.stderr, "consensusctl: %s\n", joinWhat(what, err))
	return 1
}

func joinWhat(what string, err error) string {
	if what == "" {
		return err.Error()
	}
	return what + ": " + err.Error()
}

// parse reads the global flags and returns the client they describe and
// the command line after them.
func (rc runConfig) parse(args []string) (*cli, []string, error) {
	fs := flag.NewFlagSet("consensusctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	endpoints := fs.String("endpoints", "", "")
	prefix := fs.String("prefix", "/consensus", "")
	token := fs.String("token", "", "")
	cacert := fs.String("cacert", "", "")
	cert := fs.String("cert", "", "")
	key := fs.String("key", "", "")
	insecure := fs.Bool("insecure-skip-verify", false, "")
	timeout := fs.Duration("timeout", 5*time.Second, "")
	output := "table"
	fs.StringVar(&output, "o", output, "")
	fs.StringVar(&output, "output", output, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, &usageError{err.Error()}
	}
	c := &cli{runConfig: rc, token: *token, timeout: *timeout, json: output == "json", trusted: map[string]bool{}}
	if c.token == "" {
		c.token = rc.getenv("CONSENSUSCTL_TOKEN")
	}
	if c.token == "" {
		c.token = rc.getenv("CONSENSUS_TOKEN")
	}
	if output != "table" && output != "json" {
		return nil, nil, usagef("--output %q: want table or json", output)
	}
	if *timeout <= 0 {
		return nil, nil, usagef("--timeout must be positive")
	}
	p := strings.TrimSuffix(*prefix, "/")
	if !strings.HasPrefix(*prefix, "/") || strings.ContainsAny(p, "?#") {
		return nil, nil, usagef("--prefix %q: want an absolute path such as /consensus", *prefix)
	}
	c.prefix = p
	raw := *endpoints
	if raw == "" {
		raw = rc.getenv("CONSENSUSCTL_ENDPOINTS")
	}
	if raw == "" {
		raw = defaultEndpoint
	}
	for _, s := range strings.Split(raw, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || !isHTTP(u) || u.RawQuery != "" || u.Fragment != "" {
			return nil, nil, usagef("--endpoints: %q is not an http(s) base URL such as %s", s, defaultEndpoint)
		}
		c.endpoints = append(c.endpoints, strings.TrimSuffix(s, "/"))
		c.trusted[hostPort(u)] = true
	}
	if len(c.endpoints) == 0 {
		return nil, nil, usagef("--endpoints is empty")
	}
	if (*cert == "") != (*key == "") {
		return nil, nil, usagef("--cert and --key go together")
	}
	client, err := rc.httpClient(*cacert, *cert, *key, *insecure)
	if err != nil {
		return nil, nil, err
	}
	c.client = client
	return c, fs.Args(), nil
}

// httpClient returns rc.client, or a client built from the TLS flags, set
// not to follow redirects: cli.follow does that.
func (rc runConfig) httpClient(cacert, cert, key string, insecure bool) (*http.Client, error) {
	base := rc.client
	if base == nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} // opt-in, documented as unsafe
		if cacert != "" {
			pem, err := os.ReadFile(cacert)
			if err != nil {
				return nil, fmt.Errorf("--cacert: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--cacert: no PEM certificate in %s", cacert)
			}
		}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg
		base = &http.Client{Transport: tr}
	}
	client := *base
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client, nil
}

func isHTTP(u *url.URL) bool { return (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" }

// hostPort is u's lower-case host and port, the port defaulting by scheme.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// parseID accepts a node's name as the admin API does: "node-4",
// "us-east-1a", or a number such as "3".
func parseID(s string) (admin.NodeID, error) {
	id, err := admin.Named(s)
	if err != nil {
		return admin.NodeID{}, usagef("invalid node id: %v", err)
	}
	return id, nil
}

func wantArgs(args []string, n int, synopsis string) error {
	if len(args) != n {
		return usagef("want %d argument(s), got %d: %s", n, len(args), synopsis)
	}
	return nil
}

// parseInterspersed parses fs's flags wherever they appear in args and
// returns the other arguments; everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}
