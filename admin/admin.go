package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/nodename"
)

// Cluster is what the admin API reads and changes. Implementations must be
// safe for concurrent use.
//
// Mutating methods report failures with the sentinel errors of this package
// (ErrUnknownNode, ErrInvalidRequest, ErrConflict, ErrNoQuorum), a
// *NotLeaderError, or context.DeadlineExceeded, possibly wrapped; the
// handlers map them to HTTP status codes. Any other error is a 500.
type Cluster interface {
	// Info returns the cluster as this node sees it.
	Info(ctx context.Context) ClusterInfo
	// Health returns this node's health verdict and the checks behind it.
	Health(ctx context.Context) HealthStatus
	// AddNode adds a node, reachable at address:port, to the cluster.
	AddNode(ctx context.Context, id uint64, address string, port int) error
	// RemoveNode removes a node from the cluster.
	RemoveNode(ctx context.Context, id uint64) error
	// TransferLeadership asks the leader to hand leadership to target.
	TransferLeadership(ctx context.Context, target uint64) error
	// Snapshot takes a snapshot and returns the log index it covers.
	Snapshot(ctx context.Context) (index uint64, err error)
}

// MemberAdder is implemented by a Cluster that can add a learner and take
// a new member's API and client ports. POST /add-node calls AddMember when
// the Cluster has it, and AddNode otherwise; without it, a request with
// "learner" or a port of the API or client protocol is refused (501).
type MemberAdder interface {
	// AddMember adds m. Without m.Learner the node joins learner-first:
	// as a learner that the leader promotes to voter once it has caught
	// up (NodeStatus.Promotion says how far it is); with m.Learner it
	// stays a learner until promoted explicitly. Adding a learner again
	// without m.Learner marks it for promotion once caught up; adding a
	// joining learner again at the same addresses changes nothing (a
	// retry); adding a voter is a conflict.
	AddMember(ctx context.Context, m NewMember) error
}

// Promoter is implemented by a Cluster that can promote a learner on
// request (POST /promote, like etcd's member promote). Without it, POST
// /promote is refused (501).
type Promoter interface {
	// PromoteMember promotes learner id to voter if it has caught up with
	// the leader, and returns once the change is applied. It returns nil
	// if id is a voter already, an error wrapping ErrNotCaughtUp (409) if
	// the learner is behind or not heard from, ErrUnknownNode if id is no
	// member.
	PromoteMember(ctx context.Context, id uint64) error
}

// Backup is a backup file (package backup) ready to be streamed.
type Backup struct {
	// ClusterID, Node, Index and Term describe it (the answer's headers).
	ClusterID   string
	Node, Index uint64
	Term        uint64
	// Size is the number of bytes WriteTo writes.
	Size int64
	// WriteTo writes the backup file to w. An error after the first byte
	// leaves the answer short of Size bytes, which the client detects.
	WriteTo func(w io.Writer) error
}

// Backuper is implemented by a Cluster that can stream a backup of its
// state (GET /snapshot/download). Without it, the endpoint answers 501.
type Backuper interface {
	// Backup prepares a backup that holds every write committed before
	// the call.
	Backup(ctx context.Context) (*Backup, error)
}

// Stages of a member, as add-node and promote answer them.
const (
	// StageLearner is a member that receives the log but does not vote.
	StageLearner = "learner"
	// StageVoter is a member that votes and counts in quorums.
	StageVoter = "voter"
)

// Waiting for a promotion (?wait=voter): the default and the longest
// timeout a request may ask for.
const (
	DefaultWaitTimeout = 30 * time.Second
	MaxWaitTimeout     = 10 * time.Minute
)

// NewMember is a node to add through MemberAdder.
type NewMember struct {
	ID uint64
	// Name is the member's name as given (package nodename), "" if it was
	// given by number alone.
	Name    string
	Address string
	Port    int
	// APIPort and ClientPort are the member's HTTP API and client-protocol
	// ports; 0 leaves the cluster's default.
	APIPort, ClientPort int
	// Learner adds a non-voting member, which receives the log but counts
	// in no quorum until it is promoted (added again as a voter).
	Learner bool
}

