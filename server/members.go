package server

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
	"github.com/forge-consensus/consensus/nodename"
)

// Member is a node's addresses as the cluster knows them: the peers of the
// configuration, and the nodes added later with their addresses in the
// membership change (core.ConfChange.Context, JSON).
type Member struct {
	ID uint64 `json:"id"`
	// Name is the member's name (package nodename), "" for a member added
	// before names were recorded: it is then shown by its ID.
	Name       string `json:"name,omitempty"`
	Address    string `json:"address"`
	Port       int    `json:"port"`
	APIPort    int    `json:"api_port,omitempty"`
	ClientPort int    `json:"client_port,omitempty"`
	// Promote marks a learner that joined learner-first (add-node): the
	// leader, whichever node it is, promotes it to voter once it has
	// caught up (raft.learner_promote_lag). Replicated with the member.
	Promote bool `json:"promote,omitempty"`
}

// memberOf returns a member with the default API and client ports (port
// + 100 and + 200) where they are unset.
func memberOf(id uint64, name, address string, port, apiPort, clientPort int) Member {
	if apiPort == 0 {
		apiPort = port + 100
	}
	if clientPort == 0 {
		clientPort = port + 200
	}
	return Member{ID: id, Name: name, Address: address, Port: port, APIPort: apiPort, ClientPort: clientPort}
}

func (m Member) raftAddr() string { return net.JoinHostPort(m.Address, strconv.Itoa(m.Port)) }
func (m Member) apiURL() string {
	return "http://" + net.JoinHostPort(m.Address, strconv.Itoa(m.APIPort))
}
func (m Member) clientAddr() string { return net.JoinHostPort(m.Address, strconv.Itoa(m.ClientPort)) }

// directory holds the members' addresses: the configured peers, overridden
// by nodes added through membership changes, minus removed nodes. The
// replicated part (added and removed) travels in snapshots, so a node that
// restarts or catches up from a snapshot still knows every address. It is
// read from any goroutine and changed on the node's.
type directory struct {
	mu      sync.RWMutex
	static  map[uint64]Member
	added   map[uint64]Member
	removed map[uint64]bool
	// names keeps the names of members added and later removed, so that
	// what refers to them still shows their name (not replicated).
	names map[uint64]string
	// found holds the addresses discovery found members at, where they
	// differ from the configured or replicated ones (a member that came
	// back at a new address); not replicated, and never a member by
	// itself.
	found map[uint64]Member
}

func newDirectory(peers []PeerConfig) *directory {
	d := &directory{static: map[uint64]Member{}, added: map[uint64]Member{}, removed: map[uint64]bool{},
		names: map[uint64]string{}, found: map[uint64]Member{}}
	for _, p := range peers {
		d.static[p.ID.ID()] = memberOf(p.ID.ID(), string(p.ID), p.Address, p.Port, p.APIPort, p.ClientPort)
	}
	return d
}

// get returns a member's addresses.
func (d *directory) get(id uint64) (Member, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.removed[id] {
		return Member{}, false
	}
	m, ok := d.added[id]
	if !ok {
		m, ok = d.static[id]
	}
	if ok {
		m = d.moved(m)
	}
	return m, ok
}

// moved returns m at the address discovery found it at, if any (d.mu
// held).
func (d *directory) moved(m Member) Member {
	if f, ok := d.found[m.ID]; ok {
		m.Address, m.Port, m.APIPort, m.ClientPort = f.Address, f.Port, f.APIPort, f.ClientPort
	}
	return m
}

// setFound records the address discovery found member m.ID at, and
// reports whether it changed what get returns.
func (d *directory) setFound(m Member) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, ok := d.added[m.ID]
	if !ok {
		if old, ok = d.static[m.ID]; !ok {
			return false
		}
	}
	old = d.moved(old)
	if old.Address == m.Address && old.Port == m.Port && old.APIPort == m.APIPort && old.ClientPort == m.ClientPort {
		return false
	}
	d.found[m.ID] = m
	return true
}

// learn records the address discovery found member m.ID at when the
// directory has none for it: a member of the configuration that was away
// when this node looked its peers up at start. It reports whether it
// recorded it (not for a known or removed member).
func (d *directory) learn(m Member) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, added := d.added[m.ID]
	_, static := d.static[m.ID]
	if added || static || d.removed[m.ID] {
		return false
	}
	d.static[m.ID] = m
	return true
}

