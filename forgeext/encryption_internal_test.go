package forgeext

import (
	"testing"

	"github.com/forge-consensus/consensus/server"
)

// TestOverlayKeepsEncryption: the YAML's encryption at rest survives
// options that set TLS (which replace the TLS settings), and options can
// turn encryption on themselves.
func TestOverlayKeepsEncryption(t *testing.T) {
	var c, o Config
	c.Security.EnableEncryption, c.Security.EncryptionKey = true, "from-yaml"
	c.Security.EncryptionOldKeys = []server.EncryptionKeyConfig{{Key: "old"}}
	o.Security.EnableTLS, o.Security.CertFile = true, "cert.pem"
	overlay(&c, &o)
	if !c.Security.EnableTLS || !c.Security.EnableEncryption || c.Security.EncryptionKey != "from-yaml" || len(c.Security.EncryptionOldKeys) != 1 {
		t.Fatalf("after a TLS option: %+v", c.Security)
	}
	var c2, o2 Config
	o2.Security.EnableEncryption, o2.Security.EncryptionKeyFile = true, "/keys/k"
	overlay(&c2, &o2)
	if !c2.Security.EnableEncryption || c2.Security.EncryptionKeyFile != "/keys/k" {
		t.Fatalf("encryption from options: %+v", c2.Security)
	}
}
