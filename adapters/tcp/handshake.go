package tcp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Handshake.
//
// A connection starts with one frame from the dialer, the hello, and one
// frame back from the listener, the ack; after that only the dialer writes
// (message frames) and the listener only reads. Payloads:
//
//	hello: magic "FCTP", version, kindHello, From (uvarint), To (uvarint),
//	       Cluster (uvarint)
//	ack:   magic "FCTP", version, kindAck, status, ID (uvarint)
//
// From is the dialer's node ID, which every message on the connection must
// carry; To is the node the dialer means to reach, which the listener
// checks against its own ID (an address may have been reused by another
// node); Cluster is the dialer's transport.Config.ClusterID, which the
// listener checks against its own (0 on either side: not checked). The ack carries the listener's ID and a status; on any status but
// statusOK the listener closes the connection. Under mutual TLS the
// listener also checks From against the client certificate
// (statusUnauthenticated). With TLS the handshake runs inside the TLS
// connection, after the TLS handshake.

const (
	magic = "FCTP"
	// ProtocolVersion is the version of the wire protocol this package
	// speaks; a listener refuses a hello of any other version.
	// Version 2 added the hello's Cluster.
	ProtocolVersion byte = 2

	kindHello byte = 1
	kindAck   byte = 2

	// maxHandshakeBytes bounds handshake frames (the largest is 36 bytes).
	maxHandshakeBytes = 64
)

// Handshake statuses.
const (
	statusOK         byte = 0
	statusWrongNode  byte = 1 // To is not the listener's ID
	statusBadVersion byte = 2 // version not spoken
	statusBadSender  byte = 3 // From is 0 or the listener's own ID
	// statusUnauthenticated: under mutual TLS, the client certificate
	// does not name From (transport.NodeIdentity).
	statusUnauthenticated byte = 4
	// statusWrongCluster: the hello's Cluster is not the listener's.
	statusWrongCluster byte = 5
)

// errHandshake is matched by every handshake error.
var errHandshake = errors.New("tcp: handshake failed")

// errUnauthenticated is matched by the handshake errors of mutual TLS: a
// client certificate that does not name the hello's sender, or a server
// certificate that does not name the peer dialled.
var errUnauthenticated = errors.New("tcp: peer not authenticated")

type hello struct {
	version           byte
	from, to, cluster uint64
}

type ack struct {
	version byte
	status  byte
	id      uint64
}

func appendHello(b []byte, h hello) []byte {
	b = append(b, magic...)
	b = append(b, h.version, kindHello)
	b = binary.AppendUvarint(b, h.from)
	b = binary.AppendUvarint(b, h.to)
	return binary.AppendUvarint(b, h.cluster)
}

func appendAck(b []byte, a ack) []byte {
	b = append(b, magic...)
	b = append(b, a.version, kindAck, a.status)
	return binary.AppendUvarint(b, a.id)
}

// handshakeReader parses handshake payloads; the first error sticks.
type handshakeReader struct {
	p   []byte
	err error
}

func (r *handshakeReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errHandshake, fmt.Sprintf(format, args...))
	}
}

func (r *handshakeReader) header(kind byte) byte {
	if len(r.p) < len(magic)+2 || string(r.p[:len(magic)]) != magic {
		r.fail("not a handshake of this protocol")
		return 0
	}
	version, k := r.p[len(magic)], r.p[len(magic)+1]
	r.p = r.p[len(magic)+2:]
	if k != kind {
		r.fail("handshake kind %d, want %d", k, kind)
	}
	return version
}

func (r *handshakeReader) byte(field string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.p) == 0 {
		r.fail("%s: truncated", field)
		return 0
	}
	b := r.p[0]
	r.p = r.p[1:]
	return b
}

func (r *handshakeReader) uvarint(field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.fail("%s: bad varint", field)
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *handshakeReader) finish() error {
	if r.err == nil && len(r.p) != 0 {
		r.fail("%d trailing bytes", len(r.p))
	}
	return r.err
}

func parseHello(p []byte) (hello, error) {
	r := handshakeReader{p: p}
	var h hello
	h.version = r.header(kindHello)
	h.from = r.uvarint("from")
	h.to = r.uvarint("to")
	h.cluster = r.uvarint("cluster")
	if err := r.finish(); err != nil {
		return hello{}, err
	}
	return h, nil
}

func parseAck(p []byte) (ack, error) {
	r := handshakeReader{p: p}
	var a ack
	a.version = r.header(kindAck)
	a.status = r.byte("status")
	a.id = r.uvarint("id")
	if err := r.finish(); err != nil {
		return ack{}, err
	}
	return a, nil
}

// statusText explains a handshake status.
func statusText(s byte) string {
	switch s {
	case statusOK:
		return "ok"
	case statusWrongNode:
		return "the listener is another node"
	case statusBadVersion:
		return "protocol version not supported"
	case statusBadSender:
		return "invalid sender ID"
	case statusUnauthenticated:
		return "the certificate does not name the sender"
	case statusWrongCluster:
		return "the listener belongs to another cluster (cluster_id)"
	}
	return fmt.Sprintf("unknown status %d", s)
}
