package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/forge-consensus/consensus/adapters/encrypt"
	"github.com/forge-consensus/consensus/node"
)

// EncryptionKeyConfig is one old encryption key (security.encryption_old_keys):
// the key itself or a file holding it.
type EncryptionKeyConfig struct {
	// Key is 32 bytes as base64 or hex; write it as ${VAR}.
	Key string `yaml:"key"`
	// KeyFile holds the key: 32 raw bytes, or base64 or hex text.
	KeyFile string `yaml:"key_file"`
}

// validateEncryption checks the security.*encryption* keys without reading
// key files: errors name the key and never quote a key.
func validateEncryption(s SecurityConfig) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, key, fmt.Sprintf(format, args...))
	}
	if !s.EnableEncryption {
		switch {
		case s.EncryptionKey != "":
			return bad("security.encryption_key", "set, but security.enable_encryption is off (turn it on, or remove the key)")
		case s.EncryptionKeyFile != "":
			return bad("security.encryption_key_file", "set, but security.enable_encryption is off (turn it on, or remove the key)")
		case len(s.EncryptionOldKeys) > 0:
			return bad("security.encryption_old_keys", "set, but security.enable_encryption is off")
		}
		return nil
	}
	switch {
	case s.EncryptionKey == "" && s.EncryptionKeyFile == "":
		return bad("security.encryption_key", "required with security.enable_encryption (or security.encryption_key_file); "+
			"32 random bytes as base64 or hex, e.g. ${CONSENSUS_ENCRYPTION_KEY} from `openssl rand -base64 32`")
	case s.EncryptionKey != "" && s.EncryptionKeyFile != "":
		return bad("security.encryption_key", "set together with security.encryption_key_file: give one")
	case s.EncryptionKey != "":
		if _, err := encrypt.ParseKey(s.EncryptionKey); err != nil {
			return bad("security.encryption_key", "%v", err)
		}
	}
	for i, k := range s.EncryptionOldKeys {
		key := fmt.Sprintf("security.encryption_old_keys[%d]", i)
		switch {
		case k.Key == "" && k.KeyFile == "":
			return bad(key+".key", "required (or key_file)")
		case k.Key != "" && k.KeyFile != "":
			return bad(key+".key", "set together with key_file: give one")
		case k.Key != "":
			if _, err := encrypt.ParseKey(k.Key); err != nil {
				return bad(key+".key", "%v", err)
			}
		}
	}
	return nil
}

// readKey returns the key given inline or in a file; errors name cfgKey.
func readKey(cfgKey, inline, file string) (encrypt.Key, error) {
	if inline != "" {
		k, err := encrypt.ParseKey(inline)
		if err != nil {
			return k, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, cfgKey, err)
		}
		return k, nil
	}
	fileKey := cfgKey + "_file" // security.encryption_key_file, security.encryption_old_keys[i].key_file
	b, err := os.ReadFile(file)
	if err != nil {
		return encrypt.Key{}, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, fileKey, err)
	}
	var k encrypt.Key
	if len(b) == encrypt.KeySize {
		k, err = encrypt.NewKey(b)
	} else {
		k, err = encrypt.ParseKey(string(b))
	}
	if err != nil {
		return k, fmt.Errorf("%w: %s: %s: %w", ErrInvalidConfig, fileKey, file, err)
	}
	return k, nil
}

