package protocol

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	if err := Check(Version); err != nil {
		t.Fatalf("own version refused: %v", err)
	}
	for _, c := range []struct {
		v    uint32
		what string
	}{
		{0, "upgrade the worker"},
		{Oldest - 1, "upgrade the worker"},
		{Version + 1, "upgrade the coordinator"},
	} {
		err := Check(c.v)
		if !errors.Is(err, ErrVersion) {
			t.Fatalf("Check(%d) = %v, want ErrVersion", c.v, err)
		}
		for _, want := range []string{fmt.Sprintf("worker speaks protocol version %d", c.v), fmt.Sprintf("coordinator speaks %d", Version), c.what} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Check(%d) = %q, want it to say %q", c.v, err, want)
			}
		}
	}
}
