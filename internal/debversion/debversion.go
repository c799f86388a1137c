// Package debversion says which Debian version strings Kiln accepts, the
// same on the worker (a source's debian/changelog) and in the publisher
// (a package's control data): [epoch:]upstream[-revision], the upstream
// part starting with a digit and holding only letters, digits and . + ~ -
// (Debian policy 5.6.12). A version the worker builds is one the
// publisher takes.
package debversion

import "regexp"

var re = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)

// Valid reports whether v is a Debian version Kiln accepts.
func Valid(v string) bool {
	return re.MatchString(v)
}
