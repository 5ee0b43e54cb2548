module github.com/forge-consensus/consensus/bench

go 1.26.0

replace github.com/forge-consensus/consensus => ../

require (
	github.com/forge-consensus/consensus v0.0.0-00010101000000-000000000000
	go.etcd.io/raft/v3 v3.6.0
)

require (
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/golang/protobuf v1.5.4 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
