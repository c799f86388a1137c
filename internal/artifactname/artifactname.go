// Package artifactname says which artifact names are accepted: what a
// worker collects and the coordinator stores is a plain relative path
// that a client can write below its destination as it is, and print.
package artifactname

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"
)

// Check returns why name is not an acceptable artifact name, or nil. An
// acceptable name is valid UTF-8 without control characters or
// backslashes, and a plain relative slash-separated path: no empty, "."
// or ".." component, no leading or trailing slash.
func Check(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if !utf8.ValidString(name) {
		return errors.New("not valid UTF-8: rename the file")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return errors.New("control character in it: rename the file")
		}
		if r == '\\' {
			return errors.New("backslash in it: rename the file")
		}
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return errors.New("it escapes the work dir with a \"..\" component")
		}
	}
	if fs.ValidPath(name) && name != "." {
		return nil
	}
	if strings.HasPrefix(name, "/") {
		return errors.New("absolute path: give it relative to the work dir")
	}
	if clean := path.Clean(name); fs.ValidPath(clean) && clean != "." {
		return fmt.Errorf("not in its plain form: use %q", clean)
	}
	return errors.New("not a file path relative to the work dir")
}

// Clash returns the first name of names that lies inside another (a file
// "out" and a file "out/b" cannot both be written), or "" and "".
func Clash(names []string) (inner, outer string) {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	for _, n := range names {
		for i := strings.LastIndexByte(n, '/'); i > 0; i = strings.LastIndexByte(n[:i], '/') {
			if set[n[:i]] {
				return n, n[:i]
			}
		}
	}
	return "", ""
}
