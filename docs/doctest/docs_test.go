// Package doctest checks that the documentation (README.md and docs/*.md)
// names only things that exist, and that its references are complete:
//
//   - the YAML keys in docs/configuration.md are exactly the yaml keys of
//     server.Config (and, in their own table, of forgeext.Config beyond
//     them);
//   - every forge_consensus_* metric the documents name is served by a real
//     node, and every one a node serves is in docs/operations.md's table;
//   - every consensusd and consensusctl command line the documents show
//     names a subcommand and flags that the binaries' own help lists;
//   - every relative link between the documents points to a file that
//     exists, and to a heading that exists when it names one.
package doctest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/server"
	"github.com/forge-consensus/consensus/server/servertest"
)

// root is the repository root, two levels above this package.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found above the test's directory: %v", err)
	}
	return dir
}

// doc is one Markdown document, by its path relative to the root.
type doc struct {
	path string
	text string
}

// docs returns README.md and docs/*.md.
func docs(t *testing.T) []doc {
	t.Helper()
	dir := root(t)
	paths := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(dir, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range more {
		rel, _ := filepath.Rel(dir, p)
		paths = append(paths, filepath.ToSlash(rel))
	}
	if len(paths) < 2 {
		t.Fatal("no documents under docs/")
	}
	var out []doc
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, doc{path: p, text: string(b)})
	}
	return out
}

// line is one line of a document outside fenced code, or inside it with
// the fence's info string.
type line struct {
	n     int    // 1-based
	text  string // the line
	fence string // "" outside a fenced block; else the info string, or "-" for none
}

// lines splits a document into lines, marking those inside fenced code
// blocks (``` or ~~~).
func lines(text string) []line {
	var out []line
	var fence, marker string
	for i, l := range strings.Split(text, "\n") {
		trim := strings.TrimSpace(l)
		if marker == "" && (strings.HasPrefix(trim, "```") || strings.HasPrefix(trim, "~~~")) {
			marker = trim[:3]
			fence = strings.TrimSpace(trim[3:])
			if fence == "" {
				fence = "-"
			}
			out = append(out, line{n: i + 1, text: l, fence: "-"}) // the fence line itself
			continue
		}
		if marker != "" && strings.HasPrefix(trim, marker) {
			out = append(out, line{n: i + 1, text: l, fence: "-"})
			marker, fence = "", ""
			continue
		}
		out = append(out, line{n: i + 1, text: l, fence: fence})
	}
	return out
}

// ---------------------------------------------------------------------
// Configuration keys

var yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// yamlKeys returns the keys of a configuration struct as its yaml tags
// spell them: nested structs give dotted paths (raft.pre_vote), a list of
// structs gives its own key and its elements' keys after "[]."
// (peers, peers[].id), inline structs add their keys at their level, and
// fields tagged "-" are skipped.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if slices.Contains(strings.Split(opts, ","), "inline") {
				walk(ft, prefix)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name) // yaml.v3's default
			}
			key := prefix + name
			switch {
			case isSection(ft):
				walk(ft, key+".")
			case (ft.Kind() == reflect.Slice || ft.Kind() == reflect.Array) && isSection(deref(ft.Elem())):
				keys = append(keys, key)
				walk(deref(ft.Elem()), key+"[].")
			default:
				keys = append(keys, key)
			}
		}
	}
	walk(t, "")
	return keys
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// isSection reports whether a struct type is decoded key by key (rather
// than by its own UnmarshalYAML, or as a value such as time.Time).
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !t.Implements(yamlUnmarshaler) &&
		!reflect.PointerTo(t).Implements(yamlUnmarshaler) && t.PkgPath() != "time"
}

var keyCell = regexp.MustCompile("^`([a-z0-9_]+(?:\\[\\])?(?:\\.[a-z0-9_]+(?:\\[\\])?)*)`$")

