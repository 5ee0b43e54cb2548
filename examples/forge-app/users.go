package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/xraph/forge"

	"github.com/forge-consensus/consensus/forgeext"
)

// User is the resource of the users API, stored as JSON in the replicated
// key-value store under "users/<id>".
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Limits on a user's fields and on a request body.
const (
	maxNameLen  = 200
	maxEmailLen = 254
	maxBodySize = 64 << 10
)

// requestTimeout bounds the consensus work of one request.
const requestTimeout = 5 * time.Second

// casAttempts bounds the compare-and-set retries of an update that races
// with other updates of the same user.
const casAttempts = 5

// maxIDLen bounds a user ID.
const maxIDLen = 64

// validID reports whether id is 1 to maxIDLen letters, digits, '.', '_' or
// '-': safe in paths and keys.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// validate checks a user's fields.
func (u User) validate() error {
	switch {
	case !validID(u.ID):
		return errors.New(`"id" is required: 1 to 64 letters, digits, '.', '_' or '-'`)
	case strings.TrimSpace(u.Name) == "":
		return errors.New(`"name" is required`)
	case len(u.Name) > maxNameLen:
		return fmt.Errorf(`"name" is longer than %d bytes`, maxNameLen)
	case u.Email == "":
		return errors.New(`"email" is required`)
	case len(u.Email) > maxEmailLen:
		return fmt.Errorf(`"email" is longer than %d bytes`, maxEmailLen)
	}
	if a, err := mail.ParseAddress(u.Email); err != nil || a.Address != u.Email {
		return fmt.Errorf(`"email" %q is not an address like ada@example.com`, u.Email)
	}
	return nil
}

// userKey is where a user lives in the key-value store.
func userKey(id string) string { return "users/" + id }

// usersAPI serves /api/users over one node's consensus service. Writes
// reach it only on the leader (ReadOnlyRouting sends them there), and
// Service.Apply refuses them anywhere else.
type usersAPI struct {
	svc *forgeext.Service
	log *slog.Logger
}

// registerRoutes sets up the middleware and the users API on the app's
// router. It runs before the app starts.
func registerRoutes(r forge.Router, svc *forgeext.Service, log *slog.Logger) error {
	// Every response, the admin API's and the 404s included, says who
	// leads: global middleware runs for every request.
	r.UseGlobal(svc.AddLeaderHeader())

	// Reads are served by any node; writes on a follower are redirected
	// (307) to the leader's URL as the service knows it.
	api := r.Group("/api", forge.WithGroupMiddleware(svc.ReadOnlyRouting()))
	u := &usersAPI{svc: svc, log: log}
	read := forge.WithMiddleware(consistencyFromQuery(svc))
	errs := []error{
		api.POST("/users", u.create),
		api.GET("/users/:id", u.get, read),
		api.PUT("/users/:id", u.update),
		api.DELETE("/users/:id", u.remove),
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("register the users API: %w", err)
	}
	return nil
}

// HeaderReadConsistency tells which consistency a read was served with.
const HeaderReadConsistency = "X-Read-Consistency"

// consistencyFromQuery returns middleware that makes a read linearizable
// (forgeext.ConsistencyMiddleware's read barrier) unless the request asks
// for ?consistency=stale, which skips the barrier: the handler then reads
// this node's local state, possibly behind the leader.
func consistencyFromQuery(svc *forgeext.Service) forge.Middleware {
	linearizable := svc.ConsistencyMiddleware(forgeext.Linearizable)
	return func(next forge.Handler) forge.Handler {
		withBarrier := linearizable(next)
		return func(ctx forge.Context) error {
			switch c := ctx.Query("consistency"); c {
			case "", "linearizable":
				ctx.SetHeader(HeaderReadConsistency, "linearizable")
				return withBarrier(ctx)
			case "stale":
				ctx.SetHeader(HeaderReadConsistency, "stale")
				return next(ctx)
			default:
				return writeError(ctx, http.StatusBadRequest,
					fmt.Sprintf("consistency %q: use linearizable (the default) or stale", c))
			}
		}
	}
}

// get serves GET /api/users/:id. The middleware has already made the read
// linearizable if it had to, so the handler reads the local state.
func (u *usersAPI) get(ctx forge.Context) error {
	id := ctx.Param("id")
	rctx, cancel := context.WithTimeout(ctx.Context(), requestTimeout)
	defer cancel()
	raw, err := u.svc.Read(rctx, userKey(id), forgeext.WithConsistency(forgeext.Stale))
	if errors.Is(err, forgeext.ErrKeyNotFound) {
		return writeError(ctx, http.StatusNotFound, fmt.Sprintf("user %q not found", id))
	}
	if err != nil {
		return u.fail(ctx, "get user", err)
	}
	var user User
	if err := json.Unmarshal(raw, &user); err != nil {
		return u.fail(ctx, "get user", fmt.Errorf("decode stored user %q: %w", id, err))
	}
	return ctx.JSON(http.StatusOK, user)
}

// create serves POST /api/users: 201 with the user, 409 if the ID is taken.
func (u *usersAPI) create(ctx forge.Context) error {
	var user User
	if err := decodeJSON(ctx.Request(), &user); err != nil {
		return writeError(ctx, http.StatusBadRequest, err.Error())
	}
	if err := user.validate(); err != nil {
		return writeError(ctx, http.StatusBadRequest, err.Error())
	}
	value, err := json.Marshal(user)
	if err != nil {
		return u.fail(ctx, "create user", fmt.Errorf("encode user: %w", err))
	}
	key := userKey(user.ID)
	rctx, cancel := context.WithTimeout(ctx.Context(), requestTimeout)
	defer cancel()

	// One replicated command: it sets the key only if it is absent, so two
	// creates of one ID, on any nodes, at any moment, cannot both succeed.
	res, err := u.svc.ApplyResult(rctx, kvCommand(forgeext.CommandCreate, forgeext.KVPayload{Key: key, Value: value}))
	if err != nil {
		return u.fail(ctx, "create user", err)
	}
	if !res.OK {
		return writeError(ctx, http.StatusConflict, fmt.Sprintf("user %q already exists", user.ID))
	}
	ctx.SetHeader("Location", "/api/users/"+user.ID)
	return ctx.JSON(http.StatusCreated, user)
}

