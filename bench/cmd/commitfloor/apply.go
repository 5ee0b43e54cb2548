//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/forge-consensus/consensus/kv"
)

// stateMachine is a replica's key-value store with -apply, as consensusd
// keeps it (kv.Config.ShareSnapshots), and the log index it is at. Without
// -apply it is nil: frames carry the writes as they came and nothing is
// applied.
type stateMachine struct {
	store *kv.Store
	index uint64
	// written counts the writes the leader encoded, numbering its
	// commands' sessions.
	written uint64
	keys    []string // key<i>, for i < keyCount
	cmd     kv.Command
}

// keyCount is the number of distinct keys written, as loadgen's default.
const keyCount = 1000

func newStateMachine(apply bool) *stateMachine {
	if !apply {
		return nil
	}
	sm := &stateMachine{store: kv.New(kv.Config{ShareSnapshots: true})}
	for i := range keyCount {
		sm.keys = append(sm.keys, "key"+strconv.Itoa(i))
	}
	return sm
}

// appendBatch appends the frame body of batch to frame: each write as a
// length and its bytes; with -apply the bytes are the key-value command
// the write makes: a Set of one of keyCount keys, in one of 4,096
// sessions, each numbered in order.
func (sm *stateMachine) appendBatch(frame []byte, batch []clientWrite) []byte {
	for _, wr := range batch {
		if sm == nil {
			frame = binary.BigEndian.AppendUint32(frame, uint32(len(wr.data)))
			frame = append(frame, wr.data...)
			continue
		}
		// Numbered by the leader, not by the client's IDs, which start
		// again with each client process.
		id := sm.written
		sm.written++
		sm.cmd = kv.Command{Op: kv.OpSet, ClientID: 1 + id%4096, Seq: 1 + id/4096,
			Key: sm.keys[id%keyCount], Value: wr.data[8:]}
		at := len(frame)
		frame = append(frame, 0, 0, 0, 0)
		frame, _ = sm.cmd.AppendBinary(frame)
		binary.BigEndian.PutUint32(frame[at:], uint32(len(frame)-at-4))
	}
	return frame
}

// applyFrame applies every command of a frame body.
func (sm *stateMachine) applyFrame(body []byte) error {
	if sm == nil {
		return nil
	}
	for len(body) >= 4 {
		n := int(binary.BigEndian.Uint32(body))
		if n > len(body)-4 {
			return fmt.Errorf("frame: a command of %d bytes, %d left", n, len(body)-4)
		}
		sm.index++
		r, ok := sm.store.Apply(sm.index, body[4:4+n]).(kv.Result)
		if !ok || r.Status != kv.StatusOK || r.Deduplicated {
			return fmt.Errorf("apply at %d: %+v", sm.index, r)
		}
		body = body[4+n:]
	}
	if len(body) != 0 {
		return fmt.Errorf("frame: %d bytes after the last command", len(body))
	}
	return nil
}
