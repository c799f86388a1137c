package agent

import (
	"testing"

	cpb "github.com/kiln-build/kiln/proto/kiln/coordinator/v1"
)

// A sealed build reaches the builders as sealed: they draw only from the
// release then.
func TestBuildFromPBCarriesSealed(t *testing.T) {
	t.Parallel()
	for _, sealed := range []bool{false, true} {
		b := buildFromPB(&cpb.PackageBuild{Release: "mos-9.0", Target: "bookworm-amd64", Package: "hello", Sealed: sealed})
		if b.Sealed != sealed || b.Release != "mos-9.0" {
			t.Fatalf("sealed %v: got %+v", sealed, b)
		}
	}
}
