// Command quickstart is the consensus extension's documented quick start
// as a program: a Forge app on every node, the extension configured with
// node names, a users API whose writes go through Apply on the leader and
// whose reads are linearizable on any node, and the leadership middleware.
// It uses exactly the calls the extension's documentation shows, with
// consensus being package forgeext.
//
// Three nodes, one per terminal:
//
//	go run ./examples/quickstart -node node-1 -data /tmp/qs1
//	go run ./examples/quickstart -node node-2 -data /tmp/qs2
//	go run ./examples/quickstart -node node-3 -data /tmp/qs3
//
// node-N talks Raft on 127.0.0.1:7000+N and serves its app on
// 127.0.0.1:8080+N (the consensus HTTP API on 7100+N, the client protocol
// on 7200+N). Then:
//
//	curl -X POST localhost:8081/api/users -d '{"id":"123","name":"Alice"}'   # 201 on the leader, 503 elsewhere
//	curl localhost:8082/api/users/123                                       # {"id":"123","name":"Alice"} on any node
//	curl localhost:8083/api/cluster                                         # GetClusterInfo()
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xraph/forge"

	consensus "github.com/forge-consensus/consensus/forgeext"
	"github.com/forge-consensus/consensus/forgeext/middleware"
	"github.com/forge-consensus/consensus/nodename"
)

// names are the cluster's members.
var names = [...]string{"node-1", "node-2", "node-3"}

func main() {
	node := flag.String("node", "node-1", "this node's name: node-1, node-2 or node-3")
	data := flag.String("data", "", "data directory (required)")
	raftBase := flag.Int("raft-port", 7000, "node-N talks Raft on this port + N")
	appBase := flag.Int("app-port", 8080, "node-N serves its app on this port + N")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *node, *data, *raftBase, *appBase); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run serves node until ctx ends.
func run(ctx context.Context, node, data string, raftBase, appBase int) error {
	n, err := nodename.ID(node)
	if err != nil || n > uint64(len(names)) || data == "" {
		return fmt.Errorf("-node must be one of %v and -data set (got %q, %q)", names, node, data)
	}
	var peers []consensus.PeerConfig
	for i, name := range names {
		peers = append(peers, consensus.PeerConfig{ID: name, Address: "127.0.0.1", Port: raftBase + i + 1})
	}
	app := forge.NewApp(forge.AppConfig{Name: node, EnableConfigAutoDiscovery: false})
	ext := consensus.NewExtension(
		consensus.WithNodeID(node),
		consensus.WithClusterID("my-cluster"),
		consensus.WithBindAddress("127.0.0.1", raftBase+int(n)),
		consensus.WithPeers(peers),
		consensus.WithStoragePath(data),
	)
	if err := app.RegisterExtension(ext); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	svc, err := forge.Resolve[*consensus.Service](app.Container(), "consensus")
	if err != nil {
		return err
	}
	checker, err := forge.Resolve[*consensus.LeadershipChecker](app.Container(), "consensus:leadership")
	if err != nil {
		return err
	}
	mw := middleware.NewLeadershipMiddleware(checker, app.Logger())
	router := app.Router()
	router.Use(mw.AddLeaderHeader())
	api := &usersAPI{svc: svc}
	if err := errors.Join(
		router.POST("/api/users", mw.RequireLeader()(api.create)),
		router.GET("/api/users/:id", mw.ConsistencyMiddleware(middleware.ConsistencyStrong)(api.get)),
		router.GET("/api/cluster", api.cluster),
	); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", appBase+int(n)))
	if err != nil {
		return errors.Join(err, app.Stop(context.Background()))
	}
	srv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("%s serving on http://%s\n", node, ln.Addr())
	<-ctx.Done()
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStop()
	return errors.Join(srv.Shutdown(stopCtx), app.Stop(stopCtx))
}

// usersAPI keeps users in the replicated key-value store, one key per
// user.
type usersAPI struct{ svc *consensus.Service }

func (u *usersAPI) create(ctx forge.Context) error {
	var user map[string]interface{}
	if err := json.NewDecoder(http.MaxBytesReader(nil, ctx.Request().Body, 64<<10)).Decode(&user); err != nil || user["id"] == nil {
		return ctx.JSON(http.StatusBadRequest, map[string]string{"error": "want a JSON object with an id"})
	}
	value, _ := json.Marshal(user) // decoded from JSON, so it encodes
	cmd := consensus.Command{
		Type:    "set",
		Payload: map[string]interface{}{"key": fmt.Sprintf("user:%v", user["id"]), "value": value},
	}
	if err := u.svc.Apply(ctx.Context(), cmd); err != nil {
		if consensus.IsNotLeaderError(err) {
			return ctx.JSON(http.StatusServiceUnavailable, map[string]string{"error": err.Error(), "leader": u.svc.GetLeader()})
		}
		return ctx.JSON(http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
	return ctx.JSON(http.StatusCreated, user)
}

func (u *usersAPI) get(ctx forge.Context) error {
	result, err := u.svc.Read(ctx.Context(), "user:"+ctx.Param("id"))
	if errors.Is(err, consensus.ErrKeyNotFound) {
		return ctx.JSON(http.StatusNotFound, map[string]string{"error": "no such user"})
	}
	if err != nil {
		return ctx.JSON(http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	}
	w := ctx.Response()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(result)
	return err
}

func (u *usersAPI) cluster(ctx forge.Context) error {
	info := u.svc.GetClusterInfo()
	health := u.svc.GetHealthStatus(ctx.Context())
	return ctx.JSON(http.StatusOK, map[string]any{
		"id": info.ID, "leader": info.Leader, "total_nodes": info.TotalNodes, "active_nodes": info.ActiveNodes,
		"has_quorum": info.HasQuorum, "is_leader": u.svc.IsLeader(), "role": u.svc.GetRole(),
		"health": health.Status, "checks": len(health.Details),
	})
}
