package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// maxBodyBytes caps request bodies.
const maxBodyBytes = 64 << 10

// route is one endpoint: its method, the role it needs ("" for open) and
// whether it changes the cluster.
type route struct {
	method string
	need   Role
	serve  func(h *handler, w http.ResponseWriter, r *http.Request)
}

type tokenEntry struct {
	sum  [sha256.Size]byte
	role Role
}

type handler struct {
	cfg    Config
	prefix string
	c      Cluster
	tokens []tokenEntry
	log    *slog.Logger
	routes map[string]route
	csrf   *http.CrossOriginProtection
}

// Handler returns the admin API for c, configured by cfg. It fails if c is
// nil, the prefix is not a clean absolute path, or a token is empty or maps
// to an unknown role.
func Handler(cfg Config, c Cluster) (http.Handler, error) {
	if c == nil {
		return nil, errors.New("admin: nil Cluster")
	}
	prefix, err := cleanPrefix(cfg.PathPrefix)
	if err != nil {
		return nil, err
	}
	h := &handler{cfg: cfg, prefix: prefix, c: c, log: cfg.Logger, csrf: http.NewCrossOriginProtection()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for tok, role := range cfg.Tokens {
		if strings.TrimSpace(tok) != tok || tok == "" {
			return nil, errors.New("admin: invalid config: a token is empty or has surrounding whitespace")
		}
		if role.level() == 0 {
			return nil, fmt.Errorf("admin: invalid config: token with unknown role %q (want %q, %q or %q)",
				role, RoleViewer, RoleOperator, RoleAdmin)
		}
		h.tokens = append(h.tokens, tokenEntry{sum: sha256.Sum256([]byte(tok)), role: role})
	}
	metricsNeed := RoleViewer
	if cfg.OpenMetrics {
		metricsNeed = ""
	}
	get, post := http.MethodGet, http.MethodPost
	h.routes = map[string]route{
		"/health":              {get, "", (*handler).health},
		"/health/live":         {get, "", (*handler).live},
		"/health/ready":        {get, "", (*handler).ready},
		"/metrics":             {get, metricsNeed, (*handler).metrics},
		"/status":              {get, RoleViewer, (*handler).status},
		"/nodes":               {get, RoleViewer, (*handler).nodes},
		"/leader":              {get, RoleViewer, (*handler).leader},
		"/snapshot":            {post, RoleOperator, (*handler).snapshot},
		"/snapshot/download":   {get, RoleOperator, (*handler).download},
		"/transfer-leadership": {post, RoleOperator, (*handler).transferLeadership},
		"/add-node":            {post, RoleAdmin, (*handler).addNode},
		"/promote":             {post, RoleAdmin, (*handler).promote},
		"/remove-node":         {post, RoleAdmin, (*handler).removeNode},
	}
	return h, nil
}

func cleanPrefix(p string) (string, error) {
	if p == "" {
		return "/consensus", nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("admin: invalid config: path prefix %q must start with \"/\"", p)
	}
	trimmed := strings.TrimSuffix(p, "/")
	if trimmed != "" && (path.Clean(trimmed) != trimmed || trimmed == "/") || strings.ContainsAny(p, "?#") {
		return "", fmt.Errorf("admin: invalid config: path prefix %q is not a clean path", p)
	}
	return trimmed, nil
}

// ServeHTTP routes, authorizes, then serves the request.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	rt, found := h.routes[rest]
	if !ok || !found {
		h.refuse(w, r, http.StatusNotFound, "no such endpoint: "+r.URL.Path, nil)
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		h.refuse(w, r, http.StatusMethodNotAllowed,
			fmt.Sprintf("method %s not allowed; use %s", r.Method, rt.method), nil)
		return
	}
	if status, reason := h.authorize(r, rt.need); status != 0 {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", "Bearer")
		}
		h.refuse(w, r, status, reason, nil)
		return
	}
	if rt.method != http.MethodGet {
		// Browsers can send simple cross-site POSTs; refuse them so an open
		// (AllowUnauthenticated) endpoint cannot be driven by a web page.
		if err := h.csrf.Check(r); err != nil {
			h.refuse(w, r, http.StatusForbidden, "cross-origin request refused", nil)
			return
		}
	}
	rt.serve(h, w, r)
}