// documentedKeys returns the keys of the tables in text whose header's
// first cell is header, by line; a row whose first cell is not one
// backticked key is an error.
func documentedKeys(t *testing.T, path, text, header string) map[string]int {
	t.Helper()
	keys := map[string]int{}
	in := false
	for _, l := range lines(text) {
		if l.fence != "" {
			in = false
			continue
		}
		trim := strings.TrimSpace(l.text)
		if !strings.HasPrefix(trim, "|") {
			in = false
			continue
		}
		cells := strings.Split(strings.Trim(trim, "|"), "|")
		first := strings.TrimSpace(cells[0])
		switch {
		case !in && first == header:
			in = true
		case in && strings.Trim(first, "-: ") == "":
			// the separator row
		case in:
			m := keyCell.FindStringSubmatch(first)
			if m == nil {
				t.Errorf("%s:%d: the first cell %q is not one backticked key such as `raft.pre_vote`", path, l.n, first)
				continue
			}
			if prev, dup := keys[m[1]]; dup {
				t.Errorf("%s:%d: key %s documented twice (also line %d)", path, l.n, m[1], prev)
			}
			keys[m[1]] = l.n
		}
	}
	return keys
}

// compareKeys reports documented keys that do not exist and existing keys
// that are not documented.
func compareKeys(t *testing.T, path, what string, documented map[string]int, actual []string) {
	t.Helper()
	if len(documented) == 0 {
		t.Errorf("%s: no table of %s found", path, what)
		return
	}
	have := map[string]bool{}
	for _, k := range actual {
		have[k] = true
		if _, ok := documented[k]; !ok {
			t.Errorf("%s: %s has the key %s, which %s does not document", path, what, k, path)
		}
	}
	for _, k := range sortedKeys(documented) {
		if !have[k] {
			t.Errorf("%s:%d: documents the key %s, which %s does not have", path, documented[k], k, what)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestDocsConfigKeys checks docs/configuration.md against server.Config
// and forgeext.Config, both ways.
func TestDocsConfigKeys(t *testing.T) {
	const path = "docs/configuration.md"
	b, err := os.ReadFile(filepath.Join(root(t), path))
	if err != nil {
		t.Fatal(err)
	}
	serverKeys := yamlKeys(reflect.TypeFor[server.Config]())
	compareKeys(t, path, "server.Config", documentedKeys(t, path, string(b), "key"), serverKeys)

	var extOnly []string
	for _, k := range yamlKeys(reflect.TypeFor[forgeext.Config]()) {
		if !slices.Contains(serverKeys, k) {
			extOnly = append(extOnly, k)
		}
	}
	compareKeys(t, path, "forgeext.Config (beyond server.Config)", documentedKeys(t, path, string(b), "extension key"), extOnly)
}

// ---------------------------------------------------------------------
// Metrics

var metricName = regexp.MustCompile(`forge_consensus_[a-z0-9_]*[a-z0-9]`)

// TestDocsMetrics starts a real three-node cluster, makes it do what
// creates every series (a write, a read, a snapshot, a failed admin
// operation; peers are exported by the leader), scrapes every node and
// checks the documented metric names against the families served.
func TestDocsMetrics(t *testing.T) {
	const token = "doctest-admin-token"
	srvs, lead := servertest.StartClusterWith(t, 3, "memory", "tcp",
		"security:\n  tokens:\n    - {token: "+token+", role: admin}\n")
	call := func(method, url, body string, wantOK bool) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ok := resp.StatusCode < 300; ok != wantOK {
			t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
		}
	}
	base := "http://" + lead.APIAddr()
	call(http.MethodPut, base+"/kv/doctest", "value", true)
	call(http.MethodGet, base+"/kv/doctest", "", true)
	call(http.MethodPost, base+"/consensus/snapshot", "", true)
	// A transfer to a node that is not a member fails: a failed operation.
	call(http.MethodPost, base+"/consensus/transfer-leadership", `{"target_node_id": 99}`, false)

	served := map[string]string{} // family name -> type, over every node
	for _, s := range srvs {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.APIAddr()+"/consensus/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics of %s: %d %s", s.APIAddr(), resp.StatusCode, b)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				served[f[2]] = f[3]
			}
		}
	}
	if len(served) == 0 {
		t.Fatal("the nodes serve no metrics")
	}

	exists := func(name string) bool {
		if _, ok := served[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && served[base] == "histogram" {
				return true
			}
		}
		return false
	}
	inTable := map[string]bool{} // the first cells of docs/operations.md's metrics table
	for _, d := range docs(t) {
		for _, l := range lines(d.text) {
			for _, name := range metricName.FindAllString(l.text, -1) {
				if !exists(name) {
					t.Errorf("%s:%d: documents the metric %s, which no node serves", d.path, l.n, name)
				}
			}
			if d.path == "docs/operations.md" && l.fence == "" && strings.HasPrefix(l.text, "| `forge_consensus_") {
				inTable[metricName.FindString(l.text)] = true
			}
		}
	}
	for _, name := range sortedKeys(served) {
		if strings.HasPrefix(name, "forge_consensus_") && !inTable[name] {
			t.Errorf("docs/operations.md: the nodes serve the metric %s (%s), which its metrics table does not list", name, served[name])
		}
	}
}

