module github.com/forge-consensus/consensus

go 1.25.7
