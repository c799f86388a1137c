package rpm

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"unicode/utf8"
)

// xmlSafe is what escape promises to keep of s: characters XML 1.0 does
// not allow are dropped (C0 controls) or replaced by U+FFFD (invalid UTF-8,
// U+FFFE, U+FFFF); everything else comes back as it was.
func xmlSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r':
		case r == utf8.RuneError && n == 1, r == 0xFFFE, r == 0xFFFF:
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// FuzzEscape: whatever a package's metadata holds, the repodata written
// from it is well-formed XML whose text and attributes decode back to the
// input (less what XML cannot carry).
func FuzzEscape(f *testing.F) {
	f.Add("plain text")
	f.Add("a < b && c > \"d\" 'e'")
	f.Add("line\r\nbreak\ttab\x00nul\x1b")
	f.Add("]]><![CDATA[x]]>")
	f.Add("bad \xff utf-8 \xef\xbf\xbe \xef\xbf\xbf \xed\xa0\x80")
	f.Add("emoji 🔥 and ünïcödé")
	f.Add("</text><injected attr=\"x\"/>")
	f.Fuzz(func(t *testing.T, s string) {
		var out bytes.Buffer
		x := newXMLWriter(&out)
		x.raw("<doc")
		x.attr("a", s)
		x.raw(">")
		x.text(s)
		x.raw("</doc>")
		if err := x.w.Flush(); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			A    string `xml:"a,attr"`
			Text string `xml:",chardata"`
			Any  []struct {
				XMLName xml.Name
			} `xml:",any"`
		}
		d := xml.NewDecoder(bytes.NewReader(out.Bytes()))
		d.Strict = true
		if err := d.Decode(&doc); err != nil {
			t.Fatalf("escaped %q is not well-formed XML: %v\n%s", s, err, out.Bytes())
		}
		if _, err := d.Token(); err == nil {
			t.Fatalf("escaped %q: markup after the document:\n%s", s, out.Bytes())
		}
		if len(doc.Any) != 0 {
			t.Fatalf("escaped %q made elements: %v", s, doc.Any)
		}
		want := xmlSafe(s)
		if doc.A != want {
			t.Errorf("attribute decodes to %q, want %q", doc.A, want)
		}
		// Parsers normalise a raw CR LF or lone CR in content to LF; escape
		// writes CR as a reference so it survives.
		if doc.Text != want {
			t.Errorf("text decodes to %q, want %q", doc.Text, want)
		}
	})
}
