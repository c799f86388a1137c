// Package cmdlinetest checks what the binaries generate from their command
// line declarations.
package cmdlinetest

import (
	"bytes"
	"os"
	"testing"

	"github.com/kiln-build/kiln/internal/cmdline"
)

// ManPage fails t when the committed man page at path differs from the
// one p generates from grammar: `make man` writes it again.
func ManPage(t *testing.T, p *cmdline.Program, grammar any, path string) {
	t.Helper()
	got, err := p.Man(grammar)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run make man and commit the page", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what `%s man` writes: run make man and commit the page", path, p.Name)
	}
}