// encryptionOptions returns the encryption options of cfg, reading its key
// files; nil without encryption.
func encryptionOptions(cfg Config) (*encrypt.Options, error) {
	s := cfg.Security
	if !s.EnableEncryption {
		return nil, nil
	}
	active, err := readKey("security.encryption_key", s.EncryptionKey, s.EncryptionKeyFile)
	if err != nil {
		return nil, err
	}
	opts := &encrypt.Options{Key: active, NoSync: !*cfg.Storage.SyncWrites}
	if cfg.Storage.Type != "memory" {
		// The ENCRYPTION marker (salt, nonce epoch, key IDs) lives in
		// storage.path: a durable storage without one could not be
		// decrypted after a restart.
		if cfg.Storage.Path == "" {
			return nil, fmt.Errorf("%w: security.enable_encryption: storage.type %s has no storage.path to keep the %s file in",
				ErrInvalidConfig, cfg.Storage.Type, encrypt.MarkerName)
		}
		opts.Dir = cfg.Storage.Path
	}
	seen := map[encrypt.KeyID]string{active.ID(): "security.encryption_key"}
	for i, kc := range s.EncryptionOldKeys {
		key := fmt.Sprintf("security.encryption_old_keys[%d].key", i)
		k, err := readKey(key, kc.Key, kc.KeyFile)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[k.ID()]; dup {
			return nil, fmt.Errorf("%w: %s: the same key (ID %s) as %s", ErrInvalidConfig, key, k.ID(), prev)
		}
		seen[k.ID()] = key
		opts.OldKeys = append(opts.OldKeys, k)
	}
	return opts, nil
}

// openNodeStorage opens the storage cfg names, encrypted if
// security.enable_encryption is on: the data directory is checked against
// the keys before the backend is opened. Without encryption, an encrypted
// data directory is refused before the backend is opened. Key errors wrap
// ErrInvalidConfig (consensusd exits 2); a record that does not
// authenticate is reported by Load as corrupt.
func openNodeStorage(cfg Config, log *slog.Logger) (node.Storage, io.Closer, error) {
	return openNodeStorageWith(cfg, log, openStorage)
}

// openNodeStorageWith is openNodeStorage opening the backend with open.
func openNodeStorageWith(cfg Config, log *slog.Logger, open func(Config, *slog.Logger) (node.Storage, io.Closer, error)) (node.Storage, io.Closer, error) {
	opts, err := encryptionOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	if opts == nil {
		if cfg.Storage.Type != "memory" && cfg.Storage.Path != "" {
			if err := encrypt.CheckPlain(cfg.Storage.Path); err != nil {
				return nil, nil, keyError("security.enable_encryption", err)
			}
		}
		return open(cfg, log)
	}
	var closer io.Closer
	opts.Logger = log
	st, err := encrypt.Open(*opts, func() (node.Storage, error) {
		st, c, err := open(cfg, log)
		closer = c
		return st, err
	})
	if err != nil {
		return nil, nil, keyError("security.encryption_key", err)
	}
	if closer == nil {
		return st, nil, nil
	}
	log.Info("storage encrypted at rest", "key", opts.Key.ID().String(), "old_keys", len(opts.OldKeys))
	return st, st, nil
}

// keyError makes an encryption key refusal a configuration error naming
// cfgKey.
func keyError(cfgKey string, err error) error {
	if errors.Is(err, encrypt.ErrMissingKey) {
		cfgKey = "security.encryption_old_keys"
	}
	if errors.Is(err, encrypt.ErrKey) {
		return fmt.Errorf("%w: %s: %w", ErrInvalidConfig, cfgKey, err)
	}
	return err
}

// EncryptionStatus opens the node's storage as New does, loads it
// (decrypting every record) and returns which keys the stored records
// use; the node must be stopped (a node whose raft or API address is in
// use is refused as running). An error for a node without
// security.enable_encryption.
func EncryptionStatus(cfg Config, log *slog.Logger) (encrypt.Usage, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Security.EnableEncryption {
		return encrypt.Usage{}, fmt.Errorf("%w: security.enable_encryption: off: this node's storage is not encrypted", ErrInvalidConfig)
	}
	if err := checkStopped(cfg); err != nil {
		return encrypt.Usage{}, err
	}
	st, c, err := openNodeStorage(cfg, log)
	if err != nil {
		return encrypt.Usage{}, fmt.Errorf("storage %s: %w", cfg.Storage.Path, err)
	}
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	if _, err := st.Load(); err != nil {
		return encrypt.Usage{}, fmt.Errorf("storage %s: %w", cfg.Storage.Path, keyError("security.encryption_old_keys", err))
	}
	return st.(encrypt.Store).Usage(), nil
}
