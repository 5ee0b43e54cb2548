// Package forgeext makes a replicated, highly available service out of a
// Forge (github.com/xraph/forge) app: add the extension and every instance
// of the app becomes a member of a Raft cluster, with leader election, a
// replicated command log and a key-value state machine.
//
//	app := forge.NewApp(forge.AppConfig{Name: "users"})
//	app.RegisterExtension(forgeext.NewExtension(
//		forgeext.WithNodeID("1"),
//		forgeext.WithBindAddress("127.0.0.1", 7001),
//		forgeext.WithPeers([]forgeext.PeerConfig{
//			{ID: "1", Address: "127.0.0.1", Port: 7001},
//			{ID: "2", Address: "127.0.0.1", Port: 7002},
//			{ID: "3", Address: "127.0.0.1", Port: 7003},
//		}),
//		forgeext.WithStoragePath("/var/lib/users/raft"),
//	))
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
// simulator, Pebble storage and the gRPC transport.
package forgeext
