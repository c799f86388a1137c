// Package integration holds the publisher's end-to-end tests: the real
// publisher binary writes repositories and the distributions' own clients
// (apt-get, gpgv) judge them, in isolated client configurations that never
// touch the machine's own apt state.
package integration
