package nodename

import (
	"errors"
	"strings"
	"testing"
)

func TestID(t *testing.T) {
	for _, tc := range []struct {
		name string
		want uint64
	}{
		{"1", 1}, {"3", 3}, {"node-3", 3}, {"007", 7}, {"node-42", 42},
		{"9223372036854775807", 1<<63 - 1},
	} {
		got, err := ID(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("ID(%q) = %d, %v; want %d", tc.name, got, err, tc.want)
		}
		if !Numeric(got) {
			t.Errorf("Numeric(ID(%q)) = false", tc.name)
		}
	}
	// Hashed names: stable (these values, computed independently with
	// Python's hashlib, are part of the on-disk and wire contract: a node's
	// ID must not change with a release), above 2^63, and distinct.
	seen := map[uint64]string{}
	for name, want := range map[string]uint64{
		"node-a":                0xe6570ff05a207404,
		"us-east-1a":            0xbcc3edcc1ecf38f7,
		"forge-consensus-0":     0x8cef15f394005a0b,
		"node-1.example.com":    0x852246cf9108813b,
		"Node_2":                0xbab52b44b468cff5,
		"node-":                 0,
		"node-01x":              0,
		"10.0.1.13":             0,
		"18446744073709551616a": 0,
	} {
		got, err := ID(name)
		if err != nil {
			t.Fatalf("ID(%q): %v", name, err)
		}
		if want != 0 && got != want {
			t.Errorf("ID(%q) = %#x, want %#x (the mapping changed)", name, got, want)
		}
		if Numeric(got) {
			t.Errorf("ID(%q) = %#x is in the numeric range", name, got)
		}
		if o, dup := seen[got]; dup {
			t.Errorf("ID(%q) = ID(%q)", name, o)
		}
		seen[got] = name
	}
}

func TestIDRefuses(t *testing.T) {
	for _, name := range []string{
		"", "0", "node-0", "9223372036854775808", "18446744073709551615", "99999999999999999999",
		"-a", ".a", "_a", "a b", "a/b", "a\x00", "a:7000", "a\u00e9", strings.Repeat("a", MaxLen+1), "é",
	} {
		if id, err := ID(name); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("ID(%q) = %d, %v; want an error wrapping ErrInvalid", name, id, err)
		}
	}
	if _, err := ID(strings.Repeat("a", MaxLen)); err != nil {
		t.Errorf("a name of %d bytes: %v", MaxLen, err)
	}
}

func TestCollision(t *testing.T) {
	err := Collision("node-3", "3", 3)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"node-3"`) || !strings.Contains(err.Error(), `"3"`) {
		t.Fatalf("Collision: %v", err)
	}
}

// FuzzID: ID never panics; it accepts exactly the names check accepts,
// numeric IDs only for numeric names, and is a function (same name, same
// ID).
func FuzzID(f *testing.F) {
	for _, s := range []string{"1", "node-7", "us-east-1a", "", "a b", "9223372036854775808", "node-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, err := ID(name)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || id != 0 {
				t.Fatalf("ID(%q) = %d, %v", name, id, err)
			}
			return
		}
		if check(name) != nil || id == 0 {
			t.Fatalf("ID(%q) = %d accepted a bad name", name, id)
		}
		digits := strings.TrimPrefix(name, "node-")
		if Numeric(id) != (digits != "" && allDigits(digits)) {
			t.Fatalf("ID(%q) = %d: numeric %v", name, id, Numeric(id))
		}
		if again, _ := ID(name); again != id {
			t.Fatalf("ID(%q) not stable: %d then %d", name, id, again)
		}
	})
}