// ClusterInfo is the body of GET /status.
type ClusterInfo struct {
	ID     string `json:"cluster_id"`
	NodeID uint64 `json:"node_id"`
	// NodeName is this node's name (package nodename).
	NodeName string `json:"node_name,omitempty"`
	Leader   uint64 `json:"leader_id"`
	// LeaderName is the leader's name, "" when there is no leader.
	LeaderName    string `json:"leader_name,omitempty"`
	LeaderAddress string `json:"leader_address,omitempty"`
	Term          uint64 `json:"term"`
	Role          string `json:"role"`
	CommitIndex   uint64 `json:"commit_index"`
	LastApplied   uint64 `json:"last_applied"`
	TotalNodes    int    `json:"total_nodes"`
	ActiveNodes   int    `json:"active_nodes"`
	HasQuorum     bool   `json:"has_quorum"`
	// ActiveFrom says whose view the active flags, match indexes and lags
	// are: "leader" (the leader's own, or a follower's copy of it, asked
	// at most once a second) or "self" (a follower that could not ask the
	// leader: only itself and the leader are known to be active).
	ActiveFrom string       `json:"active_from,omitempty"`
	Nodes      []NodeStatus `json:"nodes"`
	// Diverged lists the replicas whose state diverged from the
	// majority's, as this node's cross-replica verification knows them.
	Diverged []DivergedNode `json:"diverged,omitempty"`
	// RemovedNodes are the IDs removed from the cluster, as far as this
	// node knows. An ID is never given to a new member again: a message
	// from its old incarnation could be counted for the new one.
	RemovedNodes []uint64 `json:"removed_nodes,omitempty"`
}

// DivergedNode is a replica whose state hash differed from the majority's
// at a checkpoint (cross-replica verification), not repaired since.
type DivergedNode struct {
	ID    uint64 `json:"id"`
	Index uint64 `json:"index"`
	// Hash is the replica's state hash at Index; MajorityHash the
	// majority's ("" when the replicas disagreed with no majority).
	Hash         string `json:"hash"`
	MajorityHash string `json:"majority_hash,omitempty"`
	Message      string `json:"message"`
}

// NodeStatus describes one cluster member.
type NodeStatus struct {
	ID uint64 `json:"id"`
	// Name is the member's name, or its ID in decimal when none is
	// recorded.
	Name    string `json:"name,omitempty"`
	Address string `json:"address"`
	// Role is "leader", "follower", "candidate" or "learner".
	Role       string `json:"role"`
	Voter      bool   `json:"voter"`
	Active     bool   `json:"active"`
	MatchIndex uint64 `json:"match_index"`
	Lag        uint64 `json:"lag"`
	// Promotion says, for a learner, whether and when it becomes a voter:
	// for one that joined learner-first (add-node), "pending: ..." with
	// why it is not promoted yet; for one added with "learner":true,
	// "manual: ...". Empty for a voter.
	Promotion string `json:"promotion,omitempty"`
}

// HealthStatus is the body of GET /health.
type HealthStatus struct {
	// Status is "healthy", "degraded" or "unhealthy".
	Status      string `json:"status"`
	Healthy     bool   `json:"healthy"`
	Leader      uint64 `json:"leader_id"`
	LeaderName  string `json:"leader_name,omitempty"`
	HasQuorum   bool   `json:"has_quorum"`
	ActiveNodes int    `json:"active_nodes"`
	TotalNodes  int    `json:"total_nodes"`
	// ActiveFrom is ClusterInfo.ActiveFrom: whose view ActiveNodes is.
	ActiveFrom string  `json:"active_from,omitempty"`
	Checks     []Check `json:"checks"`
}

// Check is one named health check and its result.
type Check struct {
	Name    string `json:"name"`
	Healthy bool   `json:"healthy"`
	Message string `json:"message,omitempty"`
}

// Errors a Cluster returns; the handlers map them to status codes with
// errors.Is, so they may be wrapped.
var (
	// ErrUnknownNode means the node ID is not a cluster member (404).
	ErrUnknownNode = errors.New("admin: unknown node")
	// ErrInvalidRequest means the request is malformed (400).
	ErrInvalidRequest = errors.New("admin: invalid request")
	// ErrConflict means the request conflicts with the cluster's state, such
	// as removing the last voter or adding an existing ID (409).
	ErrConflict = errors.New("admin: conflict")
	// ErrNoQuorum means the cluster cannot reach a quorum (503).
	ErrNoQuorum = errors.New("admin: no quorum")
	// ErrNotCaughtUp means a learner cannot be promoted yet: it is too far
	// behind the leader's log, or the leader has not heard from it (409).
	ErrNotCaughtUp = errors.New("admin: learner not caught up")
)

