// Package rpm reads RPM packages, signs them with the operator's OpenPGP key
// and writes the yum/dnf repository metadata (repodata) that describes them.
//
// Reading: [Read] and [ReadFile] parse the lead, the signature header and the
// main header of an rpm file (never the payload) and return a [Package]: the
// fields that createrepo_c puts into primary.xml, filelists.xml and
// other.xml, plus the file's sha256 (the pkgid) and size. Headers are bounded:
// a corrupt, truncated or oversized header is refused with an error that
// wraps [ErrInvalid] and names what was wrong.
//
// A Package is plain data and serialisable with encoding/json, so a caller
// derives it once when a package enters a repository, keeps it, and later
// rewrites the repository's metadata from the kept values with
// [WriteRepodata] without reading every rpm again.
//
// Signing: [SignFile] writes a copy of an rpm whose signature header carries
// a header-only OpenPGP signature (RPMSIGTAG_RSA for RSA keys,
// RPMSIGTAG_DSA for EdDSA/ECDSA/DSA keys, as rpmsign does) and a
// header+payload signature (RPMSIGTAG_PGP, or RPMSIGTAG_GPG for non-RSA
// keys), together with valid SHA256, SHA1, MD5 and size tags. The main header
// and the payload are copied unchanged. The key itself stays behind the
// [Signer] interface.
//
// Repodata: [WriteRepodata] writes repodata/ below a repository directory:
// <sha256>-primary.xml.gz, <sha256>-filelists.xml.gz, <sha256>-other.xml.gz
// (file names prefixed with their checksum, as createrepo_c does by default,
// so that a mirror can copy the new files before the new repomd.xml), and
// repomd.xml, plus repomd.xml.asc when a Signer is given. The new repodata is
// written into a temporary directory beside repodata/ and then exchanged with
// the live one in a single rename, so a reader sees either the complete old
// set or the complete new set, never a mix. The metadata files of the
// previous set stay in the new one for one more generation, so that a client
// or a mirror that read the previous repomd.xml just before the switch still
// finds the files it names.
package rpm

import (
	"context"
	"errors"
	"io"
)

// Signer makes OpenPGP detached signatures with the repository key.
// With armored false it returns a binary OpenPGP v4 signature packet, which is
// what rpm stores in its signature header; with armored true an ASCII-armored
// signature, as for repomd.xml.asc.
type Signer interface {
	DetachSign(ctx context.Context, r io.Reader, armored bool) ([]byte, error)
}

// ErrInvalid is wrapped by every error that reports a malformed rpm file.
var ErrInvalid = errors.New("invalid rpm")
