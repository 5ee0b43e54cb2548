// Package nodename maps the names operators give cluster members to the
// 64-bit IDs the Raft core uses.
//
// A name is 1 to 253 bytes of ASCII letters, digits, '-', '.' and '_',
// starting with a letter or a digit: a host name, a zone such as
// "us-east-1a", a Kubernetes pod name, "node-4" or "3". The mapping needs
// no coordination, so every node computes the same ID for the same name,
// before and after restarts, snapshots and membership changes:
//
//   - a name of decimal digits is that number ("3" is ID 3), and "node-N"
//     is N too, so configurations and data written with numeric IDs keep
//     working; the number must be in [1, 2^63);
//   - any other name is hashed: the first 8 bytes of its SHA-256, with the
//     top bit set, so it never equals a numeric ID.
//
// Two different names may still map to the same ID ("3" and "node-3" do
// by design; two hashed names do with probability about n²/2^64). Callers
// that hold a set of members (a configuration, the replicated address
// book) refuse a name whose ID is already taken by another name, with
// Collision.
package nodename

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen is the longest name accepted, a DNS name's limit.
const MaxLen = 253

// hashed is the bit set in every ID derived by hashing a name; numeric
// names must stay below it.
const hashed = uint64(1) << 63

// ErrInvalid is wrapped by every error of ID for a name it refuses.
var ErrInvalid = errors.New("invalid node name")

// ID returns the ID name stands for, or an error wrapping ErrInvalid that
// says what is wrong with it.
func ID(name string) (uint64, error) {
	if err := check(name); err != nil {
		return 0, fmt.Errorf("%w %q: %s", ErrInvalid, clip(name), err)
	}
	digits := strings.TrimPrefix(name, "node-")
	if digits != "" && allDigits(digits) {
		v, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || v == 0 || v >= hashed {
			return 0, fmt.Errorf("%w %q: a numeric ID must be from 1 to 2^63-1", ErrInvalid, clip(name))
		}
		return v, nil
	}
	sum := sha256.Sum256([]byte(name))
	return binary.BigEndian.Uint64(sum[:8]) | hashed, nil
}

// Numeric reports whether id is a numeric name's ID (below 2^63), which
// its decimal form names; other IDs come from hashing a name, which only a
// record of that name can give back.
func Numeric(id uint64) bool { return id != 0 && id < hashed }

// String returns how to show id when no name is recorded for it: its
// decimal form.
func String(id uint64) string { return strconv.FormatUint(id, 10) }

// Collision returns the error for name, whose ID other already has.
func Collision(name, other string, id uint64) error {
	return fmt.Errorf("%w %q: its ID %d is already %q's", ErrInvalid, clip(name), id, clip(other))
}

func check(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > MaxLen:
		return fmt.Errorf("%d bytes, at most %d", len(name), MaxLen)
	case !alnum(name[0]):
		return errors.New("must start with a letter or a digit")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '-' && c != '.' && c != '_' {
			return fmt.Errorf("byte %d (%q) is not a letter, digit, '-', '.' or '_'", i, c)
		}
	}
	return nil
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip shortens a name for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
