// Command loadgen drives a running cluster with concurrent clients and
// prints throughput and latency percentiles.
//
//	loadgen -addrs 127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203 -n 20000 -clients 100 -size 128
//	loadgen -addrs ... -op read        linearizable reads of keys written first
//	loadgen -proto http -addrs http://127.0.0.1:7101,http://127.0.0.1:7102 ...
//
// With -proto wire (the default) the clients share one client.Client,
// which speaks the binary client protocol (-addrs are api.client_addr
// host:ports), pipelines every request to a node over one connection and
// follows the leader; each client has one request outstanding. With -proto
// http they use the HTTP API (-addrs are base URLs): writes go to the leader
// (found through /status) unless -any-node is set. Either way every write
// has a session, so retries are exactly-once.
//
// Against nodes with data-plane tokens, pass a writer token with -token or
// $CONSENSUS_TOKEN (never printed); against nodes with api.tls, their CA
// with -cacert (and -cert, -key for api.mtls): -addrs are then https base
// URLs for http.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	proto   string
	addrs   []string
	n       int
	clients int
	size    int
	op      string
	anyNode bool
	keys    int
	warmup  int
	token   string      // bearer token / Auth request ("" for none)
	tls     *tls.Config // nil: plaintext
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addrs", "", "comma-separated addresses of the nodes: client-protocol host:ports for wire"+
		" (default "+defaultWireAddrs+"), API base URLs for http (default "+defaultHTTPAddrs+")")
	var c config
	fs.StringVar(&c.proto, "proto", "wire", "client protocol: wire (binary, pipelined) or http")
	fs.IntVar(&c.n, "n", 10000, "operations in all")
	fs.IntVar(&c.clients, "clients", 1, "concurrent clients")
	fs.IntVar(&c.size, "size", 128, "value size in bytes")
	fs.StringVar(&c.op, "op", "write", "write or read (linearizable)")
	fs.BoolVar(&c.anyNode, "any-node", false, "spread requests over every node instead of the leader (http only)")
	fs.IntVar(&c.keys, "keys", 1000, "distinct keys")
	fs.IntVar(&c.warmup, "warmup", 0, "writes to run first, unmeasured (a fresh cluster is slower until its storage has recycled its first write-ahead log)")
	token := fs.String("token", "", "data-plane token (role writer, or reader for -op read with keys already written; default $CONSENSUS_TOKEN)")
	cacert := fs.String("cacert", "", "PEM CA certificates that verify the nodes (api.tls)")
	cert := fs.String("cert", "", "client certificate for api.mtls (with -key)")
	key := fs.String("key", "", "client key for api.mtls")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c.token = *token
	if c.token == "" {
		c.token = os.Getenv("CONSENSUS_TOKEN")
	}
	if (*cert == "") != (*key == "") {
		fmt.Fprintln(stderr, "loadgen: -cert and -key go together")
		return 2
	}
	if *cacert != "" || *cert != "" {
		tc, err := tlsConfig(*cacert, *cert, *key)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 2
		}
		c.tls = tc
	}
	if c.n <= 0 || c.clients <= 0 || c.size < 0 || c.keys <= 0 || c.warmup < 0 || (c.op != "write" && c.op != "read") {
		fmt.Fprintln(stderr, "loadgen: -n, -clients, -keys must be positive, -size and -warmup ≥ 0, -op write or read")
		return 2
	}
	var drive func(config) (result, error)
	switch c.proto {
	case "wire":
		drive = driveWire
		if *addrs == "" {
			*addrs = defaultWireAddrs
		}
		if c.anyNode {
			fmt.Fprintln(stderr, "loadgen: -any-node is for -proto http (the wire client follows the leader)")
			return 2
		}
	case "http":
		drive = driveHTTP
		if *addrs == "" {
			*addrs = defaultHTTPAddrs
		}
	default:
		fmt.Fprintln(stderr, "loadgen: -proto must be wire or http")
		return 2
	}
	c.addrs = strings.Split(*addrs, ",")
	if c.warmup > 0 {
		w := c
		w.n, w.op = c.warmup, "write"
		if _, err := drive(w); err != nil {
			fmt.Fprintf(stderr, "loadgen: warm-up: %v\n", err)
			return 1
		}
	}
	res, err := drive(c)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, res)
	return 0
}

// tlsConfig builds the TLS configuration of -cacert, -cert and -key.
func tlsConfig(cacert, cert, key string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cacert: no PEM certificate in %s", cacert)
		}
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// authorize adds c's token to an HTTP request.
func (c config) authorize(req *http.Request) *http.Request {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req
}

