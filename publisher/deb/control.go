// Package deb reads Debian packages (.deb, .udeb) and source descriptions
// (.dsc) and writes the indexes of a Debian repository: Packages, Sources
// and Release files. It does no I/O of its own beyond the readers and
// writers it is handed.
//
// Everything read from a package is untrusted: control data is parsed
// strictly (one stanza, well-formed field names, continuation lines only
// where the format allows them), values that become paths or index keys are
// checked against Debian policy's character sets, and fields the repository
// computes itself (Filename, Size, checksums) are refused, so no package can
// inject lines or stanzas into an index.
package deb

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/kiln-build/kiln/internal/debversion"
)

// ErrInvalid is wrapped by every error about bad package input.
var ErrInvalid = errors.New("invalid package")

// Field is one control field: its name as written and its value, which for
// multi-line fields keeps the continuation lines (each starting with a space
// or tab) joined by "\n".
type Field struct {
	Name  string
	Value string
}

// Paragraph is a control stanza with the fields in their original order.
type Paragraph []Field

// Get returns the value of the field named name (case-insensitive).
func (p Paragraph) Get(name string) string {
	for _, f := range p {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Has reports whether the field exists.
func (p Paragraph) Has(name string) bool {
	for _, f := range p {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Without returns p without the named fields.
func (p Paragraph) Without(names ...string) Paragraph {
	out := make(Paragraph, 0, len(p))
next:
	for _, f := range p {
		for _, n := range names {
			if strings.EqualFold(f.Name, n) {
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}

// WriteTo appends the paragraph in control-file syntax, without the blank
// separator line.
func (p Paragraph) Append(b *bytes.Buffer) {
	for _, f := range p {
		b.WriteString(f.Name)
		b.WriteByte(':')
		if f.Value != "" && f.Value[0] != '\n' {
			b.WriteByte(' ')
		}
		b.WriteString(f.Value)
		b.WriteByte('\n')
	}
}

// maxControl bounds one control stanza.
const maxControl = 4 << 20

var fieldName = regexp.MustCompile(`^[!-9;-~][!-9;-~]*$`)

// ParseControl parses exactly one control stanza. Blank lines before and
// after are allowed; a second stanza, a line that is neither a field nor a
// continuation, control characters, duplicate fields and overlong input are
// refused.
func ParseControl(data []byte) (Paragraph, error) {
	if len(data) > maxControl {
		return nil, fmt.Errorf("%w: control data is %d bytes, more than %d", ErrInvalid, len(data), maxControl)
	}
	if i := bytes.IndexFunc(data, func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f
	}); i >= 0 {
		return nil, fmt.Errorf("%w: control data has control character %q at byte %d", ErrInvalid, data[i], i)
	}
	text := strings.TrimRight(string(data), "\n")
	text = strings.TrimLeft(text, "\n")
	if text == "" {
		return nil, fmt.Errorf("%w: empty control data", ErrInvalid)
	}
	var p Paragraph
	seen := map[string]bool{}
	for n, line := range strings.Split(text, "\n") {
		lineNo := n + 1
		switch {
		case strings.TrimSpace(line) == "":
			return nil, fmt.Errorf("%w: control data line %d: a blank line starts a second stanza; a package has exactly one", ErrInvalid, lineNo)
		case line[0] == ' ' || line[0] == '\t':
			if len(p) == 0 {
				return nil, fmt.Errorf("%w: control data line %d: continuation line before any field", ErrInvalid, lineNo)
			}
			p[len(p)-1].Value += "\n" + line
		case line[0] == '#':
			return nil, fmt.Errorf("%w: control data line %d: comments are not allowed in package control data", ErrInvalid, lineNo)
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || !fieldName.MatchString(name) || name[0] == '-' {
				return nil, fmt.Errorf("%w: control data line %d: %q is not a \"Field: value\" line", ErrInvalid, lineNo, truncate(line))
			}
			key := strings.ToLower(name)
			if seen[key] {
				return nil, fmt.Errorf("%w: control data line %d: field %s appears twice", ErrInvalid, lineNo, name)
			}
			seen[key] = true
			p = append(p, Field{Name: name, Value: strings.Trim(value, " \t")})
		}
	}
	for _, f := range p {
		if strings.HasSuffix(f.Value, "\n") {
			return nil, fmt.Errorf("%w: field %s ends with an empty line", ErrInvalid, f.Name)
		}
	}
	return p, nil
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

var (
	packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	archRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// CheckName checks a package or source name against Debian policy.
func CheckName(what, name string) error {
	if !packageName.MatchString(name) || len(name) > 200 {
		return fmt.Errorf("%w: %s %q is not a valid Debian package name (lower-case letters, digits, + - . ; at least two characters)", ErrInvalid, what, truncate(name))
	}
	return nil
}

// CheckVersion checks a version string against Debian policy.
func CheckVersion(v string) error {
	if !debversion.Valid(v) || len(v) > 200 {
		return fmt.Errorf("%w: version %q is not a valid Debian version", ErrInvalid, truncate(v))
	}
	return nil
}

// CheckArch checks an architecture name.
func CheckArch(a string) error {
	if !archRe.MatchString(a) || len(a) > 64 {
		return fmt.Errorf("%w: architecture %q is not a valid Debian architecture name", ErrInvalid, truncate(a))
	}
	return nil
}

// CheckFileName checks a base file name taken from untrusted input: no
// directory parts, no dot names, no control or space characters.
func CheckFileName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: file name %q is not a plain file name", ErrInvalid, name)
	case strings.ContainsAny(name, "/\\"):
		return fmt.Errorf("%w: file name %q contains a path separator; only base names are allowed", ErrInvalid, truncate(name))
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%w: file name %q starts with a dot", ErrInvalid, truncate(name))
	case len(name) > 255:
		return fmt.Errorf("%w: file name %q is longer than 255 bytes", ErrInvalid, truncate(name))
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%w: file name %q contains a space or control character", ErrInvalid, truncate(name))
		}
	}
	return nil
}
