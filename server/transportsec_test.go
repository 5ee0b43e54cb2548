package server

import (
	"errors"
	"strings"
	"testing"
)

// TestInsecureTransportRule is the authentication rule of issue 13: a
// node whose peer transport listens on or dials an address off loopback
// refuses to start without mutual TLS unless the operator opts out; the
// error names the keys. Loopback needs nothing.
func TestInsecureTransportRule(t *testing.T) {
	const mtls = "security:\n  enable_tls: true\n  enable_mtls: true\n  cert_file: c.pem\n  key_file: k.pem\n  ca_file: ca.pem\n"
	const tlsOnly = "security:\n  enable_tls: true\n  cert_file: c.pem\n  key_file: k.pem\n  ca_file: ca.pem\n"
	const optOut = "security:\n  allow_insecure_transport: true\n"
	offBind := func(y string) string { return strings.Replace(y, "bind_addr: 127.0.0.1", "bind_addr: 0.0.0.0", 1) }
	offPeer := func(y string) string {
		return strings.Replace(y, `{id: "2", address: 127.0.0.1, port: 7002}`, `{id: "2", address: 10.0.0.2, port: 7002}`, 1)
	}
	localhost := func(y string) string {
		return strings.Replace(y, `{id: "2", address: 127.0.0.1, port: 7002}`, `{id: "2", address: localhost, port: 7002}`, 1)
	}
	for _, tc := range []struct {
		name string
		yaml string
		keys []string // empty: accepted
	}{
		{"Loopback", goodYAML, nil},
		{"LoopbackByName", localhost(goodYAML), nil},
		{"IPv6Loopback", strings.Replace(goodYAML, "bind_addr: 127.0.0.1", "bind_addr: \"::1\"", 1), nil},
		{"ListenOffLoopback", offBind(goodYAML), []string{"bind_addr", "security.enable_mtls", "security.allow_insecure_transport"}},
		{"PeerOffLoopback", offPeer(goodYAML), []string{"peers[1].address", "security.enable_mtls", "security.allow_insecure_transport"}},
		{"PeerByName", strings.Replace(goodYAML, `{id: "2", address: 127.0.0.1, port: 7002}`, `{id: "2", address: db2.example, port: 7002}`, 1),
			[]string{"peers[1].address"}},
		{"TLSWithoutMutual", offBind(goodYAML) + tlsOnly, []string{"bind_addr", "security.enable_mtls"}},
		{"MutualTLS", offPeer(offBind(goodYAML)) + mtls, nil},
		{"OptOut", offPeer(offBind(goodYAML)) + optOut, nil},
	} {
		for _, transport := range []string{"tcp", "grpc"} {
			raw := strings.Replace(tc.yaml, "type: tcp", "type: "+transport, 1)
			_, err := ParseConfig([]byte(raw), env(map[string]string{"NODE": "1"}))
			if len(tc.keys) == 0 {
				if err != nil {
					t.Errorf("%s/%s: %v", tc.name, transport, err)
				}
				continue
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%s/%s: accepted (%v)", tc.name, transport, err)
				continue
			}
			for _, k := range tc.keys {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("%s/%s: error %q does not name %s", tc.name, transport, err, k)
				}
			}
		}
	}
}

// TestTransportLimitKeys: the peer transport's limits are validated,
// naming the key, and reach the transport's configuration.
func TestTransportLimitKeys(t *testing.T) {
	for key, val := range map[string]string{
		"max_inbound_conns":        "-1",
		"max_inbound_conns_per_ip": "-1",
		"max_handshakes":           "-1",
		"frame_timeout":            "-1s",
		"idle_timeout":             "-1s",
	} {
		raw := strings.Replace(goodYAML, "  type: tcp\n", "  type: tcp\n  "+key+": "+val+"\n", 1)
		_, err := ParseConfig([]byte(raw), env(map[string]string{"NODE": "1"}))
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "transport."+key) {
			t.Errorf("%s: %s: error %v does not name the key", key, val, err)
		}
	}
	raw := strings.Replace(goodYAML, "  type: tcp\n", "  type: tcp\n  max_inbound_conns: 8\n  max_inbound_conns_per_ip: 4\n  max_handshakes: 2\n  frame_timeout: 3s\n  idle_timeout: 1m\n", 1)
	c, err := ParseConfig([]byte(raw), env(map[string]string{"NODE": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Transport; tr.MaxInboundConns != 8 || tr.MaxInboundConnsPerIP != 4 || tr.MaxHandshakes != 2 ||
		tr.FrameTimeout.String() != "3s" || tr.IdleTimeout.String() != "1m0s" {
		t.Fatalf("transport limits %+v", tr)
	}
}
