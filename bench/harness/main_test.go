package harness

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	ReexecWithMadvFree()
	os.Exit(m.Run())
}