// NotLeaderError means a mutating request reached a node that is not the
// leader. LeaderID is 0 and LeaderAddress empty when the leader is unknown.
// LeaderAddress is the leader's admin base URL, such as
// "http://127.0.0.1:7801".
type NotLeaderError struct {
	LeaderID      uint64
	LeaderAddress string
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	switch {
	case e.LeaderID == 0:
		return "admin: not the leader (leader unknown)"
	case e.LeaderAddress == "":
		return fmt.Sprintf("admin: not the leader (leader is node %d)", e.LeaderID)
	default:
		return fmt.Sprintf("admin: not the leader (leader is node %d at %s)", e.LeaderID, e.LeaderAddress)
	}
}

// Role is the access level a bearer token grants.
type Role string

// Roles, each including the rights of the ones before it.
const (
	// RoleViewer may use every GET route.
	RoleViewer Role = "viewer"
	// RoleOperator may also POST /snapshot and /transfer-leadership.
	RoleOperator Role = "operator"
	// RoleAdmin may also POST /add-node, /promote and /remove-node.
	RoleAdmin Role = "admin"
)

// level orders roles; 0 means unknown.
func (r Role) level() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Config configures Handler. The zero value serves the routes under
// /consensus with open reads and refuses every mutating request.
type Config struct {
	// PathPrefix is where the routes live, default "/consensus". It must
	// start with "/"; a trailing "/" is ignored, and "/" serves at the root.
	PathPrefix string
	// Tokens maps bearer tokens to roles. When empty, GETs are open and
	// mutating requests are refused unless AllowUnauthenticated is set.
	Tokens map[string]Role
	// AllowUnauthenticated permits mutating requests when Tokens is empty.
	// It is for development on loopback only: anyone who can reach the
	// listener can then reconfigure the cluster.
	AllowUnauthenticated bool
	// OpenMetrics serves /metrics without a token even when Tokens is set.
	OpenMetrics bool
	// RedirectWrites answers a mutating request that reached a follower with
	// 307 to the leader, when the leader's address is known, instead of 503.
	RedirectWrites bool
	// Metrics serves GET /metrics, for example promhttp.Handler(). When nil,
	// /metrics answers 404.
	Metrics http.Handler
	// Logger receives refused requests and the outcome of mutating requests,
	// at Info. Tokens are never logged. Nil discards.
	Logger *slog.Logger
}

// NodeID names a node in a request body: a JSON number (3) or a string
// with the node's name ("node-4", "us-east-1a", "3"; package nodename
// says which names are valid and which ID each stands for). It encodes as
// the name given, or as a number when it has none.
type NodeID struct {
	ID   uint64
	Name string // as given; "" when given as a number
}

// ID returns the NodeID of a node known by number only.
func ID(id uint64) NodeID { return NodeID{ID: id} }

// Named returns the NodeID of a node name, or the error of an invalid one.
func Named(name string) (NodeID, error) {
	id, err := nodename.ID(name)
	if err != nil {
		return NodeID{}, err
	}
	return NodeID{ID: id, Name: name}, nil
}

// String returns the name, or the ID in decimal.
func (id NodeID) String() string {
	if id.Name != "" {
		return id.Name
	}
	return nodename.String(id.ID)
}

// MarshalJSON implements json.Marshaler.
func (id NodeID) MarshalJSON() ([]byte, error) {
	if id.Name != "" {
		return json.Marshal(id.Name)
	}
	return []byte(strconv.FormatUint(id.ID, 10)), nil
}

// UnmarshalJSON implements json.Unmarshaler. A JSON null leaves id unchanged.
func (id *NodeID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		var name string
		if err := json.Unmarshal(b, &name); err != nil {
			return &nodeIDError{fmt.Errorf("invalid node id %s: %w", truncate(b), err)}
		}
		v, err := Named(name)
		if err != nil {
			return &nodeIDError{fmt.Errorf("invalid node id: %w", err)}
		}
		*id = v
		return nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || !nodename.Numeric(n) {
		return &nodeIDError{fmt.Errorf(`invalid node id %s: want a name ("node-4", "us-east-1a") or an integer from 1 to 2^63-1`,
			truncate(b))}
	}
	*id = NodeID{ID: n}
	return nil
}

