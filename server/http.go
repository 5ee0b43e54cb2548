package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/forge-consensus/consensus/core"
	"github.com/forge-consensus/consensus/kv"
	"github.com/forge-consensus/consensus/node"
)

// MaxValueBytes bounds a PUT body.
const MaxValueBytes = kv.MaxValueLen

// Node is what the HTTP API needs of a running node (a *runner.Runner).
type Node interface {
	ID() uint64
	Status() core.BasicStatus
	Propose(ctx context.Context, cmd []byte) (any, error)
	Read(ctx context.Context, level node.ReadLevel, query []byte) (any, error)
}

// API serves the key-value HTTP API of one node:
//
//	PUT    /kv/{key}   body = value       200 {"ok":true}
//	GET    /kv/{key}?consistency=linearizable|lease|stale
//	                                     200 value, 404 if absent
//	DELETE /kv/{key}                     200 {"deleted":bool}
//	GET    /status                       200 {"id","role","term","leader","commit","applied"[,"encryption"]}
//	                                     (+ "diverged": [...] while a divergence alarm stands)
//
// Every response carries X-Consensus-Leader and X-Consensus-Term. A write
// on a follower is forwarded to the leader by the protocol, or answered
// with 307 to the leader's API when FollowerWrites is "redirect". Optional
// X-Client-ID and X-Request-Seq headers make a retried write exactly-once.
// Errors: 400 bad request, 503 no leader or dropped (retry), 504 timed out
// (the write may still happen), 507 the node is out of storage space (the
// write did not happen; reads still work). A node whose state diverged from
// the cluster's (cross-replica verification) answers every read and write
// with 503 and the reason, until it is repaired.
//
// With reader or writer tokens configured (security.tokens), every request
// needs "Authorization: Bearer <token>": 401 without one or with a wrong
// one, 403 when the token's role may not do it (GET /status: any token;
// GET /kv: reader, writer or admin; PUT and DELETE: writer or admin), 429
// once an address has sent too many wrong tokens.
type API struct {
	Node           Node
	LeaderAPI      func(id uint64) string // base URL of a node's API ("" if unknown)
	FollowerWrites string                 // "forward" or "redirect"
	Timeout        time.Duration
	// Observe, if set, is told of every read ("read") and write ("apply")
	// that reached the node, with its duration and error.
	Observe func(op string, d time.Duration, err error)
	// Alarms, if set, returns the node's divergence alarms for /status.
	Alarms func() []node.Alarm
	// Encryption, if set, returns which encryption keys the stored records
	// use, for /status (an encrypted storage).
	Encryption func() any
	// auth, if set, authenticates every request (see above).
	auth *dataAuth
}

// need is the access a request needs: GET /kv reads, PUT and DELETE /kv
// write, anything else (/status, unknown paths) needs a valid token.
func need(r *http.Request) access {
	if strings.HasPrefix(r.URL.Path, "/kv/") {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return accessRead
		}
		return accessWrite
	}
	return accessStatus
}

// divergedJSON describes divergence alarms for /status.
func divergedJSON(as []node.Alarm) []map[string]any {
	out := make([]map[string]any, 0, len(as))
	for _, a := range as {
		d := map[string]any{"node": a.Node, "index": a.Index, "hash": fmt.Sprintf("%#016x", a.Hash), "message": a.String()}
		if a.Decided {
			d["majority_hash"] = fmt.Sprintf("%#016x", a.Want)
		}
		out = append(out, d)
	}
	return out
}

// observe reports an operation to Observe.
func (a *API) observe(op string, start time.Time, err error) {
	if a.Observe != nil {
		a.Observe(op, time.Since(start), err)
	}
}

