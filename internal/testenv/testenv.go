// Package testenv lets tests that need root, a daemon or a tool say so: they
// skip with the reason when run without it, and fail instead under the
// project's test command (KILN_TEST_STRICT=1), which provides everything, so
// that there nothing is skipped.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing requirements fail tests.
func Strict() bool { return os.Getenv("KILN_TEST_STRICT") == "1" }

// Require skips (or, when strict, fails) t unless ok; what names the need.
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if Strict() {
		t.Fatalf("requirement missing under KILN_TEST_STRICT=1: %s", what)
	}
	t.Skipf("skipped: needs %s (the project's test command provides it)", what)
}

// Root requires running as root.
func Root(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "root")
}

// Tool requires an executable on PATH and returns its path.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, "the "+name+" command")
	return p
}

// Containerd returns the address of the project's containerd socket, from
// KILN_CONTAINERD_ADDRESS or the default of scripts/containerd.sh, requiring
// that it exists.
func Containerd(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("KILN_CONTAINERD_ADDRESS")
	if addr == "" {
		addr = "/run/kiln-containerd/containerd.sock"
	}
	_, err := os.Stat(addr)
	Require(t, err == nil, "containerd at "+addr+" (scripts/containerd.sh start)")
	return addr
}