// Default addresses: a local cluster on its default ports (consensusd
// local-cluster: raft 7001-7003, HTTP API 7101-7103, client protocol
// 7201-7203).
const (
	defaultWireAddrs = "127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203"
	defaultHTTPAddrs = "http://127.0.0.1:7101"
)

// result is one run's figures.
type result struct {
	proto          string
	op             string
	clients, n     int
	errors         int64
	codes          map[string]int // errors by cause
	elapsed        time.Duration
	p50, p99, p999 time.Duration
}

func (r result) String() string {
	s := fmt.Sprintf("%s proto=%s clients=%d n=%d errors=%d  %.0f ops/s  p50 %v  p99 %v  p999 %v",
		r.op, r.proto, r.clients, r.n, r.errors, float64(int64(r.n)-r.errors)/r.elapsed.Seconds(),
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.p999.Round(time.Microsecond))
	keys := slices.Sorted(maps.Keys(r.codes))
	for _, k := range keys {
		s += fmt.Sprintf("\n  %d × %s", r.codes[k], k)
	}
	return s
}

func leaderURL(hc *http.Client, c config) (string, error) {
	addrs := c.addrs
	for _, a := range addrs {
		req, err := http.NewRequest(http.MethodGet, a+"/status", nil)
		if err != nil {
			return "", err
		}
		resp, err := hc.Do(c.authorize(req))
		if err != nil {
			continue
		}
		var st struct {
			Role string `json:"role"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.Role == "leader" {
			return a, nil
		}
	}
	return "", fmt.Errorf("no leader among %v", addrs)
}

// driveHTTP runs the load over the HTTP API.
func driveHTTP(c config) (result, error) {
	tr := &http.Transport{MaxIdleConns: c.clients * 2, MaxIdleConnsPerHost: c.clients * 2, TLSClientConfig: c.tls}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	targets := c.addrs
	if !c.anyNode {
		l, err := leaderURL(hc, c)
		if err != nil {
			return result{}, err
		}
		targets = []string{l}
	}
	value := strings.Repeat("x", c.size)
	if c.op == "read" { // something to read
		for k := range min(c.keys, 1000) {
			req, _ := http.NewRequest(http.MethodPut, targets[0]+"/kv/key"+strconv.Itoa(k), strings.NewReader(value))
			if resp, err := hc.Do(c.authorize(req)); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}
	// Sessions of this run: client IDs no earlier run used.
	base := uint64(time.Now().UnixNano()) &^ 0xfffff
	seqs := make([]uint64, c.clients)
	return runClients(c, "http", func(cl, i int) string {
		target := targets[i%len(targets)]
		key := "key" + strconv.Itoa(i%c.keys)
		var req *http.Request
		if c.op == "write" {
			seqs[cl]++
			req, _ = http.NewRequest(http.MethodPut, target+"/kv/"+key, strings.NewReader(value))
			req.Header.Set("X-Client-ID", strconv.FormatUint(base+uint64(cl)+1, 10))
			req.Header.Set("X-Request-Seq", strconv.FormatUint(seqs[cl], 10))
		} else {
			req, _ = http.NewRequest(http.MethodGet, target+"/kv/key"+strconv.Itoa(i%min(c.keys, 1000)), nil)
		}
		resp, err := hc.Do(c.authorize(req))
		if err != nil {
			return "transport error"
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.Status
		}
		return ""
	}), nil
}

// runClients runs operations 0..c.n-1 from c.clients goroutines, each with
// one operation outstanding, and summarizes them. do runs operation i on
// client cl and returns "" on success or why it failed.
func runClients(c config, proto string, do func(cl, i int) string) result {
	lat := make([][]time.Duration, c.clients)
	var next, errs atomic.Int64
	var codesMu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for cl := range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, c.n/c.clients+1)
			defer func() { lat[cl] = mine }()
			for {
				i := next.Add(1) - 1
				if i >= int64(c.n) {
					return
				}
				t0 := time.Now()
				if why := do(cl, int(i)); why != "" {
					errs.Add(1)
					codesMu.Lock()
					codes[why]++
					codesMu.Unlock()
					continue
				}
				mine = append(mine, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return summarize(c, proto, time.Since(start), lat, errs.Load(), codes)
}

// summarize computes a run's figures from each client's latencies.
func summarize(c config, proto string, elapsed time.Duration, lat [][]time.Duration, errs int64,
	codes map[string]int) result {
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	return result{proto: proto, op: c.op, clients: c.clients, n: c.n, errors: errs, codes: codes,
		elapsed: elapsed, p50: pct(0.50), p99: pct(0.99), p999: pct(0.999)}
}