// ServeHTTP routes a request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.auth != nil && !a.auth.authorizeHTTP(w, r, need(r)) {
		return
	}
	st := a.Node.Status()
	w.Header().Set("X-Consensus-Leader", strconv.FormatUint(st.Lead, 10))
	w.Header().Set("X-Consensus-Term", strconv.FormatUint(st.Term, 10))
	if r.URL.Path == "/status" && r.Method == http.MethodGet {
		body := map[string]any{
			"id": st.ID, "role": st.Role.String(), "term": st.Term, "leader": st.Lead,
			"commit": st.Commit, "applied": st.Applied,
		}
		if a.Alarms != nil {
			if as := a.Alarms(); len(as) > 0 {
				body["diverged"] = divergedJSON(as)
			}
		}
		if a.Encryption != nil {
			body["encryption"] = a.Encryption()
		}
		writeJSON(w, http.StatusOK, body)
		return
	}
	const prefix = "/kv/"
	if len(r.URL.Path) <= len(prefix) || r.URL.Path[:len(prefix)] != prefix {
		httpError(w, http.StatusNotFound, "no such endpoint: use /kv/{key} or /status")
		return
	}
	key := r.URL.Path[len(prefix):]
	if len(key) > kv.MaxKeyLen {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("key longer than %d bytes", kv.MaxKeyLen))
		return
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	switch r.Method {
	case http.MethodGet:
		a.get(ctx, w, r, key)
	case http.MethodPut, http.MethodDelete:
		a.write(ctx, w, r, key, st)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		httpError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func (a *API) get(ctx context.Context, w http.ResponseWriter, r *http.Request, key string) {
	level := node.ReadLinearizable
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "linearizable":
	case "lease":
		level = node.ReadLease
	case "stale":
		level = node.ReadStale
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("consistency %q is not linearizable, lease or stale", c))
		return
	}
	start := time.Now()
	res, err := a.Node.Read(ctx, level, kv.EncodeCommand(kv.Command{Op: kv.OpGet, Key: key}))
	a.observe("read", start, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	kr, _ := res.(kv.Result)
	if !kr.Found {
		httpError(w, http.StatusNotFound, "key not found")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(kr.Value)
}

func (a *API) write(ctx context.Context, w http.ResponseWriter, r *http.Request, key string, st core.BasicStatus) {
	if a.FollowerWrites == "redirect" && st.Role != core.Leader {
		if st.Lead != 0 && a.LeaderAPI != nil {
			if base := a.LeaderAPI(st.Lead); base != "" {
				w.Header().Set("Location", base+r.URL.RequestURI())
				httpError(w, http.StatusTemporaryRedirect, fmt.Sprintf("not the leader: node %d is", st.Lead))
				return
			}
		}
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "not the leader, and no leader is known")
		return
	}
	cmd := kv.Command{Op: kv.OpDelete, Key: key}
	if r.Method == http.MethodPut {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxValueBytes+1))
		if err != nil {
			httpError(w, http.StatusBadRequest, "read body: "+err.Error())
			return
		}
		if len(body) > MaxValueBytes {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value larger than %d bytes", MaxValueBytes))
			return
		}
		cmd = kv.Command{Op: kv.OpSet, Key: key, Value: body}
	}
	if c := r.Header.Get("X-Client-ID"); c != "" {
		id, err1 := strconv.ParseUint(c, 10, 64)
		seq, err2 := strconv.ParseUint(r.Header.Get("X-Request-Seq"), 10, 64)
		if err1 != nil || err2 != nil || id == 0 || seq == 0 {
			httpError(w, http.StatusBadRequest, "X-Client-ID and X-Request-Seq must be positive integers")
			return
		}
		cmd.ClientID, cmd.Seq = id, seq
	}
	start := time.Now()
	res, err := a.Node.Propose(ctx, kv.EncodeCommand(cmd))
	a.observe("apply", start, err)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	kr, _ := res.(kv.Result)
	if kr.Status != kv.StatusOK {
		httpError(w, http.StatusConflict, "refused: "+kr.Status.String())
		return
	}
	if cmd.Op == kv.OpDelete {
		writeJSON(w, http.StatusOK, map[string]any{"deleted": kr.Found})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// fail maps a node error to a status code.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var nl *node.NotLeaderError
	switch {
	case errors.As(err, &nl):
		if nl.LeaderID != 0 && a.LeaderAPI != nil {
			if base := a.LeaderAPI(nl.LeaderID); base != "" {
				w.Header().Set("Location", base+r.URL.RequestURI())
				httpError(w, http.StatusTemporaryRedirect, err.Error())
				return
			}
		}
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, node.ErrNoSpace):
		httpError(w, http.StatusInsufficientStorage, err.Error())
	case errors.Is(err, node.ErrDiverged):
		// No Retry-After: this node will not serve until it is repaired;
		// another node may.
		httpError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, node.ErrDropped), errors.Is(err, node.ErrLeaseReadsDisabled):
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, node.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		httpError(w, http.StatusGatewayTimeout, "timed out; a write may still take effect: "+err.Error())
	default:
		httpError(w, http.StatusServiceUnavailable, err.Error())
	}
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
