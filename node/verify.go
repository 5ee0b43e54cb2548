package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/forge-consensus/consensus/core"
)

// Cross-replica verification.
//
// With Config.VerifyInterval set, every node records the hash of its state
// machine (Hasher) each time it applies an index that is a multiple of the
// interval: a checkpoint. It then reports that hash through the log, in a
// small record the node intercepts: records never reach the state machine
// and never change its state or its hash. The leader collects the reports
// of each checkpoint it applied and, once a majority of the voters agree
// on a hash, proposes a verdict naming that hash and the reports it
// counted. Every node applies the same records in the same order and so
// reaches the same conclusion: a report whose hash differs from its
// checkpoint's verdict names a replica whose state diverged at that index,
// leader or not. Reports that disagree with no majority among them once
// every voter reported (or four election timeouts after the first report)
// give an undecided verdict
// that flags every reporter.
//
// A node that learns of a divergence raises an Alarm (Config.OnAlarm, an
// ERROR log, Node.Alarms). A node that learns that it diverged itself
// refuses reads and proposals with a *DivergedError, takes no more local
// snapshots (so that, through a restart, the log still holds the records
// that tell it so again), and steps down if it leads.
//
// An alarm about node X clears when X's report at a later checkpoint
// matches that checkpoint's verdict, or when X is removed from the
// configuration; on X itself also when X's state is replaced by a snapshot
// from the leader. A node that restored a snapshot past a checkpoint has
// no hash for it and cannot report on it.
//
// Records are a proposal header with incarnation 0 and sequence 0 (which
// no proposal of Propose has), then:
//
//	"FCV", kind (1 report, 2 verdict)
//	report:  reporter (uvarint), index (uvarint), hash (8 bytes LE)
//	verdict: index (uvarint), flags (bit 0 decided), hash (8 bytes LE),
//	         count (uvarint), count × (node (uvarint), hash (8 bytes LE)),
//	         nodes strictly ascending; an undecided verdict has hash 0

// Hasher is implemented by a StateMachine that can hash its state, for
// cross-replica verification (Config.VerifyInterval). Equal states must
// have equal hashes on every node; the hash must be cheap to read (kv.Store
// keeps a running one).
type Hasher interface {
	Hash() uint64
}

// ErrDiverged is matched (errors.Is) by every *DivergedError.
var ErrDiverged = errors.New("node: state diverged from the cluster's")

// DivergedError refuses a request on a node whose state diverged from the
// majority's: its answers cannot be trusted until it is repaired.
type DivergedError struct {
	Alarm Alarm
}

// Error describes the divergence.
func (e *DivergedError) Error() string {
	return "node: this node's state diverged from the cluster's; it serves no reads until repaired: " + e.Alarm.String()
}

// Is makes errors.Is(err, ErrDiverged) true.
func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }

// Alarm says that a replica's state diverged from the majority's.
type Alarm struct {
	// Node is the replica that diverged.
	Node uint64
	// Index is the checkpoint (applied index) where it was seen.
	Index uint64
	// Hash is the replica's state hash at Index.
	Hash uint64
	// Want is the majority's hash at Index (0 when Decided is false).
	Want uint64
	// Decided is false when the reports disagreed without a majority: the
	// replica is one of several whose states differ, and which is right
	// is unknown.
	Decided bool
	// Cleared is set when the alarm is withdrawn (Config.OnAlarm only).
	Cleared bool
}

// String describes the alarm on one line.
func (a Alarm) String() string {
	if !a.Decided {
		return fmt.Sprintf("node %d had state hash %#016x at index %d, and the replicas' hashes disagree with no majority",
			a.Node, a.Hash, a.Index)
	}
	return fmt.Sprintf("node %d diverged at index %d: state hash %#016x, majority %#016x", a.Node, a.Index, a.Hash, a.Want)
}

// verifyMagic follows the (0, 0) header of a verification record.
const verifyMagic = "FCV"

// Record kinds.
const (
	recReport  byte = 1
	recVerdict byte = 2
)

// verifyKeep is how many intervals behind the applied index a checkpoint
// is kept for reports and verdicts.
const verifyKeep = 64

// report is one replica's hash at a checkpoint.
type report struct {
	node uint64
	hash uint64
}

// verdict is the leader's conclusion about a checkpoint.
type verdict struct {
	index   uint64
	decided bool
	hash    uint64   // the majority's hash (decided only)
	reports []report // the reports counted, by node ascending
}

