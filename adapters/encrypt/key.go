package encrypt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of an encryption key: 32 bytes, for AES-256.
const KeySize = 32

// KeyID identifies a key: the first 4 bytes of HMAC-SHA256(key, a fixed
// label), written as 8 hex digits. Every record carries the ID of the key
// that sealed it. The ID reveals nothing usable about a random 256-bit key,
// and two keys that happened to share an ID would still be told apart: a
// record sealed by the other one fails to authenticate.
type KeyID [4]byte

// String returns the ID as 8 hex digits.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// Key is one AES-256 key and its ID.
type Key struct {
	id  KeyID
	key [KeySize]byte
}

// ID returns the key's ID.
func (k Key) ID() KeyID { return k.id }

// String returns the key's ID only, never its bytes, so that a Key
// printed or logged by mistake reveals nothing.
func (k Key) String() string { return "key " + k.id.String() }

// GoString is String, for %#v.
func (k Key) GoString() string { return k.String() }

// labelKeyID derives key IDs; labelDataKey derives a data directory's
// data key from a key and the directory's salt.
const (
	labelKeyID   = "forge-consensus encryption key id v1"
	labelDataKey = "forge-consensus encryption data key v1"
)

// NewKey returns the key made of raw, which must be KeySize bytes.
func NewKey(raw []byte) (Key, error) {
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("%w: a key is %d bytes, not %d", ErrKey, KeySize, len(raw))
	}
	var k Key
	copy(k.key[:], raw)
	m := hmac.New(sha256.New, k.key[:])
	m.Write([]byte(labelKeyID))
	copy(k.id[:], m.Sum(nil))
	return k, nil
}

// ParseKey parses a key written as base64 (standard or URL alphabet, with
// or without padding) or hex, surrounding white space ignored. The error
// never quotes the text.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Key{}, fmt.Errorf("%w: empty", ErrKey)
	}
	if len(s) == 2*KeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return NewKey(b)
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return Key{}, fmt.Errorf("%w: %d bytes once decoded from base64, not %d", ErrKey, len(b), KeySize)
			}
			return NewKey(b)
		}
	}
	return Key{}, fmt.Errorf("%w: neither %d hex digits nor base64 of %d bytes (%d characters given)",
		ErrKey, 2*KeySize, KeySize, len(s))
}

// ErrKey is wrapped by every refusal about keys: a key that does not
// parse, a wrong or missing key, an encrypted data directory opened without
// encryption or a plain one with it.
var ErrKey = errors.New("encryption key")

// ErrMissingKey is wrapped by the refusal of stored records sealed with a
// key that is not configured (it wraps ErrKey).
var ErrMissingKey = fmt.Errorf("%w: missing key", ErrKey)

// ErrCorrupt is wrapped by every error about a record that cannot be
// decrypted with its key although the key is configured: damaged, moved
// to another place (index, term or snapshot) or forged.
var ErrCorrupt = errors.New("corrupt encrypted storage")