// ---------------------------------------------------------------------
// Commands

// binaries builds consensusd and consensusctl into a temporary directory
// and returns it.
func binaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", dir+string(filepath.Separator), "./cmd/consensusd", "./cmd/consensusctl")
	cmd.Dir = root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// help runs a binary with args and returns everything it printed; its exit
// status does not matter (help and usage errors exit 0 or 2).
func help(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "CONSENSUSCTL_ENDPOINTS=http://127.0.0.1:1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not finish", filepath.Base(bin), strings.Join(args, " "))
	}
	return out.String()
}

var (
	defaultsFlag = regexp.MustCompile(`(?m)^\s+(-[a-z][a-z0-9-]*)`)          // flag.PrintDefaults
	anyFlag      = regexp.MustCompile(`(?:^|[\s\[(,|])(--?[a-z][a-z0-9-]*)`) // a flag anywhere in a text
	daemonSub    = regexp.MustCompile(`consensusd ([a-z][a-z-]*)`)
)

// cli is what a binary's help lists: its subcommands (with their own
// subcommands, for consensusctl kv) and the flags of each.
type cli struct {
	subs  map[string][]string        // subcommand -> its subcommands (kv -> get, put, delete)
	flags map[string]map[string]bool // subcommand ("" for none) -> flags
}

func flagSet(re *regexp.Regexp, text string) map[string]bool {
	set := map[string]bool{"-h": true, "-help": true, "--help": true}
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		set[m[1]] = true
	}
	return set
}

// daemonCLI reads consensusd's help: the usage printed without arguments
// names the subcommands; -h lists the node's flags, SUB -h each
// subcommand's.
func daemonCLI(t *testing.T, bin string) cli {
	c := cli{subs: map[string][]string{}, flags: map[string]map[string]bool{}}
	for _, m := range daemonSub.FindAllStringSubmatch(help(t, bin), -1) {
		c.subs[m[1]] = nil
	}
	if len(c.subs) == 0 {
		t.Fatal("consensusd's usage names no subcommand")
	}
	c.flags[""] = flagSet(defaultsFlag, help(t, bin, "-h"))
	for sub := range c.subs {
		c.flags[sub] = flagSet(defaultsFlag, help(t, bin, sub, "-h"))
	}
	return c
}