// record is a decoded verification record: a report or a verdict.
type record struct {
	kind    byte
	rep     report
	index   uint64 // report: the checkpoint reported
	verdict verdict
}

// errBadRecord is wrapped by every record decoding error.
var errBadRecord = errors.New("node: malformed verification record")

func appendHash(b []byte, h uint64) []byte { return binary.LittleEndian.AppendUint64(b, h) }

func recordHeader(kind byte) []byte {
	b := make([]byte, 0, 64)
	b = append(b, 0, 0) // incarnation 0, sequence 0
	b = append(b, verifyMagic...)
	return append(b, kind)
}

// encodeReport encodes node's report of hash at index.
func encodeReport(node, index, hash uint64) []byte {
	b := recordHeader(recReport)
	b = binary.AppendUvarint(b, node)
	b = binary.AppendUvarint(b, index)
	return appendHash(b, hash)
}

// encodeVerdict encodes v; its reports must be sorted by node.
func encodeVerdict(v *verdict) []byte {
	b := recordHeader(recVerdict)
	b = binary.AppendUvarint(b, v.index)
	var flags byte
	if v.decided {
		flags = 1
	}
	b = append(b, flags)
	b = appendHash(b, v.hash)
	b = binary.AppendUvarint(b, uint64(len(v.reports)))
	for _, r := range v.reports {
		b = binary.AppendUvarint(b, r.node)
		b = appendHash(b, r.hash)
	}
	return b
}

// isRecord reports whether entry data (header included) is a verification
// record rather than a command.
func isRecord(data []byte) bool {
	return len(data) >= 2+len(verifyMagic)+1 && data[0] == 0 && data[1] == 0 &&
		string(data[2:2+len(verifyMagic)]) == verifyMagic
}

// recDecoder reads a record canonically.
type recDecoder struct {
	b   []byte
	err error
}

func (d *recDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b)
	switch {
	case k <= 0:
		d.err = fmt.Errorf("%w: %s: bad varint", errBadRecord, field)
		return 0
	case k > 1 && d.b[k-1] == 0:
		d.err = fmt.Errorf("%w: %s: overlong varint", errBadRecord, field)
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *recDecoder) hash(field string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = fmt.Errorf("%w: %s: truncated", errBadRecord, field)
		return 0
	}
	h := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return h
}

func (d *recDecoder) u8(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("%w: %s: truncated", errBadRecord, field)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// decodeRecord decodes entry data that isRecord accepted. It rejects
// unknown kinds, non-canonical varints, zero node IDs or indexes, unsorted
// or duplicate reporters, an undecided verdict with a hash, and trailing
// bytes. It never panics and never allocates more than the input warrants.
func decodeRecord(data []byte) (record, error) {
	if !isRecord(data) {
		return record{}, fmt.Errorf("%w: no record header", errBadRecord)
	}
	d := recDecoder{b: data[2+len(verifyMagic)+1:]}
	rec := record{kind: data[2+len(verifyMagic)]}
	switch rec.kind {
	case recReport:
		rec.rep.node = d.uvarint("reporter")
		rec.index = d.uvarint("index")
		rec.rep.hash = d.hash("hash")
		if d.err == nil && (rec.rep.node == 0 || rec.index == 0) {
			d.err = fmt.Errorf("%w: report of node %d at index %d", errBadRecord, rec.rep.node, rec.index)
		}
	case recVerdict:
		v := &rec.verdict
		v.index = d.uvarint("index")
		flags := d.u8("flags")
		v.hash = d.hash("hash")
		n := d.uvarint("count")
		switch {
		case d.err != nil:
		case v.index == 0:
			d.err = fmt.Errorf("%w: verdict at index 0", errBadRecord)
		case flags&^1 != 0:
			d.err = fmt.Errorf("%w: unknown verdict flags %#x", errBadRecord, flags)
		case flags == 0 && v.hash != 0:
			d.err = fmt.Errorf("%w: undecided verdict with a hash", errBadRecord)
		case n > uint64(len(d.b)/9):
			d.err = fmt.Errorf("%w: %d reports in %d bytes", errBadRecord, n, len(d.b))
		}
		v.decided = flags == 1
		if d.err == nil && n > 0 {
			v.reports = make([]report, 0, n)
		}
		for i := uint64(0); d.err == nil && i < n; i++ {
			r := report{node: d.uvarint("node")}
			r.hash = d.hash("node hash")
			if d.err == nil && (r.node == 0 || (i > 0 && r.node <= v.reports[i-1].node)) {
				d.err = fmt.Errorf("%w: reporters not strictly ascending", errBadRecord)
			}
			v.reports = append(v.reports, r)
		}
	default:
		return record{}, fmt.Errorf("%w: unknown kind %d", errBadRecord, rec.kind)
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.b))
	}
	if d.err != nil {
		return record{}, d.err
	}
	return rec, nil
}

