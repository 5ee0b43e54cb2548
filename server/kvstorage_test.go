package server_test

import "testing"

// TestClusterOnBoltAndBadger: a 3-node cluster on storage.type bolt and on
// badger streams its snapshots into the storage's files, a lagging
// follower catches up from the snapshot the leader reads back from disk,
// and every node restarts holding every key (as on wal and pebble).
func TestClusterOnBoltAndBadger(t *testing.T) {
	for _, storage := range []string{"bolt", "badger"} {
		t.Run(storage, func(t *testing.T) { testStreamsSnapshots(t, storage) })
	}
}
