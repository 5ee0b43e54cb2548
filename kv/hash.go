package kv

import (
	"encoding/binary"
	"math/bits"
)

// State hashing.
//
// Store.Hash is the sum, modulo 2^64, of one 64-bit hash per item of state
// (per key and per session). A sum does not depend on the order items were
// added in, and an item is replaced by subtracting its old hash and adding
// its new one, so the hash is maintained in constant time per item changed
// (plus the time to hash that item's bytes).
//
// An item's hash is a fixed, unseeded hash in the style of MurmurHash3
// (64-bit words mixed by multiply-rotate-multiply, a final avalanche) over a
// domain tag and the item's fields, each byte string preceded by its
// length, so that distinct items hash to unrelated values.

const (
	hashC1   = 0x87c37b91114253d5
	hashC2   = 0x4cf5ad432745937f
	hashSeed = 0x9e3779b97f4a7c15

	tagData    = 1
	tagSession = 2
)

func hashWord(h, k uint64) uint64 {
	k *= hashC1
	k = bits.RotateLeft64(k, 31)
	k *= hashC2
	h ^= k
	h = bits.RotateLeft64(h, 27)
	return h*5 + 0x52dce729
}

func hashBytes(h uint64, b []byte) uint64 {
	h = hashWord(h, uint64(len(b)))
	for len(b) >= 8 {
		h = hashWord(h, binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	if len(b) > 0 {
		var tail uint64
		for i := len(b) - 1; i >= 0; i-- {
			tail = tail<<8 | uint64(b[i])
		}
		h = hashWord(h, tail)
	}
	return h
}

// hashFinal is the MurmurHash3 64-bit finalizer.
func hashFinal(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// dataHash is the hash of the key-value pair (key, value).
func dataHash(key, value []byte) uint64 {
	h := hashWord(hashSeed, tagData)
	h = hashBytes(h, key)
	h = hashBytes(h, value)
	return hashFinal(h)
}

// sessionHash is the hash of a session: client, last Seq, last index and
// cached result.
func sessionHash(s *session) uint64 {
	h := hashWord(hashSeed, tagSession)
	h = hashWord(h, s.id)
	h = hashWord(h, s.lastSeq)
	h = hashWord(h, s.index)
	h = hashWord(h, uint64(s.result.Status)<<8|uint64(s.result.flags()))
	h = hashBytes(h, s.result.Value)
	return hashFinal(h)
}
