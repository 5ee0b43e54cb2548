//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// nsEtcdBin is Debian's etcd (package etcd-server), which .ci/run installs.
const nsEtcdBin = "/usr/bin/etcd"

// nsEtcdPrereq skips the test without nsEtcdBin, or fails it under CI.
func nsEtcdPrereq(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(nsEtcdBin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v (a skip is a failure under CI, which installs Debian's etcd-server)", nsEtcdBin, err)
		}
		t.Skipf("%s: %v; apt-get install etcd-server to run this test", nsEtcdBin, err)
	}
}

// freePortsOn returns n TCP ports free on host.
func freePortsOn(t *testing.T, host string, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp4", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // held until all are picked: n different ports
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// runNsEtcd starts a one-member etcd in the root namespace, its client and
// peer listeners on host (the bridge's address, which every namespace
// reaches), its data and log in dir, and returns its client URL once it
// serves. It is killed when the test ends; its log's tail is logged if
// the test failed.
func runNsEtcd(t *testing.T, host, dir string) string {
	t.Helper()
	ports := freePortsOn(t, host, 2)
	client := fmt.Sprintf("http://%s:%d", host, ports[0])
	peer := fmt.Sprintf("http://%s:%d", host, ports[1])
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nsEtcdBin, "--name", "nsdisc", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "nsdisc="+peer)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("--- etcd log (tail) ---\n%s", tail(string(b), 3000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := quick.Get(client + "/health")
		why := fmt.Sprint(err)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"true"`) {
				return client
			}
			why = resp.Status + " " + strings.TrimSpace(string(b))
		}
		select {
		case <-exited:
			t.Fatalf("etcd exited before serving (%v)", cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not serving within 30s: %s", client, why)
		}
	}
}

// nsEtcdRegistrations reads the registrations under prefix through etcd's
// JSON gateway (POST /v3/kv/range, keys base64): each node's name (the
// key's last part) and the host:port of its record.
func nsEtcdRegistrations(client, prefix string) (map[string]string, error) {
	end := prefix[:len(prefix)-1] + string(prefix[len(prefix)-1]+1)
	body, _ := json.Marshal(map[string]string{
		"key": base64.StdEncoding.EncodeToString([]byte(prefix)), "range_end": base64.StdEncoding.EncodeToString([]byte(end))})
	resp, err := quick.Post(client+"/v3/kv/range", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("etcd range %s: %w", prefix, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("etcd range %s: %s: %s", prefix, resp.Status, strings.TrimSpace(string(b)))
	}
	var r struct {
		Kvs []struct {
			Key   []byte `json:"key"` // base64 in the JSON
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("etcd range %s: %w: %s", prefix, err, b)
	}
	regs := map[string]string{}
	for _, kv := range r.Kvs {
		var rec struct {
			Name string `json:"name"`
			Host string `json:"host"`
			Port int    `json:"port"`
		}
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("etcd key %s: %w: %q", kv.Key, err, kv.Value)
		}
		name := strings.TrimPrefix(string(kv.Key), prefix)
		if rec.Name != name {
			return nil, fmt.Errorf("etcd key %s holds a record of %q", kv.Key, rec.Name)
		}
		regs[name] = net.JoinHostPort(rec.Host, strconv.Itoa(rec.Port))
	}
	return regs, nil
}

// nsEtcdClient returns an etcd client of the test, closed when it ends.
func nsEtcdClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// nsEtcdRecord returns the host:port of the record at key and the lease
// that holds it ("" and 0 when there is none).
func nsEtcdRecord(cli *clientv3.Client, key string) (string, clientv3.LeaseID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return "", 0, fmt.Errorf("etcd get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0, nil
	}
	var rec struct {
		Host string `json:"host"`
		Port int    `json:"port"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return "", 0, fmt.Errorf("etcd key %s: %w: %q", key, err, resp.Kvs[0].Value)
	}
	return net.JoinHostPort(rec.Host, strconv.Itoa(rec.Port)), clientv3.LeaseID(resp.Kvs[0].Lease), nil
}

// nsKeepLease keeps lease alive, renewing it every 300 ms (its TTL is
// 2 s), until the returned function is called; that returns the first
// renewal that failed (the lease had ended), if any.
func nsKeepLease(cli *clientv3.Client, lease clientv3.LeaseID) (stop func() error) {
	done := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cli.KeepAliveOnce(ctx, lease)
			cancel()
			if err != nil {
				result <- fmt.Errorf("renew lease %x: %w", int64(lease), err)
				return
			}
			select {
			case <-done:
				result <- nil
				return
			case <-tick.C:
			}
		}
	}()
	return func() error {
		close(done)
		return <-result
	}
}
