package server

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// YAML decoding errors say "line 7: cannot unmarshal !!str `soon` into
// time.Duration" or "line 3: field heartbeat not found in type
// server.RaftConfig": a line and a Go type. decodeError rewrites each into
// the key's dotted path, its line and what the key takes.
var (
	typeErrRE    = regexp.MustCompile("^line (\\d+): cannot unmarshal (\\S+)(?: `(.*)`)? into (.+)$")
	unknownKeyRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
)

// DescribeYAMLError returns err, from decoding raw (YAML) into Config or
// a struct with its keys, with its messages naming keys and what they
// take instead of Go types, but no line numbers: for YAML that is not the
// user's file as written (the Forge extension's section, which its
// configuration re-encodes).
func DescribeYAMLError(raw []byte, err error) error { return describe(raw, err, false) }

// decodeError returns err, from decoding raw, with its messages naming
// keys, their lines and what they take instead of Go types.
func decodeError(raw []byte, err error) error { return describe(raw, err, true) }

func describe(raw []byte, err error, lines bool) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// A syntax error: it has a line but no key to name.
		return fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil || len(doc.Content) == 0 {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		msgs = append(msgs, rewriteDecodeMessage(doc.Content[0], m, lines))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func rewriteDecodeMessage(root *yaml.Node, m string, lines bool) string {
	at := func(path string, line int) string {
		switch {
		case lines && path != "":
			return fmt.Sprintf("%s (line %d)", path, line)
		case lines:
			return fmt.Sprintf("line %d", line)
		case path != "":
			return path
		}
		return "a key"
	}
	if g := typeErrRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		tag, value, want := g[2], g[3], wantOf(g[4])
		kind, what := yaml.ScalarNode, strconv.Quote(value)
		switch tag {
		case "!!seq":
			kind, what = yaml.SequenceNode, "a list"
		case "!!map":
			kind, what = yaml.MappingNode, "a mapping"
		}
		if line == root.Line && kind == root.Kind && kind != yaml.ScalarNode {
			return fmt.Sprintf("%s: %s is not %s", at("the configuration", line), what, want)
		}
		path := keyAt(root, line, "", false, valueMatch{kind, value, true})
		if path == "" {
			path = keyAt(root, line, "", false, valueMatch{kind, value, false})
		}
		return fmt.Sprintf("%s: %s is not %s", at(path, line), what, want)
	}
	if g := unknownKeyRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		if path := keyAt(root, line, "", true, valueMatch{}); path != "" {
			return fmt.Sprintf("%s: unknown key", at(path, line))
		}
		return fmt.Sprintf("%s: unknown key %q", at("", line), g[2])
	}
	return m
}

// wantOf says what a Go type takes, in the configuration's words.
func wantOf(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration (like 500ms or 2s)"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "string" || strings.HasSuffix(goType, "NodeName"):
		return "a single value"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	}
	return "a mapping of keys"
}

// valueMatch is the value a decoding error is about: its kind and, for a
// scalar, its text (exact: only a scalar with that text matches, for a
// line holding several keys, as in "{port: 1, api_port: x}").
type valueMatch struct {
	kind  yaml.Kind
	value string
	exact bool
}

func (vm valueMatch) matches(v *yaml.Node) bool {
	if v.Kind != vm.kind {
		return false
	}
	return v.Kind != yaml.ScalarNode || !vm.exact || v.Value == vm.value
}

// keyAt returns the dotted path of the key (keyNode) or of the value (vm)
// at line, under n with prefix.
func keyAt(n *yaml.Node, line int, prefix string, keyNode bool, vm valueMatch) string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if (keyNode && k.Line == line) || (!keyNode && v.Line == line && vm.matches(v)) {
				return path
			}
			if p := keyAt(v, line, path, keyNode, vm); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p := keyAt(c, line, fmt.Sprintf("%s[%d]", prefix, i), keyNode, vm); p != "" {
				return p
			}
		}
	}
	return ""
}
