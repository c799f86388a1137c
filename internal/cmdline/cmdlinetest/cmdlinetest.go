// Package cmdlinetest checks what the binaries generate from their command
// line declarations.
package cmdlinetest

import (
	"bytes"
	"os"
	"testing"
)

// ManPage fails t when the committed man page at path differs from got,
// what the binary's hidden `man` command writes: `make man` writes it
// again.
func ManPage(t *testing.T, got []byte, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run make man and commit the page", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the binary's man command writes: run make man and commit the page", path)
	}
}
