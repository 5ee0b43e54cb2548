//go:build !simbugs

package core

// BugsEnabled reports whether this build can plant bugs (simbugs tag).
const BugsEnabled = false
