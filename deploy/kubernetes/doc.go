// Package kubernetes holds the Kubernetes manifests that run a consensusd
// cluster with discovery type kubernetes: a StatefulSet of three pods, the
// headless Service they find each other through, the clients' Service, the
// ConfigMap with consensusd's configuration, a PodDisruptionBudget, a
// NetworkPolicy and the service account with its Role. Apply the YAML files
// of this directory with kubectl; the package's test checks that they agree
// with each other and with what consensusd reads.
package kubernetes