// authorize returns 0 if r may use a route needing need, else the refusal
// status and reason.
func (h *handler) authorize(r *http.Request, need Role) (int, string) {
	if need == "" {
		return 0, ""
	}
	if len(h.tokens) == 0 {
		if need == RoleViewer || h.cfg.AllowUnauthenticated {
			return 0, ""
		}
		return http.StatusForbidden, "mutating requests are disabled: no tokens are configured"
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return http.StatusUnauthorized, "missing bearer token"
	}
	// Compare digests of every configured token in constant time, so
	// neither the match position nor the token length leaks.
	sum := sha256.Sum256([]byte(tok))
	var role Role
	for _, t := range h.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			role = t.role
		}
	}
	if role == "" {
		return http.StatusUnauthorized, "invalid bearer token"
	}
	if role.level() < need.level() {
		return http.StatusForbidden, fmt.Sprintf("role %q may not do this; %q or higher is required", role, need)
	}
	return 0, ""
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	hs := h.c.Health(r.Context())
	if hs.Checks == nil {
		hs.Checks = []Check{}
	}
	body := struct {
		Error string `json:"error,omitempty"`
		HealthStatus
	}{HealthStatus: hs}
	status := http.StatusOK
	if !hs.Healthy {
		status, body.Error = http.StatusServiceUnavailable, "cluster is "+hs.Status
	}
	writeJSON(w, status, body)
}

func (h *handler) live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	hs := h.c.Health(r.Context())
	if !hs.Healthy {
		writeError(w, http.StatusServiceUnavailable, "not ready: cluster is "+hs.Status,
			map[string]any{"ready": false, "status": hs.Status})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "status": hs.Status})
}

