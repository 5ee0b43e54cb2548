package recovery

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/forge-consensus/consensus/server"
)

// rewriteConfig returns the configuration file raw with the node's ID
// changed from oldID to newID, named newName ("": the number), in node_id
// and its entry in peers, and join
// set, every other key, comment and ${VAR} left as written. getenv expands
// ${VAR} only to recognise IDs written that way.
func rewriteConfig(raw []byte, oldID, newID uint64, newName, comment string, getenv func(string) string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the file is not one YAML mapping")
	}
	root := doc.Content[0]
	isOld := func(n *yaml.Node) bool {
		id, err := server.ParseNodeID(os.Expand(n.Value, getenv))
		return err == nil && id == oldID
	}
	setInt := func(n *yaml.Node, v uint64) {
		n.Kind, n.Tag, n.Style, n.Value = yaml.ScalarNode, "!!int", 0, strconv.FormatUint(v, 10)
		if newName != "" && newName != n.Value {
			n.Tag, n.Value = "!!str", newName
		}
	}
	id := lookup(root, "node_id")
	if id == nil || !isOld(id) {
		return nil, fmt.Errorf("node_id is not %d", oldID)
	}
	setInt(id, newID)
	found := false
	if peers := lookup(root, "peers"); peers != nil && peers.Kind == yaml.SequenceNode {
		for _, p := range peers.Content {
			if pid := lookup(p, "id"); pid != nil && isOld(pid) {
				setInt(pid, newID)
				found = true
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("peers has no entry with id %d", oldID)
	}
	if j := lookup(root, "join"); j != nil {
		j.Kind, j.Tag, j.Style, j.Value = yaml.ScalarNode, "!!bool", 0, "true"
	} else {
		root.Content = append(root.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "join",
				HeadComment: "A node that loses its state must never found a cluster again: with join it waits to be added."},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	if comment != "" {
		if root.HeadComment != "" {
			comment += "\n\n" + root.HeadComment
		}
		root.HeadComment = comment
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return buf.Bytes(), nil
}

// lookup returns the value of key in mapping m, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// writeFileSync writes data to path through a temporary file in the same
// directory: written, fsynced, renamed over path, and the directory
// fsynced, so that path holds either its old or its new contents.
func writeFileSync(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory, making renames in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
