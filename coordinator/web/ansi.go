package web

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Segment is a run of log text with one style. Class names a fixed set of
// CSS classes (fg1, bg4, b, i, u, f); Text is plain text that the template
// or the browser's textContent escapes.
type Segment struct {
	Class string `json:"c,omitempty"`
	Text  string `json:"t"`
}

// Line is one rendered log line, without its newline.
type Line []Segment

// style is the SGR state of a line.
type style struct {
	fg, bg                       int // 0: default; 1..16: colour 0..15
	bold, faint, italic, underln bool
}

func (s style) class() string {
	var c []string
	if s.fg > 0 {
		c = append(c, "fg"+strconv.Itoa(s.fg-1))
	}
	if s.bg > 0 {
		c = append(c, "bg"+strconv.Itoa(s.bg-1))
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{s.bold, "b"}, {s.faint, "f"}, {s.italic, "i"}, {s.underln, "u"}} {
		if f.on {
			c = append(c, f.name)
		}
	}
	return strings.Join(c, " ")
}

// RenderLine turns one line of terminal output into styled segments. SGR
// colours and attributes become classes; every other escape sequence
// (cursor movement, OSC titles and hyperlinks, DCS, ...) and every other
// control character is dropped, and a carriage return keeps only what was
// written after it, as a terminal would show it. Each line starts unstyled,
// so that a line renders the same whether it arrived live or after a
// reconnect.
func RenderLine(b []byte) Line {
	var (
		out  = Line{}
		cur  style
		text strings.Builder
	)
	flush := func() {
		if text.Len() == 0 {
			return
		}
		cls := cur.class()
		if n := len(out); n > 0 && out[n-1].Class == cls {
			out[n-1].Text += text.String()
		} else {
			out = append(out, Segment{Class: cls, Text: text.String()})
		}
		text.Reset()
	}
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == 0x1b:
			n, sgr, params := escape(b[i:])
			if sgr {
				flush()
				cur = cur.apply(params)
			}
			i += n
			continue
		case c == '\r':
			if i+1 < len(b) { // a lone CR at the end is a CRLF line ending
				out = out[:0]
				text.Reset()
			}
			i++
			continue
		case c == '\t':
			text.WriteByte(c)
			i++
			continue
		case c < 0x20 || c == 0x7f:
			i++
			continue
		case c < utf8.RuneSelf:
			text.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			text.WriteRune(utf8.RuneError)
		case r >= 0x80 && r <= 0x9f: // C1 controls, including CSI as U+009B
		case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi overrides
		default:
			text.WriteRune(r)
		}
		i += n
	}
	flush()
	return out
}

// escape measures the escape sequence at the start of b (b[0] is ESC) and
// reports whether it is an SGR sequence, with its parameters. An
// unterminated sequence runs to the end of b.
func escape(b []byte) (n int, sgr bool, params string) {
	if len(b) < 2 {
		return len(b), false, ""
	}
	switch b[1] {
	case '[': // CSI: parameter and intermediate bytes, then a final byte
		for i := 2; i < len(b); i++ {
			if b[i] >= 0x40 && b[i] <= 0x7e {
				p := string(b[2:i])
				return i + 1, b[i] == 'm' && strings.Trim(p, "0123456789;") == "", p
			}
			if b[i] < 0x20 || b[i] > 0x3f {
				return i, false, "" // malformed: drop what was read
			}
		}
		return len(b), false, ""
	case ']', 'P', 'X', '^', '_': // OSC, DCS, SOS, PM, APC: to BEL or ST
		for i := 2; i < len(b); i++ {
			if b[i] == 0x07 {
				return i + 1, false, ""
			}
			if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\' {
				return i + 2, false, ""
			}
		}
		return len(b), false, ""
	}
	if b[1] >= 0x20 && b[1] <= 0x2f && len(b) > 2 { // ESC ( B and the like
		return 3, false, ""
	}
	return 2, false, ""
}

// apply applies SGR parameters.
func (s style) apply(params string) style {
	ps := strings.Split(params, ";")
	for i := 0; i < len(ps); i++ {
		p, _ := strconv.Atoi(ps[i]) // empty is 0
		switch {
		case p == 0:
			s = style{}
		case p == 1:
			s.bold = true
		case p == 2:
			s.faint = true
		case p == 3:
			s.italic = true
		case p == 4:
			s.underln = true
		case p == 22:
			s.bold, s.faint = false, false
		case p == 23:
			s.italic = false
		case p == 24:
			s.underln = false
		case p >= 30 && p <= 37:
			s.fg = p - 30 + 1
		case p == 39:
			s.fg = 0
		case p >= 40 && p <= 47:
			s.bg = p - 40 + 1
		case p == 49:
			s.bg = 0
		case p >= 90 && p <= 97:
			s.fg = p - 90 + 8 + 1
		case p >= 100 && p <= 107:
			s.bg = p - 100 + 8 + 1
		case p == 38 || p == 48:
			// 5;N picks from 256 colours, 2;R;G;B is true colour: the
			// first 16 map to classes, the rest to the default.
			col := 0
			if i+2 < len(ps) && ps[i+1] == "5" {
				if n, err := strconv.Atoi(ps[i+2]); err == nil && n >= 0 && n < 16 {
					col = n + 1
				}
				i += 2
			} else if i+1 < len(ps) && ps[i+1] == "2" {
				i += 4
			}
			if p == 38 {
				s.fg = col
			} else {
				s.bg = col
			}
		}
	}
	return s
}

// lineSplitter cuts a byte stream into lines, keeping an unfinished last
// line until its newline comes or it grows past maxPartial.
type lineSplitter struct {
	pending []byte
}

// maxPartial bounds a line kept back for its newline.
const maxPartial = 64 << 10

// add takes more bytes and returns the complete lines (without newlines)
// and how many bytes they used, newlines included.
func (s *lineSplitter) add(b []byte) (lines []Line, used int64) {
	s.pending = append(s.pending, b...)
	for {
		i := bytes.IndexByte(s.pending, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, RenderLine(s.pending[:i]))
		used += int64(i + 1)
		s.pending = s.pending[i+1:]
	}
	if len(s.pending) > maxPartial {
		cut := maxPartial
		for cut > 0 && !utf8.RuneStart(s.pending[cut]) {
			cut--
		}
		lines = append(lines, RenderLine(s.pending[:cut]))
		used += int64(cut)
		s.pending = s.pending[cut:]
	}
	s.pending = append([]byte(nil), s.pending...)
	return lines, used
}

// rest returns the unfinished last line, for a log that has ended.
func (s *lineSplitter) rest() (Line, int64) {
	if len(s.pending) == 0 {
		return nil, 0
	}
	l, n := RenderLine(s.pending), int64(len(s.pending))
	s.pending = nil
	return l, n
}
