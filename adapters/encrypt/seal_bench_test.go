package encrypt

import (
	"testing"

	"github.com/forge-consensus/consensus/core"
)

// BenchmarkSealEntry measures sealing one 256-byte entry, CPU only.
func BenchmarkSealEntry(b *testing.B) {
	kr := fuzzKeyring(b)
	e := core.Entry{Index: 1, Term: 1, Data: make([]byte, 256)}
	buf := make([]byte, 0, 512)
	b.SetBytes(256)
	for range b.N {
		kr.sealEntryInto(buf, &e)
	}
}
