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
	typeErrRE    = regexp.MustCompile("^line (\\d+): cannot unmarshal \\S+ `(.*)` into (.+)$")
	unknownKeyRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
)

// decodeError returns err, from decoding raw, with its messages naming
// keys instead of Go types.
func decodeError(raw []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil || len(doc.Content) == 0 {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		msgs = append(msgs, rewriteDecodeMessage(doc.Content[0], m))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func rewriteDecodeMessage(root *yaml.Node, m string) string {
	if g := typeErrRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		if path := keyAt(root, line, "", false); path != "" {
			return fmt.Sprintf("%s (line %d): %q is not %s", path, line, g[2], wantOf(g[3]))
		}
		return fmt.Sprintf("line %d: %q is not %s", line, g[2], wantOf(g[3]))
	}
	if g := unknownKeyRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		if path := keyAt(root, line, "", true); path != "" {
			return fmt.Sprintf("%s (line %d): unknown key", path, line)
		}
		return fmt.Sprintf("line %d: unknown key %q", line, g[2])
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

// keyAt returns the dotted path of the key (keyNode) or of the value at
// line, under n with prefix.
func keyAt(n *yaml.Node, line int, prefix string, keyNode bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if (keyNode && k.Line == line) || (!keyNode && v.Kind == yaml.ScalarNode && v.Line == line) {
				return path
			}
			if !keyNode && v.Kind != yaml.ScalarNode && v.Line == line && len(v.Content) == 0 {
				return path
			}
			if p := keyAt(v, line, path, keyNode); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p := keyAt(c, line, fmt.Sprintf("%s[%d]", prefix, i), keyNode); p != "" {
				return p
			}
		}
	}
	return ""
}