// nodeIDError is a NodeID that does not decode; the handlers name the
// request's field in front of it.
type nodeIDError struct{ err error }

func (e *nodeIDError) Error() string { return e.err.Error() }
func (e *nodeIDError) Unwrap() error { return e.err }

// idField names a request's NodeID field, for errors.
func (*AddNodeRequest) idField() string            { return "node_id" }
func (*RemoveNodeRequest) idField() string         { return "node_id" }
func (*PromoteRequest) idField() string            { return "node_id" }
func (*TransferLeadershipRequest) idField() string { return "target_node_id" }

func truncate(b []byte) string {
	const limit = 32
	if len(b) > limit {
		return string(b[:limit]) + "..."
	}
	return string(b)
}

// AddNodeRequest is the body of POST /add-node.
type AddNodeRequest struct {
	NodeID  NodeID `json:"node_id"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	// APIPort and ClientPort are optional (0: the cluster's default,
	// port + 100 and port + 200 for consensusd).
	APIPort    int `json:"api_port,omitempty"`
	ClientPort int `json:"client_port,omitempty"`
	// Learner adds a member that stays a learner until promoted (POST
	// /promote); without it the node joins as a learner and the leader
	// promotes it once it has caught up. Adding a learner again without
	// it marks it for that promotion.
	Learner bool `json:"learner,omitempty"`
}

func (r *AddNodeRequest) validate() error {
	switch {
	case r.NodeID.ID == 0:
		return fmt.Errorf("%w: node_id is required and must be non-zero", ErrInvalidRequest)
	case r.NodeID.Name == "" && !nodename.Numeric(r.NodeID.ID):
		return fmt.Errorf("%w: node_id %d: a numeric ID must be from 1 to 2^63-1 (larger IDs are names' hashes)",
			ErrInvalidRequest, r.NodeID.ID)
	case strings.TrimSpace(r.Address) == "":
		return fmt.Errorf("%w: address is required", ErrInvalidRequest)
	case CheckHost(strings.TrimSpace(r.Address)) != nil:
		return fmt.Errorf("%w: address %q: %v", ErrInvalidRequest, clip(r.Address), CheckHost(strings.TrimSpace(r.Address)))
	case r.Port < 1 || r.Port > 65535:
		return fmt.Errorf("%w: port must be in 1..65535, got %d", ErrInvalidRequest, r.Port)
	case r.APIPort < 0 || r.APIPort > 65535:
		return fmt.Errorf("%w: api_port must be in 1..65535 (or 0 for the default), got %d", ErrInvalidRequest, r.APIPort)
	case r.ClientPort < 0 || r.ClientPort > 65535:
		return fmt.Errorf("%w: client_port must be in 1..65535 (or 0 for the default), got %d", ErrInvalidRequest,
			r.ClientPort)
	}
	return nil
}

// extended reports whether the request needs a MemberAdder.
func (r *AddNodeRequest) extended() bool { return r.Learner || r.APIPort != 0 || r.ClientPort != 0 }

// PromoteRequest is the body of POST /promote.
type PromoteRequest struct {
	NodeID NodeID `json:"node_id"`
}

// CheckHost accepts an IP address or a host name (letters, digits, '-',
// '_' and '.', labels of at most 63 bytes, at most 253 in all), without a
// port: what add-node takes as a member's address.
func CheckHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	switch {
	case h == "":
		return errors.New("empty")
	case len(h) > 253:
		return errors.New("longer than 253 bytes")
	case strings.Contains(h, ":"):
		return errors.New("a host, not host:port (the port is its own field)")
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q is not a DNS label", clip(label))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("byte %q is not allowed in a host name", c)
			}
		}
	}
	return nil
}

// clip shortens what a request gave for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// RemoveNodeRequest is the body of POST /remove-node.
type RemoveNodeRequest struct {
	NodeID NodeID `json:"node_id"`
}

// TransferLeadershipRequest is the body of POST /transfer-leadership.
type TransferLeadershipRequest struct {
	Target NodeID `json:"target_node_id"`
}
