package encrypt

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/forge-consensus/consensus/adapters/internal/durable"
)

// MarkerName is the name of the marker file in an encrypted data
// directory.
const MarkerName = "ENCRYPTION"

// markerFormat is the marker's format field.
const markerFormat = "forge-consensus encryption at rest v1"

// marker is the content of the marker file: it says the directory is
// encrypted, holds the salt its data keys are derived with, the epoch of
// the last process that wrote to it, and the IDs of the keys stored
// records may be sealed with: a key is added before its first record is
// written, and dropped once no stored record uses it (a superset after a
// crash, never less).
type marker struct {
	Format string   `json:"format"`
	Cipher string   `json:"cipher"`
	Salt   []byte   `json:"salt"`
	Epoch  uint32   `json:"epoch"`
	Keys   []string `json:"keys"`
}

// readMarker reads the marker of dir: nil and no error if there is none.
func readMarker(dir string) (*marker, error) {
	path := filepath.Join(dir, MarkerName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("encrypt: read %s: %w", path, err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encrypt: %s: %w: %w", path, ErrCorrupt, err)
	}
	if m.Format != markerFormat || m.Cipher != "AES-256-GCM" || len(m.Salt) != 32 || len(m.Keys) == 0 {
		return nil, fmt.Errorf("encrypt: %s: %w: not an encryption marker of this version (format %q, cipher %q)",
			path, ErrCorrupt, m.Format, m.Cipher)
	}
	return &m, nil
}

func writeMarker(dir string, m *marker, noSync bool) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if err := durable.WriteFile(filepath.Join(dir, MarkerName), noSync, b, []byte("\n")); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	return nil
}

// MarkerKeys returns the IDs of the keys the marker of dir lists, and
// whether dir has a marker at all (is encrypted).
func MarkerKeys(dir string) ([]string, bool, error) {
	m, err := readMarker(dir)
	if err != nil || m == nil {
		return nil, false, err
	}
	return m.Keys, true, nil
}

// CheckPlain is the check for a data directory opened without
// encryption: an ErrKey error if dir is encrypted (holds a marker), so that
// nothing is read or written in it as if it were plain.
func CheckPlain(dir string) error {
	keys, ok, err := MarkerKeys(dir)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%w: data directory %s is encrypted (its %s file lists keys %s) but encryption is off: "+
			"configure it with one of those keys; nothing was read or written", ErrKey, dir, MarkerName, strings.Join(keys, ", "))
	}
	return nil
}

// prepare checks dir against the keys before anything of the backend is
// opened, and returns its marker: a new one, written, for a directory
// that is absent or empty. A directory with files but no marker was
// written without encryption; one whose marker lists none of the keys was
// encrypted with other keys; one whose marker lists a key that is not
// configured holds records that could not be read: all are refused with
// ErrKey, touching nothing.
func prepare(dir string, active Key, old []Key, noSync bool) (*marker, error) {
	m, err := readMarker(dir)
	if err != nil {
		return nil, err
	}
	if m == nil {
		des, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("encrypt: list data directory: %w", err)
		}
		var names []string
		for _, de := range des {
			if de.Name() != MarkerName+durable.TempSuffix { // a first marker whose writing a crash cut
				names = append(names, de.Name())
			}
		}
		if len(names) > 0 {
			return nil, fmt.Errorf("%w: data directory %s holds data written without encryption (%s; no %s file): "+
				"refusing to mix plaintext and encrypted records; start it without encryption, or start an empty "+
				"directory with encryption and let it catch up from the leader", ErrKey, dir, strings.Join(names, ", "), MarkerName)
		}
		_, statErr := os.Stat(dir)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("encrypt: create data directory: %w", err)
		}
		if errors.Is(statErr, fs.ErrNotExist) && !noSync {
			if err := durable.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
				return nil, fmt.Errorf("encrypt: sync parent directory: %w", err)
			}
		}
		m = &marker{Format: markerFormat, Cipher: "AES-256-GCM", Salt: make([]byte, 32), Keys: []string{active.id.String()}}
		rand.Read(m.Salt)
		if err := writeMarker(dir, m, noSync); err != nil {
			return nil, err
		}
		return m, nil
	}
	ids := []string{active.id.String()}
	for _, k := range old {
		ids = append(ids, k.id.String())
	}
	var missing []string
	known := false
	for _, k := range m.Keys {
		if slices.Contains(ids, k) {
			known = true
		} else {
			missing = append(missing, k)
		}
	}
	switch {
	case !known:
		return nil, fmt.Errorf("%w: wrong key: data directory %s was encrypted with keys %s, and none of the configured "+
			"keys (%s) is one of them; nothing was read or written", ErrKey, dir, strings.Join(m.Keys, ", "), strings.Join(ids, ", "))
	case len(missing) > 0:
		return nil, fmt.Errorf("%w: data directory %s holds records sealed with keys %s, which are not configured "+
			"(configured: %s); configure them as old keys until a snapshot covers those records; nothing was read or written",
			ErrMissingKey, dir, strings.Join(missing, ", "), strings.Join(ids, ", "))
	}
	return m, nil
}
