// Package admin is the cluster admin REST API as a plain net/http handler.
//
// The same handler serves the Forge extension and the standalone daemon: it
// depends only on the standard library and on the Cluster interface, which
// the caller implements. Build it with Handler and mount it on any mux:
//
//	h, err := admin.Handler(admin.Config{Tokens: tokens, Metrics: promhttp.Handler()}, cluster)
//	mux.Handle("/consensus/", h)
//
// # Routes
//
// All routes live under Config.PathPrefix (default "/consensus"). Bodies
// are JSON in snake_case.
//
//	GET  /health               200 HealthStatus if healthy, else 503 with the same body plus "error"
//	GET  /health/live          200 {"status":"alive"}, always
//	GET  /health/ready         200 {"ready":true,"status":S}, else 503 {"error":..,"ready":false,"status":S}
//	GET  /metrics              Config.Metrics; 404 if it is nil
//	GET  /status               200 ClusterInfo
//	GET  /nodes                200 {"nodes":[NodeStatus...]}
//	GET  /leader               200 {"leader_id":N,"leader_address":A,"term":T}; 503 with the same body plus "error" if there is no leader
//	POST /add-node             {"node_id":N,"address":"host","port":P} -> 200 {"ok":true,"node_id":N,"stage":"learner"}
//	                           optional: "api_port", "client_port", "learner":true (needs a MemberAdder, else 501)
//	                           ?wait=voter[&timeout=30s]: answer once a voter ("stage":"voter"), else 504
//	POST /promote              {"node_id":N}                           -> 200 {"ok":true,"node_id":N,"stage":"voter"}
//	                           409 (ErrNotCaughtUp) if the learner is behind; ?wait=voter retries (needs a Promoter, else 501)
//	POST /remove-node          {"node_id":N}                           -> 200 {"ok":true,"node_id":N}
//	POST /transfer-leadership  {"target_node_id":N}                    -> 200 {"ok":true,"target_node_id":N}
//	POST /snapshot             empty or {}                             -> 200 {"ok":true,"index":I}
//	GET  /snapshot/download    200 application/octet-stream: a backup file (package backup) holding every
//	                           write committed before the request, with Content-Length and the headers
//	                           X-Consensus-Cluster-Id, -Node, -Index and -Term (needs a Backuper, else 501)
//
// A node ID in a request is the node's name, a JSON string ("node-4",
// "us-east-1a", "3"; package nodename says which names are valid and the
// ID each stands for), or a JSON number from 1 to 2^63-1; the answer
// echoes it as given. An address is a host name or an IP address (no
// spaces, slashes, NULs or port: CheckHost). A port is in 1..65535. A request
// body is at most 64 KiB (413 beyond) and must be a single JSON object with
// no unknown fields. The Cluster is never called for an invalid request.
//
// # Membership: learner-first
//
// A MemberAdder adds a node as a learner, which the leader promotes to
// voter once it has caught up (etcd's learner flow), so a node that is
// slow or absent never counts in a quorum. The add-node answer's "stage"
// is where the node is ("learner", or "voter" after a wait), read back
// from Cluster.Info; NodeStatus.Promotion says, for a learner, why it is
// not a voter yet. A Cluster that is no MemberAdder adds through AddNode,
// and the stage is whatever Info then says.
//
// # Errors
//
// Every error response is application/json with at least
// {"error":"<message>"}. Status codes:
//
//	400  malformed body, invalid field, or ErrInvalidRequest
//	401  tokens are configured and the bearer token is missing or wrong (WWW-Authenticate: Bearer)
//	403  the token's role is too low; a mutating request with no tokens configured; a cross-origin browser request
//	404  unknown path, ErrUnknownNode, or /metrics without Config.Metrics
//	405  wrong method on a known path (with an Allow header)
//	409  ErrConflict: removing the last voter, transferring to a learner, adding an existing ID or
//	     another member's address; ErrNotCaughtUp: promoting a learner that is behind
//	413  body over 64 KiB
//	501  "learner" or a port other than "port" in POST /add-node, on a Cluster that is no MemberAdder
//	503  *NotLeaderError, ErrNoQuorum, an unhealthy /health or /health/ready, no leader on /leader
//	504  context.DeadlineExceeded; a ?wait=voter that ran out ("stage" and "promotion" say how far it got)
//	500  any other error
//
// A *NotLeaderError adds "leader_id" and "leader_address" to the body. With
// Config.RedirectWrites and a known leader address (an http or https base
// URL such as "http://127.0.0.1:7801"), the answer is instead 307 with
// Location set to that address plus the request's path and query.
//
// # Access control
//
// Tokens come from "Authorization: Bearer <token>" and map to roles in
// Config.Tokens; all configured tokens are compared in constant time.
//
//	viewer    every GET but /snapshot/download
//	operator  viewer, plus GET /snapshot/download (a backup holds every key
//	          and value), POST /snapshot and /transfer-leadership
//	admin     everything, including POST /add-node, /promote and /remove-node
//
// /health, /health/live and /health/ready are always open, since probes
// carry no tokens. /metrics needs a viewer token when tokens are configured,
// unless Config.OpenMetrics is set. With no tokens configured, GETs are open
// (but /snapshot/download) and mutating requests and backups are refused with 403 unless
// Config.AllowUnauthenticated is set, which is for loopback development
// only. Cross-origin browser POSTs are always refused
// (http.CrossOriginProtection).
//
// Config.Logger receives refused requests (method, path, status, reason)
// and the outcome of mutating requests at Info. Tokens are never logged.
package admin
