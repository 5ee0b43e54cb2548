module github.com/forge-consensus/consensus

go 1.25.7

require pgregory.net/rapid v1.3.0

require github.com/anishathalye/porcupine v1.3.1

require gopkg.in/yaml.v3 v3.0.1
