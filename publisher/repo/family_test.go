package repo

import (
	"strings"
	"testing"
)

// TestFamilies checks what every family must hold to: it is found by its
// format, its extensions are its own, its pool is its own, and the
// messages that list the families name it.
func TestFamilies(t *testing.T) {
	t.Parallel()
	exts, pools := map[string]string{}, map[string]string{}
	for _, f := range families {
		got, err := familyOf(f.format())
		if err != nil || got.format() != f.format() {
			t.Errorf("familyOf(%q) = %v, %v", f.format(), got, err)
		}
		if len(f.extensions()) == 0 {
			t.Errorf("family %s accepts no file", f.format())
		}
		for _, e := range f.extensions() {
			if !strings.HasPrefix(e, ".") {
				t.Errorf("family %s: extension %q has no leading dot", f.format(), e)
			}
			if other, ok := exts[e]; ok {
				t.Errorf("%s files are accepted by %s and %s", e, other, f.format())
			}
			exts[e] = f.format()
		}
		if other, ok := pools[f.poolTop()]; ok || f.poolTop() == "" {
			t.Errorf("family %s: pool %q (also %s's)", f.format(), f.poolTop(), other)
		}
		pools[f.poolTop()] = f.format()
		if err := (Config{Name: "r", Format: f.format(), Suite: "s"}).WithDefaults().Validate(); err != nil {
			t.Errorf("family %s: a minimal repository is refused: %v", f.format(), err)
		}
	}
	_, err := familyOf("apk")
	if err == nil || !strings.Contains(err.Error(), `format "apk" is not supported: use deb or rpm`) {
		t.Errorf("unknown format: %v", err)
	}
	if err := (Config{Name: "r"}).Validate(); err == nil || !strings.Contains(err.Error(), "no format: set format deb or rpm") {
		t.Errorf("no format: %v", err)
	}
	if !SignsOnInclude(Config{Format: FormatRPM}) || SignsOnInclude(Config{Format: FormatDeb}) || SignsOnInclude(Config{Format: "apk"}) {
		t.Error("SignsOnInclude: rpm packages are signed as they enter, deb packages are not")
	}
}