// ctlCLI reads consensusctl -h: the lines under "commands:" name the
// commands (and kv's), and every flag the text mentions is accepted where
// the usage puts it (global flags before the command, kv get's after it).
func ctlCLI(t *testing.T, bin string) cli {
	text := help(t, bin, "-h")
	c := cli{subs: map[string][]string{}, flags: map[string]map[string]bool{}}
	_, after, ok := strings.Cut(text, "\ncommands:\n")
	if !ok {
		t.Fatalf("consensusctl -h lists no commands:\n%s", text)
	}
	for _, l := range strings.Split(after, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			break
		}
		c.subs[f[0]] = c.subs[f[0]]
		if f[0] == "kv" && len(f) > 1 {
			c.subs["kv"] = append(c.subs["kv"], f[1])
		}
	}
	all := flagSet(anyFlag, text)
	c.flags[""] = all
	for sub := range c.subs {
		c.flags[sub] = all
	}
	return c
}

// invocation is one documented command line of a binary.
type invocation struct {
	where  string // path:line
	text   string
	sub    string // "" for none
	subsub string
	flags  []string
}

var (
	codeSpan    = regexp.MustCompile("`([^`]+)`")
	placeholder = regexp.MustCompile(`<[^<>]*>`)
)

// commandTexts returns the command-line texts of a document: each line of
// a fenced block (of a console block, only the lines with a "$ " prompt;
// comments after " #" cut off) and each inline code span, with its line.
func commandTexts(d doc) []struct {
	n    int
	text string
} {
	type text = struct {
		n    int
		text string
	}
	var out []text
	var prose []line
	flush := func() {
		if len(prose) == 0 {
			return
		}
		var b strings.Builder
		for _, l := range prose {
			b.WriteString(l.text)
			b.WriteByte('\n')
		}
		joined := b.String()
		for _, m := range codeSpan.FindAllStringSubmatchIndex(joined, -1) {
			n := prose[0].n + strings.Count(joined[:m[0]], "\n")
			out = append(out, text{n, joined[m[2]:m[3]]})
		}
		prose = prose[:0]
	}
	for _, l := range lines(d.text) {
		if l.fence == "" {
			if strings.TrimSpace(l.text) == "" {
				flush()
				continue
			}
			prose = append(prose, l)
			continue
		}
		flush()
		s := l.text
		if l.fence == "console" {
			rest, ok := strings.CutPrefix(strings.TrimSpace(s), "$ ")
			if !ok {
				continue
			}
			s = rest
		}
		if i := strings.Index(s, " #"); i >= 0 {
			s = s[:i]
		}
		out = append(out, text{l.n, s})
	}
	flush()
	return out
}

// valueless are the flags of consensusctl that take no value.
var valueless = map[string]bool{"--insecure-skip-verify": true, "-insecure-skip-verify": true,
	"-h": true, "-help": true, "--help": true}

// invocations finds the command lines of binary name in the documents:
// "name ..." or "go run ./cmd/name ...".
func invocations(t *testing.T, name string) []invocation {
	var out []invocation
	for _, d := range docs(t) {
		for _, c := range commandTexts(d) {
			// A placeholder such as <an unused ID> is one word.
			text := placeholder.ReplaceAllStringFunc(c.text, func(p string) string { return strings.ReplaceAll(p, " ", "_") })
			tok := strings.Fields(text)
			for i, w := range tok {
				if w != name && !(strings.HasSuffix(w, "/cmd/"+name) && i > 0 && tok[i-1] == "run") {
					continue
				}
				inv := invocation{where: fmt.Sprintf("%s:%d", d.path, c.n), text: strings.Join(tok[i:], " ")}
				rest := tok[i+1:]
				if name == "consensusctl" { // global flags, with values, before the command
					for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
						f, _, hasValue := strings.Cut(rest[0], "=")
						inv.flags = append(inv.flags, f)
						if hasValue || valueless[f] || len(rest) == 1 {
							rest = rest[1:]
						} else {
							rest = rest[2:]
						}
					}
				}
				if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
					inv.sub, rest = rest[0], rest[1:]
					if strings.ContainsAny(inv.sub[:1], "<[$") {
						continue // a placeholder, not a command
					}
					if inv.sub == "kv" && len(rest) > 0 {
						inv.subsub, rest = rest[0], rest[1:]
					}
				}
				for _, w := range rest {
					if strings.HasPrefix(w, "-") && len(w) > 1 {
						f, _, _ := strings.Cut(w, "=")
						inv.flags = append(inv.flags, f)
					}
				}
				out = append(out, inv)
			}
		}
	}
	return out
}

