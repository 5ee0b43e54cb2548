package core

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden lists the standard packages core's own files may not import:
// they would let time, I/O, concurrency or hidden randomness leak in.
var forbidden = map[string]bool{
	"time": true, "os": true, "net": true, "sync": true, "math/rand": true,
	"math/rand/v2": true, "crypto/rand": true, "unsafe": true, "reflect": true,
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return strings.Fields(string(out))
}

// TestImportsStandardLibraryOnly checks the rule that core depends on the
// standard library alone, even transitively.
func TestImportsStandardLibraryOnly(t *testing.T) {
	for _, line := range goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./...") {
		if !strings.HasPrefix(line, "github.com/forge-consensus/consensus/core") {
			t.Errorf("core depends on non-standard package %s", line)
		}
	}
}

// TestImportsNoForbiddenPackages checks that core's own (non-test) files
// import none of the forbidden standard packages.
func TestImportsNoForbiddenPackages(t *testing.T) {
	imports := goList(t, "-f", `{{join .Imports " "}}`, "./...")
	if len(imports) == 0 {
		t.Fatal("go list reported no imports at all: the check is not looking")
	}
	for _, imp := range imports {
		root := imp
		if forbidden[root] || forbidden[strings.SplitN(root, "/", 2)[0]] {
			t.Errorf("core imports forbidden package %s", imp)
		}
	}
}
