package transport

import (
	"errors"
	"fmt"

	"github.com/forge-consensus/consensus/core"
)

// Reasons CheckInbound rejects a message (besides core.ErrInvalidMessage for
// one that fails to decode).
var (
	// ErrMessageTooLarge means an encoded message exceeds MaxMessageBytes.
	ErrMessageTooLarge = errors.New("transport: message too large")
	// ErrWrongRecipient means a message is not addressed to this node.
	ErrWrongRecipient = errors.New("transport: message not addressed to this node")
	// ErrWrongCluster means a peer belongs to another cluster: its
	// Config.ClusterID differs from this node's.
	ErrWrongCluster = errors.New("transport: peer of another cluster")
	// ErrWrongSender means a message's From is not the peer its connection
	// authenticated as.
	ErrWrongSender = errors.New("transport: message sender does not match the connection's peer")
)

// CheckInbound decodes and validates an inbound message payload received
// by node self on a connection authenticated as peer: it must be at most
// max bytes, decode with core.DecodeMessage, be addressed to self and come
// from peer. The returned message does not alias payload. Every error
// wraps one of ErrMessageTooLarge, core.ErrInvalidMessage,
// ErrWrongRecipient or ErrWrongSender; the caller counts it in
// Stats.Rejected.
func CheckInbound(payload []byte, self, peer uint64, max int) (core.Message, error) {
	if len(payload) > max {
		return core.Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(payload), max)
	}
	m, err := core.DecodeMessage(payload)
	if err != nil {
		return core.Message{}, fmt.Errorf("transport: inbound message from %d: %w", peer, err)
	}
	if m.To != self {
		return core.Message{}, fmt.Errorf("%w: %v to %d, this node is %d", ErrWrongRecipient, m.Type, m.To, self)
	}
	if m.From != peer {
		return core.Message{}, fmt.Errorf("%w: %v from %d on the connection of %d", ErrWrongSender, m.Type, m.From, peer)
	}
	return m, nil
}