// name returns how to show member id: its recorded name (a member added
// with one, or a configured peer), else its ID in decimal. A removed
// member keeps its name.
func (d *directory) name(id uint64) string {
	if id == 0 {
		return ""
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if m, ok := d.added[id]; ok && m.Name != "" {
		return m.Name
	}
	if n := d.names[id]; n != "" {
		return n
	}
	if m, ok := d.static[id]; ok && m.Name != "" {
		return m.Name
	}
	return nodename.String(id)
}

// all returns every known member, by ID.
func (d *directory) all() []Member {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var ms []Member
	for id, m := range d.static {
		if _, ok := d.added[id]; !ok && !d.removed[id] {
			ms = append(ms, d.moved(m))
		}
	}
	for id, m := range d.added {
		if !d.removed[id] {
			ms = append(ms, d.moved(m))
		}
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmpU64(a.ID, b.ID) })
	return ms
}

// removedIDs returns the IDs of the removed members, sorted.
func (d *directory) removedIDs() []uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var ids []uint64
	for id := range d.removed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (d *directory) add(m Member) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.added[m.ID] = m
	delete(d.removed, m.ID)
	delete(d.found, m.ID) // the replicated address is the newest word
}

func (d *directory) remove(id uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := d.added[id]; ok && m.Name != "" {
		d.names[id] = m.Name
	}
	delete(d.added, id)
	delete(d.found, id)
	d.removed[id] = true
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Snapshot formats: the key-value store's alone (it starts with its
// version byte, 1); machineMagic1, the directory then the store;
// machineMagic2, the directory, the application's state (length-prefixed),
// then the store; machineMagic3, the same with each added member's name
// (length-prefixed, after its ID); machineMagic, the same with each added
// member's flags (a uvarint after its ports: bit 0, Promote), then the
// store.
const (
	machineMagic1 = "FCM\x01"
	machineMagic2 = "FCM\x02"
	machineMagic3 = "FCM\x03"
	machineMagic  = "FCM\x04"
)

// memberPromote is the flag bit of Member.Promote in a snapshot.
const memberPromote = 1

// appCommandTag starts a command for Config.App; the key-value store's
// commands start with their version byte, 1.
const appCommandTag = 0xA7

// AppMachine is application state replicated beside the key-value store
// (Config.App): commands made with EncodeAppCommand reach it, in log
// order, on every node. Its methods run on the node's goroutine and must
// be deterministic.
type AppMachine interface {
	// Apply applies a committed command at log index; its result goes to
	// the proposer.
	Apply(index uint64, cmd []byte) any
	// Snapshot returns the whole application state as bytes.
	Snapshot() ([]byte, error)
	// Restore replaces the whole application state (nil: empty).
	Restore(data []byte) error
}

// EncodeAppCommand wraps an application command for Config.App, to be
// proposed like a key-value command.
func EncodeAppCommand(cmd []byte) []byte {
	return append([]byte{appCommandTag}, cmd...)
}

// errNoApp is the result of an application command on a node without
// Config.App.
var errNoApp = errors.New("server: an application command, but no application state machine is configured")

// machine is the server's state machine: the key-value store, the
// replicated part of the directory and the application's state.
// newStore returns the key-value store of a node. It shares its snapshots
// (kv.Config.ShareSnapshots): its state lives in its latest snapshot's
// bytes (or, once it streamed a snapshot to storage, in chunks copied as
// it wrote them), never modified, so the state is held once; a node whose
// storage takes streamed snapshots keeps none of its own.
func newStore() *kv.Store { return kv.New(kv.Config{ShareSnapshots: true}) }

type machine struct {
	kv  *kv.Store
	dir *directory
	app AppMachine // nil: none
	// restored runs after Restore, to point the transport at the
	// directory's addresses.
	restored func()
	// snapshotted, if set, is told how long each Snapshot took.
	snapshotted func(time.Duration)
}

func (m *machine) Apply(index uint64, cmd []byte) any {
	if len(cmd) > 0 && cmd[0] == appCommandTag {
		if m.app == nil {
			return errNoApp
		}
		return m.app.Apply(index, cmd[1:])
	}
	return m.kv.Apply(index, cmd)
}
func (m *machine) Query(q []byte) (any, error) { return m.kv.Query(q) }

// Hash is the state hash cross-replica verification compares
// (node.Hasher): the key-value store's running hash, mixed with the
// application's when it has one (an AppMachine with a Hash() uint64
// method). The directory is not hashed: it follows from the log's
// membership changes, which the core checks.
func (m *machine) Hash() uint64 {
	h := m.kv.Hash()
	if a, ok := m.app.(node.Hasher); ok {
		x := a.Hash() + 0x9e3779b97f4a7c15
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		h ^= x
	}
	return h
}

// Snapshot encodes the added members and removed IDs, in ID order, then
// the store.
func (m *machine) Snapshot() ([]byte, error) {
	if m.snapshotted != nil {
		defer func(start time.Time) { m.snapshotted(time.Since(start)) }(time.Now())
	}
	b, err := m.header()
	if err != nil {
		return nil, err
	}
	// The store appends itself: the state is not copied again, and with
	// kv.Config.ShareSnapshots the store's values then live in these bytes.
	return m.kv.AppendSnapshot(b), nil
}

// WriteSnapshot writes what Snapshot returns to w (node.SnapshotWriter):
// the directory and the application's state, then the store, which
// streams itself without building its snapshot in memory.
func (m *machine) WriteSnapshot(w io.Writer) error {
	if m.snapshotted != nil {
		defer func(start time.Time) { m.snapshotted(time.Since(start)) }(time.Now())
	}
	b, err := m.header()
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	return m.kv.WriteSnapshot(w)
}

// header encodes what precedes the store in a snapshot: the directory's
// added members and removed IDs, in ID order, and the application's
// state.
func (m *machine) header() ([]byte, error) {
	var app []byte
	var err error
	if m.app != nil {
		if app, err = m.app.Snapshot(); err != nil {
			return nil, fmt.Errorf("application snapshot: %w", err)
		}
	}
	d := m.dir
	d.mu.RLock()
	added := make([]Member, 0, len(d.added))
	for _, mem := range d.added {
		added = append(added, mem)
	}
	removed := make([]uint64, 0, len(d.removed))
	for id := range d.removed {
		removed = append(removed, id)
	}
	d.mu.RUnlock()
	slices.SortFunc(added, func(a, b Member) int { return cmpU64(a.ID, b.ID) })
	slices.Sort(removed)
	b := []byte(machineMagic)
	b = binary.AppendUvarint(b, uint64(len(added)))
	for _, mem := range added {
		b = binary.AppendUvarint(b, mem.ID)
		b = binary.AppendUvarint(b, uint64(len(mem.Name)))
		b = append(b, mem.Name...)
		b = binary.AppendUvarint(b, uint64(len(mem.Address)))
		b = append(b, mem.Address...)
		b = binary.AppendUvarint(b, uint64(mem.Port))
		b = binary.AppendUvarint(b, uint64(mem.APIPort))
		b = binary.AppendUvarint(b, uint64(mem.ClientPort))
		var flags uint64
		if mem.Promote {
			flags |= memberPromote
		}
		b = binary.AppendUvarint(b, flags)
	}
	b = binary.AppendUvarint(b, uint64(len(removed)))
	for _, id := range removed {
		b = binary.AppendUvarint(b, id)
	}
	b = binary.AppendUvarint(b, uint64(len(app)))
	return append(b, app...), nil
}

// errBadSnapshot reports a snapshot whose directory does not decode.
var errBadSnapshot = errors.New("server: malformed membership in snapshot")

// Restore replaces the store and the replicated directory. A snapshot
// without the directory (written before it existed) restores the store
// alone.
func (m *machine) Restore(data []byte) error {
	ms, err := decodeMachineSnapshot(data)
	if err != nil {
		return err
	}
	if ms.legacy {
		if err := m.kv.Restore(data); err != nil {
			return err
		}
		return m.restoreApp(nil)
	}
	// The store checks its own checksum; restore it into a new store
	// first, so that a bad snapshot changes nothing, then keep that store
	// (restoring twice would hold the state twice for a while).
	restored := newStore()
	if err := restored.Restore(ms.store); err != nil {
		return err
	}
	if err := m.restoreApp(ms.app); err != nil {
		return err
	}
	m.kv = restored
	m.dir.mu.Lock()
	m.dir.added, m.dir.removed = ms.added, ms.removed
	m.dir.mu.Unlock()
	if m.restored != nil {
		m.restored()
	}
	return nil
}

// machineSnapshot is a machine snapshot, decoded.
type machineSnapshot struct {
	// legacy marks the key-value store's snapshot alone (no directory);
	// store is then the whole data.
	legacy  bool
	added   map[uint64]Member
	removed map[uint64]bool
	app     []byte // the application's state (nil: none)
	store   []byte // the key-value store's snapshot
}

// decodeMachineSnapshot decodes what Snapshot returns; it does not check
// the store's part (kv.Store.Restore does).
func decodeMachineSnapshot(data []byte) (machineSnapshot, error) {
	var version int
	switch {
	case len(data) >= len(machineMagic) && string(data[:len(machineMagic)]) == machineMagic:
		version = 4
	case len(data) >= len(machineMagic3) && string(data[:len(machineMagic3)]) == machineMagic3:
		version = 3
	case len(data) >= len(machineMagic2) && string(data[:len(machineMagic2)]) == machineMagic2:
		version = 2
	case len(data) >= len(machineMagic1) && string(data[:len(machineMagic1)]) == machineMagic1:
		version = 1
	default:
		return machineSnapshot{legacy: true, store: data}, nil
	}
	rest := data[len(machineMagic):]
	next := func() (uint64, error) {
		v, k := binary.Uvarint(rest)
		if k <= 0 {
			return 0, errBadSnapshot
		}
		rest = rest[k:]
		return v, nil
	}
	port := func() (int, error) {
		v, err := next()
		if err == nil && v > 65535 {
			err = errBadSnapshot
		}
		return int(v), err
	}
	n, err := next()
	if err != nil || n > uint64(len(rest)) {
		return machineSnapshot{}, fmt.Errorf("%w: member count", errBadSnapshot)
	}
	added := map[uint64]Member{}
	for range n {
		var mem Member
		var l uint64
		mem.ID, err = next()
		if err == nil && version >= 3 {
			if l, err = next(); err == nil && l > uint64(len(rest)) {
				err = errBadSnapshot
			}
			if err == nil {
				mem.Name, rest = string(rest[:l]), rest[l:]
				if id, nerr := nodename.ID(mem.Name); mem.Name != "" && (nerr != nil || id != mem.ID) {
					return machineSnapshot{}, fmt.Errorf("%w: member %d named %q", errBadSnapshot, mem.ID, mem.Name)
				}
			}
		}
		if err == nil {
			l, err = next()
		}
		if err != nil || l > uint64(len(rest)) {
			return machineSnapshot{}, fmt.Errorf("%w: member", errBadSnapshot)
		}
		mem.Address, rest = string(rest[:l]), rest[l:]
		if mem.Port, err = port(); err == nil {
			if mem.APIPort, err = port(); err == nil {
				mem.ClientPort, err = port()
			}
		}
		if err != nil {
			return machineSnapshot{}, fmt.Errorf("%w: member %d ports", errBadSnapshot, mem.ID)
		}
		if version >= 4 {
			flags, err := next()
			if err != nil || flags&^memberPromote != 0 {
				return machineSnapshot{}, fmt.Errorf("%w: member %d flags", errBadSnapshot, mem.ID)
			}
			mem.Promote = flags&memberPromote != 0
		}
		added[mem.ID] = mem
	}
	n, err = next()
	if err != nil || n > uint64(len(rest)) {
		return machineSnapshot{}, fmt.Errorf("%w: removed count", errBadSnapshot)
	}
	removed := map[uint64]bool{}
	for range n {
		id, err := next()
		if err != nil {
			return machineSnapshot{}, fmt.Errorf("%w: removed node", errBadSnapshot)
		}
		removed[id] = true
	}
	var app []byte
	if version >= 2 {
		n, err := next()
		if err != nil || n > uint64(len(rest)) {
			return machineSnapshot{}, fmt.Errorf("%w: application state length", errBadSnapshot)
		}
		app, rest = rest[:n], rest[n:]
	}
	return machineSnapshot{added: added, removed: removed, app: app, store: rest}, nil
}

// restoreApp restores the application's state (nil data: empty).
func (m *machine) restoreApp(data []byte) error {
	if m.app == nil {
		if len(data) > 0 {
			return errors.New("server: the snapshot holds application state, but no application state machine is configured")
		}
		return nil
	}
	if err := m.app.Restore(data); err != nil {
		return fmt.Errorf("application restore: %w", err)
	}
	return nil
}

// encodeMember is a membership change's context: the added node's
// addresses.
func encodeMember(m Member) []byte {
	b, _ := json.Marshal(m) // a struct of strings and integers always encodes
	return b
}

// memberChanged updates the directory for an applied membership change:
// an added node's addresses come from the change's context (a promotion
// without them keeps what is known), and whether the leader is to promote
// it (Member.Promote, for a learner only); a removed node is forgotten.
func (d *directory) memberChanged(cc core.ConfChange) (changed []uint64) {
	for _, c := range cc.Changes {
		switch c.Type {
		case core.AddVoter, core.AddLearner:
			var m Member
			if err := json.Unmarshal(cc.Context, &m); err != nil || m.ID != c.NodeID || m.Address == "" ||
				m.Port <= 0 || m.Port > 65535 {
				continue
			}
			if m.Name != "" {
				if id, err := nodename.ID(m.Name); err != nil || id != m.ID {
					m.Name = "" // not this ID's name: shown by its ID
				}
			}
			mem := memberOf(m.ID, m.Name, m.Address, m.Port, m.APIPort, m.ClientPort)
			mem.Promote = m.Promote && c.Type == core.AddLearner
			d.add(mem)
		case core.RemoveNode:
			d.remove(c.NodeID)
		default:
			continue
		}
		changed = append(changed, c.NodeID)
	}
	return changed
}
