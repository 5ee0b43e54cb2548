// Package grpc is a gRPC network transport for the consensus library: a
// transport.Transport (and so a node.Transport) that carries core.Messages
// between nodes over HTTP/2 with gRPC, optionally with TLS, mutual-TLS node
// authentication and gzip compression.
//
//	tr, err := grpc.New(transport.Config{
//		ID:          1,
//		ListenAddr:  ":7001",
//		Deliver:     func(m core.Message) { _ = host.Receive(m) }, // called from transport goroutines
//		Unreachable: host.ReportUnreachable,
//	}, grpc.Options{
//		TLS:         &grpc.TLSConfig{CertFile: "node-1.pem", KeyFile: "node-1-key.pem", CAFile: "ca.pem", MutualTLS: true},
//		Compression: "gzip",
//	})
//	tr.SetPeer(2, "node2.example:7001")
//
// # Service
//
// The service is defined by hand, without protobuf or generated code: one
// bidirectional streaming method, "/forge.consensus.Raft/Stream", whose
// gRPC messages are raw frames passed through by a pass-through codec,
// forced per call (grpc.ForceCodecV2) and on the server
// (grpc.ForceServerCodecV2), never registered globally.
//
// A node opens one long-lived stream to each peer it has messages for,
// over a client connection pooled per address, and carries its messages to
// that peer on it; the peer answers only the hello. (So two nodes that
// talk both ways use two streams, one per direction.)
//
// # Frames
//
// A frame is a kind byte followed by a body; integers are unsigned varints
// (encoding/binary):
//
//	hello     (client → server, first frame): version, from, to
//	hello ack (server → client, once):        version, the server's ID
//	batch     (client → server):              (length, message) repeated to the end
//	chunk     (client → server):              total, offset, bytes
//
// A message is core.Message's binary encoding (AppendBinary). A batch
// holds whole messages up to Options.ChunkBytes in all: the sender takes
// everything queued for the peer (up to 1,024 messages) and cuts it into as
// few frames as that allows. A message whose encoding is larger than
// ChunkBytes (a MsgSnap with a big snapshot) travels alone as consecutive
// chunk frames of at most ChunkBytes bytes: the first has offset 0 and
// announces the total length, each next one continues at the offset
// reached, and the message is decoded when the total is reached. The
// receiver checks the announced total against MaxMessageBytes before it
// allocates anything: a larger message is rejected (counted once in
// Stats.Rejected) and its chunks are skipped. A receiver accepts frames of
// up to max(its ChunkBytes, 4 MiB), so nodes should use the same
// ChunkBytes, or one no larger than 4 MiB.
//
// A malformed frame (bad varint, overrunning length, a chunk that does not
// continue the message, an unknown kind) delivers nothing, is counted in
// Stats.Rejected and ends the stream with codes.InvalidArgument; the sender
// reconnects. A well-formed frame's messages are checked one by one with
// transport.CheckInbound (size, decoding, To is this node, From is the
// stream's authenticated peer): a bad one is rejected and counted alone.
//
// # Authentication
//
// The hello claims the sender's node ID and names the receiver's; a hello
// for another node is refused (codes.FailedPrecondition), so is a claim of
// ID 0 or of the receiver's own ID. With mutual TLS (TLSConfig.MutualTLS)
// the claim is checked against the verified client certificate: its
// CommonName or one of its DNS SANs must be "node-<ID>", the ID in decimal
// (see NodeIdentity); otherwise the stream is refused
// (codes.PermissionDenied), counted in Stats.Rejected and logged. A client
// that presents no certificate, or one another CA signed, fails the TLS
// handshake, which is counted and logged the same way. The client checks
// the server alike: it sends nothing to a server whose certificate does not
// name the peer it meant to reach. Every message must then come From the
// authenticated ID.
//
// Without mutual TLS the claimed ID is trusted: anyone who can reach the
// port can speak for any node (though never for two on one stream). Use
// mutual TLS in production.
//
// # Failures
//
// Send never blocks: it queues each message for its peer's sender
// goroutine, dropping (and counting) what cannot be queued. Every network
// step has a deadline: DialTimeout bounds connecting, the TLS handshake
// (client and server) and the hello exchange, and a server waits that long
// for a hello; WriteTimeout bounds each frame's write, watched by a timer
// that cancels the stream. A failed dial, hello or write ends the stream,
// reports the peer to Config.Unreachable and reconnects after an
// exponential back-off with jitter (transport.Backoff, from BackoffMin to
// BackoffMax). BreakerFailures consecutive failures open the peer's circuit
// breaker (transport.Breaker): messages to it are dropped without dialing
// until BackoffMax has passed; then one probe connection closes the
// breaker or opens it again. gRPC keepalives (every 20 s, 10 s to answer)
// find dead connections that carry nothing.
//
// Each attempt dials afresh: after a failed attempt the peer gives up its
// gRPC ClientConn, whose own reconnect back-off would otherwise fail the
// next streams with its cached error until it ran out, so that after a
// heal the peer is reached again within the transport's back-off.
//
// # Limits
//
// The listener admits connections through a transport.ConnLimiter
// (Config.MaxInboundConns, MaxInboundConnsPerIP, and MaxHandshakes for
// those in their TLS handshake) and closes one over a limit at once. The
// server allows 8 concurrent streams per connection and 16 KiB of headers,
// closes a connection without a stream after IdleTimeout and one that
// pings more often than every 10 s. A chunked message is buffered as its
// chunks arrive, never at the size it announces, and a stream whose
// message stalls for FrameTimeout, or does not end within
// transport.FrameDeadline, is ended (codes.DeadlineExceeded).
//
// # Compression
//
// With Options.Compression "gzip", frames are compressed with gzip at
// Options.CompressionLevel. gRPC's own gzip compressor has one
// process-wide level, settable only at init, so this package registers
// its own compressors at init, one per level, named "forge-gzip-1" to
// "forge-gzip-9"; any node decompresses all of them, and gRPC bounds the
// decompressed size by the receiver's frame limit.
package grpc