// decide is the leader's verdict on a checkpoint from the reports it
// applied, given the voters of its configuration (and the outgoing voters
// of a joint one). A hash reported by a majority of the voters (of both
// halves of a joint configuration) wins. Reports that disagree without a
// majority give an undecided verdict once every voter reported or final is
// set (the checkpoint is old). Otherwise, or when the reports all agree
// without a majority yet, there is no verdict yet (ok false).
func decide(index uint64, reports []report, voters, outgoing []uint64, final bool) (v verdict, ok bool) {
	if len(reports) == 0 {
		return verdict{}, false
	}
	sorted := slices.Clone(reports)
	slices.SortFunc(sorted, func(a, b report) int { return cmpU64(a.node, b.node) })
	v = verdict{index: index, reports: sorted}
	// Candidate hashes in the order first reported (deterministic).
	for i, r := range reports {
		seen := false
		for _, q := range reports[:i] {
			if q.hash == r.hash {
				seen = true
				break
			}
		}
		if seen {
			continue
		}
		if hasMajority(r.hash, reports, voters) && (len(outgoing) == 0 || hasMajority(r.hash, reports, outgoing)) {
			v.decided, v.hash = true, r.hash
			return v, true
		}
	}
	agree := true
	for _, r := range reports {
		agree = agree && r.hash == reports[0].hash
	}
	if agree {
		return verdict{}, false // nothing disagrees: wait for a majority
	}
	if final || (allReported(reports, voters) && allReported(reports, outgoing)) {
		return v, true
	}
	return verdict{}, false
}

// hasMajority reports whether more than half of voters reported hash.
func hasMajority(hash uint64, reports []report, voters []uint64) bool {
	if len(voters) == 0 {
		return false
	}
	n := 0
	for _, r := range reports {
		if r.hash == hash && slices.Contains(voters, r.node) {
			n++
		}
	}
	return n > len(voters)/2
}

