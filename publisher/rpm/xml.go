package rpm

import (
	"bufio"
	"io"
	"strconv"
	"unicode/utf8"
)

// xmlWriter writes the repodata XML by hand: the structure is fixed, and
// writing it directly is several times faster than encoding/xml.
type xmlWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (x *xmlWriter) raw(s string) { x.w.WriteString(s) }

// text writes s escaped as element content.
func (x *xmlWriter) text(s string) { x.escape(s, false) }

// attr writes ` name="value"` with value escaped.
func (x *xmlWriter) attr(name, value string) {
	x.w.WriteByte(' ')
	x.w.WriteString(name)
	x.w.WriteString(`="`)
	x.escape(value, true)
	x.w.WriteByte('"')
}

func (x *xmlWriter) attrInt(name string, v int64) {
	x.w.WriteByte(' ')
	x.w.WriteString(name)
	x.w.WriteString(`="`)
	x.buf = strconv.AppendInt(x.buf[:0], v, 10)
	x.w.Write(x.buf)
	x.w.WriteByte('"')
}

// element writes <name>text</name> after indent.
func (x *xmlWriter) element(indent, name, value string) {
	x.w.WriteString(indent)
	x.w.WriteByte('<')
	x.w.WriteString(name)
	x.w.WriteByte('>')
	x.escape(value, false)
	x.w.WriteString("</")
	x.w.WriteString(name)
	x.w.WriteString(">\n")
}

// escape writes s so that it can only ever be character data: markup
// characters become references, characters XML does not allow and invalid
// UTF-8 are dropped or replaced, and in attributes line breaks and tabs are
// kept as references.
func (x *xmlWriter) escape(s string, inAttr bool) {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '&' && c != '<' && c != '>' && c != '"' {
			i++
			continue
		}
		var rep string
		width := 1
		switch {
		case c == '&':
			rep = "&amp;"
		case c == '<':
			rep = "&lt;"
		case c == '>':
			rep = "&gt;"
		case c == '"':
			if !inAttr {
				i++
				continue
			}
			rep = "&quot;"
		case c == '\n':
			if !inAttr {
				i++
				continue
			}
			rep = "&#10;"
		case c == '\t':
			if !inAttr {
				i++
				continue
			}
			rep = "&#9;"
		case c == '\r':
			rep = "&#13;"
		case c < 0x20:
			rep = "" // not allowed in XML 1.0
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			width = n
			switch {
			case r == utf8.RuneError && n == 1:
				rep = "\uFFFD"
			case r == 0xFFFE || r == 0xFFFF:
				rep = "\uFFFD"
			default:
				i += n
				continue
			}
		}
		x.w.WriteString(s[start:i])
		x.w.WriteString(rep)
		i += width
		start = i
	}
	x.w.WriteString(s[start:])
}

func newXMLWriter(w io.Writer) *xmlWriter {
	return &xmlWriter{w: bufio.NewWriterSize(w, 64<<10)}
}