// update serves PUT /api/users/:id: it replaces an existing user's name
// and email (200), 404 if there is no such user. It compares and sets, so
// it never recreates a user deleted meanwhile.
func (u *usersAPI) update(ctx forge.Context) error {
	id := ctx.Param("id")
	var user User
	if err := decodeJSON(ctx.Request(), &user); err != nil {
		return writeError(ctx, http.StatusBadRequest, err.Error())
	}
	if user.ID != "" && user.ID != id {
		return writeError(ctx, http.StatusBadRequest, fmt.Sprintf(`"id" %q differs from the path's %q`, user.ID, id))
	}
	user.ID = id
	if err := user.validate(); err != nil {
		return writeError(ctx, http.StatusBadRequest, err.Error())
	}
	value, err := json.Marshal(user)
	if err != nil {
		return u.fail(ctx, "update user", fmt.Errorf("encode user: %w", err))
	}
	key := userKey(id)
	rctx, cancel := context.WithTimeout(ctx.Context(), requestTimeout)
	defer cancel()

	current, err := u.svc.Read(rctx, key)
	if errors.Is(err, forgeext.ErrKeyNotFound) {
		return writeError(ctx, http.StatusNotFound, fmt.Sprintf("user %q not found", id))
	}
	if err != nil {
		return u.fail(ctx, "update user: read the current user", err)
	}
	for range casAttempts {
		res, err := u.svc.ApplyResult(rctx, kvCommand(forgeext.CommandCAS,
			forgeext.KVPayload{Key: key, Expected: current, Value: value}))
		switch {
		case err != nil:
			return u.fail(ctx, "update user", err)
		case res.OK:
			return ctx.JSON(http.StatusOK, user)
		case !res.Found:
			return writeError(ctx, http.StatusNotFound, fmt.Sprintf("user %q not found", id))
		}
		// Another update got in between: a failed cas returns the
		// current value, so try again from it.
		current = bytes.Clone(res.Value)
	}
	return writeError(ctx, http.StatusConflict, fmt.Sprintf("user %q: too many concurrent updates, try again", id))
}

// remove serves DELETE /api/users/:id: 204, or 404 if there is no such user.
func (u *usersAPI) remove(ctx forge.Context) error {
	id := ctx.Param("id")
	rctx, cancel := context.WithTimeout(ctx.Context(), requestTimeout)
	defer cancel()
	res, err := u.svc.ApplyResult(rctx, kvCommand(forgeext.CommandDelete, forgeext.KVPayload{Key: userKey(id)}))
	if err != nil {
		return u.fail(ctx, "delete user", err)
	}
	if !res.Found {
		return writeError(ctx, http.StatusNotFound, fmt.Sprintf("user %q not found", id))
	}
	return ctx.NoContent(http.StatusNoContent)
}

// kvCommand builds a built-in key-value command.
func kvCommand(typ string, p forgeext.KVPayload) forgeext.Command {
	// A KVPayload always encodes: a string and byte slices.
	payload, _ := json.Marshal(p)
	return forgeext.Command{Type: typ, Payload: payload}
}

// decodeJSON reads one JSON object of at most maxBodySize bytes with no
// unknown fields into v.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodySize+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body: one JSON object expected, found more")
	}
	return nil
}

// errorBody is the JSON body of an error answer.
type errorBody struct {
	Error string `json:"error"`
	// LeaderID and LeaderAddress hint at the leader when this node is not
	// it (as the forgeext middleware's answers do).
	LeaderID      uint64 `json:"leader_id,omitempty"`
	LeaderAddress string `json:"leader_address,omitempty"`
}

// writeError answers with an error body.
func writeError(ctx forge.Context, code int, msg string) error {
	return writeJSON(ctx, code, errorBody{Error: msg})
}

// writeJSON answers with a JSON body, the write's error in context.
func writeJSON(ctx forge.Context, code int, body any) error {
	if err := ctx.JSON(code, body); err != nil {
		return fmt.Errorf("write %d response: %w", code, err)
	}
	return nil
}

// fail answers a consensus error with the status it calls for.
func (u *usersAPI) fail(ctx forge.Context, op string, err error) error {
	var nl *forgeext.NotLeaderError
	switch {
	case errors.As(err, &nl):
		// Leadership moved after the middleware let the write through.
		ctx.SetHeader("Retry-After", "1")
		return writeJSON(ctx, http.StatusServiceUnavailable, errorBody{
			Error: "not the leader", LeaderID: nl.LeaderID, LeaderAddress: nl.LeaderAddress,
		})
	case errors.Is(err, forgeext.ErrNoQuorum), errors.Is(err, forgeext.ErrNotStarted):
		ctx.SetHeader("Retry-After", "1")
		return writeError(ctx, http.StatusServiceUnavailable, op+": the cluster is unavailable (no quorum), try again")
	case errors.Is(err, forgeext.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return writeError(ctx, http.StatusGatewayTimeout, op+": timed out; a write may or may not have been applied")
	case errors.Is(err, forgeext.ErrInvalidCommand):
		return writeError(ctx, http.StatusBadRequest, op+": "+err.Error())
	}
	u.log.Error("request failed", "op", op, "err", err)
	return writeError(ctx, http.StatusInternalServerError, op+": internal error")
}
