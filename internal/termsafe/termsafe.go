// Package termsafe keeps text that others wrote (job logs, job reasons,
// file names) from driving the terminal it is shown on: escape sequences
// other than colours (SGR) and control characters other than newline, tab
// and carriage return are shown as visible text instead (ESC as ^[, BEL
// as ^G, a C1 control as \u009b), so they neither change the window's
// title, clear the screen, move the cursor nor make links.
package termsafe

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// ForTerminal returns w wrapped in a Writer when w is a terminal, and w
// itself otherwise (a pipe or a file keeps the bytes as they are).
func ForTerminal(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return NewWriter(f)
	}
	return w
}

// maxSGR bounds a colour sequence held back while it is incomplete.
const maxSGR = 64

// Writer neutralises what it writes to the underlying writer. A sequence
// split across writes is held back until it is complete; Flush writes
// what is held.
type Writer struct {
	w       io.Writer
	pending []byte
}

// NewWriter makes a Writer onto w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write neutralises p and writes it; it reports all of p written unless
// the underlying writer fails.
func (t *Writer) Write(p []byte) (int, error) {
	data := append(t.pending, p...)
	t.pending = nil
	out := make([]byte, 0, len(data)+16)
	i := 0
	for i < len(data) {
		b := data[i]
		switch {
		case b == 0x1b:
			n, complete := sgrLen(data[i:])
			if !complete {
				t.pending = append([]byte(nil), data[i:]...)
				i = len(data)
				continue
			}
			if n > 0 {
				out = append(out, data[i:i+n]...)
				i += n
				continue
			}
			out = append(out, '^', '[')
			i++
		case b == 0xc2 && i+1 == len(data):
			t.pending = []byte{b}
			i++
		case b == 0xc2 && data[i+1] >= 0x80 && data[i+1] < 0xa0:
			out = fmt.Appendf(out, `\u%04x`, data[i+1])
			i += 2
		case b == '\n' || b == '\t' || b == '\r':
			out = append(out, b)
			i++
		case b < 0x20:
			out = append(out, '^', b+0x40)
			i++
		case b == 0x7f:
			out = append(out, '^', '?')
			i++
		default:
			out = append(out, b)
			i++
		}
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// sgrLen returns the length of the colour sequence (ESC [ digits ; : m)
// at the start of b, 0 when b starts with another escape, and complete
// false when b ends before it can tell.
func sgrLen(b []byte) (n int, complete bool) {
	if len(b) < 2 {
		return 0, false
	}
	if b[1] != '[' {
		return 0, true
	}
	for j := 2; j < len(b); j++ {
		c := b[j]
		switch {
		case c >= '0' && c <= '9' || c == ';' || c == ':':
			if j >= maxSGR {
				return 0, true
			}
		case c == 'm':
			return j + 1, true
		default:
			return 0, true
		}
	}
	return 0, len(b) >= maxSGR
}

// Flush writes what is held back (an incomplete sequence), neutralised.
func (t *Writer) Flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	p := t.pending
	t.pending = nil
	out := make([]byte, 0, len(p)+2)
	for _, b := range p {
		switch {
		case b == 0x1b:
			out = append(out, '^', '[')
		case b < 0x20 && b != '\n' && b != '\t' && b != '\r':
			out = append(out, '^', b+0x40)
		default:
			out = append(out, b)
		}
	}
	_, err := t.w.Write(out)
	return err
}

// Flush flushes w when it is a Writer (what ForTerminal made).
func Flush(w io.Writer) error {
	if t, ok := w.(*Writer); ok {
		return t.Flush()
	}
	return nil
}
