// Package forgeext makes a replicated, highly available service out of a
// Forge (github.com/xraph/forge) app: add the extension and every instance
// of the app becomes a member of a Raft cluster, with leader election, a
// replicated command log and a key-value state machine.
//
//	import consensus "github.com/forge-consensus/consensus/forgeext"
//
//	app := forge.NewApp(forge.AppConfig{Name: "users"})
//	app.RegisterExtension(consensus.NewExtension(
//		consensus.WithNodeID("node-1"),
//		consensus.WithClusterID("my-cluster"),
//		consensus.WithBindAddress("0.0.0.0", 7000),
//		consensus.WithMTLS("node-1.pem", "node-1-key.pem", "ca.pem"), // required off loopback
//		consensus.WithPeers([]consensus.PeerConfig{
//			{ID: "node-1", Address: "10.0.1.11", Port: 7000},
//			{ID: "node-2", Address: "10.0.1.12", Port: 7000},
//			{ID: "node-3", Address: "10.0.1.13", Port: 7000},
//		}),
//		consensus.WithStoragePath("/var/lib/users/raft"),
//	))
//	app.Start(ctx)
//	svc, _ := forge.Resolve[*consensus.Service](app.Container(), "consensus")
//	err := svc.Apply(ctx, consensus.Command{Type: "set",
//		Payload: map[string]interface{}{"key": "user:123", "value": []byte(`{"name":"Alice"}`)}})
//	if consensus.IsNotLeaderError(err) { /* send the write to svc.GetLeader() */ }
//	v, err := svc.Read(ctx, "user:123")
//
// Members are named ("node-1", "us-east-1a", a pod name, or a number as
// before; see package nodename): in options, YAML, the Service's methods
// (AddNode(ctx, "node-4", "10.0.1.14", 7000), RemoveNode,
// TransferLeadership, GetLeader), the admin API, metrics and logs. The
// documented calls (Apply, Snapshot, GetClusterInfo, GetHealthStatus) have
// richer forms beside them: ApplyResult, TakeSnapshot, ClusterStatus,
// HealthReport. Package forgeext/middleware has the leadership middleware
// in the documented shape; examples/quickstart uses exactly these calls.
//
// The same settings can come from the app's configuration under
// extensions.consensus, in the keys of consensusd's YAML (node_id,
// cluster_id, bind_addr, bind_port, peers, raft.*, transport.*, storage.*,
// security.*, api.*). Options given in code override the keys they set and
// nothing else; defaults fill only what neither sets. An invalid
// configuration fails the app's start with an error naming the key.
//
// The extension registers its *Service in Forge's container under
// "consensus" (forge.Resolve[*forgeext.Service](app.Container(),
// "consensus")) and by type (forge.Inject[*forgeext.Service]). Under the
// service runs the same node as consensusd: the Raft core proven in the
// simulator, the dedicated Raft log (storage.type wal) and the gRPC
// transport. The *LeadershipChecker is registered as
// "consensus:leadership".
package forgeext