// TestDocsCommands builds consensusd and consensusctl and checks every
// documented command line of theirs against their help: the subcommand
// must be listed, and each flag accepted there.
func TestDocsCommands(t *testing.T) {
	dir := binaries(t)
	for _, name := range []string{"consensusd", "consensusctl"} {
		bin := filepath.Join(dir, name)
		var c cli
		if name == "consensusd" {
			c = daemonCLI(t, bin)
		} else {
			c = ctlCLI(t, bin)
		}
		invs := invocations(t, name)
		if len(invs) == 0 {
			t.Errorf("the documents show no %s command line", name)
		}
		seen := map[string]bool{}
		for _, inv := range invs {
			subs, ok := c.subs[inv.sub]
			if inv.sub != "" && !ok {
				t.Errorf("%s: `%s`: %s has no subcommand %q (its help lists %s)", inv.where, inv.text, name,
					inv.sub, strings.Join(sortedKeys(c.subs), ", "))
				continue
			}
			if inv.subsub != "" && !slices.Contains(subs, inv.subsub) {
				t.Errorf("%s: `%s`: %s %s has no subcommand %q (its help lists %s)", inv.where, inv.text, name,
					inv.sub, inv.subsub, strings.Join(subs, ", "))
			}
			for _, f := range inv.flags {
				if !c.flags[inv.sub][f] {
					t.Errorf("%s: `%s`: %s %s does not accept the flag %s", inv.where, inv.text, name, inv.sub, f)
				}
			}
			seen[strings.TrimSpace(inv.sub+" "+inv.subsub)] = true
		}
		t.Logf("%s: %d documented command lines checked (%s)", name, len(invs), strings.Join(sortedKeys(seen), ", "))
	}
}

// ---------------------------------------------------------------------
// Links

var (
	link     = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	heading  = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*$`)
	htmlTags = regexp.MustCompile(`<[^>]+>`)
)

// anchors returns the GitHub anchors of a document's headings.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	count := map[string]int{}
	for _, l := range lines(text) {
		m := heading.FindStringSubmatch(l.text)
		if l.fence != "" || m == nil {
			continue
		}
		h := htmlTags.ReplaceAllString(m[1], "")
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r) || r == '_' || r == '-':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := count[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		count[slug]++
	}
	return out
}

// TestDocsLinks checks every relative link of README.md and docs/*.md:
// the file exists, and so does the heading it names.
func TestDocsLinks(t *testing.T) {
	dir := root(t)
	cache := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := cache[path]; ok {
			return a
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		cache[path] = anchors(string(b))
		return cache[path]
	}
	n := 0
	for _, d := range docs(t) {
		for _, l := range lines(d.text) {
			if l.fence != "" {
				continue
			}
			text := codeSpan.ReplaceAllString(l.text, "")
			for _, m := range link.FindAllStringSubmatch(text, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				n++
				file, frag, _ := strings.Cut(target, "#")
				path := filepath.Join(dir, filepath.FromSlash(d.path))
				if file != "" {
					path = filepath.Join(filepath.Dir(path), filepath.FromSlash(file))
					if _, err := os.Stat(path); err != nil {
						t.Errorf("%s:%d: link %s: no file %s", d.path, l.n, target, file)
						continue
					}
				}
				if frag != "" && strings.HasSuffix(path, ".md") && !anchorsOf(path)[frag] {
					t.Errorf("%s:%d: link %s: %s has no heading with the anchor #%s", d.path, l.n, target,
						filepath.Base(path), frag)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no relative links found: the link check checks nothing")
	}
	t.Logf("%d relative links checked", n)
}
