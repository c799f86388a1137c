package label

import (
	"strings"
	"testing"
)

func TestParseAndString(t *testing.T) {
	t.Parallel()
	l, err := Parse("target=bookworm, arch=amd64")
	if err != nil || String(l) != "arch=amd64,target=bookworm" {
		t.Fatalf("%v %v", l, err)
	}
	for _, bad := range []string{"target", "=x", "a=b c", "k=" + strings.Repeat("v", MaxLength+1)} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := Validate(strings.Repeat("k", 3<<20), "v"); err == nil || len(err.Error()) > 300 {
		t.Errorf("a huge key: %d bytes of error", len(err.Error()))
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a=b", "a=b,c=d", "", "=", "a=b=c", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(String(l))
		if err != nil || String(again) != String(l) {
			t.Fatalf("round trip of %q: %v %v", s, again, err)
		}
	})
}