func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Metrics == nil {
		h.refuse(w, r, http.StatusNotFound, "metrics are not configured", nil)
		return
	}
	h.cfg.Metrics.ServeHTTP(w, r)
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	info := h.c.Info(r.Context())
	if info.Nodes == nil {
		info.Nodes = []NodeStatus{}
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *handler) nodes(w http.ResponseWriter, r *http.Request) {
	nodes := h.c.Info(r.Context()).Nodes
	if nodes == nil {
		nodes = []NodeStatus{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

func (h *handler) leader(w http.ResponseWriter, r *http.Request) {
	info := h.c.Info(r.Context())
	body := struct {
		Error         string `json:"error,omitempty"`
		LeaderID      uint64 `json:"leader_id"`
		LeaderName    string `json:"leader_name,omitempty"`
		LeaderAddress string `json:"leader_address"`
		Term          uint64 `json:"term"`
	}{LeaderID: info.Leader, LeaderName: info.LeaderName, LeaderAddress: info.LeaderAddress, Term: info.Term}
	status := http.StatusOK
	if info.Leader == 0 {
		status, body.Error = http.StatusServiceUnavailable, "no leader"
	}
	writeJSON(w, status, body)
}

func (h *handler) addNode(w http.ResponseWriter, r *http.Request) {
	var req AddNodeRequest
	if !h.decode(w, r, &req, false) {
		return
	}
	if err := req.validate(); err != nil {
		h.refuse(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	wait, timeout, err := waitParams(r.URL.Query())
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	id := req.NodeID.ID
	addr := strings.TrimSpace(req.Address)
	ma, ok := h.c.(MemberAdder)
	switch {
	case ok:
		err = ma.AddMember(r.Context(), NewMember{ID: id, Name: req.NodeID.Name, Address: addr, Port: req.Port, APIPort: req.APIPort,
			ClientPort: req.ClientPort, Learner: req.Learner})
	case req.extended():
		h.refuse(w, r, http.StatusNotImplemented, "this cluster adds voters only, at the default API and client ports",
			nil)
		return
	default:
		err = h.c.AddNode(r.Context(), id, addr, req.Port)
	}
	if err != nil {
		h.finish(w, r, err, nil)
		return
	}
	ok200 := map[string]any{"ok": true, "node_id": req.NodeID}
	if req.Learner {
		ok200["learner"] = true
	}
	h.answerStage(w, r, req.NodeID, wait, timeout, nil, ok200)
}

// promote promotes a learner that has caught up (POST /promote); with
// ?wait=voter it retries until the learner has caught up or the timeout
// ends.
func (h *handler) promote(w http.ResponseWriter, r *http.Request) {
	var req PromoteRequest
	if !h.decode(w, r, &req, false) {
		return
	}
	if req.NodeID.ID == 0 {
		h.refuse(w, r, http.StatusBadRequest, ErrInvalidRequest.Error()+": node_id is required and must be non-zero", nil)
		return
	}
	wait, timeout, err := waitParams(r.URL.Query())
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	p, ok := h.c.(Promoter)
	if !ok {
		h.refuse(w, r, http.StatusNotImplemented, "this cluster does not promote learners on request", nil)
		return
	}
	id := req.NodeID.ID
	ok200 := map[string]any{"ok": true, "node_id": req.NodeID}
	if !wait {
		if err := p.PromoteMember(r.Context(), id); err != nil {
			h.finish(w, r, err, nil)
			return
		}
		h.answerStage(w, r, req.NodeID, false, 0, nil, ok200)
		return
	}
	// Retry while the learner catches up (or another change is applied).
	retry := func(ctx context.Context) error {
		err := p.PromoteMember(ctx, id)
		if errors.Is(err, ErrNotCaughtUp) || errors.Is(err, ErrConflict) {
			return nil // not yet: answerStage polls again
		}
		return err
	}
	h.answerStage(w, r, req.NodeID, true, timeout, retry, ok200)
}

// waitParams reads ?wait=voter and ?timeout=D (default DefaultWaitTimeout,
// at most MaxWaitTimeout).
func waitParams(q url.Values) (wait bool, timeout time.Duration, err error) {
	switch q.Get("wait") {
	case "":
		if q.Get("timeout") != "" {
			return false, 0, fmt.Errorf("%w: query parameter timeout needs wait=voter", ErrInvalidRequest)
		}
		return false, 0, nil
	case StageVoter:
	default:
		return false, 0, fmt.Errorf("%w: query parameter wait: %q is not %q", ErrInvalidRequest, clip(q.Get("wait")), StageVoter)
	}
	timeout = DefaultWaitTimeout
	if t := q.Get("timeout"); t != "" {
		if timeout, err = time.ParseDuration(t); err != nil || timeout <= 0 || timeout > MaxWaitTimeout {
			return false, 0, fmt.Errorf("%w: query parameter timeout: %q is not a duration from 1ms to %v (like 30s)",
				ErrInvalidRequest, clip(t), MaxWaitTimeout)
		}
	}
	return true, timeout, nil
}

// waitPoll is how often a waiting request looks at the member's stage.
const waitPoll = 50 * time.Millisecond

// answerStage answers a successful add-node or promote with the member's
// stage ("learner" or "voter") and, for a learner, its promotion state.
// With wait it first waits, at most timeout, until the member is a voter,
// calling step (if set) on each poll; if the time runs out it answers 504
// with the stage reached and why the member is not a voter.
func (h *handler) answerStage(w http.ResponseWriter, r *http.Request, id NodeID, wait bool, timeout time.Duration,
	step func(context.Context) error, ok map[string]any) {
	ctx := r.Context()
	look := func() (found bool, ns NodeStatus) {
		for _, n := range h.c.Info(ctx).Nodes {
			if n.ID == id.ID {
				return true, n
			}
		}
		return false, NodeStatus{}
	}
	found, ns := look()
	if wait && !(found && ns.Voter) {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		t := time.NewTicker(waitPoll)
		defer t.Stop()
		for !(found && ns.Voter) {
			if step != nil {
				if err := step(wctx); err != nil && wctx.Err() == nil {
					h.finish(w, r, err, nil)
					return
				}
			}
			if found, ns = look(); found && ns.Voter {
				break
			}
			select {
			case <-t.C:
				continue
			case <-wctx.Done():
			}
			if ctx.Err() != nil {
				return // the client went away
			}
			extra := map[string]any{"node_id": id, "stage": StageLearner}
			msg := fmt.Sprintf("node %s is still a learner after %v", id, timeout)
			if !found {
				extra["stage"] = ""
				msg = fmt.Sprintf("node %s is not a member after %v", id, timeout)
			} else if ns.Promotion != "" {
				msg += ": " + ns.Promotion
				extra["promotion"] = ns.Promotion
			}
			h.refuse(w, r, http.StatusGatewayTimeout, msg, extra)
			return
		}
	}
	if found {
		ok["stage"] = StageLearner
		if ns.Voter {
			ok["stage"] = StageVoter
		} else if ns.Promotion != "" {
			ok["promotion"] = ns.Promotion
		}
	}
	h.finish(w, r, nil, ok)
}

func (h *handler) removeNode(w http.ResponseWriter, r *http.Request) {
	var req RemoveNodeRequest
	if !h.decode(w, r, &req, false) {
		return
	}
	if req.NodeID.ID == 0 {
		h.refuse(w, r, http.StatusBadRequest, ErrInvalidRequest.Error()+": node_id is required and must be non-zero", nil)
		return
	}
	h.finish(w, r, h.c.RemoveNode(r.Context(), req.NodeID.ID), map[string]any{"ok": true, "node_id": req.NodeID})
}

func (h *handler) transferLeadership(w http.ResponseWriter, r *http.Request) {
	var req TransferLeadershipRequest
	if !h.decode(w, r, &req, false) {
		return
	}
	if req.Target.ID == 0 {
		h.refuse(w, r, http.StatusBadRequest, ErrInvalidRequest.Error()+": target_node_id is required and must be non-zero", nil)
		return
	}
	h.finish(w, r, h.c.TransferLeadership(r.Context(), req.Target.ID), map[string]any{"ok": true, "target_node_id": req.Target})
}

func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) {
	var req struct{}
	if !h.decode(w, r, &req, true) {
		return
	}
	index, err := h.c.Snapshot(r.Context())
	h.finish(w, r, err, map[string]any{"ok": true, "index": index})
}

// download streams a backup file (GET /snapshot/download): a snapshot
// that holds every write committed when the request arrived. It needs
// role operator: the file holds every key and value.
func (h *handler) download(w http.ResponseWriter, r *http.Request) {
	b, ok := h.c.(Backuper)
	if !ok {
		h.refuse(w, r, http.StatusNotImplemented, "this cluster does not stream backups", nil)
		return
	}
	bk, err := b.Backup(r.Context())
	if err != nil {
		h.finish(w, r, err, nil)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Content-Length", strconv.FormatInt(bk.Size, 10))
	hdr.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="backup-%d-%d.fcbackup"`, bk.Index, bk.Term))
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Consensus-Cluster-Id", bk.ClusterID)
	hdr.Set("X-Consensus-Node", strconv.FormatUint(bk.Node, 10))
	hdr.Set("X-Consensus-Index", strconv.FormatUint(bk.Index, 10))
	hdr.Set("X-Consensus-Term", strconv.FormatUint(bk.Term, 10))
	w.WriteHeader(http.StatusOK)
	if err := bk.WriteTo(w); err != nil {
		h.log.Warn("admin: backup download cut short", "path", r.URL.Path, "index", bk.Index, "err", err)
		return
	}
	h.log.Info("admin: backup downloaded", "path", r.URL.Path, "index", bk.Index, "term", bk.Term, "bytes", bk.Size)
}

// decode reads r's body, at most maxBodyBytes, into dst, which must be one
// JSON object with known fields only. An empty body is accepted if
// allowEmpty. On failure it answers the request and returns false.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) bool {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				h.refuse(w, r, http.StatusRequestEntityTooLarge,
					fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes), nil)
			} else {
				h.refuse(w, r, http.StatusBadRequest, "reading request body: "+err.Error(), nil)
			}
			return false
		}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		if !allowEmpty {
			h.refuse(w, r, http.StatusBadRequest, "request body is empty; expected a JSON object", nil)
		}
		return allowEmpty
	}
	if body[0] != '{' {
		h.refuse(w, r, http.StatusBadRequest, "request body must be a JSON object", nil)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		msg := describeJSONError(err)
		var idErr *nodeIDError
		if f, ok := dst.(interface{ idField() string }); ok && errors.As(err, &idErr) {
			msg = "invalid JSON body: " + f.idField() + ": " + idErr.Error()
		}
		h.refuse(w, r, http.StatusBadRequest, msg, nil)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		h.refuse(w, r, http.StatusBadRequest, "invalid JSON body: unexpected data after the object", nil)
		return false
	}
	return true
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON body: syntax error at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("invalid JSON body: field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "invalid JSON body: unexpected end of input"
	}
	return "invalid JSON body: " + strings.TrimPrefix(err.Error(), "json: ")
}

// finish answers a mutating request with ok on success or the mapped error,
// and logs the outcome.
func (h *handler) finish(w http.ResponseWriter, r *http.Request, err error, ok map[string]any) {
	if err == nil {
		writeJSON(w, http.StatusOK, ok)
		h.log.Info("admin: request done", "method", r.Method, "path", r.URL.Path, "status", http.StatusOK)
		return
	}
	status := h.clusterError(w, r, err)
	h.log.Info("admin: request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
}

// clusterError answers with the status err maps to and returns it.
func (h *handler) clusterError(w http.ResponseWriter, r *http.Request, err error) int {
	var nl *NotLeaderError
	status := http.StatusInternalServerError
	var extra map[string]any
	switch {
	case errors.As(err, &nl):
		extra = map[string]any{"leader_id": nl.LeaderID, "leader_address": nl.LeaderAddress}
		status = http.StatusServiceUnavailable
		if loc, ok := redirectTarget(nl.LeaderAddress, r.URL); ok && h.cfg.RedirectWrites {
			w.Header().Set("Location", loc)
			status = http.StatusTemporaryRedirect
		}
	case errors.Is(err, ErrUnknownNode):
		status = http.StatusNotFound
	case errors.Is(err, ErrInvalidRequest):
		status = http.StatusBadRequest
	case errors.Is(err, ErrConflict), errors.Is(err, ErrNotCaughtUp):
		status = http.StatusConflict
	case errors.Is(err, ErrNoQuorum):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	writeError(w, status, err.Error(), extra)
	return status
}

// redirectTarget joins the leader's base URL with u's path and query. It
// refuses anything but an absolute http(s) URL.
func redirectTarget(base string, u *url.URL) (string, bool) {
	b, err := url.Parse(base)
	if err != nil || (b.Scheme != "http" && b.Scheme != "https") || b.Host == "" ||
		b.RawQuery != "" || b.Fragment != "" {
		return "", false
	}
	loc := strings.TrimSuffix(base, "/") + u.EscapedPath()
	if u.RawQuery != "" {
		loc += "?" + u.RawQuery
	}
	return loc, true
}

// refuse logs a refused request and answers it with a JSON error.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, status int, reason string, extra map[string]any) {
	h.log.Info("admin: request refused", "method", r.Method, "path", r.URL.Path, "status", status, "reason", reason)
	writeError(w, status, reason, extra)
}

func writeError(w http.ResponseWriter, status int, msg string, extra map[string]any) {
	body := map[string]any{"error": msg}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"admin: encoding the response failed"}`)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
