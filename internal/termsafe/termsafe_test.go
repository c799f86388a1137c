package termsafe

import (
	"bytes"
	"os"
	"testing"
)

func TestWriterNeutralisesEscapesButKeepsColours(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in, want string }{
		{"plain", "compiling\tfoo.c\r\nok\n", "compiling\tfoo.c\r\nok\n"},
		{"colour", "\x1b[1;31merror\x1b[0m done\x1b[m", "\x1b[1;31merror\x1b[0m done\x1b[m"},
		{"osc title", "\x1b]0;pwned\x07after", "^[]0;pwned^Gafter"},
		{"osc 8 link", "\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "^[]8;;http://evil/^[\\click^[]8;;^[\\"},
		{"screen clear", "\x1b[2J\x1b[H\x1bc", "^[[2J^[[H^[c"},
		{"cursor and bell", "a\x1b[10Ab\x07\x08", "a^[[10Ab^G^H"},
		{"c1 csi", "x\u009b2Jy", "x\\u009b2Jy"},
		{"del", "a\x7fb", "a^?b"},
		{"utf8 kept", "größe ✓\n", "größe ✓\n"},
	}
	for _, tc := range cases {
		var b bytes.Buffer
		w := NewWriter(&b)
		if _, err := w.Write([]byte(tc.in)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if b.String() != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, b.String(), tc.want)
		}
		// Byte by byte: a sequence split across writes is judged whole.
		b.Reset()
		w = NewWriter(&b)
		for i := 0; i < len(tc.in); i++ {
			if n, err := w.Write([]byte{tc.in[i]}); n != 1 || err != nil {
				t.Fatalf("write: %d %v", n, err)
			}
		}
		w.Flush()
		if b.String() != tc.want {
			t.Errorf("%s, byte by byte: %q, want %q", tc.name, b.String(), tc.want)
		}
	}
}

func TestForTerminalLeavesOtherWritersAlone(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if w := ForTerminal(&b); w != &b {
		t.Fatalf("a buffer was wrapped: %T", w)
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if w := ForTerminal(f); w != f {
		t.Fatalf("a regular file was wrapped: %T", w)
	}
}