func allReported(reports []report, voters []uint64) bool {
	for _, id := range voters {
		if !slices.ContainsFunc(reports, func(r report) bool { return r.node == id }) {
			return false
		}
	}
	return true
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

// checkpoint is what a node knows of one checkpoint index.
type checkpoint struct {
	index    uint64
	own      uint64 // this node's hash at index
	hasOwn   bool
	reports  []report // in log order; a replica's first report counts
	verdict  *verdict
	proposed uint64 // tick of this node's last verdict proposal (0: none)
	tries    uint32 // verdict proposals made (retries back off)
	first    uint64 // tick the first report was applied here (0: none yet)
	checked  bool   // own compared with the verdict
}

func (cp *checkpoint) reportOf(id uint64) (report, bool) {
	for _, r := range cp.reports {
		if r.node == id {
			return r, true
		}
	}
	return report{}, false
}

// verifier is a node's verification state.
type verifier struct {
	interval uint64
	hasher   Hasher
	cps      []*checkpoint // by index ascending
	// pending is this node's latest own checkpoint not yet seen reported
	// in the log (0: none); tried is the tick of the last attempt and
	// tries how many attempts it took so far (retries back off).
	pending uint64
	tried   uint64
	tries   uint32
	// changed says whether the state machine applied a command since the
	// last checkpoint (or since this node started or restored a snapshot).
	// A checkpoint without one is skipped: its hash cannot differ from the
	// last one's, and verifying it would only append records whose own
	// indexes reach the next checkpoint (with a short interval and many
	// voters, the reports alone kept the log growing).
	changed bool
	stepped uint64  // tick of the last step-down of a diverged leader
	alarms  []Alarm // at most one per replica, by node ascending
	gen     uint64  // bumped whenever alarms change
	// confirmed counts checkpoints whose verdict matched this node's hash.
	confirmed uint64
}

// checkpoint returns the checkpoint at index, creating it if create.
func (v *verifier) checkpoint(index uint64, create bool) *checkpoint {
	i, found := slices.BinarySearchFunc(v.cps, index, func(cp *checkpoint, idx uint64) int { return cmpU64(cp.index, idx) })
	if found {
		return v.cps[i]
	}
	if !create {
		return nil
	}
	cp := &checkpoint{index: index}
	v.cps = slices.Insert(v.cps, i, cp)
	return cp
}

// trim forgets checkpoints more than verifyKeep intervals behind applied.
func (v *verifier) trim(applied uint64) {
	low := v.low(applied)
	k := 0
	for k < len(v.cps) && v.cps[k].index < low {
		k++
	}
	if k > 0 {
		clear(v.cps[:k])
		v.cps = v.cps[k:]
	}
}

// low is the lowest checkpoint index kept at applied.
func (v *verifier) low(applied uint64) uint64 {
	return applied - min(applied, verifyKeep*v.interval)
}

// alarm returns the alarm about node id.
func (v *verifier) alarm(id uint64) (Alarm, bool) {
	for _, a := range v.alarms {
		if a.Node == id {
			return a, true
		}
	}
	return Alarm{}, false
}

// ---- the node's side ----

// verifyApplied records this node's hash if index is a checkpoint and a
// command was applied since the last one. Every replica applies the same
// log, so they skip the same checkpoints; one that restarted or restored a
// snapshot since may skip one that the others take, which is the same as
// a replica that was down for it.
func (n *Node) verifyApplied(index uint64) {
	v := n.ver
	if v == nil || index%v.interval != 0 || !v.changed {
		return
	}
	v.changed = false
	cp := v.checkpoint(index, true)
	cp.own, cp.hasOwn, cp.checked = v.hasher.Hash(), true, false
	v.pending, v.tries = index, 0
	v.trim(index)
	n.proposeReport()
	// A verdict applied earlier (a restart replaying its log past reports
	// it had made) is checked at once.
	if cp.verdict != nil {
		n.checkOwn(cp)
	}
}

// applyRecord applies a verification record at entry index.
func (n *Node) applyRecord(index uint64, data []byte) {
	v := n.ver
	if v == nil {
		return // verification off: records are skipped all the same
	}
	rec, err := decodeRecord(data)
	if err != nil {
		if n.cfg.Logger != nil {
			n.cfg.Logger.Warn("skipping a malformed verification record", "node", n.ID(), "index", index, "err", err)
		}
		return
	}
	switch rec.kind {
	case recReport:
		n.applyReport(index, rec.index, rec.rep)
	case recVerdict:
		n.applyVerdict(index, &rec.verdict)
	}
}

func (n *Node) applyReport(at, index uint64, r report) {
	v := n.ver
	if index > at || index < v.low(at) {
		return // from the future (malformed) or too old to matter
	}
	cp := v.checkpoint(index, true)
	if _, dup := cp.reportOf(r.node); dup {
		return
	}
	cp.reports = append(cp.reports, r)
	if cp.first == 0 {
		cp.first = max(n.now, 1)
	}
	if r.node == n.ID() && v.pending == index {
		v.pending = 0
	}
	if cp.verdict == nil && n.raft.BasicStatus().Role == core.Leader {
		n.maybeVerdict(cp, nil)
	}
	if vd := cp.verdict; vd != nil && vd.decided {
		n.judge(index, r, vd.hash)
	}
}

func (n *Node) applyVerdict(at uint64, vd *verdict) {
	v := n.ver
	if vd.index > at {
		return
	}
	var reports []report
	if vd.index >= v.low(at) {
		cp := v.checkpoint(vd.index, true)
		if cp.verdict != nil {
			return // the first verdict on a checkpoint stands
		}
		cp.verdict = vd
		reports = cp.reports
	}
	// The reports counted by the leader, then any others applied here.
	all := slices.Clone(vd.reports)
	for _, r := range reports {
		if !slices.ContainsFunc(all, func(q report) bool { return q.node == r.node }) {
			all = append(all, r)
		}
	}
	for _, r := range all {
		if vd.decided {
			n.judge(vd.index, r, vd.hash)
		} else {
			n.raise(Alarm{Node: r.node, Index: vd.index, Hash: r.hash})
		}
	}
	if cp := v.checkpoint(vd.index, false); cp != nil {
		n.checkOwn(cp)
	}
}

// checkOwn compares this node's own hash at a checkpoint with its verdict
// (for when its report is not in the log).
func (n *Node) checkOwn(cp *checkpoint) {
	vd := cp.verdict
	if !cp.hasOwn || vd == nil || !vd.decided || cp.checked {
		return
	}
	cp.checked = true
	if cp.own == vd.hash {
		n.ver.confirmed++
		return
	}
	n.raise(Alarm{Node: n.ID(), Index: cp.index, Hash: cp.own, Want: vd.hash, Decided: true})
}

// judge compares a report with its checkpoint's verdict: a mismatch
// raises an alarm about the reporter, a match clears an older one.
func (n *Node) judge(index uint64, r report, want uint64) {
	if r.hash != want {
		n.raise(Alarm{Node: r.node, Index: index, Hash: r.hash, Want: want, Decided: true})
		return
	}
	if a, ok := n.ver.alarm(r.node); ok && a.Index < index {
		n.clearAlarm(r.node, fmt.Sprintf("its state hash matches the majority's at index %d", index))
	}
}

// raise records an alarm about a replica unless one stands already, logs
// it and tells Config.OnAlarm.
func (n *Node) raise(a Alarm) {
	v := n.ver
	i, found := slices.BinarySearchFunc(v.alarms, a.Node, func(x Alarm, id uint64) int { return cmpU64(x.Node, id) })
	if found {
		// The first alarm stands (it says where the divergence was first
		// seen), unless a decided one replaces an undecided one.
		if old := v.alarms[i]; old.Decided || !a.Decided {
			return
		}
		v.alarms[i] = a
	} else {
		v.alarms = slices.Insert(v.alarms, i, a)
	}
	v.gen++
	if l := n.cfg.Logger; l != nil {
		if a.Decided {
			l.Error("replica state diverged", "node", n.ID(), "diverged_node", a.Node, "index", a.Index,
				"hash", fmt.Sprintf("%#016x", a.Hash), "majority_hash", fmt.Sprintf("%#016x", a.Want),
				"self", a.Node == n.ID())
		} else {
			l.Error("replica state hashes disagree with no majority", "node", n.ID(), "suspect_node", a.Node,
				"index", a.Index, "hash", fmt.Sprintf("%#016x", a.Hash), "self", a.Node == n.ID())
		}
	}
	if n.cfg.OnAlarm != nil {
		n.cfg.OnAlarm(a)
	}
	if a.Node == n.ID() {
		n.refuseWaitingReads()
	}
}

// clearAlarm withdraws the alarm about node id, if any.
func (n *Node) clearAlarm(id uint64, why string) {
	v := n.ver
	i, found := slices.BinarySearchFunc(v.alarms, id, func(x Alarm, id uint64) int { return cmpU64(x.Node, id) })
	if !found {
		return
	}
	a := v.alarms[i]
	v.alarms = slices.Delete(v.alarms, i, i+1)
	v.gen++
	if l := n.cfg.Logger; l != nil {
		l.Warn("replica divergence alarm cleared", "node", n.ID(), "diverged_node", id, "index", a.Index, "reason", why)
	}
	if n.cfg.OnAlarm != nil {
		a.Cleared = true
		n.cfg.OnAlarm(a)
	}
}

// verifyRestored forgets this node's own hashes after its state machine
// was replaced by a snapshot from the leader, which also repairs it.
func (n *Node) verifyRestored(index uint64) {
	v := n.ver
	if v == nil {
		return
	}
	for _, cp := range v.cps {
		cp.hasOwn, cp.checked = false, false
	}
	v.pending, v.changed = 0, false
	v.trim(index)
	n.clearAlarm(n.ID(), fmt.Sprintf("state restored from the leader's snapshot at index %d", index))
}

// verifyRemoved clears the alarm about a node removed from the
// configuration.
func (n *Node) verifyRemoved(id uint64) {
	if n.ver != nil {
		n.clearAlarm(id, "removed from the configuration")
	}
}

// proposeReport proposes this node's pending report. A proposal the core
// refuses (no leader known) is retried by verifyTick.
func (n *Node) proposeReport() {
	v := n.ver
	cp := v.checkpoint(v.pending, false)
	if cp == nil || !cp.hasOwn {
		v.pending = 0 // forgotten, or replaced by a leader's snapshot
		return
	}
	v.tried = max(n.now, 1)
	v.tries++
	_ = n.raft.Propose(encodeReport(n.ID(), cp.index, cp.own))
}

// verifyFinalTicks is how long after its first report a checkpoint's
// disagreeing reports, still without a majority, give an undecided
// verdict, in election timeouts: time for every live replica to report.
const verifyFinalTicks = 4

// maybeVerdict proposes, on the leader, the verdict on cp if one is due
// and none was proposed within an election timeout. conf is the
// configuration, loaded if nil.
func (n *Node) maybeVerdict(cp *checkpoint, conf *core.ConfState) *core.ConfState {
	retry := uint64(max(n.cfg.Core.ElectionTick, 1))
	if cp.verdict != nil || len(cp.reports) == 0 || (cp.proposed != 0 && n.now < cp.proposed+retryBackoff(retry, cp.tries)) {
		return conf
	}
	if conf == nil {
		cs := n.raft.Status().Config
		conf = &cs
	}
	final := cp.first != 0 && n.now >= cp.first+verifyFinalTicks*retry
	vd, ok := decide(cp.index, cp.reports, conf.Voters, conf.VotersOutgoing, final)
	if ok {
		cp.proposed = max(n.now, 1)
		cp.tries++
		_ = n.raft.Propose(encodeVerdict(&vd))
	}
	return conf
}

// retryBackoff is how long to wait after the tries-th attempt to get a
// verification record into the log before proposing it again: one retry
// period after the first, doubling up to 16. A proposal that is still
// queued behind a long uncommitted log is not lost; re-proposing it at a
// fixed rate would lengthen that log further (a 7-node cluster with tiny
// messages never caught up with its own reports).
func retryBackoff(retry uint64, tries uint32) uint64 {
	return retry << min(max(tries, 1)-1, 4)
}

// verifyTick retries this node's pending report and, on the leader, the
// verdicts that are due; a diverged leader steps down.
func (n *Node) verifyTick() {
	v := n.ver
	if v == nil {
		return
	}
	retry := uint64(max(n.cfg.Core.ElectionTick, 1))
	if v.pending != 0 && n.now >= v.tried+retryBackoff(retry, v.tries) {
		n.proposeReport()
	}
	if n.raft.BasicStatus().Role != core.Leader {
		return
	}
	if _, self := v.alarm(n.ID()); self && (v.stepped == 0 || n.now >= v.stepped+retry) {
		v.stepped = n.now
		_ = n.raft.StepDown()
	}
	var conf *core.ConfState
	for _, cp := range v.cps {
		conf = n.maybeVerdict(cp, conf)
	}
}

// divergedErr returns the error that refuses requests while this node is
// known to have diverged, or nil.
func (n *Node) divergedErr() error {
	if n.ver == nil {
		return nil
	}
	if a, ok := n.ver.alarm(n.ID()); ok {
		return &DivergedError{Alarm: a}
	}
	return nil
}

// refuseWaitingReads fails the reads waiting for their read point.
func (n *Node) refuseWaitingReads() {
	err := n.divergedErr()
	if err == nil {
		return
	}
	for _, rd := range n.waiting {
		delete(n.reads, rd.seq)
		rd.f.resolve(nil, err)
	}
	clear(n.waiting)
	n.waiting = n.waiting[:0]
}

// Alarms returns the divergence alarms this node holds, by node ID: the
// replicas it knows to have diverged and not been repaired since.
func (n *Node) Alarms() []Alarm {
	if n.ver == nil {
		return nil
	}
	return slices.Clone(n.ver.alarms)
}

// AlarmsGeneration changes whenever the alarms change, so that a host can
// republish them only then.
func (n *Node) AlarmsGeneration() uint64 {
	if n.ver == nil {
		return 0
	}
	return n.ver.gen
}

// Diverged returns the alarm about this node when it is known to have
// diverged from the majority (it then refuses reads with ErrDiverged).
func (n *Node) Diverged() (Alarm, bool) {
	if n.ver == nil {
		return Alarm{}, false
	}
	return n.ver.alarm(n.ID())
}

// Confirmed returns how many checkpoints this run of the node saw its own
// state hash confirmed by the majority's verdict.
func (n *Node) Confirmed() uint64 {
	if n.ver == nil {
		return 0
	}
	return n.ver.confirmed
}
