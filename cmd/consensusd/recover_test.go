package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRecoverUsage: consensusd recover without its flags, or with a bad
// ID, is a usage error (exit status 2) that changes nothing.
func TestRecoverUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"recover"}, "-config and -new-id are required"},
		{[]string{"recover", "-config", "x.yaml"}, "-config and -new-id are required"},
		{[]string{"recover", "-config", "x.yaml", "-new-id", "0"}, "-new-id"},
		{[]string{"recover", "-config", "x.yaml", "-new-id", "4", "extra"}, "nothing else"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errb.String(), exitUsage, tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"recover", "-config", "/nonexistent.yaml", "-new-id", "4"}, &out, &errb); code != exitRecoverFailed ||
		!strings.Contains(errb.String(), "read config") {
		t.Errorf("missing file: exit %d, stderr %q", code, errb.String())
	}
}
