package debversion

import "testing"

func TestValid(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"1.0", "1.0-1", "2:1.0~rc1-3+kiln1", "0.1+git20260101.abc-0ubuntu1", "1.0-1~mos9.0+2"} {
		if !Valid(v) {
			t.Errorf("%q refused", v)
		}
	}
	for _, v := range []string{"", "abc", "1.0/../../x", "1:2.0:3", "a:1.0", "1.0 1", "1.0\n", ":1.0", "1_0"} {
		if Valid(v) {
			t.Errorf("%q accepted", v)
		}
	}
}
